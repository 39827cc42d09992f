import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Delivery } from '../dist/parmap/scheduler/delivery.js';
import { ReorderBuffer } from '../dist/parmap/scheduler/reorder.js';

describe('reorder buffer', () => {
  it('hands values out in sequence order whatever order they arrive in', () => {
    const buffer = new ReorderBuffer<string[]>();
    const out: string[][] = [];
    const drain = () => {
      for (let value = buffer.takeNext(); value !== undefined; value = buffer.takeNext()) out.push(value);
    };
    for (const sequence of [2, 0, 3, 1, 5, 4]) {
      buffer.put(sequence, [`chunk${sequence}`]);
      drain();
    }
    assert.deepEqual(out.flat(), ['chunk0', 'chunk1', 'chunk2', 'chunk3', 'chunk4', 'chunk5']);
    assert.equal(buffer.size, 0);
  });

  it('holds later chunks until the next one in order arrives', () => {
    const buffer = new ReorderBuffer<number[]>();
    buffer.put(1, [1]);
    buffer.put(2, [2]);
    assert.equal(buffer.takeNext(), undefined);
    assert.equal(buffer.size, 2);
    buffer.put(0, [0]);
    assert.deepEqual(buffer.takeNext(), [0]);
    assert.deepEqual(buffer.takeNext(), [1]);
    assert.deepEqual(buffer.takeNext(), [2]);
    assert.equal(buffer.takeNext(), undefined);
  });

  it('refuses a chunk stored twice, so nothing is doubled silently', () => {
    const buffer = new ReorderBuffer<number[]>();
    buffer.put(0, [0]);
    assert.throws(() => buffer.put(0, [0]), /chunk 0 was stored twice/);
    buffer.takeNext();
    assert.throws(() => buffer.put(0, [0]), /chunk 0 was stored twice/);
  });

  it('keeps every value of a random arrival order exactly once', () => {
    for (let round = 0; round < 50; round++) {
      const count = 1 + Math.floor(Math.random() * 40);
      const order = Array.from({ length: count }, (_, i) => i).sort(() => Math.random() - 0.5);
      const buffer = new ReorderBuffer<number[]>();
      const out: number[] = [];
      for (const sequence of order) {
        buffer.put(sequence, [sequence]);
        for (let value = buffer.takeNext(); value !== undefined; value = buffer.takeNext()) out.push(...value);
      }
      assert.deepEqual(
        out,
        Array.from({ length: count }, (_, i) => i),
      );
    }
  });
});

describe('delivery of an awaited call that fails', () => {
  const failure = (label: string, sequence: number | undefined) => ({ error: new Error(label), sequence });
  const errorOf = (delivery: Delivery<unknown>) => {
    const next = delivery.next();
    return next?.kind === 'error' ? (next.error as Error).message : next?.kind;
  };

  it("gives the earliest item's failure known, not the last to arrive; one that ends the call at once wins", () => {
    // Each later failure had replaced the one before: two items failing gave either.
    const awaited = new Delivery<unknown>(true, false);
    assert.equal(awaited.fail(failure('chunk 3', 3)), true);
    assert.equal(awaited.fail(failure('chunk 1', 1)), true);
    assert.equal(awaited.fail(failure('chunk 2', 2)), false);
    assert.equal(errorOf(awaited), 'chunk 1');
    const aborted = new Delivery<unknown>(true, false);
    aborted.fail(failure('chunk 1', 1));
    assert.equal(aborted.fail(failure('aborted', undefined)), true);
    assert.equal(aborted.fail(failure('chunk 0', 0)), false);
    assert.equal(errorOf(aborted), 'aborted');
  });
});
