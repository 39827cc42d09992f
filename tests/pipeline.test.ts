/**
 * `parmap.pipeline`: chains of map / filter / flatMap on shared workers, groupByKey and reduceByKey
 * in this thread, errors naming their step, clean-up on every way out, and one board for all steps.
 * What could hang, what measures memory and what needs a terminal runs in a child process.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ParmapError, ParmapGroupError, ParmapTaskError, parmap } from '../dist/index.js';

const distUrl = new URL('../dist/index.js', import.meta.url).href;
const scratch = mkdtempSync(join(tmpdir(), 'parmap-pipeline-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs a module in a child process (with `flags`); it must end by itself within the timeout. */
function runChild(source: string, flags: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const file = join(scratch, `child-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, `import { parmap, AbortError } from ${JSON.stringify(distUrl)};\n${source}`);
  const run = spawnSync(process.execPath, [...flags, file], { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

async function* slowly<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) {
    await Promise.resolve();
    yield item;
  }
}

// The chain under test, and the same with Array methods and a Map.
const toWords = (x: number) => [`w${x % 7}`, `v${x % 3}`];
const keep = (x: number) => x % 5 !== 0;
const toPair = (word: string): [string, number] => [word.slice(0, 1), word.length];
const summarise = ([key, values]: [string, number[]]) => `${key}:${values.length}:${values.reduce((a, b) => a + b, 0)}`;

function byArrays(items: readonly number[]): string[] {
  const pairs = items
    .map((x) => x * 3)
    .filter(keep)
    .flatMap(toWords)
    .map(toPair);
  const groups = new Map<string, number[]>();
  for (const [key, value] of pairs) groups.set(key, [...(groups.get(key) ?? []), value]);
  return [...groups].map(summarise);
}

function chainOver(items: Iterable<number> | AsyncIterable<number>) {
  return parmap
    .pipeline(items, { n: 2, buffer: 64 })
    .map((x) => x * 3)
    .filter(keep, { scope: { keep } })
    .flatMap(toWords, { scope: { toWords } })
    .map(toPair)
    .groupByKey()
    .map(summarise);
}

describe('parmap.pipeline: results', () => {
  const items = range(2_000);

  it('equals the same chain done with Array methods and a Map, for an array', async () => {
    assert.deepEqual(await chainOver(items).collect(), byArrays(items));
  });

  it('equals it for an async input, streamed with for await', async () => {
    const streamed: string[] = [];
    for await (const summary of chainOver(slowly(items))) streamed.push(summary);
    assert.deepEqual(streamed, byArrays(items));
  });

  it('runs every step in this thread with n: 1', async () => {
    const results = await parmap
      .pipeline(items, { n: 1 })
      .map((x) => x * 3)
      .filter(keep)
      .flatMap(toWords)
      .map(toPair)
      .groupByKey()
      .map(summarise)
      .collect();
    assert.deepEqual(results, byArrays(items));
  });

  it('groupByKey yields keys as Map keys, in the order each first appeared', async () => {
    const shared = { id: 1 };
    const pairs: [unknown, number][] = [
      [shared, 0],
      ['b', 1],
      [Number.NaN, 2],
      [shared, 3],
      [{ id: 1 }, 4],
      ['b', 5],
      [Number.NaN, 6],
    ];
    const groups = await parmap.pipeline(pairs, { n: 2 }).groupByKey().collect();
    assert.deepEqual(groups, [
      [shared, [0, 3]],
      ['b', [1, 5]],
      [Number.NaN, [2, 6]],
      [{ id: 1 }, [4]],
    ]);
    assert.equal(groups[0]?.[0], shared);
  });

  it('reduceByKey folds values as they arrive, from the first value or from initial(key)', async () => {
    const pairs = range(100).map((x): [string, number] => [`k${x % 3}`, x]);
    const sums = await parmap
      .pipeline(pairs, { n: 2 })
      .reduceByKey((a, b) => a + b)
      .collect();
    assert.deepEqual(sums, [
      ['k0', 1683],
      ['k1', 1617],
      ['k2', 1650],
    ]);
    const lists = await parmap
      .pipeline(pairs.slice(0, 6), { n: 2 })
      .reduceByKey(async (list: string[], x) => [...list, `${x}`], { initial: (key) => [key] })
      .collect();
    assert.deepEqual(lists, [
      ['k0', ['k0', '0', '3']],
      ['k1', ['k1', '1', '4']],
      ['k2', ['k2', '2', '5']],
    ]);
  });

  it('a chain can run again, reading its items again', async () => {
    const chain = parmap.pipeline(range(10), { n: 2 }).map((x) => x + 1);
    assert.deepEqual(await chain.collect(), await chain.collect());
  });
});

describe('parmap.pipeline: errors name their step', () => {
  it('an error in step 3 names step 3 and the item index within that step', async () => {
    const failing = parmap
      .pipeline(range(50), { n: 2 })
      .map((x) => x * 2)
      .filter((x) => x % 4 === 0)
      .map((x) => {
        if (x === 40) throw new Error('bad item');
        return x;
      })
      .map((x) => x);
    await assert.rejects(failing.collect(), (error: unknown) => {
      assert.ok(error instanceof ParmapTaskError);
      assert.equal(error.stage, 'step 3, map');
      // 40 is the 11th item that passed the filter (0, 4, ..., 40).
      assert.equal(error.index, 10);
      assert.match(error.message, /item 10 of stage 'step 3, map': Error: bad item/);
      return true;
    });
  });

  it('uses the step label when given', async () => {
    const failing = parmap
      .pipeline(range(10), { n: 2 })
      .map(
        (x) => {
          if (x === 3) throw new Error('no');
          return x;
        },
        { label: 'parse' },
      )
      .collect();
    await assert.rejects(failing, { name: 'ParmapTaskError', stage: 'parse', index: 3 });
  });

  it('groupByKey over its limit fails naming the step and the limit', async () => {
    const pairs = range(20).map((x): [number, number] => [x % 2, x]);
    await assert.rejects(parmap.pipeline(pairs, { n: 2, groupLimit: 10 }).groupByKey().collect(), (error: unknown) => {
      assert.ok(error instanceof ParmapGroupError);
      assert.equal(error.stage, 'step 1, groupByKey');
      assert.equal(error.limit, 10);
      assert.match(error.message, /stage 'step 1, groupByKey'.*limit of 10 values/);
      return true;
    });
    const relabelled = parmap
      .pipeline(pairs, { n: 2 })
      .map((pair) => pair)
      .groupByKey({ maxItems: 5, label: 'by parity' })
      .collect();
    await assert.rejects(relabelled, { name: 'ParmapGroupError', stage: 'by parity', limit: 5 });
  });

  it('an item that is not a pair fails naming the step and its index', async () => {
    const items: unknown[] = [['a', 1], ['b', 2], 'c', ['d', 4]];
    await assert.rejects(
      parmap
        .pipeline(items as [string, number][], { n: 2 })
        .map((x) => x)
        .groupByKey()
        .collect(),
      (error: unknown) => {
        assert.ok(error instanceof ParmapGroupError);
        assert.equal(error.stage, 'step 2, groupByKey');
        assert.equal(error.index, 2);
        assert.match(error.message, /item 2 is not a \[key, value\] pair/);
        return true;
      },
    );
  });

  it("reduceByKey's failing fn names the step and the item", async () => {
    const pairs = range(10).map((x): [number, number] => [x % 2, x]);
    const failing = parmap
      .pipeline(pairs, { n: 2 })
      .reduceByKey((a, b) => {
        if (b === 7) throw new RangeError('seven');
        return a + b;
      })
      .collect();
    await assert.rejects(failing, (error: unknown) => {
      assert.ok(error instanceof ParmapTaskError);
      assert.equal(error.stage, 'step 1, reduceByKey');
      assert.equal(error.index, 7);
      assert.ok(error.cause instanceof RangeError);
      return true;
    });
  });

  it('checks options at the call, before anything runs', () => {
    const chain = parmap.pipeline(range(3));
    const pairs = parmap.pipeline([[1, 2] as [number, number]]);
    assert.throws(() => parmap.pipeline(range(3), { nn: 2 } as never), /Unknown option `nn` of parmap.pipeline/);
    assert.throws(() => parmap.pipeline(range(3), { groupLimit: 0 }), RangeError);
    assert.throws(() => chain.map((x) => x, { n: 2 } as never), /`n` belongs to the chain/);
    assert.throws(() => chain.map((x) => x, { progress: true } as never), /`progress` belongs to the chain/);
    assert.throws(() => chain.map((x) => x, { chunksize: 0 }), RangeError);
    assert.throws(() => chain.map((x) => x, { label: 3 } as never), /`label` to be a non-empty string/);
    assert.throws(() => pairs.reduceByKey(3 as never), /reduceByKey's `fn` to be a function/);
    assert.throws(() => pairs.groupByKey({ maxItems: -1 }), RangeError);
    assert.throws(() => parmap.pipeline(3 as never), TypeError);
    assert.ok(ParmapGroupError.prototype instanceof ParmapError);
  });
});

describe('parmap.pipeline: every step stops on failure, break and abort', () => {
  // Each scenario ends with the process exiting by itself: a worker left running would hold it.
  const scenarios: Record<string, [source: string, expected: RegExp]> = {
    failure: [
      `
      const chain = parmap.pipeline(Array.from({ length: 100000 }, (_, i) => i), { n: 2, buffer: 256 })
        .map((x) => x + 1).map((x) => [x % 10, x]).groupByKey().map(([k]) => { throw new Error('late ' + k); });
      await chain.collect().then(() => { throw new Error('expected a failure'); }, (e) => console.log('rejected', e.stage));`,
      /rejected step 4, map/,
    ],
    break: [
      `
      let seen = 0;
      for await (const x of parmap.pipeline(Array.from({ length: 100000 }, (_, i) => i), { n: 2, buffer: 256 }).map((x) => x + 1).filter((x) => x % 2 === 0)) {
        if (++seen === 10) break;
      }
      console.log('broke after', seen);`,
      /broke after 10/,
    ],
    abort: [
      `
      const controller = new AbortController();
      let seen = 0;
      try {
        for await (const x of parmap.pipeline(Array.from({ length: 100000 }, (_, i) => i), { n: 2, signal: controller.signal, buffer: 256 }).map((x) => x + 1).map((x) => x)) {
          if (++seen === 5) controller.abort(new Error('enough'));
        }
      } catch (e) { console.log('rejected', e instanceof AbortError, e.cause?.message); }`,
      /rejected true enough/,
    ],
  };

  for (const [name, [source, expected]] of Object.entries(scenarios)) {
    it(`on ${name}, and the process exits by itself`, () => {
      const { status, stdout, stderr } = runChild(source);
      assert.equal(status, 0, stderr);
      assert.match(stdout, expected);
    });
  }
});

describe('parmap.pipeline: memory', () => {
  it('reduceByKey over 1,000,000 pairs with 10 keys stays within a small memory budget', () => {
    const { status, stdout, stderr } = runChild(
      `
      const heap = () => { globalThis.gc(); return process.memoryUsage().heapUsed; };
      const before = heap();
      let peak = 0;
      let folded = 0;
      function* numbers() { for (let i = 0; i < 1_000_000; i++) yield i; }
      const sums = await parmap.pipeline(numbers(), { n: 2 })
        .map((i) => [i % 10, 1])
        .reduceByKey((a, b) => { if (++folded % 50_000 === 0) peak = Math.max(peak, heap()); return a + b; })
        .collect();
      console.log(JSON.stringify({ grown: peak - before, sums }));`,
      ['--expose-gc'],
    );
    assert.equal(status, 0, stderr);
    const { grown, sums } = JSON.parse(stdout) as { grown: number; sums: [number, number][] };
    assert.deepEqual(
      sums,
      range(10).map((key) => [key, 100_000]),
    );
    // A million pairs held at once take well over 40 MB; one accumulator per key takes nothing.
    assert.ok(grown < 16 * 2 ** 20, `the heap grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
  });
});

describe('parmap.pipeline: progress', () => {
  it('off a terminal, prints one summary line per step when the chain ends, and nothing before', async () => {
    const written: string[] = [];
    const stream = { write: (text: string) => written.push(text), isTTY: false };
    const chain = parmap
      .pipeline(range(500), { n: 2, progress: { stream }, buffer: 50 })
      .map((x): [number, number] => [x % 4, x], { label: 'pair' })
      .groupByKey()
      .map(([key, values]) => values.length + key);
    let linesWhileRunning = -1;
    for await (const _ of chain) linesWhileRunning = written.length;
    const lines = written.join('').split('\n').filter(Boolean);
    assert.equal(linesWhileRunning, 0);
    assert.equal(lines.length, 3, lines.join('\n'));
    assert.match(lines[0] ?? '', /^✔ pair +500\/500 {2}100% {2}.* it\/s {2}total \d+:\d\d$/);
    assert.match(lines[1] ?? '', /^✔ step 2, groupByKey {2}500\/500 {2}100%/);
    assert.match(lines[2] ?? '', /^✔ step 3, map +4\/4 {2}100%/);
  });

  it('gives a callback every step in one object, ending with the final counts', async () => {
    const reports: { steps: readonly { label: string; done: number; total: number | undefined }[] }[] = [];
    await parmap
      .pipeline(range(300), { n: 2, progress: (progress) => reports.push(progress) })
      .map((x) => x + 1)
      .filter((x) => x % 3 === 0, { label: 'thirds' })
      .collect();
    const last = reports.at(-1);
    assert.deepEqual(
      last?.steps.map(({ label, done, total }) => ({ label, done, total })),
      [
        { label: 'step 1, map', done: 300, total: 300 },
        { label: 'thirds', done: 300, total: 300 },
      ],
    );
  });

  it('fails the chain with the error of a callback that throws', async () => {
    const chain = parmap
      .pipeline(slowly(range(100)), {
        n: 2,
        progress: () => {
          throw new Error('callback broke');
        },
      })
      .map((x) => x);
    await assert.rejects(chain.collect(), /callback broke/);
  });

  const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

  it('draws one row per step in a real terminal, and leaves one line per step', {
    skip: !hasScript && 'no `script` command',
  }, () => {
    // The input ends only once the board has drawn a frame with every row: the test waits on
    // what was drawn, not on time.
    const program = join(scratch, 'board.mjs');
    writeFileSync(
      program,
      `import { parmap } from ${JSON.stringify(distUrl)};
      let drawn = '';
      const write = process.stderr.write.bind(process.stderr);
      process.stderr.write = (chunk, ...rest) => { drawn += String(chunk); return write(chunk, ...rest); };
      const everyRow = () => ['step 1, map', 'tokens', 'step 3, reduceByKey'].every((label) => drawn.slice(-2000).includes(label));
      async function* lines() {
        for (let i = 0; i < 2000; i++) yield 'a b c ' + (i % 5);
        while (!everyRow()) await new Promise((resolve) => setImmediate(resolve));
      }
      const counts = await parmap.pipeline(lines(), { n: 2, progress: true, buffer: 100 })
        .map((line) => line.toUpperCase())
        .flatMap((line) => line.split(' ').map((word) => [word, 1]), { label: 'tokens' })
        .reduceByKey((a, b) => a + b)
        .collect();
      console.log('counts ' + counts.length);`,
    );
    const command = `stty cols 100 rows 30; ${JSON.stringify(process.execPath)} ${JSON.stringify(program)}`;
    // Under CI (the variable set), every stream counts as plain: the terminal here is real.
    const { CI: _ci, ...env } = process.env;
    const run = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', timeout: 60_000, env });
    const output = run.stdout;
    assert.equal(run.status, 0, output);
    assert.match(output, /counts 8/);
    // A frame: the three rows one under the other, with buffer fill where a buffer is set.
    assert.match(
      output,
      /step 1, map {10}buf [\d,]+\/100 {2}[\d,]+ .*\r?\n.* {2}tokens {15}buf [\d,]+\/100 {2}[\d,]+ .*\r?\n.* {2}step 3, reduceByKey {2}buf \d+ {2}[\d,]+/,
    );
    // The last lines: one per step, each once.
    for (const row of [
      /✔ step 1, map {10}2,000\/2,000/,
      /✔ tokens {15}2,000\/2,000/,
      /✔ step 3, reduceByKey {2}8,000\/8,000/,
    ]) {
      assert.equal(
        output.split(/\r?\n/).filter((line) => row.test(line)).length,
        1,
        `${row} in:\n${output.slice(-600)}`,
      );
    }
  });
});
