/**
 * How one chunk's items run inside a worker (and in the calling thread with `n: 1`): in order one
 * at a time for a sync fn; up to `concurrency` at once for an async one, results still in place.
 * Pure: promises settled by hand, no workers, no timers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CANCELLED, MARK_CLAIM, MARK_OLDEST, MARK_STARTED, newChunkMarks } from '../dist/parmap/protocol.js';
import { type ItemsRun, runItems } from '../dist/parmap/worker/chunk.js';

/** An async fn whose calls wait until the test settles them, in any order it likes. */
function heldCalls() {
  const calls: { item: number; resolve(value: unknown): void; reject(error: unknown): void }[] = [];
  let inFlight = 0;
  let peak = 0;
  const invoke = (item: unknown) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    return new Promise((resolve, reject) => {
      const done = () => {
        inFlight--;
      };
      calls.push({
        item: item as number,
        resolve: (value) => {
          done();
          resolve(value);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      });
    });
  };
  /** Lets pending callbacks (and the items they start) run. */
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  return { calls, invoke, settle, peak: () => peak };
}

const items = (count: number) => Array.from({ length: count }, (_, i) => i);

/** Runs a chunk with marks of its own, unless the test gives some to look at. */
function run(chunk: readonly unknown[], options: Omit<ItemsRun, 'marks'> & { marks?: Int32Array }) {
  return runItems(chunk, { marks: newChunkMarks(false), ...options });
}

describe('runItems', () => {
  it('runs a sync fn one item at a time, in order, whatever the concurrency', async () => {
    const order: number[] = [];
    const marks = newChunkMarks(false);
    const outcome = await run(items(5), {
      invoke: (x) => (x as number) * 2,
      onError: 'throw',
      marks,
      // As a process's parent sees them: told of each change, never of overlapping items.
      onMarks: () => {
        assert.equal(marks[MARK_OLDEST], 0, 'a sync fn never overlaps');
        order.push((marks[MARK_STARTED] as number) - 1);
      },
      concurrency: 16,
    });
    assert.equal(outcome.kind, 'done');
    assert.deepEqual(outcome.kind === 'done' && outcome.values, [0, 2, 4, 6, 8]);
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
  });

  it('keeps up to `concurrency` async items in flight, and their results in input order', async () => {
    const held = heldCalls();
    const running = run(items(10), { invoke: held.invoke, onError: 'throw', concurrency: 4 });
    await held.settle();
    assert.equal(held.calls.length, 4, 'four start at once');
    // Finish them newest first: results still land in their places, and new items start.
    for (const call of [...held.calls].reverse()) call.resolve(`r${call.item}`);
    await held.settle();
    assert.equal(held.calls.length, 8);
    for (const call of held.calls.slice(4).reverse()) call.resolve(`r${call.item}`);
    await held.settle();
    for (const call of held.calls.slice(8)) call.resolve(`r${call.item}`);
    const outcome = await running;
    assert.equal(held.peak(), 4);
    assert.deepEqual(
      outcome.kind === 'done' && outcome.values,
      items(10).map((i) => `r${i}`),
    );
  });

  it('runs async items one after another with concurrency 1', async () => {
    const held = heldCalls();
    const running = run(items(3), { invoke: held.invoke, onError: 'throw', concurrency: 1 });
    for (let i = 0; i < 3; i++) {
      await held.settle();
      assert.equal(held.calls.length, i + 1);
      held.calls[i]?.resolve(i);
    }
    assert.deepEqual((await running).kind, 'done');
    assert.equal(held.peak(), 1);
  });

  it('reports the oldest item still running as it changes', async () => {
    const held = heldCalls();
    const oldest: number[] = [];
    const marks = newChunkMarks(false);
    const running = run(items(4), {
      invoke: held.invoke,
      onError: 'throw',
      concurrency: 4,
      marks,
      onMarks: () => {
        const at = (marks[MARK_OLDEST] as number) - 1;
        if (at >= 0 && oldest.at(-1) !== at) oldest.push(at);
      },
    });
    await held.settle();
    held.calls[2]?.resolve(2); // not the oldest: nothing to tell
    held.calls[1]?.resolve(1);
    await held.settle();
    assert.deepEqual(oldest, [0]);
    held.calls[0]?.resolve(0); // 0, 1 and 2 are done: 3 is the oldest now
    await held.settle();
    assert.deepEqual(oldest, [0, 3]);
    held.calls[3]?.resolve(3);
    await running;
    assert.deepEqual(oldest, [0, 3, 4]);
  });

  it("with onError 'throw', starts nothing more, waits for what runs, and names the first failing item", async () => {
    const held = heldCalls();
    const running = run(items(10), { invoke: held.invoke, onError: 'throw', concurrency: 4 });
    await held.settle();
    held.calls[3]?.reject(new Error('three'));
    held.calls[0]?.resolve('zero');
    await held.settle();
    assert.equal(held.calls.length, 4, 'no item starts after a failure');
    held.calls[1]?.reject(new Error('one')); // earlier in the input: this is the one reported
    held.calls[2]?.resolve('two');
    const outcome = await running;
    assert.equal(outcome.kind, 'threw');
    if (outcome.kind !== 'threw') return;
    assert.equal(outcome.at, 1);
    assert.equal((outcome.thrown as Error).message, 'one');
    assert.deepEqual(outcome.before, ['zero']);
  });

  it("with onError 'return', records every failure in input order and runs every item", async () => {
    const options = {
      invoke: async (x: unknown) => {
        await null;
        if ((x as number) % 3 === 0) throw new Error(`bad ${x}`);
        return x;
      },
      onError: 'return' as const,
      concurrency: 4,
    };
    const outcome = await run(items(7), options);
    assert.equal(outcome.kind, 'done');
    if (outcome.kind !== 'done') return;
    assert.deepEqual(
      outcome.failures?.map((failure) => failure.at),
      [0, 3, 6],
    );
    assert.deepEqual([...outcome.values], [undefined, 1, 2, undefined, 4, 5, undefined]);
  });

  it('counts a sync throw or a plain value among overlapping items like any other result', async () => {
    const outcome = await run(items(4), {
      invoke: (x) => {
        if (x === 0) return Promise.resolve('async');
        if (x === 2) throw new Error('sync throw');
        return 'sync';
      },
      onError: 'return',
      concurrency: 8,
    });
    assert.equal(outcome.kind, 'done');
    if (outcome.kind !== 'done') return;
    assert.deepEqual([...outcome.values], ['async', 'sync', undefined, 'sync']);
    assert.deepEqual(
      outcome.failures?.map((failure) => failure.at),
      [2],
    );
  });

  it('stops starting items once cancelled, and waits for those in flight', async () => {
    const held = heldCalls();
    const marks = newChunkMarks(false);
    const running = run(items(10), { invoke: held.invoke, onError: 'throw', concurrency: 3, marks });
    await held.settle();
    marks[MARK_CLAIM] = CANCELLED;
    for (const call of held.calls) call.resolve(call.item);
    const outcome = await running;
    assert.equal(held.calls.length, 3);
    assert.equal(outcome.kind, 'done');
  });

  it('stops a sync fn between items once cancelled', async () => {
    const marks = newChunkMarks(false);
    const seen: number[] = [];
    await run(items(10), {
      invoke: (x) => {
        seen.push(x as number);
        if (x === 3) marks[MARK_CLAIM] = CANCELLED;
        return x;
      },
      onError: 'throw',
      marks,
    });
    assert.deepEqual(seen, [0, 1, 2, 3]);
  });

  it('keeps in its marks how many items started, which the main side reads when a worker dies', async () => {
    const marks = newChunkMarks(true);
    const startedWhenCalled: number[] = [];
    const outcome = await run(items(4), {
      invoke: (x) => {
        startedWhenCalled.push(marks[MARK_STARTED] as number);
        if (x === 2) throw new Error('two');
        return x;
      },
      onError: 'throw',
      marks,
    });
    assert.deepEqual(startedWhenCalled, [1, 2, 3], 'each item counts itself as started before fn runs');
    assert.equal(outcome.kind, 'threw');
    assert.equal(marks[MARK_OLDEST], 0, 'items one at a time leave the oldest mark alone');
  });

  it('marks the oldest item still running once items overlap', async () => {
    const held = heldCalls();
    const marks = newChunkMarks(false);
    const running = run(items(3), { invoke: held.invoke, onError: 'throw', concurrency: 3, marks });
    await held.settle();
    assert.equal(marks[MARK_OLDEST], 1, 'item 0, plus 1');
    held.calls[0]?.resolve(0);
    await held.settle();
    assert.equal(marks[MARK_OLDEST], 2);
    for (const call of held.calls.slice(1)) call.resolve(call.item);
    await running;
  });

  it("with onError 'return', a sync fn's failures are recorded and the chunk goes on", async () => {
    const outcome = await run(items(5), {
      invoke: (x) => {
        if ((x as number) % 2 === 1) throw new Error(`odd ${x}`);
        return x;
      },
      onError: 'return',
    });
    assert.equal(outcome.kind, 'done');
    if (outcome.kind !== 'done') return;
    assert.deepEqual([...outcome.values], [0, undefined, 2, undefined, 4]);
    assert.deepEqual(
      outcome.failures?.map((failure) => failure.at),
      [1, 3],
    );
  });

  it('awaits a promise one item at a time without concurrency, then goes on with plain values', async () => {
    const outcome = await run(items(4), {
      invoke: (x) => (x === 1 ? Promise.resolve('later') : x === 2 ? Promise.reject(new Error('no')) : x),
      onError: 'return',
    });
    assert.equal(outcome.kind, 'done');
    if (outcome.kind !== 'done') return;
    assert.deepEqual([...outcome.values], [0, 'later', undefined, 3]);
    assert.deepEqual(
      outcome.failures?.map((failure) => failure.at),
      [2],
    );
  });

  it('takes a result whose `then` cannot be read as the result, not a promise, one at a time or overlapping', async () => {
    // Array.map hands such a value back as it is; whether it can cross to the caller is decided
    // when the results are sent (a ParmapCloneError naming the item, tested in parity.test.ts).
    const hostile = {
      // biome-ignore lint/suspicious/noThenProperty: a result that looks like a promise is the point.
      get then() {
        throw new TypeError('no then here');
      },
    };
    for (const concurrency of [1, 4]) {
      for (const onError of ['return', 'throw'] as const) {
        const outcome = await run(items(6), {
          invoke: (x) => (x === 3 ? hostile : concurrency > 1 ? Promise.resolve(x) : x),
          onError,
          concurrency,
        });
        assert.equal(outcome.kind, 'done', `concurrency ${concurrency}, onError ${onError}`);
        if (outcome.kind !== 'done') return;
        assert.equal(outcome.failures, undefined);
        assert.deepEqual([...outcome.values], [0, 1, 2, hostile, 4, 5]);
        assert.equal(outcome.values[3], hostile);
      }
    }
  });
});
