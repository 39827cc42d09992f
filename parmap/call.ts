/**
 * Turns one item into a call of `fn`, following the star / kwstar / args / kwargs rules. Shared by
 * the workers and by the in-thread path of `n: 1`, so both call `fn` the same way.
 */
import type { CallShape } from './options.js';

type AnyFunction = (...args: unknown[]) => unknown;

/**
 * Builds the per-item caller once, so the hot loop pays for no option checks.
 * The options argument is appended only when `kwargs` is given or `kwstar` is on.
 */
export function createInvoker(fn: AnyFunction, shape: CallShape): (item: unknown) => unknown {
  const { star, kwstar, args, kwargs } = shape;
  if (kwstar) {
    const base = kwargs ?? {};
    return (item) => {
      const [positional, perItem] = item as [unknown, Record<string, unknown>];
      // Spread defines own properties, so an item key `__proto__` cannot reach any prototype.
      const merged = { ...base, ...perItem };
      return star ? fn(...(positional as unknown[]), ...args, merged) : fn(positional, ...args, merged);
    };
  }
  if (kwargs !== undefined) {
    // A fresh copy per call, so fn changing its options object cannot leak into the next item.
    return star
      ? (item) => fn(...(item as unknown[]), ...args, { ...kwargs })
      : (item) => fn(item, ...args, { ...kwargs });
  }
  if (star) {
    return args.length === 0 ? (item) => fn(...(item as unknown[])) : (item) => fn(...(item as unknown[]), ...args);
  }
  return args.length === 0 ? (item) => fn(item) : (item) => fn(item, ...args);
}

/** Whether fn returned something to await (a promise or any thenable). */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
