/**
 * parmap gives what Array.map gives: the same values back, errors that keep what they carry, and
 * the results before a failure before the failure.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ParmapCloneError, parmap } from '../dist/index.js';
import { assertClean, lastJson, runScenario } from './fixtures/child-scenario.js';

const WORKER_MODES = [
  { name: 'threads', options: `{ n: 2 }` },
  { name: 'processes', options: `{ n: 2, workerType: 'process' }` },
] as const;

const key = fc.oneof(fc.string({ maxLength: 4 }), fc.integer());
const typedArray = fc.oneof(
  fc.uint8Array({ maxLength: 8 }),
  fc.int32Array({ maxLength: 4 }),
  fc.float64Array({ maxLength: 4 }),
  fc.bigInt64Array({ maxLength: 4 }),
  fc
    .tuple(fc.uint16Array({ minLength: 4, maxLength: 12 }), fc.nat(2), fc.nat(2))
    .map(([array, start, end]) => array.subarray(start, array.length - end)),
);
const buffer = fc.oneof(
  fc.uint8Array({ maxLength: 8 }).map((bytes) => Buffer.from(bytes)),
  fc.uint8Array({ minLength: 2, maxLength: 8 }).map((bytes) => Buffer.from(bytes).subarray(1)),
);
const leaf = fc.oneof(
  fc.string({ maxLength: 6 }),
  fc.string({ unit: 'binary', maxLength: 6 }),
  fc.double(),
  fc.constantFrom(Number.NaN, -0, Number.POSITIVE_INFINITY),
  fc.integer(),
  fc.bigInt(),
  fc.date({ noInvalidDate: true }),
  fc.boolean(),
  fc.constantFrom(null, undefined),
  typedArray,
  buffer,
);
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    leaf,
    tie('array'),
    tie('sparse'),
    tie('named'),
    tie('object'),
    tie('map'),
    tie('set'),
  ),
  array: fc.array(tie('value'), { maxLength: 4 }),
  // An array with properties besides its elements: a Buffer there had become a Uint8Array.
  named: fc
    .tuple(
      fc.array(tie('value'), { maxLength: 3 }),
      fc.dictionary(fc.stringMatching(/^[a-z]{1,4}$/), tie('value'), { minKeys: 1, maxKeys: 2 }),
    )
    .map(([elements, named]) => Object.assign(elements, named)),
  sparse: fc.sparseArray(tie('value'), { maxLength: 6, maxNumElements: 3 }),
  object: fc.dictionary(fc.string({ maxLength: 4 }), tie('value'), { maxKeys: 4, noNullPrototype: true }),
  map: fc.array(fc.tuple(key, tie('value')), { maxLength: 3 }).map((entries) => new Map(entries)),
  set: fc.array(fc.oneof(key, fc.bigInt()), { maxLength: 3 }).map((values) => new Set(values)),
}));

/** Checks what deepEqual does not: Buffers stay Buffers, and (processes) typed arrays own their memory. */
function checkViews(expected: unknown, actual: unknown, compact: boolean, path = 'value'): void {
  if (Buffer.isBuffer(expected)) {
    assert.ok(Buffer.isBuffer(actual), `${path} should be a Buffer`);
  } else if (ArrayBuffer.isView(expected)) {
    const view = actual as ArrayBufferView;
    if (compact) assert.equal(view.buffer.byteLength, view.byteLength, `${path}.buffer is larger than ${path}`);
  } else if (expected instanceof Map) {
    const values = [...(actual as Map<unknown, unknown>).values()];
    [...expected.values()].forEach((item, i) => {
      checkViews(item, values[i], compact, `${path}.get(#${i})`);
    });
  } else if (typeof expected === 'object' && expected !== null && !(expected instanceof Date)) {
    for (const name of Object.keys(expected)) {
      checkViews(
        (expected as Record<string, unknown>)[name],
        (actual as Record<string, unknown>)[name],
        compact,
        `${path}[${name}]`,
      );
    }
  }
}

describe('values come back as Array.map gives them', () => {
  const modes = [
    { name: 'threads', options: { n: 2 } },
    { name: 'processes', options: { n: 2, workerType: 'process' } },
    { name: 'n: 1', options: { n: 1 } },
  ] as const;
  for (const mode of modes) {
    it(`parmap((x) => x, xs) deep-equals xs.map((x) => x), Buffers and typed arrays included (${mode.name})`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(value, { maxLength: 5 }), async (xs) => {
          const results = await parmap((x: unknown) => x, xs, mode.options);
          const expected = xs.map((x) => x);
          assert.deepStrictEqual(results, expected);
          checkViews(expected, results, mode.name === 'processes');
        }),
        { seed: 20240611, numRuns: 30 },
      );
    });

    it(`long lists of numbers come back exactly: -0, NaN, the infinities, doubles, any chunk size (${mode.name})`, async () => {
      const number = fc.oneof(
        fc.double(),
        fc.integer(),
        fc.constantFrom(-0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53, -(2 ** 31) - 1),
      );
      await fc.assert(
        fc.asyncProperty(
          fc.array(number, { minLength: 60, maxLength: 400 }),
          fc.constantFrom<number | 'auto'>('auto', 64, 97, 1_000),
          fc.option(fc.nat(399)),
          async (xs, chunksize, oddOneAt) => {
            // An item of another type anywhere makes its chunk go as values, not as packed numbers.
            const items: unknown[] = [...xs];
            if (oddOneAt !== null && oddOneAt < items.length) items[oddOneAt] = `odd ${oddOneAt}`;
            const echoed = await parmap((x: unknown) => x, items, { ...mode.options, chunksize });
            assert.deepStrictEqual(echoed, items);
            const kinds = await parmap((x: unknown) => typeof x, items, { ...mode.options, chunksize });
            assert.deepStrictEqual(
              kinds,
              items.map((x) => typeof x),
            );
          },
        ),
        { seed: 20261128, numRuns: 15 },
      );
    });

    it(`results that are numbers for some items only come back as they are (${mode.name})`, async () => {
      const items = Array.from({ length: 300 }, (_, i) => i);
      const mixed = (x: number) => (x % 97 === 5 ? { x } : x % 89 === 3 ? undefined : -x);
      assert.deepStrictEqual(await parmap(mixed, items, { ...mode.options, chunksize: 100 }), items.map(mixed));
    });

    it(`items that are Buffers reach fn as Buffers (${mode.name})`, async () => {
      const items = [Buffer.from('abc'), Buffer.alloc(0), Buffer.alloc(10_000, 1), Buffer.from('abcdef').subarray(2)];
      assert.deepEqual(await parmap((x: unknown) => Buffer.isBuffer(x), items, mode.options), [true, true, true, true]);
      assert.deepEqual(
        await parmap((x: { inner: unknown }) => Buffer.isBuffer(x.inner), [{ inner: Buffer.from('z') }], mode.options),
        [true],
      );
    });
  }
});

describe('a sparse array as input: fn runs on no hole, as in Array.prototype.map', () => {
  // fn had been called with undefined for each hole: x => x * 2 gave NaN where map leaves a hole.
  /** `values` with holes at `holes`. */
  const withHoles = <T>(values: T[], holes: readonly number[]): T[] => {
    for (const at of holes) delete values[at];
    return values;
  };
  const sparse = withHoles(
    Array.from({ length: 210 }, (_, i) => i),
    [1, 3, 4, 100, 207, 209],
  );
  const twice = (x: number) => x * 2;
  const modes = [
    { name: 'threads', options: { n: 2 } },
    { name: 'processes', options: { n: 2, workerType: 'process' } },
    { name: 'n: 1', options: { n: 1 } },
    { name: 'threads, async fn, items overlapping', options: { n: 2, concurrency: 4 } },
  ] as const;
  for (const { name, options } of modes) {
    it(`map leaves the holes, filter and flatMap skip them, chunk by chunk (${name})`, async () => {
      const fn: (x: number) => unknown = 'concurrency' in options ? async (x: number) => x * 2 : twice;
      for (const chunksize of ['auto', 1, 3] as const) {
        assert.deepStrictEqual(await parmap(fn, sparse, { ...options, chunksize }), sparse.map(twice));
        assert.deepStrictEqual(
          await parmap.filter((x: number) => x !== 3, sparse, { ...options, chunksize }),
          sparse.filter((x) => x !== 3),
        );
        assert.deepStrictEqual(
          await parmap.flatMap((x: number) => [x, x], sparse, { ...options, chunksize }),
          sparse.flatMap((x) => [x, x]),
        );
      }
    });
  }

  it('an array changed after the call is mapped as it was long: items pushed are left, places lost are holes', async () => {
    // Read lazily up to its current length, it gave more results than items at the call.
    const grown = [1, 2, 3];
    const fromGrown = parmap(twice, grown, { n: 2, chunksize: 1 });
    grown.push(4, 5);
    assert.deepStrictEqual(await fromGrown, [2, 4, 6]);
    const shrunk = [1, 2, 3, 4];
    const fromShrunk = parmap(twice, shrunk, { n: 2, chunksize: 1 });
    shrunk.length = 1;
    assert.deepStrictEqual(await fromShrunk, withHoles([2, 0, 0, 0], [1, 2, 3]));
  });

  for (const workerType of ['thread', 'process'] as const) {
    it(`trailing holes stay when a chunk is split by a lost worker, and a lost chunk's holes get no error (${workerType})`, async () => {
      // Filled place by place, a split chunk's results ended at its last value: the call's array
      // came back shorter. A process lost with its chunk put its error in the holes too.
      const exitsOnce = (x: number | string) => {
        if (x === 'T' && !require('node:fs').existsSync(marker)) {
          require('node:fs').writeFileSync(marker, '');
          process.exit(7);
        }
        return x;
      };
      const marker = join(mkdtempSync(join(tmpdir(), 'parmap-holes-')), 'died');
      const sparse = withHoles<number | string>([1, 2, 'T', 3, 4, 5, 6], [3, 5, 6]);
      const retried = await parmap(exitsOnce, sparse, {
        n: 2,
        chunksize: 7,
        workerType,
        retries: 1,
        scope: { marker },
      });
      assert.deepStrictEqual(
        retried,
        sparse.map((x) => x),
      );
      const dies = (x: number | string) => {
        if (x === 'T') process.exit(7);
        return x;
      };
      const returned = await parmap(dies, sparse, { n: 2, chunksize: 7, workerType, onError: 'return' });
      assert.equal(returned.length, 7);
      assert.deepEqual(
        Object.keys(returned).map(Number),
        [0, 1, 2, 4],
        'holes stay holes, whatever failed around them',
      );
    });
  }

  it('an item of a sparse input that fails, with onError: return, leaves the holes around it', async () => {
    const failAt3 = (x: number) => {
      if (x === 3) throw new Error('three');
      return x;
    };
    const results = await parmap(failAt3, withHoles([1, 2, 3, 4, 5], [1, 3]), {
      n: 2,
      chunksize: 5,
      onError: 'return',
    });
    assert.equal(results.length, 5);
    assert.deepEqual(Object.keys(results), ['0', '2', '4']);
    assert.equal((results[2] as Error).name, 'ParmapTaskError');
  });
});

describe('values that cannot go to a worker fail the call, naming their item, wherever they hide', () => {
  // Hidden in a property of an array, or a view of shared memory going to a process: they reached
  // the channel's own copy, which threw inside the pool library, out of the caller's reach (the
  // process died), or, past the first chunk, lost the chunk (the call never settled).
  const hiddenFunction = 'Object.assign([1, 2], { onDone: () => {} })';
  const cases = [
    { name: 'a function on an array', workerType: 'thread', item: hiddenFunction, says: /could not be cloned/ },
    { name: 'a function on an array', workerType: 'process', item: hiddenFunction, says: /could not be cloned/ },
    {
      // A numeric name past the indices (no index) is listed last, and passed for one.
      name: 'a function on an array with a numeric name',
      workerType: 'thread',
      item: "Object.assign([1, 2], { f: () => 1, '4294967296': 1 })",
      says: /could not be cloned/,
    },
    {
      name: 'a view of shared memory',
      workerType: 'process',
      item: 'new Int32Array(new SharedArrayBuffer(8))',
      says: /shared memory .* cannot go to a process worker/,
    },
  ] as const;
  for (const { name, workerType, item, says } of cases) {
    for (const at of [0, 30]) {
      it(`${name}, item ${at} of 40 (${workerType})`, async () => {
        const outcome = await runScenario(`
          const items = range(40).map((i) => (i === ${at} ? ${item} : i));
          const error = await parmap((x) => x, items, { n: 2, workerType: '${workerType}', chunksize: 4 }).catch((e) => e);
          console.log(JSON.stringify({ name: error?.name, index: error?.index, message: String(error?.message) }));
        `);
        assertClean(outcome);
        const report = lastJson(outcome) as { name: string; index: number; message: string };
        assert.equal(report.name, 'ParmapCloneError', report.message);
        assert.equal(report.index, at);
        assert.match(report.message, says);
      });
    }
  }

  it('a function on an array in args or kwargs is a TypeError naming the option, at the call', () => {
    const withMethod = Object.assign([1], { cb: () => 0 });
    for (const workerType of ['thread', 'process'] as const) {
      assert.throws(() => parmap((x: number) => x, [1], { n: 2, workerType, args: [withMethod] }), {
        name: 'TypeError',
        message: /^`args` cannot be sent to workers/,
      });
      assert.throws(() => parmap((x: number) => x, [1], { n: 2, workerType, kwargs: { withMethod } }), {
        name: 'TypeError',
        message: /^`kwargs` cannot be sent to workers/,
      });
    }
  });
});

describe('streamed numbers come back exactly, chunk after chunk', () => {
  // Chunks of numbers are kept packed in buffers used again from chunk to chunk: a buffer reused
  // too early would show as a wrong value here, long after the first chunks.
  const count = 60_000;
  const items = Array.from({ length: count }, (_, i) => (i % 997 === 0 ? -0 : i % 991 === 0 ? Number.NaN : i / 7));
  const twice = (x: number) => x * 2;

  it('for await over a map, the caller pausing between results', async () => {
    const seen: number[] = [];
    for await (const value of parmap(twice, items, { n: 2 })) {
      seen.push(value);
      if (seen.length % 5_000 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    assert.deepStrictEqual(seen, items.map(twice));
  });

  it('through a chain of maps and a filter, from a generator', async () => {
    function* numbers() {
      yield* items;
    }
    const kept = parmap.filter((x: number) => !Number.isNaN(x) && x > 10, parmap(twice, numbers(), { n: 2 }), { n: 2 });
    const seen: number[] = [];
    for await (const value of parmap(twice, kept, { n: 2 })) seen.push(value);
    assert.deepStrictEqual(
      seen,
      items
        .map(twice)
        .filter((x) => !Number.isNaN(x) && x > 10)
        .map(twice),
    );
  });

  it("with onError: 'return', failures in their places among numbers", async () => {
    const failing = (x: number) => {
      if (x > 1000 && x < 1001) throw new Error('no');
      return x * 2;
    };
    const seen: unknown[] = [];
    for await (const value of parmap(failing, items, { n: 2, onError: 'return' })) seen.push(value);
    assert.equal(seen.length, count);
    items.forEach((x, i) => {
      if (x > 1000 && x < 1001) assert.ok(seen[i] instanceof Error, `item ${i}`);
      else assert.ok(Object.is(seen[i], x * 2), `item ${i}: ${String(seen[i])}, not ${x * 2}`);
    });
  });
});

describe('binary items whose own getters throw or lie cross by their real bytes', () => {
  // A subclass may override byteLength, byteOffset or buffer; Array.map never reads them, and
  // neither may parmap's weighing or encoding of the item, from any kind of input.
  class ThrowingLength extends Uint8Array {
    override get byteLength(): number {
      throw new Error('byteLength is not to be read');
    }
  }
  class NotANumberLength extends Uint8Array {
    override get byteLength(): number {
      return Number.NaN;
    }
  }
  class LyingView extends Uint8Array {
    override get byteOffset(): number {
      return 1;
    }
    override get buffer(): ArrayBuffer {
      return new ArrayBuffer(1);
    }
  }
  const bytesOf = (x: unknown) => (typeof x === 'number' ? x : Array.from(x as Uint8Array).join(','));
  const items = () => [1, new ThrowingLength([5, 6]), new NotANumberLength([7, 8, 9]), new LyingView([10, 11]), 2];
  const inputs = {
    array: () => items(),
    generator: function* () {
      yield* items();
    },
    'async generator': async function* () {
      yield* items();
    },
  };
  for (const workerType of ['thread', 'process'] as const) {
    for (const [kind, input] of Object.entries(inputs)) {
      it(`${kind} input (${workerType})`, async () => {
        const results = await parmap(bytesOf, input() as Iterable<unknown> | AsyncIterable<unknown>, {
          n: 2,
          workerType,
        });
        assert.deepEqual(results, items().map(bytesOf));
      });
    }
  }
});

describe('a result whose then cannot be read is a result, not a failure of fn', () => {
  // Array.map hands such a value back as it is; only a value to await is awaited.
  const revokedAt1 = (x: number) => {
    if (x !== 1) return x;
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  };
  const throwingThenAt1 = (x: number) =>
    x === 1
      ? {
          // biome-ignore lint/suspicious/noThenProperty: a then that cannot be read is what is tested
          get then(): unknown {
            throw new Error('then is not to be read');
          },
        }
      : x;

  it('n: 1 gives it back as it is, as Array.map does', async () => {
    const revoked = await parmap(revokedAt1, [0, 1, 2], { n: 1 });
    assert.equal(revoked[0], 0);
    assert.equal(revoked[2], 2);
    assert.throws(() => (revoked[1] as { anything?: unknown }).anything, TypeError, 'the revoked Proxy itself');
    const throwing = await parmap(throwingThenAt1, [0, 1, 2], { n: 1 });
    assert.throws(() => (throwing[1] as { then: unknown }).then, /then is not to be read/);
  });

  for (const workerType of ['thread', 'process'] as const) {
    it(`workers fail with a ParmapCloneError naming its item, as for any result that cannot be sent (${workerType})`, async () => {
      for (const fn of [revokedAt1, throwingThenAt1]) {
        await assert.rejects(parmap(fn, [0, 1, 2], { n: 2, workerType }), (error: unknown) => {
          assert.ok(error instanceof ParmapCloneError, String(error));
          assert.equal(error.index, 1);
          return true;
        });
      }
    });
  }
});

/** A scenario printing how `parmap(fn, range(5), options)` failed, as JSON. */
const failureOf = (fn: string, options: string, report: string) =>
  `try { await parmap(${fn}, range(5), ${options}); console.log('"resolved"') }
   catch (e) { console.log(JSON.stringify(${report})) }`;

describe('errors keep what they carry across workers', { concurrency: 2 }, () => {
  for (const mode of WORKER_MODES) {
    it(`an AggregateError keeps its errors (${mode.name})`, async () => {
      const outcome = await runScenario(
        failureOf(
          `(x) => { if (x === 2) throw new AggregateError([new Error('a')], 'agg'); return x }`,
          mode.options,
          `{ task: e instanceof ParmapTaskError, index: e.index, aggregate: e.cause instanceof AggregateError, message: e.cause?.message,
             errors: Array.isArray(e.cause?.errors) ? e.cause.errors.map((inner) => [inner instanceof Error, inner.message]) : String(e.cause?.errors) }`,
        ),
      );
      assertClean(outcome);
      assert.deepEqual(lastJson(outcome), {
        task: true,
        index: 2,
        aggregate: true,
        message: 'agg',
        errors: [[true, 'a']],
      });
    });

    it(`a DOMException keeps its class, name and code (${mode.name})`, async () => {
      const outcome = await runScenario(
        failureOf(
          `(x) => { if (x === 2) throw new DOMException('x', 'AbortError'); return x }`,
          mode.options,
          `{ task: e instanceof ParmapTaskError, index: e.index, dom: e.cause instanceof DOMException, name: e.cause?.name, code: e.cause?.code, message: e.cause?.message }`,
        ),
      );
      assertClean(outcome);
      assert.deepEqual(lastJson(outcome), {
        task: true,
        index: 2,
        dom: true,
        name: 'AbortError',
        code: 20,
        message: 'x',
      });
    });

    for (const property of ['detail', 'message', 'name', 'stack']) {
      it(`an error whose ${property} getter throws is still that item's ParmapTaskError (${mode.name})`, async () => {
        const fn = `(x) => {
          if (x !== 2) return x;
          const error = new Error('getter');
          Object.defineProperty(error, '${property}', { enumerable: true, get() { throw new Error('getter threw') } });
          throw error;
        }`;
        const outcome = await runScenario(
          `${failureOf(fn, mode.options, '{ task: e instanceof ParmapTaskError, index: e.index }')}
           const returned = await parmap(${fn}, range(5), { ...${mode.options}, onError: 'return' });
           console.log(JSON.stringify(returned.map((r) => (r instanceof Error ? [r.constructor.name, r.index] : r))));`,
        );
        assertClean(outcome);
        const [thrown, returned] = outcome.stdout.split('\n').map((line) => JSON.parse(line));
        assert.deepEqual(thrown, { task: true, index: 2 });
        assert.deepEqual(returned, [0, 1, ['ParmapTaskError', 2], 3, 4]);
      });
    }

    for (const name of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      it(`an error named '${name}' rejects the call normally (${mode.name})`, async () => {
        const outcome = await runScenario(
          failureOf(
            `(x) => { if (x === 2) { const error = new Error('odd name'); error.name = '${name}'; throw error } return x }`,
            mode.options,
            `{ task: e instanceof ParmapTaskError, index: e.index, message: e.cause?.message }`,
          ),
        );
        assertClean(outcome);
        assert.deepEqual(lastJson(outcome), { task: true, index: 2, message: 'odd name' });
      });
    }
  }
});

describe('results before a failure come before the failure', { concurrency: 2 }, () => {
  for (const mode of WORKER_MODES) {
    for (const chunksize of ['1', "'auto'"]) {
      it(`ordered: every result before the failing item is yielded, then its error, though earlier items finish last (${mode.name}, chunksize ${chunksize})`, async () => {
        // Items before 20 busy-loop longer the earlier they are, so later ones finish first.
        const outcome = await runScenario(
          `const seen = [];
           const fn = (x) => { if (x === 20) throw new Error('item 20'); if (x < 20) { const end = Date.now() + (20 - x) * 3; while (Date.now() < end); } return x };
           try { for await (const r of parmap(fn, range(40), { ...${mode.options}, n: 3, chunksize: ${chunksize} })) seen.push(r); console.log('"finished"') }
           catch (e) { console.log(JSON.stringify({ seen, name: e.name, index: e.index })) }`,
        );
        assertClean(outcome);
        assert.deepEqual(lastJson(outcome), {
          seen: Array.from({ length: 20 }, (_, i) => i),
          name: 'ParmapTaskError',
          index: 20,
        });
      });
    }

    it(`ordered: false yields the results that finished before the failure (${mode.name})`, async () => {
      // Items 0..10 form one chunk on one worker: 0..9 finish before 10 fails.
      const outcome = await runScenario(
        `const seen = [];
         const fn = (x) => { if (x === 10) throw new Error('item 10'); return x };
         try { for await (const r of parmap(fn, range(40), { ...${mode.options}, ordered: false, chunksize: 11 })) seen.push(r); console.log('"finished"') }
         catch (e) { console.log(JSON.stringify({ seen, name: e.name, index: e.index })) }`,
      );
      assertClean(outcome);
      const { seen, name, index } = lastJson(outcome) as { seen: number[]; name: string; index: number };
      assert.deepEqual([name, index], ['ParmapTaskError', 10]);
      for (let i = 0; i < 10; i++) assert.ok(seen.includes(i), `result ${i} was not yielded: ${JSON.stringify(seen)}`);
      assert.ok(!seen.includes(10));
      assert.equal(new Set(seen).size, seen.length);
    });
  }
});
