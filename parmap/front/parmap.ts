/**
 * `parmap(fn, items, options)`: checks the call, prepares what workers need, and returns a lazy
 * result. Deliberately not an `async` function: awaiting it would unwrap the array and lose the
 * iterator.
 */
import type { ParmapError } from '../errors.js';
import { LazyResult, type ParmapResult } from '../scheduler/result.js';
import { prepareRun } from './call.js';
import { callerFile } from './function-code.js';
import { type FunctionFromModule, type ParmapOptions, resolveOptions } from './options.js';

type Callable = ((...args: unknown[]) => unknown) | FunctionFromModule;

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
// A function from a module: its types are not known here.
export function parmap<R = unknown>(
  fn: FunctionFromModule,
  items: Iterable<unknown> | AsyncIterable<unknown>,
  options?: ParmapOptions,
): ParmapResult<R>;
export function parmap(
  fn: ((...args: never[]) => unknown) | FunctionFromModule,
  items: Iterable<unknown> | AsyncIterable<unknown>,
  options?: ParmapOptions,
): ParmapResult<unknown> {
  const job = resolveOptions(fn, items, options);
  const run = prepareRun(fn as Callable, items, job, callerFile(parmap), { kind: 'own' });
  return new LazyResult(run, job.total);
}
