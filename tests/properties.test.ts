/**
 * Property: whatever the input size, chunk size, worker count, order, argument shape, input kind
 * and set of failing items, every item gives exactly one result, in input order when ordered.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ParmapTaskError, parmap } from '../dist/index.js';

type Shape = 'plain' | 'star' | 'kwstar' | 'star+kwstar';

/** Item `id` in the given shape; fn recovers the id and computes 3 * id + offset. */
function makeItem(id: number, shape: Shape): unknown {
  switch (shape) {
    case 'plain':
      return id;
    case 'star':
      return [id, 1];
    case 'kwstar':
      return [id, { offset: 1 }];
    case 'star+kwstar':
      return [[id, 1], { offset: 0 }];
  }
}

function source(items: unknown[], kind: 'array' | 'generator' | 'async'): Iterable<unknown> | AsyncIterable<unknown> {
  if (kind === 'array') return items;
  if (kind === 'generator')
    return (function* () {
      yield* items;
    })();
  return (async function* () {
    for (const [i, item] of items.entries()) {
      if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
      yield item;
    }
  })();
}

// One fn for every shape: the failing ids arrive as a fixed argument, before any options object.
function compute(...args: unknown[]): number {
  const options = args.at(-1) as { offset?: number } | number[];
  const hasOptions = !Array.isArray(options);
  const failing = (hasOptions ? args.at(-2) : args.at(-1)) as number[];
  const id = args[0] as number;
  const extra = typeof args[1] === 'number' ? args[1] : 0;
  const offset = hasOptions ? (options.offset ?? 0) : 0;
  if (failing.includes(id)) throw new Error(`planned failure ${id}`);
  return 3 * id + extra + offset;
}

describe('every item gives exactly one result', () => {
  it('holds across sizes, chunk sizes, workers, orderings, shapes, inputs and failures', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2500 }),
        fc.oneof(fc.constant('auto' as const), fc.integer({ min: 1, max: 300 })),
        fc.integer({ min: 1, max: 3 }),
        fc.boolean(),
        fc.constantFrom<Shape>('plain', 'star', 'kwstar', 'star+kwstar'),
        fc.constantFrom('array' as const, 'generator' as const, 'async' as const),
        fc.array(fc.nat({ max: 2500 }), { maxLength: 8 }),
        async (size, chunksize, n, ordered, shape, kind, failingIds) => {
          const failing = [...new Set(failingIds.filter((id) => id < size))];
          const items = Array.from({ length: size }, (_, id) => makeItem(id, shape));
          const results = await parmap(compute, source(items, kind), {
            n,
            chunksize,
            ordered,
            star: shape === 'star' || shape === 'star+kwstar',
            kwstar: shape === 'kwstar' || shape === 'star+kwstar',
            args: [failing],
            onError: 'return',
          });
          assert.equal(results.length, size);
          const expected = (id: number) =>
            failing.includes(id) ? `error ${id}` : 3 * id + (shape === 'plain' ? 0 : 1);
          const seen = results.map((result) =>
            result instanceof ParmapTaskError ? `error ${result.index}` : (result as number),
          );
          if (ordered)
            assert.deepEqual(
              seen,
              Array.from({ length: size }, (_, id) => expected(id)),
            );
          else {
            const key = (value: unknown) => String(value);
            assert.deepEqual(seen.map(key).sort(), Array.from({ length: size }, (_, id) => key(expected(id))).sort());
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});
