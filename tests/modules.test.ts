/**
 * Functions from modules: `parmap({ module, export }, items)` for code that cannot travel as text
 * (imports, classes). The module is named by a path, a `file:` URL (string or URL object) or a
 * package name, resolved from the caller's file.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type ParmapError, type ParmapOptions, ParmapSetupError, parmap } from '../dist/index.js';
import { entry, lastJson, runNode } from './fixtures/integration-child.js';

const hasherUrl = new URL('./fixtures/hasher.mjs', import.meta.url);
const hasherPath = fileURLToPath(hasherUrl);
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const words = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];

const modes: [string, Pick<ParmapOptions, 'n' | 'workerType'>][] = [
  ['threads', { n: 2 }],
  ['processes', { n: 2, workerType: 'process' }],
  ['n: 1', { n: 1 }],
];

describe('functions from modules', () => {
  for (const [name, options] of modes) {
    it(`${name}: a module that imports node:crypto and uses a class works, by path, file: URL and URL object`, async () => {
      const expected = words.map(sha256);
      assert.deepEqual(await parmap({ module: hasherPath }, words, options), expected);
      assert.deepEqual(await parmap({ module: pathToFileURL(hasherPath).href }, words, options), expected);
      assert.deepEqual(await parmap({ module: hasherUrl, export: 'default' }, words, options), expected);
    });

    it(`${name}: export names a function other than the default`, async () => {
      const results = await parmap({ module: hasherUrl, export: 'hashTwice' }, words, options);
      assert.deepEqual(
        results,
        words.map((word) => sha256(sha256(word))),
      );
    });

    it(`${name}: a missing export fails before any item runs, naming it and listing the exported functions`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'parmap-modules-'));
      try {
        const marks = join(dir, 'ran');
        await assert.rejects(parmap({ module: hasherPath, export: 'hash' }, words, options), {
          name: 'ParmapSetupError',
          message: /no function exported as `hash` \(for fn\); its exported functions: default, hashTwice, makeHasher$/,
        });
        // The same for a context from a module: fn, which would leave a mark, never runs.
        const fn = () => require('node:fs').appendFileSync(marks, 'x');
        await assert.rejects(
          parmap(fn, words, { ...options, scope: { marks }, context: { module: hasherPath, export: 'algorithm' } }),
          {
            // It is exported, but as a string: the message says what it is.
            message:
              /exports `algorithm`, but it is `"sha256"` \(string\), not a function \(for context\); its exported functions: default, hashTwice, makeHasher$/,
          },
        );
        assert.equal(existsSync(marks), false, 'an item ran');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  for (const [name, options] of modes) {
    it(`${name}: a context from a module gives fn a class instance, methods and all`, async () => {
      const fn = (text: string, hasher: { digest(text: string): string; calls: number }) => [
        hasher.digest(text),
        hasher.calls,
      ];
      const results = await parmap(fn, words, { ...options, context: { module: hasherPath, export: 'makeHasher' } });
      assert.deepEqual(
        results.map(([digest]) => digest),
        words.map(sha256),
      );
      assert.ok(results.every(([, calls]) => typeof calls === 'number' && calls >= 1));
    });
  }

  it('a failed set-up is a ParmapSetupError, what was thrown as its cause', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parmap-modules-'));
    try {
      const broken = join(dir, 'broken.mjs');
      writeFileSync(
        broken,
        'export default (x) => x;\nthrow Object.assign(new Error("no model here"), { code: "E_MODEL" });\n',
      );
      const failure = (call: Promise<unknown>) =>
        call.then(
          () => assert.fail('the call did not fail'),
          (error: unknown) => error,
        );
      for (const [name, options] of modes) {
        const importFailed = await failure(parmap({ module: broken }, words, options));
        const missingExport = await failure(parmap({ module: hasherPath, export: 'hash' }, words, options));
        const contextThrew = await failure(
          parmap((x: string) => x, words, {
            ...options,
            context: () => {
              throw new Error('no database');
            },
          }),
        );
        for (const error of [importFailed, missingExport, contextThrew]) {
          assert.ok(error instanceof ParmapSetupError, `${name}: ${String(error)}`);
          assert.equal(error.name, 'ParmapSetupError', name);
        }
        const cause = (importFailed as ParmapError).cause as Error & { code?: unknown };
        assert.ok(cause instanceof Error, name);
        assert.equal(cause.message, 'no model here');
        assert.equal(cause.code, 'E_MODEL');
        assert.equal((contextThrew as ParmapError).cause instanceof Error, true, name);
        // A missing export throws nothing in the worker: the message names the export instead.
        if (options.n !== 1) assert.equal((missingExport as ParmapError).cause, undefined, name);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a missing file fails at the call, synchronously, with a TypeError naming the path', () => {
    const missing = join(tmpdir(), 'parmap-no-such-dir', 'missing.mjs');
    for (const module of [missing, pathToFileURL(missing).href, pathToFileURL(missing)]) {
      for (const [, options] of modes) {
        assert.throws(() => parmap({ module }, [1], options), {
          name: 'TypeError',
          message: new RegExp(`no file at ${missing.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
        });
      }
    }
  });

  it('a package name is resolved from the calling file (a dependency of this project)', async () => {
    // serialize-javascript is one of parmap's dependencies: its default export is a function.
    for (const [, options] of modes) {
      assert.deepEqual(await parmap({ module: 'serialize-javascript' }, [{ a: [1] }], options), ['{"a":[1]}']);
    }
  });

  it('an unknown package name is a TypeError at the call', () => {
    assert.throws(() => parmap({ module: 'parmap-no-such-package' }, [1], { n: 2 }), {
      name: 'TypeError',
      message: /names the package "parmap-no-such-package", which cannot be found/,
    });
  });
});

describe('functions from modules: a package installed only beside the caller', () => {
  // A folder with its own node_modules/tiny-shout (ESM through `exports`) and a caller script in
  // it: parmap's own folder cannot see the package, so it must be resolved from the caller's.
  const folder = mkdtempSync(join(tmpdir(), 'parmap-caller-'));
  const packageDir = join(folder, 'node_modules', 'tiny-shout');
  mkdirSync(packageDir, { recursive: true });
  writeFileSync(
    join(packageDir, 'package.json'),
    JSON.stringify({ name: 'tiny-shout', type: 'module', exports: { '.': { import: './index.js' } } }),
  );
  writeFileSync(
    join(packageDir, 'index.js'),
    "export default (text) => text.toUpperCase() + '!';\nexport const whisper = (text) => text.toLowerCase();\n",
  );
  writeFileSync(
    join(folder, 'caller.mjs'),
    `import { parmap } from ${JSON.stringify(pathToFileURL(entry).href)};
const out = [];
for (const options of [{ n: 2 }, { n: 2, workerType: 'process' }, { n: 1 }]) {
  out.push(await parmap({ module: 'tiny-shout' }, ['a', 'b'], options));
  out.push(await parmap({ module: 'tiny-shout', export: 'whisper' }, ['C'], options));
}
console.log(JSON.stringify(out));
`,
  );
  after(() => rmSync(folder, { recursive: true, force: true }));

  it('threads, processes and n: 1 all find it', async () => {
    const outcome = await runNode(['caller.mjs'], folder);
    const perMode = [['A!', 'B!'], ['c']];
    assert.deepEqual(lastJson(outcome), [...perMode, ...perMode, ...perMode]);
  });
});
