/**
 * The package as users get it: what `npm pack` puts in it (the built code, README, LICENSE and
 * package.json, and every file package.json points at), then the tarball installed into an empty
 * folder and used from ESM, from CommonJS `require`, and from TypeScript run with tsx.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const folder = mkdtempSync(join(tmpdir(), 'parmap-package-'));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function run(command: string, args: string[], cwd = folder): string {
  return execFileSync(command, args, {
    cwd,
    encoding: 'utf8',
    timeout: 120_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

/** Every file path package.json points at: `main`, `types`, `bin` and each `exports` target. */
function pointedAt(manifest: Record<string, unknown>): string[] {
  const paths: string[] = [];
  const collect = (value: unknown): void => {
    if (typeof value === 'string') paths.push(value.replace(/^\.\//, ''));
    else if (typeof value === 'object' && value !== null) Object.values(value).forEach(collect);
  };
  for (const field of ['main', 'types', 'bin', 'exports']) collect(manifest[field]);
  return paths;
}

describe('the file list of npm pack', { timeout: 60_000 }, () => {
  let files: string[] = [];
  before(() => {
    const [report] = JSON.parse(run(npm, ['pack', '--dry-run', '--json', '--ignore-scripts', '--silent'], root)) as {
      files: { path: string }[];
    }[];
    files = (report?.files ?? []).map((file) => file.path).sort();
    assert.ok(files.length > 0, 'npm pack --dry-run listed no files');
  });

  it('holds the built code, README.md, LICENSE and package.json, and nothing else', () => {
    const others = files.filter((path) => !path.startsWith('dist/'));
    assert.deepEqual(others, ['LICENSE', 'README.md', 'package.json']);
    const sources = files.filter((path) => /\.(ts|mts|cts)$/.test(path) && !/\.d\.ts$/.test(path));
    assert.deepEqual(sources, [], 'TypeScript sources in the package');
    const stray = files.filter((path) => /^dist\/(tests|bench|demo|docs|scripts)\//.test(path));
    assert.deepEqual(stray, [], 'tests, benchmarks, demo or docs in the package');
  });

  it('holds every file package.json points at', () => {
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
    const pointed = pointedAt(manifest).filter((path) => path !== 'package.json');
    assert.ok(pointed.includes('dist/parmap.js') && pointed.includes('dist/index.d.ts'));
    assert.deepEqual(
      pointed.filter((path) => !files.includes(path)),
      [],
      'paths in package.json that npm pack leaves out',
    );
  });
});

describe('the packed package', { timeout: 180_000 }, () => {
  before(() => {
    run(npm, ['pack', '--ignore-scripts', '--silent', '--pack-destination', folder], root);
    const tarball = readdirSync(folder).find((name) => name.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack made no tarball');
    writeFileSync(join(folder, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
    run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--silent', join(folder, tarball)]);
  });
  after(() => rmSync(folder, { recursive: true, force: true }));

  it('ships the built code and its type declarations, not the sources', () => {
    const installed = join(folder, 'node_modules', 'parmap');
    assert.ok(existsSync(join(installed, 'dist', 'parmap.js')), 'the bundled entry');
    assert.ok(existsSync(join(installed, 'dist', 'index.js')));
    assert.ok(existsSync(join(installed, 'dist', 'index.d.ts')));
    assert.ok(existsSync(join(installed, 'dist', 'parmap', 'worker.cjs')));
    assert.ok(!existsSync(join(installed, 'parmap')));
    assert.ok(!existsSync(join(installed, 'tests')));
  });

  it('works from an ESM import', () => {
    const script = `import { parmap } from 'parmap'; console.log((await parmap((x) => x * 2, [1, 2, 3], { n: 2 })).join(','));`;
    assert.equal(run(process.execPath, ['--input-type=module', '-e', script]), '2,4,6');
  });

  it('works from CommonJS require', () => {
    const script = `const { parmap, ParmapTaskError } = require('parmap');
      parmap((x) => x + 1, [1, 2], { n: 2 }).then((r) => console.log(r.join(','), typeof ParmapTaskError));`;
    assert.equal(run(process.execPath, ['--no-warnings', '-e', script]), '2,3 function');
  });

  it('works from TypeScript run with tsx, with types', () => {
    writeFileSync(
      join(folder, 'use.mts'),
      `import { parmap, type ParmapOptions } from 'parmap';
       const options: ParmapOptions = { n: 2, chunksize: 2 };
       const lengths: number[] = await parmap((word: string): number => word.length, ['a', 'bb', 'ccc'], options);
       console.log(lengths.join(','));`,
    );
    const tsx = pathToFileURL(join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
    assert.equal(run(process.execPath, ['--import', tsx, 'use.mts']), '1,2,3');
  });

  it('resolves from the calling file through the bundled entry: modules, scope errors, workers', () => {
    writeFileSync(join(folder, 'triple.mjs'), 'export const triple = (x) => x * 3;');
    writeFileSync(
      join(folder, 'caller.mjs'),
      `import { parmap, ParmapScopeError } from 'parmap';
       const tripled = await parmap({ module: './triple.mjs', export: 'triple' }, [1, 2], { n: 2 });
       const factor = 2;
       let refused = 'no';
       try { parmap((x) => x * factor, [1]); } catch (error) { refused = error instanceof ParmapScopeError ? 'yes' : String(error); }
       console.log(tripled.join(','), refused);`,
    );
    assert.equal(run(process.execPath, ['caller.mjs']), '3,6 yes');
  });
});
