import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AbortError,
  ParmapCloneError,
  ParmapScopeError,
  ParmapTaskError,
  ParmapTimeoutError,
  parmap,
} from '../dist/index.js';

const range = (count: number) => Array.from({ length: count }, (_, i) => i);

/** Deterministic busy work, so completion order can be made uneven without sleeping. */
const spin = (rounds: number) => {
  let acc = 0;
  for (let i = 0; i < rounds; i++) acc = (acc * 31 + i) % 1000003;
  return acc;
};

describe('parmap: the basic map', () => {
  it('gives the same array as Array.map', async () => {
    const items = range(5000);
    assert.deepEqual(
      await parmap((x: number) => x * 2 + 1, items, { n: 2 }),
      items.map((x) => x * 2 + 1),
    );
  });

  it('awaits an async fn', async () => {
    const results = await parmap(
      async (x: number) => {
        await new Promise((resolve) => setImmediate(resolve));
        return x * 10;
      },
      range(50),
      { n: 2 },
    );
    assert.deepEqual(
      results,
      range(50).map((x) => x * 10),
    );
  });

  it('calls fn with the item alone: no index, no array', async () => {
    assert.deepEqual(await parmap((...args: unknown[]) => args.length, ['a', 'b', 'c'], { n: 2 }), [1, 1, 1]);
  });

  it('returns [] for an empty input', async () => {
    assert.deepEqual(await parmap((x: number) => x, [], { n: 2 }), []);
    assert.deepEqual(await parmap((x: number) => x, (function* () {})(), { n: 2 }), []);
  });

  it('starts nothing until the result is awaited or iterated', async () => {
    let read = 0;
    function* source() {
      for (let i = 0; i < 3; i++) {
        read++;
        yield i;
      }
    }
    const result = parmap((x: number) => x, source(), { n: 2 });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(read, 0);
    assert.deepEqual(await result, [0, 1, 2]);
    assert.equal(read, 3);
  });

  it('can be awaited twice for the same array, but not iterated after that', async () => {
    const result = parmap((x: number) => x + 1, [1, 2], { n: 2 });
    assert.deepEqual(await result, [2, 3]);
    assert.deepEqual(await result, [2, 3]);
    assert.throws(() => result[Symbol.asyncIterator](), /already being consumed by await/);
  });

  it('takes any iterable: Set, Map entries, string, generator, async generator, stream', async () => {
    const double = (x: number) => x * 2;
    assert.deepEqual(await parmap(double, new Set([1, 2, 3]), { n: 2 }), [2, 4, 6]);
    assert.deepEqual(await parmap(([k, v]: [string, number]) => k + v, new Map([['a', 1]]).entries(), { n: 2 }), [
      'a1',
    ]);
    assert.deepEqual(await parmap((c: string) => c.toUpperCase(), 'abc', { n: 2 }), ['A', 'B', 'C']);
    async function* numbers() {
      for (let i = 0; i < 100; i++) {
        if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
        yield i;
      }
    }
    assert.deepEqual(await parmap(double, numbers(), { n: 2 }), range(100).map(double));
    const { Readable } = await import('node:stream');
    assert.deepEqual(await parmap(double, Readable.from([5, 6, 7]), { n: 2 }), [10, 12, 14]);
  });

  it('returns rich values by structured clone: Map, Set, Date, BigInt, typed arrays', async () => {
    const [result] = await parmap(
      (x: number) => ({
        map: new Map([[x, 'one']]),
        set: new Set([x]),
        date: new Date(0),
        big: BigInt(x) ** 40n,
        bytes: new Uint8Array([x, x + 1]),
      }),
      [1],
      { n: 2 },
    );
    assert.deepEqual(result, {
      map: new Map([[1, 'one']]),
      set: new Set([1]),
      date: new Date(0),
      big: 1n,
      bytes: new Uint8Array([1, 2]),
    });
  });

  it('runs with process workers, keeping Maps, BigInts and Dates', async () => {
    const results = await parmap(
      (x: number) => [new Map([[x, BigInt(x) * 2n]]), new Date(x), process.pid],
      [1, 2, 3, 4],
      { n: 2, workerType: 'process', chunksize: 1 },
    );
    assert.deepEqual(
      results.map(([map, date]) => [map, date]),
      [1, 2, 3, 4].map((x) => [new Map([[x, BigInt(x) * 2n]]), new Date(x)]),
    );
    for (const [, , pid] of results) assert.notEqual(pid, process.pid);
  });

  it('carries circular values to process workers and back, as structured clone does', async () => {
    const item: Record<string, unknown> = { name: 'loop' };
    item.self = item;
    const [result] = await parmap(
      (value: Record<string, unknown>) => ({ sameObject: value.self === value, back: value }),
      [item],
      { n: 2, workerType: 'process' },
    );
    assert.equal(result?.sameObject, true);
    assert.equal(result?.back.self, result?.back);
  });

  it('uses several workers', async () => {
    const threads = await parmap(
      async () => {
        const { threadId } = await import('node:worker_threads');
        const end = Date.now() + 20;
        while (Date.now() < end) spinLocal();
        return threadId;
        function spinLocal() {
          return Math.sqrt(Math.random());
        }
      },
      range(8),
      { n: 2, chunksize: 1 },
    );
    assert.equal(new Set(threads).size, 2);
  });
});

describe('parmap: star, kwstar, args, kwargs end to end', () => {
  it('star spreads each item into arguments, then args', async () => {
    const add = (a: number, b: number, c: number) => a + b + c;
    const zipped = range(10).map((i): [number, number] => [i, i * 10]);
    assert.deepEqual(
      await parmap(add, zipped, { n: 2, star: true, args: [1000] }),
      zipped.map(([a, b]) => (a as number) + (b as number) + 1000),
    );
  });

  it("follows the issue's example with star, kwstar, args and kwargs", async () => {
    const record = (...args: unknown[]) => args;
    assert.deepEqual(
      await parmap(record, [[[1, 2], { opt: true }]], {
        n: 2,
        star: true,
        kwstar: true,
        args: ['C'],
        kwargs: { opt2: false },
      }),
      [[1, 2, 'C', { opt2: false, opt: true }]],
    );
  });

  it("follows the seed's kwstar example: changing keyword arguments per item", async () => {
    const doSomething = (item: number, { opt = false } = {}) => (opt ? `${item}!` : `${item}`);
    const items = range(6).map((i): [number, { opt: boolean }] => [i, { opt: i % 2 === 0 }]);
    assert.deepEqual(await parmap(doSomething, items, { n: 2, kwstar: true }), ['0!', '1', '2!', '3', '4!', '5']);
  });

  it('fails at once naming the item when star gets a non-array', async () => {
    await assert.rejects(
      parmap((a: number) => a, [[1], [2], 3] as never, { n: 2, star: true }),
      (error: Error) => {
        assert.ok(error instanceof TypeError);
        assert.match(error.message, /item 2 is `3` \(number\)/);
        return true;
      },
    );
  });

  it('fails naming the item when kwstar gets a malformed item', async () => {
    await assert.rejects(
      parmap(
        (a: number) => a,
        [
          [1, {}],
          [2, 'x'],
        ] as never,
        { n: 2, kwstar: true },
      ),
      /With `kwstar: true` each item must be \[argument, options object\]; item 1/,
    );
  });

  it('keeps per-item __proto__ keys from polluting any prototype', async () => {
    const items: [number, Record<string, unknown>][] = [[1, JSON.parse('{"__proto__": {"polluted": true}}')]];
    const [result] = await parmap(
      (x: number, options: Record<string, unknown>) => [
        x,
        ({} as Record<string, unknown>).polluted ?? 'clean',
        Object.keys(options),
      ],
      items,
      { n: 2, kwstar: true },
    );
    assert.deepEqual(result, [1, 'clean', ['__proto__']]);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

describe('parmap: what fn may use', () => {
  it('fails with a ParmapScopeError naming a variable from the surroundings, before any item', async () => {
    const factor = 3;
    let read = 0;
    function* items() {
      read++;
      yield 1;
    }
    assert.throws(
      () => parmap((x: number) => x * factor, items(), { n: 2 }),
      (error: unknown) => {
        assert.ok(error instanceof ParmapScopeError);
        assert.deepEqual(error.names, ['factor']);
        assert.match(error.message, /fn uses `factor` from the code around it.*scope: \{ factor \}/);
        return true;
      },
    );
    assert.equal(read, 0);
  });

  it('fails with a ParmapScopeError when a global of this thread is missing in the workers', async () => {
    (globalThis as Record<string, unknown>).parmapTestOnlyHere = 2;
    try {
      for (const workerType of ['thread', 'process'] as const) {
        await assert.rejects(
          parmap((x: number) => x * parmapTestOnlyHere, [1, 2], { n: 2, workerType }),
          (error: unknown) => error instanceof ParmapScopeError && error.names.includes('parmapTestOnlyHere'),
        );
      }
    } finally {
      delete (globalThis as Record<string, unknown>).parmapTestOnlyHere;
    }
  });

  it('sees scope values, including functions that use each other', async () => {
    const factor = 3;
    const weights = new Map([['a', 2]]);
    const scale = (x: number) => x * factor * (weights.get('a') ?? 0);
    assert.deepEqual(
      await parmap((x: number) => scale(x) + 1, [1, 2], { n: 2, scope: { factor, weights, scale } }),
      [7, 13],
    );
  });

  it('carries rich scope values to the workers', async () => {
    const lookup = new Map([['a', 1n << 64n]]);
    const since = new Date('2024-01-01T00:00:00Z');
    const word = /^[a-z]+$/;
    const [result] = await parmap(
      (key: string) => [lookup.get(key), since.getUTCFullYear(), word.test(key), typeof missing],
      ['a'],
      { n: 2, scope: { lookup, since, word, missing: undefined } },
    );
    assert.deepEqual(result, [1n << 64n, 2024, true, 'undefined']);
  });

  it('can require and import, relative to the calling file', async () => {
    const results = await parmap(
      async (x: number) => {
        const { square } = require('./fixtures/square.cjs');
        const { triple } = await import('./fixtures/triple.mjs');
        const path = require('node:path');
        return [square(x), triple(x), path.basename(__filename)];
      },
      [2, 3],
      { n: 2 },
    );
    assert.deepEqual(results, [
      [4, 6, 'parmap.test.ts'],
      [9, 9, 'parmap.test.ts'],
    ]);
  });

  it('runs methods, static methods and declarations', async () => {
    // biome-ignore lint/complexity/noStaticOnlyClass: a static method is the form under test.
    class Geometry {
      static area(side: number) {
        return side * side;
      }
    }
    const shapes = {
      perimeter(side: number) {
        return 4 * side;
      },
    };
    assert.deepEqual(await parmap(Geometry.area, [3], { n: 2 }), [9]);
    assert.deepEqual(await parmap(shapes.perimeter, [3], { n: 2 }), [12]);
    assert.deepEqual(await parmap(cube, [3], { n: 2 }), [27]);
  });

  it('refuses a bound function at once', () => {
    assert.throws(() => parmap(cube.bind(null), [1], { n: 2 }), /bound, native or proxied function/);
  });

  it('runs fn in this thread with n: 1, where closures work', async () => {
    const factor = 5;
    let calls = 0;
    const results = await parmap(
      (x: number) => {
        calls++;
        return x * factor;
      },
      [1, 2, 3],
      { n: 1 },
    );
    assert.deepEqual(results, [5, 10, 15]);
    assert.equal(calls, 3);
  });

  it('keeps the same star/kwstar rules and errors with n: 1', async () => {
    assert.deepEqual(
      await parmap((a: number, b: number, o: { k: number }) => a + b + o.k, [[[1, 2], { k: 3 }]], {
        n: 1,
        star: true,
        kwstar: true,
      }),
      [6],
    );
    const original = new Error('serial boom');
    await assert.rejects(
      parmap(
        (x: number) => {
          if (x === 2) throw original;
          return x;
        },
        [0, 1, 2],
        { n: 1 },
      ),
      (error: unknown) => error instanceof ParmapTaskError && error.index === 2 && error.cause === original,
    );
  });
});

declare const missing: undefined;
declare const parmapTestOnlyHere: number;

function cube(x: number) {
  return x * x * x;
}

describe('parmap: ordered and unordered', () => {
  it('keeps input order when later items finish first', async () => {
    const results = await parmap(
      (x: number) => {
        spin(x === 0 ? 3_000_000 : 1000);
        return x;
      },
      range(40),
      { n: 2, chunksize: 1, scope: { spin } },
    );
    assert.deepEqual(results, range(40));
  });

  it('with ordered: false yields each result as soon as it is ready', async () => {
    // Item 0 blocks its worker until the caller has seen every other result.
    const gate = new Int32Array(new SharedArrayBuffer(4));
    const items = range(20).map((i) => [i, gate] as const);
    const seen: number[] = [];
    for await (const value of parmap(
      ([i, flag]: readonly [number, Int32Array]) => {
        if (i === 0) Atomics.wait(flag, 0, 0, 60_000);
        return i;
      },
      items,
      { n: 2, chunksize: 1, ordered: false },
    )) {
      seen.push(value);
      if (seen.length === 19) {
        assert.ok(!seen.includes(0));
        Atomics.store(gate, 0, 1);
        Atomics.notify(gate, 0);
      }
    }
    assert.equal(seen.at(-1), 0);
    assert.deepEqual(
      [...seen].sort((a, b) => a - b),
      range(20),
    );
  });

  it('delivers every item exactly once across chunk sizes, worker counts and orderings', async () => {
    for (const [count, chunksize, ordered] of [
      [0, 1, true],
      [1, 'auto', false],
      [97, 5, true],
      [97, 5, false],
      [1234, 'auto', true],
      [1234, 'auto', false],
    ] as const) {
      const results = await parmap((x: number) => x * 3, range(count), { n: 2, chunksize, ordered });
      const sorted = ordered ? results : [...results].sort((a, b) => a - b);
      assert.deepEqual(
        sorted,
        range(count).map((x) => x * 3),
        `${count} items, chunksize ${chunksize}`,
      );
    }
  });
});

describe('parmap: streaming', () => {
  it('streams with for await', async () => {
    const seen: number[] = [];
    for await (const value of parmap((x: number) => x + 1, range(300), { n: 2 })) seen.push(value);
    assert.deepEqual(
      seen,
      range(300).map((x) => x + 1),
    );
  });

  it('handles an endless generator with break, closing the generator', async () => {
    let closed = false;
    function* naturals() {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        closed = true;
      }
    }
    const seen: number[] = [];
    for await (const value of parmap((x: number) => x * x, naturals(), { n: 2 })) {
      seen.push(value);
      if (seen.length === 500) break;
    }
    assert.deepEqual(
      seen,
      range(500).map((x) => x * x),
    );
    assert.equal(closed, true);
  });

  it('never reads far ahead of the consumer', async () => {
    let read = 0;
    let maxAhead = 0;
    function* numbers() {
      for (let i = 0; i < 20_000; i++) {
        read++;
        yield i;
      }
    }
    let consumed = 0;
    for await (const _ of parmap((x: number) => x, numbers(), { n: 2, chunksize: 100 })) {
      consumed++;
      maxAhead = Math.max(maxAhead, read - consumed);
    }
    assert.equal(consumed, 20_000);
    // 2 workers x 2 chunks waiting, plus the chunk being handed out and one being read.
    assert.ok(maxAhead <= 6 * 100, `read ${maxAhead} items ahead`);
  });

  it('chains: one call is the input of the next', async () => {
    const stage1 = parmap((x: number) => x + 1, range(100), { n: 2 });
    const stage2 = parmap((x: number) => x * 2, stage1, { n: 2 });
    assert.deepEqual(
      await stage2,
      range(100).map((x) => (x + 1) * 2),
    );
  });

  it('runs two calls at once on independent pools', async () => {
    const [a, b] = await Promise.all([
      parmap((x: number) => `a${x}`, range(200), { n: 2 }),
      parmap((x: number) => `b${x}`, range(200), { n: 2, ordered: false }),
    ]);
    assert.deepEqual(
      a,
      range(200).map((x) => `a${x}`),
    );
    assert.deepEqual(
      [...b].sort(),
      range(200)
        .map((x) => `b${x}`)
        .sort(),
    );
  });

  it('reports progress to a callback, never going backwards, ending at the total', async () => {
    const updates: { done: number; total: number | undefined }[] = [];
    await parmap((x: number) => x, range(500), { n: 2, progress: ({ done, total }) => updates.push({ done, total }) });
    const dones = updates.map((update) => update.done);
    assert.deepEqual(
      dones,
      [...dones].sort((a, b) => a - b),
    );
    assert.deepEqual(updates.at(-1), { done: 500, total: 500 });
  });
});

describe('parmap: failures', () => {
  it('rejects with a ParmapTaskError naming the item, with the original error as cause', async () => {
    await assert.rejects(
      parmap(
        (x: number) => {
          if (x === 37) {
            const error = new TypeError(`cannot handle ${x}`) as TypeError & { code: string };
            error.code = 'E_UNHANDLED';
            throw error;
          }
          return x;
        },
        range(100),
        { n: 2 },
      ),
      (error: unknown) => {
        assert.ok(error instanceof ParmapTaskError);
        assert.equal(error.name, 'ParmapTaskError');
        assert.equal(error.index, 37);
        assert.match(error.message, /item 37: TypeError: cannot handle 37/);
        const cause = error.cause as TypeError & { code: string };
        assert.ok(cause instanceof TypeError);
        assert.equal(cause.code, 'E_UNHANDLED');
        assert.match(cause.stack ?? '', /parmap-fn\.js/);
        return true;
      },
    );
  });

  it('rejects for a rejected promise and for thrown non-Errors', async () => {
    await assert.rejects(
      parmap(async (x: number) => Promise.reject(new Error(`async ${x}`)), [7], { n: 2 }),
      (error: unknown) => error instanceof ParmapTaskError && error.index === 0 && /async 7/.test(error.message),
    );
    for (const thrown of ['text', 42, null, undefined]) {
      await assert.rejects(
        parmap(
          (x: unknown) => {
            throw x;
          },
          [thrown],
          { n: 2 },
        ),
        (error: unknown) =>
          error instanceof ParmapTaskError &&
          error.cause === thrown &&
          /non-Error value was thrown/.test(error.message),
      );
    }
  });

  it('throws from the for await loop, after the results already yielded', async () => {
    const seen: number[] = [];
    await assert.rejects(
      async () => {
        for await (const value of parmap(
          (x: number) => {
            if (x === 150) throw new Error('stop here');
            return x;
          },
          range(300),
          { n: 2, chunksize: 10 },
        )) {
          seen.push(value);
        }
      },
      (error: unknown) => error instanceof ParmapTaskError && error.index === 150,
    );
    assert.deepEqual(seen, range(seen.length));
    assert.ok(seen.length <= 150);
  });

  it('names an item that cannot be sent to a worker', async () => {
    await assert.rejects(
      parmap((x: unknown) => x, [1, 2, () => 3, 4], { n: 2, chunksize: 1 }),
      (error: unknown) =>
        error instanceof ParmapCloneError &&
        error.index === 2 &&
        error.direction === 'item' &&
        /item 2 cannot be sent/.test(error.message),
    );
    await assert.rejects(
      parmap((x: unknown) => x, [{ nested: { fn: Symbol('s') } }], { n: 2, workerType: 'process' }),
      (error: unknown) => error instanceof ParmapCloneError && error.index === 0,
    );
  });

  it('names an item whose result cannot be sent back', async () => {
    await assert.rejects(
      parmap((x: number) => (x === 5 ? { callback: () => x } : x), range(10), { n: 2, chunksize: 10 }),
      (error: unknown) =>
        error instanceof ParmapCloneError &&
        error.index === 5 &&
        error.direction === 'result' &&
        /result of item 5 cannot be sent back/.test(error.message),
    );
  });

  it('names args or kwargs that cannot be sent, at once', () => {
    assert.throws(
      () => parmap((x: number) => x, [1], { n: 2, args: [() => 1] }),
      /`args` holds a function or a symbol/,
    );
    assert.throws(
      () => parmap((x: number) => x, [1], { n: 2, kwargs: { s: Symbol('x') } }),
      /`kwargs` holds a function or a symbol/,
    );
  });

  it('names args that structured clone refuses, at the call, before any worker starts', () => {
    assert.throws(
      () => parmap((x: number) => x, [1], { n: 2, args: [new WeakMap()] }),
      /`args` cannot be sent to workers/,
    );
  });

  it('rejects with AbortError when the signal aborts, and at once when it already has', async () => {
    const controller = new AbortController();
    const seen: number[] = [];
    await assert.rejects(
      async () => {
        for await (const value of parmap((x: number) => x, range(100_000), { n: 2, signal: controller.signal })) {
          seen.push(value);
          if (seen.length === 10) controller.abort(new Error('user stopped'));
        }
      },
      (error: unknown) =>
        error instanceof AbortError && error.name === 'AbortError' && (error.cause as Error).message === 'user stopped',
    );
    await assert.rejects(
      parmap((x: number) => x, [1], { n: 2, signal: AbortSignal.abort() }),
      (error: unknown) => error instanceof AbortError,
    );
  });

  it('rejects bad calls synchronously, before any worker starts', () => {
    assert.throws(() => parmap('f' as never, [1]), /Expected `fn` to be a function/);
    assert.throws(() => parmap((x: number) => x, 5 as never), /Expected `items`/);
    assert.throws(() => parmap((x: number) => x, [1], { orderd: true } as never), /Did you mean `ordered`/);
  });
});

describe('parmap: n: 1 with timeout and onError', () => {
  it('stops waiting for an async item past its timeout', async () => {
    await assert.rejects(
      parmap((x: number) => new Promise((resolve) => setTimeout(() => resolve(x), x === 2 ? 1000 : 1)), [1, 2, 3], {
        n: 1,
        timeout: 100,
      }),
      (error: unknown) =>
        error instanceof ParmapTimeoutError &&
        error.index === 1 &&
        /cannot stop it: its result is dropped/.test(error.message),
    );
  });

  it('judges a sync item when it returns, since this thread cannot be interrupted', async () => {
    const results = await parmap(
      (x: number) => {
        if (x === 1) {
          const end = performance.now() + 150;
          while (performance.now() < end);
        }
        return x;
      },
      [0, 1, 2],
      { n: 1, timeout: 50, onError: 'return' },
    );
    assert.equal(results[0], 0);
    const late = results[1];
    assert.ok(late instanceof ParmapTimeoutError && late.index === 1);
    assert.equal(results[2], 2);
  });

  it("yields errors in place with onError: 'return'", async () => {
    const results = await parmap(
      (x: number) => {
        if (x % 2) throw new Error(`odd ${x}`);
        return x;
      },
      [0, 1, 2, 3],
      { n: 1, onError: 'return' },
    );
    assert.deepEqual(
      results.map((result) => (result instanceof ParmapTaskError ? result.index : result)),
      [0, 1, 2, 3],
    );
    assert.ok(results[1] instanceof ParmapTaskError);
  });
});
