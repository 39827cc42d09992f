/**
 * Stages: `parmap.filter` and `parmap.flatMap`, chained calls, the `buffer` bound between them,
 * errors that name their stage, and every stage's clean-up. The rules on results and on error
 * messages are pure and tested without workers; a chain that fails or is left runs in a child
 * process that must end by itself.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import {
  createPool,
  ParmapCloneError,
  ParmapError,
  ParmapTaskError,
  ParmapTimeoutError,
  ParmapWorkerError,
  type ProgressInfo,
  parmap,
} from '../dist/index.js';
import { nameStage } from '../dist/parmap/errors.js';
import { stageResults } from '../dist/parmap/scheduler/delivery.js';
import { assertClean, entry, lastJson, runNode, runScenario } from './fixtures/child-scenario.js';

const range = (count: number) => Array.from({ length: count }, (_, i) => i);

/** Deterministic busy work, so that chunks finish out of order without sleeping. */
const spin = (rounds: number) => {
  let acc = 0;
  for (let i = 0; i < rounds; i++) acc = (acc * 31 + i) % 1000003;
  return acc;
};

/** A progress display that draws nowhere: gives a call a label without printing. */
const quiet = (label: string) => ({ label, stream: { write: () => true } });

/** Values in a fixed order, for comparing unordered results as multisets. */
const sorted = (values: readonly unknown[]) => values.map((value) => JSON.stringify(value)).sort();

const TIMEOUT = { timeout: 60_000 };

describe('stageResults: what the caller gets of a chunk', () => {
  it('map gives the results as they are', () => {
    const values = [1, [2], 'x'];
    assert.equal(stageResults('map', [0, 1, 2], values, undefined), values);
  });

  it('filter gives the items whose result is truthy, as Array.prototype.filter', () => {
    const items = [{ a: 1 }, 'b', 3, 4, 5, 6, 7, 8];
    const values = [1, 'yes', 0, '', null, undefined, Number.NaN, []];
    const kept = stageResults('filter', items, values, undefined);
    assert.deepEqual(
      kept,
      items.filter((_, at) => values[at]),
    );
    assert.equal(kept[0], items[0], 'the items themselves, not copies');
  });

  it('flatMap spreads arrays one level, skipping holes, as Array.prototype.flatMap', () => {
    // biome-ignore lint/suspicious/noSparseArray: a hole is what this checks.
    const values: unknown[] = [[1, 2], [], 3, [[4]], 'ab', [5, , 6], undefined, { length: 1, 0: 'x' }];
    assert.deepEqual(stageResults('flatMap', range(values.length), values, undefined), values.flat());
  });

  it('flatMap spreads Sets and Maps (entries), and keeps typed arrays and strings whole', () => {
    const bytes = Buffer.from('hi');
    const values = [new Set([1, 2]), new Map([['k', 3]]), bytes, 'text'];
    assert.deepEqual(stageResults('flatMap', range(4), values, undefined), [1, 2, ['k', 3], bytes, 'text']);
  });

  it("gives a failed place's error in its place, one element, in every stage", () => {
    const error = new ParmapTaskError(1, new Error('boom'));
    const values = [[10], error, [], false];
    const failed = new Set([1]);
    assert.deepEqual(stageResults('filter', ['a', 'b', 'c', 'd'], values, failed), ['a', error, 'c']);
    assert.deepEqual(stageResults('flatMap', ['a', 'b', 'c', 'd'], values, failed), [10, error, false]);
  });
});

describe('nameStage: errors that name their stage', () => {
  it('puts the stage after the item in each kind of item error', () => {
    const cases: [ParmapError, RegExp][] = [
      [new ParmapTaskError(3, new Error('boom')), /fn failed on item 3 of stage 'parse': Error: boom$/],
      [new ParmapCloneError(4, 'item', new Error('x')), /item 4 of stage 'parse' cannot be sent/],
      [new ParmapCloneError(4, 'result', new Error('x')), /the result of item 4 of stage 'parse' cannot/],
      [new ParmapTimeoutError(5, 100), /item 5 of stage 'parse' ran longer/],
      [new ParmapWorkerError([6, 7], { exitCode: 1 }, { index: 7 }), /while running item 7 of stage 'parse' \(it held/],
      [new ParmapWorkerError([6, 7], { exitCode: 1 }), /while it held items 6 to 7 of stage 'parse'\./],
      [new ParmapWorkerError([6], { exitCode: 1 }, { after: true }), /after running item 6 of stage 'parse', while/],
    ];
    for (const [error, message] of cases) {
      assert.equal(error.stage, undefined);
      assert.doesNotMatch(error.message, /stage/);
      nameStage(error, 'parse');
      assert.equal(error.stage, 'parse');
      assert.match(error.message, message);
      assert.ok(error.stack?.startsWith(`${error.name}: ${error.message}`), error.stack);
    }
  });

  it('names a failure of no item at the start, and mends a stack already read', () => {
    const error = new ParmapError('parmap: the call was aborted');
    void error.stack;
    nameStage(error, 'fetch');
    assert.equal(error.message, "parmap (stage 'fetch'): the call was aborted");
    assert.ok(error.stack?.startsWith(`ParmapError: ${error.message}\n`), error.stack);
  });

  it('keeps the first stage named, and leaves other values and unnamed stages alone', () => {
    const error = new ParmapTaskError(1, new Error('boom'));
    nameStage(error, 'first');
    nameStage(error, 'second');
    assert.equal(error.stage, 'first');
    const unnamed = new ParmapTaskError(1, new Error('boom'));
    nameStage(unnamed, undefined);
    assert.equal('stage' in unnamed, false);
    const plain = new Error('x');
    nameStage(plain, 'parse');
    assert.equal(plain.message, 'x');
  });
});

describe('buffer: option checks', () => {
  for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    it(`refuses buffer: ${bad} with a RangeError quoting it`, () => {
      for (const call of [parmap, parmap.filter, parmap.flatMap]) {
        assert.throws(() => call((x: number) => x, [1], { buffer: bad }), {
          name: 'RangeError',
          message: `Expected \`buffer\` to be a positive integer (items), got \`${bad}\` (number)`,
        });
      }
    });
  }

  it('refuses a buffer that is not a number, on a pool too', TIMEOUT, async () => {
    const pool = createPool({ n: 2 });
    try {
      assert.throws(() => pool.filter((x: number) => x, [1], { buffer: '8' as unknown as number }), {
        name: 'RangeError',
        message: 'Expected `buffer` to be a positive integer (items), got `"8"` (string)',
      });
    } finally {
      await pool.close();
    }
  });
});

/** The same items from an array, a generator and an async generator. */
const INPUTS = {
  array: (items: readonly number[]) => items,
  generator: function* (items: readonly number[]) {
    yield* items;
  },
  'async generator': async function* (items: readonly number[]) {
    for (const item of items) {
      await null;
      yield item;
    }
  },
} as const;

/** Uneven work: later chunks often finish first. */
const keep = (x: number) => {
  spin((x % 7) * 3000);
  return x % 3;
};
const expand = (x: number) => {
  spin((x % 7) * 3000);
  return x % 4 === 0 ? [] : x % 4 === 1 ? [x, [x]] : x % 4 === 2 ? x : [x, -x];
};

for (const workerType of ['thread', 'process'] as const) {
  describe(`filter and flatMap on ${workerType} workers`, () => {
    const items = range(300);
    for (const ordered of [true, false]) {
      it(
        `equal Array.prototype.filter and flatMap, ${ordered ? 'in order' : 'as multisets when unordered'}`,
        TIMEOUT,
        async () => {
          const pool = createPool({ n: 2, workerType });
          try {
            for (const [input, make] of Object.entries(INPUTS)) {
              const options = { ordered, scope: { spin } };
              const kept = await pool.filter(keep, make(items), options);
              const spread = await pool.flatMap(expand, make(items), options);
              const same = (actual: unknown[], expected: unknown[], what: string) =>
                ordered
                  ? assert.deepEqual(actual, expected, `${what} of ${input}`)
                  : assert.deepEqual(sorted(actual), sorted(expected), `${what} of ${input}`);
              same(kept, items.filter(keep), 'filter');
              same(spread, items.flatMap(expand), 'flatMap');
            }
          } finally {
            await pool.close();
          }
        },
      );
    }
  });
}

describe('filter and flatMap: results', () => {
  it('stream with for await, and run with n: 1', TIMEOUT, async () => {
    const items = range(200);
    const streamed: number[] = [];
    for await (const x of parmap.filter((x: number) => x % 5 === 0, items, { n: 2 })) streamed.push(x);
    assert.deepEqual(
      streamed,
      items.filter((x) => x % 5 === 0),
    );
    assert.deepEqual(
      await parmap.flatMap((x: number) => [x, x], items, { n: 1 }),
      items.flatMap((x) => [x, x]),
    );
    assert.deepEqual(await parmap.filter(() => false, items, { n: 2 }), []);
    assert.deepEqual(await parmap.flatMap(() => [], items, { n: 2 }), []);
  });

  it('filter gives back the Buffers themselves', TIMEOUT, async () => {
    const buffers = range(50).map((x) => Buffer.from([x, x + 1]));
    const kept = await parmap.filter((bytes: Buffer) => Buffer.isBuffer(bytes) && (bytes[0] ?? 1) % 2 === 0, buffers, {
      n: 2,
    });
    assert.equal(kept.length, 25);
    for (const [at, bytes] of kept.entries()) assert.equal(bytes, buffers[at * 2]);
  });

  for (const options of [{ n: 2 }, { n: 2, workerType: 'process' }, { n: 1, scope: {} }] as const) {
    it(
      `filter reads only the truth of fn's results, which need not cross (${JSON.stringify(options)})`,
      TIMEOUT,
      async () => {
        // A truthy result that a worker cannot send back (a function, a symbol) failed the call,
        // and a large one was sent back whole only to be tested.
        const truthy = (x: number) => (x % 3 === 0 ? () => x : x % 3 === 1 ? Symbol('kept') : null);
        assert.deepEqual(
          await parmap.filter(truthy, range(12), options),
          range(12).filter((x) => truthy(x)),
        );
        const asyncTruthy = async (x: number) => (x > 8 ? 'y'.repeat(100_000) : '');
        assert.deepEqual(await parmap.filter(asyncTruthy, range(12), options), [9, 10, 11]);
      },
    );
  }

  it('flatMap spreads Sets and Maps that come back from workers', TIMEOUT, async () => {
    const results = await parmap.flatMap(
      (x: number) => (x % 2 ? new Set([x, -x]) : new Map([[x, String(x)]])),
      range(6),
      { n: 2 },
    );
    assert.deepEqual(results, [[0, '0'], 1, -1, [2, '2'], 3, -3, [4, '4'], 5, -5]);
  });

  for (const ordered of [true, false]) {
    it(
      `with onError: 'return', a failed item gives its error in its place (${ordered ? 'ordered' : 'unordered'})`,
      TIMEOUT,
      async () => {
        const items = range(120);
        const check = (x: number) => {
          if (x % 10 === 3) throw new Error(`bad ${x}`);
          return x % 2 === 0;
        };
        const expected = (spread: boolean) =>
          items.flatMap((x): unknown[] =>
            x % 10 === 3 ? [`error ${x}`] : spread ? [x % 2 === 0, x] : x % 2 === 0 ? [x] : [],
          );
        const shown = (values: unknown[]) =>
          values.map((value) => (value instanceof ParmapTaskError ? `error ${value.index}` : value));
        const options = { n: 2, ordered, onError: 'return', progress: quiet('check') } as const;
        const kept = shown(await parmap.filter(check, items, options));
        const spread = shown(
          await parmap.flatMap((x: number) => [check(x), x], items, { ...options, scope: { check } }),
        );
        const same = (actual: unknown[], wanted: unknown[]) =>
          ordered ? assert.deepEqual(actual, wanted) : assert.deepEqual(sorted(actual), sorted(wanted));
        same(kept, expected(false));
        same(spread, expected(true));
        const [error] = (await parmap.filter(check, [3], options)) as [ParmapTaskError];
        assert.equal(error.stage, 'check');
        assert.match(error.message, /item 0 of stage 'check'/);
      },
    );
  }

  it('count input items in progress, and give no total downstream', TIMEOUT, async () => {
    const items = range(100);
    let last: ProgressInfo | undefined;
    const evens = parmap.filter((x: number) => x % 2 === 0, items, {
      n: 2,
      progress: (info) => {
        last = info;
      },
    });
    assert.equal(evens.total, undefined);
    let downstream: ProgressInfo | undefined;
    const halves = parmap((x: number) => x / 2, evens, {
      n: 2,
      progress: (info) => {
        downstream = info;
      },
    });
    assert.equal(halves.total, undefined);
    assert.deepEqual(await halves, range(50));
    assert.equal(last?.done, 100);
    assert.equal(last?.total, 100);
    assert.equal(downstream?.done, 50);
    assert.equal(downstream?.total, 50, 'known once the call is done');
    assert.equal(parmap.flatMap((x: number) => [x], items).total, undefined);
  });
});

/** A source that counts the items read from it, and how far that is ahead of what was taken. */
function countingSource(count: number) {
  const state = { read: 0, taken: 0, mostAhead: 0 };
  function* source() {
    for (let i = 0; i < count; i++) {
      state.read++;
      state.mostAhead = Math.max(state.mostAhead, state.read - state.taken);
      yield i;
    }
  }
  return { state, source };
}

/** `parmap` or `pool.map`, whichever the test runs on. */
type LooseCall = (fn: (x: number) => unknown, items: unknown, options: object) => AsyncIterable<unknown>;

describe('buffer: the bound between stages', () => {
  it('reads at most `buffer` items ahead of what the caller has taken', TIMEOUT, async () => {
    for (const buffer of [1, 8]) {
      const { state, source } = countingSource(300);
      for await (const x of parmap((x: number) => x + 1, source(), { n: 2, chunksize: 50, buffer })) {
        assert.equal(x, state.taken + 1);
        state.taken++;
      }
      assert.equal(state.taken, 300);
      assert.ok(state.mostAhead <= buffer, `read ${state.mostAhead} items ahead with buffer: ${buffer}`);
    }
    // Without it, a whole chunk is read before the first result is taken.
    const { state, source } = countingSource(300);
    for await (const _ of parmap((x: number) => x + 1, source(), { n: 2, chunksize: 50 })) state.taken++;
    assert.ok(state.mostAhead >= 50, `read ${state.mostAhead} items ahead`);
  });

  for (const placement of ['own workers', 'one pool'] as const) {
    it(`keeps a fast stage within buffer of a slow one (${placement})`, TIMEOUT, async () => {
      const buffer = 6;
      const { state, source } = countingSource(120);
      const pool = placement === 'one pool' ? createPool({ n: 2 }) : undefined;
      const map = (pool?.map ?? parmap) as unknown as LooseCall;
      const workers = pool === undefined ? { n: 2 } : {};
      try {
        const fast = map((x: number) => x * 2, source(), { ...workers, buffer, progress: quiet('fast') });
        const slow = map(
          async (x: number) => {
            await new Promise((resolve) => setTimeout(resolve, 2));
            return x + 1;
          },
          fast,
          { ...workers, buffer, concurrency: 1, progress: quiet('slow') },
        );
        const results: unknown[] = [];
        for await (const x of slow) {
          results.push(x);
          state.taken++;
        }
        assert.deepEqual(
          results,
          range(120).map((x) => x * 2 + 1),
        );
        // Each stage holds at most `buffer` of its input's items that its caller has not taken.
        assert.ok(state.mostAhead <= 2 * buffer, `the source was read ${state.mostAhead} items ahead`);
      } finally {
        await pool?.close();
      }
    });
  }
});

describe('errors in a pipeline name their stage', () => {
  it("from stage 1: the caller gets stage 1's own error, with its label and its index", TIMEOUT, async () => {
    const parsed = parmap(
      (x: number) => {
        if (x === 37) throw new Error('bad page');
        return x;
      },
      range(100),
      { n: 2, progress: quiet('parse') },
    );
    const counted = parmap(
      function count(x: number) {
        return x * 2;
      },
      parsed,
      { n: 2 },
    );
    const streamed: number[] = [];
    const error = await (async () => {
      try {
        for await (const x of counted) streamed.push(x);
      } catch (error) {
        return error;
      }
      return undefined;
    })();
    assert.ok(error instanceof ParmapTaskError, String(error));
    assert.equal(error.stage, 'parse');
    assert.equal(error.index, 37);
    assert.equal((error.cause as Error).message, 'bad page');
    assert.match(error.message, /^parmap: fn failed on item 37 of stage 'parse': Error: bad page$/);
    assert.deepEqual(
      streamed,
      range(37).map((x) => x * 2),
      'the results before it come first',
    );
  });

  it("from stage 2: its function's name and the index within stage 2", TIMEOUT, async () => {
    const evens = parmap.filter((x: number) => x % 2 === 0, range(100), { n: 2, progress: quiet('evens') });
    const failing = parmap(
      function count(x: number) {
        if (x === 40) throw new Error('bad count');
        return x;
      },
      evens,
      { n: 2 },
    );
    await assert.rejects(failing, (error: unknown) => {
      assert.ok(error instanceof ParmapTaskError);
      assert.equal(error.stage, 'count');
      assert.equal(error.index, 20, 'item 40 is the 20th that stage 2 reads');
      assert.match(error.message, /item 20 of stage 'count'/);
      return true;
    });
  });

  it('name no stage for an anonymous fn without a label', TIMEOUT, async () => {
    await assert.rejects(
      parmap(
        (x: number) => {
          if (x === 2) throw new Error('boom');
        },
        range(5),
        { n: 2 },
      ),
      (error: unknown) => {
        assert.ok(error instanceof ParmapTaskError);
        assert.equal(error.stage, undefined);
        assert.doesNotMatch(error.message, /stage/);
        return true;
      },
    );
  });
});

describe('every stage stops (each scenario in a process that must end by itself)', () => {
  const endless = `let closed = false;
function* endless() { try { for (let i = 0; ; i++) yield i } finally { closed = true } }
const quiet = (label) => ({ label, stream: { write: () => true } });
const report = (e, extra) => console.log(JSON.stringify({ name: e.name, stage: e.stage, index: e.index, closed, ...extra }));
`;

  it('a failing stage 2 stops stage 1 and closes its input', TIMEOUT, async () => {
    const outcome = await runScenario(`${endless}
const doubled = parmap((x) => x * 2, endless(), { n: 2, progress: quiet('double') });
try {
  await parmap(function count(x) { if (x === 400) throw new Error('boom'); return x }, doubled, { n: 2 });
} catch (e) { report(e) }`);
    assertClean(outcome);
    assert.deepEqual(lastJson(outcome), { name: 'ParmapTaskError', stage: 'count', index: 200, closed: true });
  });

  it('a failing stage 1 stops stage 2, streamed and unordered', TIMEOUT, async () => {
    const outcome = await runScenario(`${endless}
const doubled = parmap((x) => { if (x === 300) throw new Error('boom'); return x * 2 }, endless(), { n: 2, progress: quiet('double') });
try {
  for await (const _ of parmap.filter((x) => x % 3, doubled, { n: 2, ordered: false }));
} catch (e) { report(e) }`);
    assertClean(outcome);
    assert.deepEqual(lastJson(outcome), { name: 'ParmapTaskError', stage: 'double', index: 300, closed: true });
  });

  it('a consumer that breaks out of a three-stage chain stops every stage', TIMEOUT, async () => {
    const outcome = await runScenario(`${endless}
const evens = parmap.filter((x) => x % 2 === 0, endless(), { n: 2 });
const pairs = parmap.flatMap((x) => [x, x + 1], evens, { n: 2, buffer: 16 });
let taken = 0;
for await (const _ of parmap((x) => x * 10, pairs, { n: 2 })) if (++taken === 500) break;
console.log(JSON.stringify({ taken, closed }));`);
    assertClean(outcome);
    assert.deepEqual(lastJson(outcome), { taken: 500, closed: true });
  });

  it('stages on one pool: a failure leaves the pool ready, and closing it ends the process', TIMEOUT, async () => {
    const outcome = await runScenario(`${endless}
const pool = parmapModule.createPool({ n: 2 });
const parsed = pool.map((x) => x + 1, endless(), { progress: quiet('parse') });
try {
  await pool.flatMap(function split(x) { if (x === 250) throw new Error('boom'); return [x, x] }, parsed, { buffer: 32 });
} catch (e) { report(e) }
console.log(JSON.stringify(await pool.filter((x) => x > 1, [1, 2, 3])));
await pool.close();`);
    assertClean(outcome);
    const lines = outcome.stdout.split('\n');
    assert.deepEqual(JSON.parse(lines.at(-2) as string), {
      name: 'ParmapTaskError',
      stage: 'split',
      index: 249,
      closed: true,
    });
    assert.deepEqual(lastJson(outcome), [2, 3]);
  });
});

/** Words of page `page`, made up from a small vocabulary so that counts add up across pages. */
function pageWords(page: number): string[] {
  const vocabulary = ['parse', 'fetch', 'count', 'stage', 'worker', 'pipeline', 'word', 'page'];
  return range(20 + (page % 13)).map((at) => vocabulary[(page * 7 + at * at) % vocabulary.length] as string);
}

function pageHtml(page: number): string {
  const words = pageWords(page);
  return (
    `<!doctype html><html><head><title>${words[0]}</title><style>p { color: red }</style></head>` +
    `<body><h1 class="title">${words.slice(1, 3).join(' ')}</h1>` +
    `<p>${words.slice(3).join(' <b>')}</p><script>var ignored = 1;</script></body></html>`
  );
}

async function startSite(): Promise<{ server: Server; base: string }> {
  const server = createServer((request, response) => {
    const page = /^\/pages\/(\d+)$/.exec(request.url ?? '');
    if (page === null) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': 'text/html' }).end(pageHtml(Number(page[1])));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** The recipe's code from docs/recipes.md, importing the built package. */
function recipeCode(): string {
  const text = readFileSync(new URL('../docs/recipes.md', import.meta.url), 'utf8');
  const block = [...text.matchAll(/```js\n([\s\S]*?)```/g)]
    .map((match) => match[1] as string)
    .find((code) => code.includes('export async function countWords'));
  assert.ok(block, 'docs/recipes.md has no countWords block');
  return block.replace("from 'parmap'", `from ${JSON.stringify(entry)}`);
}

describe('the recipe in docs/recipes.md', () => {
  it('fetches, parses and counts the words of pages from a local server', TIMEOUT, async () => {
    const { server, base } = await startSite();
    try {
      const pages = range(120);
      const urls = pages.map((page) => `${base}/pages/${page}`);
      const outcome = await runNode([
        '--input-type=module',
        '-e',
        `${recipeCode()}
const counts = await countWords(${JSON.stringify(urls)});
console.log(JSON.stringify(Object.fromEntries(counts)));`,
      ]);
      assertClean(outcome);
      const expected: Record<string, number> = {};
      for (const word of pages.flatMap(pageWords)) expected[word] = (expected[word] ?? 0) + 1;
      assert.deepEqual(lastJson(outcome), expected);
    } finally {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    }
  });
});
