/**
 * `parmap(fn, items, options)`: checks the call, prepares what workers need, and returns a lazy
 * result. Deliberately not an `async` function: awaiting it would unwrap the array and lose the
 * iterator.
 */
import { type ParmapOptions, resolveOptions } from './options.js';
import { LazyResult, type ParmapResult } from './result.js';
import { ParallelRun, SerialRun } from './run.js';
import { buildFunctionCode, callerFile, checkFreeNames } from './serialize.js';
import type { WorkerSetup } from './worker.js';

/** Options in which `star` or `kwstar` is on: each item then holds several arguments. */
export type SpreadOptions = ParmapOptions & ({ readonly star: true } | { readonly kwstar: true });

/**
 * Runs `fn` on every item on a pool of workers, like `items.map(fn)` on every core.
 *
 * `await parmap(fn, items)` gives the array of results in input order; `for await (const r of
 * parmap(fn, items))` streams them. `fn` travels to the workers by its source text: values it uses
 * from its surroundings must be passed with `scope`.
 *
 * @throws TypeError or RangeError at once, before any worker starts, for a bad call.
 */
export function parmap<T, R>(
  fn: (item: T, ...rest: never[]) => R,
  items: Iterable<T> | AsyncIterable<T>,
  options?: ParmapOptions & { readonly star?: false; readonly kwstar?: false },
): ParmapResult<Awaited<R>>;
export function parmap<R>(
  fn: (...args: never[]) => R,
  items: Iterable<unknown> | AsyncIterable<unknown>,
  options: SpreadOptions,
): ParmapResult<Awaited<R>>;
export function parmap(
  fn: (...args: never[]) => unknown,
  items: Iterable<unknown> | AsyncIterable<unknown>,
  options?: ParmapOptions,
): ParmapResult<unknown> {
  const resolved = resolveOptions(fn, items, options);
  if (resolved.inThisThread) {
    return new LazyResult(() => new SerialRun(items, resolved, fn as (...args: unknown[]) => unknown), resolved.total);
  }
  const code = buildFunctionCode(fn, resolved.scope);
  checkFreeNames(code.freeNames, (name) => name in globalThis);
  const setup: WorkerSetup = {
    body: code.body,
    freeNames: code.freeNames,
    callerFile: callerFile(parmap),
    shape: resolved.shape,
  };
  return new LazyResult(() => new ParallelRun(items, resolved, setup), resolved.total);
}
