/**
 * The input, taken at once. Inputs that produce on their own (a readline interface, `events.on`,
 * a stream) start buffering only when their iterator is asked for; lines emitted before that are
 * gone. So `parmap()` takes the iterator synchronously, in the call itself, before any await.
 */
import { describeValue } from '../errors.js';

export type TakenInput =
  /** `length` as at the call, as `Array.prototype.map` takes it. */
  | { readonly kind: 'array'; readonly array: readonly unknown[]; readonly length: number }
  | { readonly kind: 'sync'; readonly iterator: Iterator<unknown> }
  | { readonly kind: 'async'; readonly iterator: AsyncIterator<unknown> };

export function takeInput(items: Iterable<unknown> | AsyncIterable<unknown>): TakenInput {
  // A real array is read by index: its iterator could be patched, its indices cannot lie.
  if (Array.isArray(items)) return { kind: 'array', array: items, length: items.length };
  if (typeof (items as Iterable<unknown>)[Symbol.iterator] === 'function') {
    return {
      kind: 'sync',
      iterator: checkedIterator((items as Iterable<unknown>)[Symbol.iterator](), 'Symbol.iterator'),
    };
  }
  const iterator = (items as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  return { kind: 'async', iterator: checkedIterator(iterator, 'Symbol.asyncIterator') };
}

function checkedIterator<I>(iterator: I, method: string): I {
  if (
    typeof iterator !== 'object' ||
    iterator === null ||
    typeof (iterator as { next?: unknown }).next !== 'function'
  ) {
    throw new TypeError(
      `The input's [${method}]() must return an iterator (an object with a next() method), got ${describeValue(iterator)}`,
    );
  }
  return iterator;
}

/** Checks one step of an iterator: it must be an object. Throws a TypeError naming the item. */
export function checkStep(step: unknown, index: number): IteratorResult<unknown> {
  if (typeof step !== 'object' || step === null) {
    throw new TypeError(
      `The input's iterator returned ${describeValue(step)} from next() for item ${index}; an iterator result must be an object such as { value, done }`,
    );
  }
  return step as IteratorResult<unknown>;
}
