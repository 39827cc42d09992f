/**
 * Async functions overlap their waits (`concurrency`), and large items stream in bounded memory
 * (`maxBytesInFlight`), with the same results, order and errors as ever.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ParmapTaskError, ParmapTimeoutError, parmap } from '../dist/index.js';

const range = (count: number) => Array.from({ length: count }, (_, i) => i);

/** An async fn that reports how many of its calls were in flight at once in its worker. */
const measuresOverlap = async (x: number) => {
  const state = globalThis as { inFlight?: number; peak?: number };
  state.inFlight = (state.inFlight ?? 0) + 1;
  state.peak = Math.max(state.peak ?? 0, state.inFlight);
  // Uneven waits, so later items often finish first.
  await new Promise((resolve) => setTimeout(resolve, 1 + ((x * 7) % 5)));
  state.inFlight--;
  return [x * 2, state.peak] as const;
};

describe('concurrency: async items overlap their waits', { timeout: 60_000 }, () => {
  for (const workerType of ['thread', 'process'] as const) {
    it(`keeps several items in flight per worker, never more than asked, results in order (${workerType})`, async () => {
      const results = await parmap(measuresOverlap, range(300), { n: 2, workerType, concurrency: 6 });
      assert.deepEqual(
        results.map(([double]) => double),
        range(300).map((x) => x * 2),
      );
      const peak = Math.max(...results.map(([, seen]) => seen));
      assert.ok(peak > 1, 'items overlapped');
      assert.ok(peak <= 6, `at most 6 at once per worker, saw ${peak}`);
    });
  }

  for (const n of [1, 2]) {
    it(`overlaps items that each wait long, a chunk's worth of time alone (n: ${n})`, async () => {
      // A single item waiting 150 ms is more than the least work worth a message, so chunks held
      // one item each and nothing overlapped: 32 items of 200 ms took 3.3 s on n: 2, not 0.4 s.
      const slow = async (x: number) => {
        const state = globalThis as { inFlight?: number; peak?: number };
        state.inFlight = (state.inFlight ?? 0) + 1;
        state.peak = Math.max(state.peak ?? 0, state.inFlight);
        await new Promise((resolve) => setTimeout(resolve, 150));
        state.inFlight--;
        return [x, state.peak] as const;
      };
      const results = await parmap(slow, range(24), { n, concurrency: 8 });
      assert.deepEqual(
        results.map(([x]) => x),
        range(24),
      );
      assert.equal(Math.max(...results.map(([, seen]) => seen)), 8);
    });
  }

  for (const workerType of ['thread', 'process'] as const) {
    it(`no false timeout for async items that compute before they return (${workerType})`, async () => {
      // Started one after another in one go, the first item seemed to run on through the others'
      // 30 ms of computing each, and was stopped past a timeout five times its own time.
      const computes = async (x: number) => {
        const end = Date.now() + 30;
        while (Date.now() < end);
        return x;
      };
      const results = await parmap(computes, range(24), { n: 2, workerType, concurrency: 8, timeout: 150 });
      assert.deepEqual(results, range(24));
    });
  }

  for (const n of [1, 2]) {
    it(`a returned promise whose constructor getter throws is its item's failure (n: ${n})`, async () => {
      // Read outside any try, it crashed the caller with n: 1, and failed the call naming no item.
      const odd = async (x: number) => x;
      const fn = (x: number) => {
        const promise = odd(x);
        if (x === 3) {
          Object.defineProperty(promise, 'constructor', {
            get() {
              throw new Error(`constructor getter ${x}`);
            },
          });
        }
        return promise;
      };
      const error = await parmap(fn, range(8), { n, concurrency: 4, scope: { odd } }).catch((e: unknown) => e);
      assert.ok(error instanceof ParmapTaskError, String(error));
      assert.equal(error.index, 3);
      assert.match(String((error.cause as Error).message), /constructor getter 3/);
    });
  }

  it('runs async items one after another with concurrency: 1', async () => {
    const results = await parmap(measuresOverlap, range(40), { n: 2, concurrency: 1 });
    assert.deepEqual(new Set(results.map(([, seen]) => seen)), new Set([1]));
  });

  it('overlaps by default', async () => {
    const results = await parmap(measuresOverlap, range(200), { n: 2 });
    assert.ok(Math.max(...results.map(([, seen]) => seen)) > 1);
  });

  it('overlaps in the calling thread too, with n: 1', async () => {
    const state = globalThis as { inFlight?: number; peak?: number };
    state.inFlight = 0;
    state.peak = 0;
    const results = await parmap(measuresOverlap, range(100), { n: 1, concurrency: 5 });
    const peak = Math.max(...results.map(([, seen]) => seen));
    assert.ok(peak > 1 && peak <= 5, `peak ${peak}`);
  });

  it('names the failing item among overlapping ones, after every result before it when streamed', async () => {
    const fn = async (x: number) => {
      await new Promise((resolve) => setTimeout(resolve, (x * 13) % 4));
      if (x === 37 || x === 41) throw new Error(`bad ${x}`);
      return x;
    };
    await assert.rejects(parmap(fn, range(100), { n: 2, concurrency: 8 }), (error: unknown) => {
      assert.ok(error instanceof ParmapTaskError);
      assert.ok(error.index === 37 || error.index === 41, `index ${error.index}`);
      return true;
    });
    const seen: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const value of parmap(fn, range(100), { n: 2, concurrency: 8 })) seen.push(value);
      })(),
      (error: unknown) => error instanceof ParmapTaskError && error.index === 37,
    );
    assert.deepEqual(seen, range(37));
  });

  it("with onError: 'return', puts each failure in its place among overlapping items", async () => {
    const results = await parmap(
      async (x: number) => {
        await null;
        if (x % 10 === 3) throw new Error(`bad ${x}`);
        return x;
      },
      range(50),
      { n: 2, concurrency: 8, onError: 'return' },
    );
    for (const [i, value] of results.entries()) {
      if (i % 10 === 3) assert.ok(value instanceof ParmapTaskError && value.index === i);
      else assert.equal(value, i);
    }
  });

  for (const workerType of ['thread', 'process'] as const) {
    it(`times out the item that hangs among overlapping ones, and runs the others (${workerType})`, async () => {
      const results = await parmap(
        async (x: number) => {
          if (x === 6) await new Promise(() => {});
          await null;
          return x;
        },
        range(20),
        { n: 2, workerType, concurrency: 4, timeout: 400, onError: 'return', chunksize: 10 },
      );
      for (const [i, value] of results.entries()) {
        if (i === 6) assert.ok(value instanceof ParmapTimeoutError && value.index === 6, String(value));
        else assert.equal(value, i);
      }
    });
  }
});

describe('a timeout among overlapping items names the item that holds the thread', () => {
  for (const workerType of ['thread', 'process'] as const) {
    it(`blames a synchronous item that blocks, not the older items whose settled promises it holds up (${workerType})`, async () => {
      // Odd items return promises that are already settled; item 70 loops synchronously for 20 s.
      // While it runs, none of the promises started before it can deliver, so they all look older.
      const results = await parmap(
        (x: number) => {
          if (x === 70) {
            const end = Date.now() + 20_000;
            while (Date.now() < end);
          }
          return x % 2 === 1 ? Promise.resolve(x) : x;
        },
        range(200),
        { n: 2, timeout: 400, chunksize: 200, onError: 'return', workerType },
      );
      for (const [i, value] of results.entries()) {
        if (i === 70) assert.ok(value instanceof ParmapTimeoutError && value.index === 70, String(value));
        else assert.equal(value, i, `item ${i}: ${String(value)}`);
      }
    });
  }
});

describe('maxBytesInFlight: large items stream in bounded memory', { timeout: 60_000 }, () => {
  it('reads a stream of 1 MB items only a few at a time ahead of the caller', async () => {
    let read = 0;
    let consumed = 0;
    let furthestAhead = 0;
    const megabyte = 'x'.repeat(2 ** 20);
    function* large() {
      for (let i = 0; i < 120; i++) {
        read++;
        furthestAhead = Math.max(furthestAhead, read - consumed);
        yield `${i}:${megabyte}`;
      }
    }
    for await (const length of parmap((s: string) => s.length, large(), { n: 2, maxBytesInFlight: 8 * 2 ** 20 })) {
      assert.ok(length > 2 ** 20);
      consumed++;
    }
    assert.equal(consumed, 120);
    // Four chunks of one item may be on their way, plus the one the caller holds.
    assert.ok(furthestAhead <= 8, `read ${furthestAhead} items ahead of the caller`);
  });

  it('keeps the bytes read ahead of the caller near the budget it is given', async () => {
    const itemBytes = 100_000;
    const aheadWith = async (maxBytesInFlight: number | undefined) => {
      let read = 0;
      let consumed = 0;
      let furthestAhead = 0;
      function* items() {
        for (let i = 0; i < 300; i++) {
          read++;
          furthestAhead = Math.max(furthestAhead, read - consumed);
          yield 'x'.repeat(itemBytes);
        }
      }
      const options = maxBytesInFlight === undefined ? { n: 2 } : { n: 2, maxBytesInFlight };
      for await (const _ of parmap((s: string) => s.length, items(), options)) consumed++;
      return furthestAhead * itemBytes;
    };
    const budget = 2 ** 20;
    const tight = await aheadWith(budget);
    assert.ok(tight <= 2 * budget, `${tight} bytes ahead with a budget of ${budget}`);
    assert.ok((await aheadWith(undefined)) > 2 * budget, 'the default budget is larger');
  });

  it("counts items larger than a chunk's share in bytes too, with one per worker at least", async () => {
    let read = 0;
    let consumed = 0;
    let furthestAhead = 0;
    const fourMegabytes = 'x'.repeat(4 * 2 ** 20);
    function* large() {
      for (let i = 0; i < 24; i++) {
        read++;
        // Once the first results have told parmap how large an item and its result are.
        if (consumed >= 4) furthestAhead = Math.max(furthestAhead, read - consumed);
        yield `${i}:${fourMegabytes}`;
      }
    }
    // 8 MiB an item with its result: a 20 MiB budget has room for two on their way, not the four
    // chunks that two workers may otherwise hold (plus, in both cases, the one the caller holds
    // and the one being read).
    const options = { n: 2, maxBytesInFlight: 20 * 2 ** 20 };
    for await (const length of parmap((s: string) => s.length, large(), options)) {
      assert.ok(length > 4 * 2 ** 20);
      consumed++;
    }
    assert.equal(consumed, 24);
    assert.ok(furthestAhead <= 4, `read ${furthestAhead} items ahead of the caller`);
  });

  for (const source of ['a generator', 'an async generator'] as const) {
    it(`weighs each large item as it is read, after many small ones (${source})`, async () => {
      // The average of 2,000 small items says nothing of the large ones that follow: counted by
      // that average, all 30 large items (240 MiB) were read ahead in one chunk.
      let read = 0;
      let consumed = 0;
      let furthestAhead = 0;
      const eightMegabytes = 'x'.repeat(8 * 2 ** 20);
      const item = (i: number) => {
        if (i < 2_000) return String(i);
        read++;
        furthestAhead = Math.max(furthestAhead, read - consumed);
        return eightMegabytes;
      };
      const items =
        source === 'a generator'
          ? (function* () {
              for (let i = 0; i < 2_030; i++) yield item(i);
            })()
          : (async function* () {
              for (let i = 0; i < 2_030; i++) yield item(i);
            })();
      let count = 0;
      for await (const length of parmap((s: string) => s.length, items, { n: 2, maxBytesInFlight: 10 * 2 ** 20 })) {
        if (count++ >= 2_000) {
          assert.equal(length, 8 * 2 ** 20);
          consumed++;
        }
      }
      assert.equal(count, 2_030);
      // One on its way to each worker and one more queued behind it, the one the caller holds and
      // the one being read.
      assert.ok(furthestAhead <= 6, `read ${furthestAhead} large items ahead of the caller`);
    });
  }

  it('still sends an item larger than the whole budget, alone', async () => {
    const results = await parmap((s: string) => s.length, ['x'.repeat(3_000_000), 'y', 'z'], {
      n: 2,
      maxBytesInFlight: 1_000,
    });
    assert.deepEqual(results, [3_000_000, 1, 1]);
  });
});

describe('the options are checked', () => {
  const fn = (x: number) => x;
  for (const [value, pattern] of [
    [0, /`concurrency` to be a positive integer or Infinity, got `0`/],
    [1.5, /`concurrency`.*got `1.5`/],
    ['4', /`concurrency`.*got `'4'` \(string\)|`concurrency`.*string/],
    [Number.NaN, /`concurrency`/],
  ] as const) {
    it(`refuses concurrency ${String(value)}`, () => {
      assert.throws(() => parmap(fn, [1], { concurrency: value as number }), { name: 'RangeError', message: pattern });
    });
  }

  it('accepts concurrency Infinity', async () => {
    assert.deepEqual(
      await parmap(async (x: number) => x, [1, 2], { n: 2, concurrency: Number.POSITIVE_INFINITY }),
      [1, 2],
    );
  });

  for (const value of [0, -1, 2.5, Number.POSITIVE_INFINITY, '1e6']) {
    it(`refuses maxBytesInFlight ${String(value)}`, () => {
      assert.throws(() => parmap(fn, [1], { maxBytesInFlight: value as number }), {
        name: 'RangeError',
        message: /`maxBytesInFlight` to be a positive whole number of bytes/,
      });
    });
  }
});
