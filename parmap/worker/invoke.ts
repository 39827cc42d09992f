/**
 * Turns one item into a call of `fn`, following the star / kwstar / args / kwargs rules, with the
 * per-worker context value when there is one. Shared by the workers and by the in-thread run of
 * `n: 1`, so both call `fn` the same way: `fn(...itemArgs, ...args, context?, options?)`.
 */
import type { CallShape } from '../protocol.js';

type AnyFunction = (...args: unknown[]) => unknown;

/** No context: nothing is passed in its place. */
export const NO_CONTEXT: unique symbol = Symbol('parmap.noContext');

/**
 * Builds the per-item caller once, so the hot loop pays for no option checks.
 * The options argument is appended only when `kwargs` is given or `kwstar` is on.
 */
export function createInvoker(
  fn: AnyFunction,
  shape: CallShape,
  context: unknown = NO_CONTEXT,
): (item: unknown) => unknown {
  const { star, kwstar, kwargs } = shape;
  const args = context === NO_CONTEXT ? shape.args : [...shape.args, context];
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

/**
 * For `parmap.filter`: the caller whose results say only whether each is truthy (an async fn's
 * once awaited, as parmap awaits it), as `Array.prototype.filter` reads them.
 */
export function keepingTruth(invoke: (item: unknown) => unknown): (item: unknown) => unknown {
  return (item) => {
    const value = invoke(item);
    return isThenable(value) ? Promise.resolve(value).then(Boolean) : Boolean(value);
  };
}

/**
 * Whether fn returned something to await (a promise or any thenable). A value whose `then` cannot
 * be read (a revoked Proxy, a throwing getter) is no thenable: it is fn's result as it is, as
 * `Array.map` would give it, and fails only if it must cross to another thread.
 */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  try {
    return typeof (value as { then?: unknown }).then === 'function';
  } catch {
    return false;
  }
}
