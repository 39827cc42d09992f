/**
 * `parmap(fn, items, options)`: checks the call, prepares what workers need, and returns a lazy
 * result. Deliberately not an `async` function: awaiting it would unwrap the array and lose the
 * iterator.
 */
import type { ParmapError } from './errors.js';
import { type ParmapOptions, resolveOptions } from './options.js';
import { ParallelRun } from './parallel.js';
import { LazyResult, type ParmapResult } from './result.js';
import { SerialRun } from './serial.js';
import { buildFunctionCode, callerFile, checkFreeNames, holdsCode } from './serialize.js';
import type { WorkerSetup } from './worker.js';

/** Options in which `star` or `kwstar` is on: each item then holds several arguments. */
export type SpreadOptions = ParmapOptions & ({ readonly star: true } | { readonly kwstar: true });

/** Options with `onError: 'return'`: failing items yield their error in place of a result. */
type ReturnErrors = { readonly onError: 'return' };
type PlainOptions = ParmapOptions & { readonly star?: false; readonly kwstar?: false };

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
  options: PlainOptions & ReturnErrors,
): ParmapResult<Awaited<R> | ParmapError>;
export function parmap<T, R>(
  fn: (item: T, ...rest: never[]) => R,
  items: Iterable<T> | AsyncIterable<T>,
  options?: PlainOptions,
): ParmapResult<Awaited<R>>;
export function parmap<R>(
  fn: (...args: never[]) => R,
  items: Iterable<unknown> | AsyncIterable<unknown>,
  options: SpreadOptions & ReturnErrors,
): ParmapResult<Awaited<R> | ParmapError>;
export function parmap<R>(
  fn: (...args: never[]) => R,
  items: Iterable<unknown> | AsyncIterable<unknown>,
  options: SpreadOptions,
): ParmapResult<Awaited<R>>;
// Options whose star / kwstar are only known at run time.
export function parmap<R>(
  fn: (...args: never[]) => R,
  items: Iterable<unknown> | AsyncIterable<unknown>,
  options: ParmapOptions & ReturnErrors,
): ParmapResult<Awaited<R> | ParmapError>;
export function parmap<R>(
  fn: (...args: never[]) => R,
  items: Iterable<unknown> | AsyncIterable<unknown>,
  options: ParmapOptions,
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
  for (const [name, value] of [
    ['args', resolved.shape.args],
    ['kwargs', resolved.shape.kwargs],
  ] as const) {
    if (holdsCode(value)) {
      throw new TypeError(
        `\`${name}\` holds a function or a symbol, which cannot be sent to workers: pass functions in \`scope\`, or use n: 1`,
      );
    }
  }
  const setup: WorkerSetup = {
    body: code.body,
    freeNames: code.freeNames,
    scopeData: code.scopeData,
    callerFile: callerFile(parmap),
    shape: resolved.shape,
    onError: resolved.onError,
    reportStarts: resolved.workerType === 'process' && resolved.timeout !== undefined,
  };
  return new LazyResult(() => new ParallelRun(items, resolved, setup), resolved.total);
}
