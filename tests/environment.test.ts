/**
 * fn finds modules as the caller's own code does: from the caller's folder, with the caller's
 * Node flags. Each scenario is a small project in a temp folder, run by a fresh Node process.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { assertClean, entry, lastJson, runNode } from './fixtures/child-scenario.js';

const modes = {
  threads: { n: 2 },
  processes: { n: 2, workerType: 'process' },
  'n: 1': { n: 1 },
};

/** The caller: runs one of its fns over [0, 1] in the mode named on its command line, and prints the results. */
const CALLER = `import { parmap } from ${JSON.stringify(entry)};
const [check, mode] = process.argv.slice(2);
const fns = {
  importEsmOnly: async () => (await import('esm-only')).value,
  resolveEsmOnly: () => import.meta.resolve('esm-only'),
  importJson: async () => (await import('./data.json', { with: { type: 'json' } })).default.value,
  importConditional: async () => (await import('conditional')).which,
  requireConditional: () => require('conditional').which,
};
try { console.log(JSON.stringify(await parmap(fns[check], [0, 1], ${JSON.stringify(modes)}[mode]))) }
catch (e) { console.log(JSON.stringify({ error: String(e), cause: String(e.cause) })) }
`;

function writeFiles(root: string, files: Record<string, string>): void {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
}

describe('fn resolves modules from the caller', { concurrency: 3 }, () => {
  let project = '';
  before(() => {
    project = realpathSync(mkdtempSync(join(tmpdir(), 'parmap-project-')));
    writeFiles(project, {
      'caller.mjs': CALLER,
      'data.json': '{ "value": 42 }',
      'node_modules/esm-only/package.json': JSON.stringify({
        name: 'esm-only',
        exports: { import: './index.mjs' },
      }),
      'node_modules/esm-only/index.mjs': `export const value = 'from esm-only';`,
      'node_modules/conditional/package.json': JSON.stringify({
        name: 'conditional',
        exports: {
          development: { import: './dev.mjs', require: './dev.cjs' },
          default: { import: './prod.mjs', require: './prod.cjs' },
        },
      }),
      'node_modules/conditional/dev.mjs': `export const which = 'development';`,
      'node_modules/conditional/dev.cjs': `exports.which = 'development';`,
      'node_modules/conditional/prod.mjs': `export const which = 'production';`,
      'node_modules/conditional/prod.cjs': `exports.which = 'production';`,
    });
  });
  after(() => rmSync(project, { recursive: true, force: true }));

  // Run from another folder: fn must resolve from the caller's file, not from the working directory.
  const run = (check: string, mode: string, nodeArgs: string[] = []) =>
    runNode([join(project, 'caller.mjs'), check, mode], { cwd: tmpdir(), nodeArgs });

  for (const mode of Object.keys(modes)) {
    it(`await import() of an import-only package works inside fn (${mode})`, async () => {
      const outcome = await run('importEsmOnly', mode);
      assertClean(outcome);
      assert.deepEqual(lastJson(outcome), ['from esm-only', 'from esm-only']);
    });

    it(`import.meta.resolve() inside fn gives the package's real entry (${mode})`, async () => {
      const outcome = await run('resolveEsmOnly', mode);
      assertClean(outcome);
      const url = pathToFileURL(join(project, 'node_modules/esm-only/index.mjs')).href;
      assert.deepEqual(lastJson(outcome), [url, url]);
    });

    it(`await import() of a JSON file next to the caller works inside fn (${mode})`, async () => {
      const outcome = await run('importJson', mode);
      assertClean(outcome);
      assert.deepEqual(lastJson(outcome), [42, 42]);
    });

    // With n: 1, fn runs as written, in an ES module that has no require().
    for (const check of mode === 'n: 1' ? ['importConditional'] : ['importConditional', 'requireConditional']) {
      const how = check === 'importConditional' ? 'import()' : 'require()';
      it(`with --conditions=development, ${how} inside fn loads the development entry (${mode})`, async () => {
        const outcome = await run(check, mode, ['--conditions=development']);
        assertClean(outcome);
        assert.deepEqual(lastJson(outcome), ['development', 'development']);
      });

      it(`with -C development, ${how} inside fn loads the development entry (${mode})`, async () => {
        const outcome = await run(check, mode, ['-C', 'development']);
        assertClean(outcome);
        assert.deepEqual(lastJson(outcome), ['development', 'development']);
      });

      it(`without the flag, ${how} inside fn loads the default entry (${mode})`, async () => {
        const outcome = await run(check, mode);
        assertClean(outcome);
        assert.deepEqual(lastJson(outcome), ['production', 'production']);
      });
    }
  }
});
