/**
 * `parmap(fn, items, options)`: checks the call, prepares what workers need, and returns a lazy
 * result. Deliberately not an `async` function: awaiting it would unwrap the array and lose the
 * iterator.
 */
import { LazyResult, type ParmapResult } from '../scheduler/result.js';
import { prepareRun } from './call.js';
import type {
  CallOptions,
  CallResult,
  CheckedFunction,
  ItemParam,
  Items,
  LayoutOf,
  NotGiven,
  ProvidedParams,
} from './call-types.js';
import { callerFile } from './function-code.js';
import { type FunctionFromModule, type ParmapOptions, resolveOptions } from './options.js';

type Callable = ((...args: unknown[]) => unknown) | FunctionFromModule;

/** Options in which `star` or `kwstar` is on: each item then holds several arguments. */
export type SpreadOptions = ParmapOptions & ({ readonly star: true } | { readonly kwstar: true });

/**
 * Runs `fn` on every item on a pool of workers, like `items.map(fn)` on every core.
 *
 * `await parmap(fn, items)` gives the array of results in input order; `for await (const r of
 * parmap(fn, items))` streams them. `fn` travels to the workers by its source text: values it uses
 * from its surroundings must be passed with `scope`.
 *
 * The call is type-checked against `fn`'s parameters: items (spread with `star`, `[arg, kw]` with
 * `kwstar`), `args`, the `context` value and `kwargs` must fit them, and `fn` may not require more
 * arguments than it is passed (no index, unlike `Array.map`). A function from a module
 * (`{ module, export }`) is not checked, and its results are `unknown`.
 *
 * @typeParam Item - An item, as `items` yields it.
 * @typeParam Result - What `fn` returns (awaited in the results).
 * @typeParam Params - `fn`'s parameters: from `fn` when they are annotated, otherwise what parmap passes.
 * @throws TypeError or RangeError at once, before any worker starts, for a bad call.
 */
export function parmap<
  Item,
  Result,
  Star extends boolean = false,
  KwStar extends boolean = false,
  OnError extends Exclude<ParmapOptions['onError'], undefined> = 'throw',
  const Args extends readonly unknown[] = [],
  Context = NotGiven,
  Kwargs = NotGiven,
  Params extends readonly unknown[] = ProvidedParams<Item, LayoutOf<Star, KwStar, Args, Context, Kwargs>>,
>(
  fn: CheckedFunction<Params, Result, LayoutOf<Star, KwStar, Args, Context, Kwargs>> | FunctionFromModule,
  items: Items<ItemParam<Item, Params, LayoutOf<Star, KwStar, Args, Context, Kwargs>, Star>>,
  options?: CallOptions<ParmapOptions, Params, Star, KwStar, OnError, Args, Context, Kwargs>,
): ParmapResult<CallResult<Result, OnError>>;
export function parmap(
  fn: ((...args: never[]) => unknown) | FunctionFromModule,
  items: Iterable<unknown> | AsyncIterable<unknown>,
  options?: ParmapOptions,
): ParmapResult<unknown> {
  const job = resolveOptions(fn, items, options);
  const run = prepareRun(fn as Callable, items, job, callerFile(parmap), { kind: 'own' });
  return new LazyResult(run, job.total);
}
