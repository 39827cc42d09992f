/**
 * How one chunk's items run inside a worker (and in the calling thread with `n: 1`): in order one
 * at a time for a sync fn; up to `concurrency` at once for an async one, results still in place.
 * Pure: promises settled by hand, no workers, no timers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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

describe('runItems', () => {
  it('runs a sync fn one item at a time, in order, whatever the concurrency', async () => {
    const order: number[] = [];
    const outcome = await runItems(items(5), {
      invoke: (x) => (x as number) * 2,
      onError: 'throw',
      onStart: (at) => order.push(at),
      onOldest: () => assert.fail('a sync fn never overlaps'),
      concurrency: 16,
    });
    assert.equal(outcome.kind, 'done');
    assert.deepEqual(outcome.kind === 'done' && outcome.values, [0, 2, 4, 6, 8]);
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
  });

  it('keeps up to `concurrency` async items in flight, and their results in input order', async () => {
    const held = heldCalls();
    const running = runItems(items(10), { invoke: held.invoke, onError: 'throw', concurrency: 4 });
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
    const running = runItems(items(3), { invoke: held.invoke, onError: 'throw', concurrency: 1 });
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
    const running = runItems(items(4), {
      invoke: held.invoke,
      onError: 'throw',
      concurrency: 4,
      onOldest: (at) => oldest.push(at),
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
    const running = runItems(items(10), { invoke: held.invoke, onError: 'throw', concurrency: 4 });
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
    const run: ItemsRun = {
      invoke: async (x) => {
        await null;
        if ((x as number) % 3 === 0) throw new Error(`bad ${x}`);
        return x;
      },
      onError: 'return',
      concurrency: 4,
    };
    const outcome = await runItems(items(7), run);
    assert.equal(outcome.kind, 'done');
    if (outcome.kind !== 'done') return;
    assert.deepEqual(
      outcome.failures?.map((failure) => failure.at),
      [0, 3, 6],
    );
    assert.deepEqual([...outcome.values], [undefined, 1, 2, undefined, 4, 5, undefined]);
  });

  it('counts a sync throw or a plain value among overlapping items like any other result', async () => {
    const outcome = await runItems(items(4), {
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
    let cancelled = false;
    const running = runItems(items(10), {
      invoke: held.invoke,
      onError: 'throw',
      concurrency: 3,
      cancelled: () => cancelled,
    });
    await held.settle();
    cancelled = true;
    for (const call of held.calls) call.resolve(call.item);
    const outcome = await running;
    assert.equal(held.calls.length, 3);
    assert.equal(outcome.kind, 'done');
  });
});
