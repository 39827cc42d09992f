import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import ts from 'typescript';
import { parmap } from '../dist/index.js';

const folder = mkdtempSync(join(tmpdir(), 'parmap-ts-'));
after(() => rmSync(folder, { recursive: true, force: true }));

/** Compiles TypeScript source with tsc to an old target, so tsc injects its helpers. */
function compileWithTsc(source: string, target: ts.ScriptTarget): Record<string, (...args: never[]) => unknown> {
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: { target, module: ts.ModuleKind.CommonJS, downlevelIteration: true },
  });
  const file = join(folder, `compiled-${target}.cjs`);
  writeFileSync(file, outputText);
  return createRequire(import.meta.url)(file);
}

describe('functions transpiled from TypeScript', () => {
  it('runs functions that tsx/esbuild wrapped with __name', async () => {
    // This file runs through tsx, which names inner functions with __name(fn, "name").
    const results = await parmap(
      (x: number) => {
        function double(value: number) {
          return value * 2;
        }
        const triple = function triple(value: number) {
          return value * 3;
        };
        return [double(x), triple(x), double.name];
      },
      [1, 2],
      { n: 2 },
    );
    assert.deepEqual(results, [
      [2, 3, 'double'],
      [4, 6, 'double'],
    ]);
  });

  it('runs tsc output that uses __awaiter, __generator, __rest and __spreadArray', async () => {
    const source = `
      export async function summarize(record: { id: number; tags: string[]; [key: string]: unknown }) {
        const { id, ...rest } = record;
        await Promise.resolve();
        const all = [...record.tags, ...Object.keys(rest)];
        return id + ':' + all.join(',');
      }`;
    const { summarize } = compileWithTsc(source, ts.ScriptTarget.ES5);
    assert.match(String(summarize), /__awaiter/);
    const items = [
      { id: 1, tags: ['a'], extra: true },
      { id: 2, tags: [], more: 1 },
    ];
    assert.deepEqual(await parmap(summarize as (item: unknown) => Promise<string>, items, { n: 2 }), [
      '1:a,tags,extra',
      '2:tags,more',
    ]);
  });

  it('runs tsc ES2017 output, where async stays native', async () => {
    const { add } = compileWithTsc('export const add = async (a: number, b = 10) => a + b;', ts.ScriptTarget.ES2017);
    assert.deepEqual(await parmap(add as (item: number) => Promise<number>, [1, 2], { n: 2 }), [11, 12]);
  });

  it('runs functions carrying coverage counters (cov_*)', async () => {
    const instrumented = new Function(
      'return function increment(x) { cov_2abc9().f[0]++; cov_2abc9().s[1]++; cov_2abc9().b[0][1]++; return x + 1; }',
    )() as (x: number) => number;
    assert.deepEqual(await parmap(instrumented, [1, 2, 3], { n: 2 }), [2, 3, 4]);
  });
});
