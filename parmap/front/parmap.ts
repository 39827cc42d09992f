/**
 * `parmap(fn, items, options)`, `parmap.filter` and `parmap.flatMap`: each checks the call,
 * prepares what workers need, and returns a lazy result. Deliberately not `async` functions:
 * awaiting one would unwrap the array and lose the iterator.
 */
import type { ParmapResult } from '../scheduler/result.js';
import type { StageCall } from './call-types.js';
import type { ParmapOptions } from './options.js';
import { pipeline } from './pipeline.js';
import { startCall } from './stages.js';

/** Options in which `star` or `kwstar` is on: each item then holds several arguments. */
export type SpreadOptions = ParmapOptions & ({ readonly star: true } | { readonly kwstar: true });

/**
 * {@link parmap}: a parallel `Array.prototype.map` you call, with `filter` and `flatMap` besides.
 * Each takes `(fn, items, options)` with the same options, checks and errors, and gives a
 * {@link ParmapResult}; any of them can be the `items` of another (stages of a pipeline).
 */
export interface Parmap extends StageCall<ParmapOptions, 'map'> {
  /**
   * Keeps the items for which `fn` returns a truthy value, like `items.filter(fn)`: the items
   * themselves, in input order (unless `ordered: false`). With `onError: 'return'`, a failed item
   * gives its error in its place. The result's `total` is `undefined`.
   */
  readonly filter: StageCall<ParmapOptions, 'filter'>;
  /**
   * Gives every element of each of `fn`'s results, like `items.flatMap(fn)`: an array is spread
   * one level (holes skipped), and so are a Set (its values) and a Map (its `[key, value]`
   * entries); any other result (a string, a typed array, an object) is one element. With
   * `onError: 'return'`, a failed item gives its error as one element. The result's `total` is
   * `undefined`.
   */
  readonly flatMap: StageCall<ParmapOptions, 'flatMap'>;
  /**
   * Starts a chain of steps over `items`: `.map`, `.filter`, `.flatMap` on workers (one set for
   * the whole chain), `.groupByKey()`, `.reduceByKey(fn)` in this thread, then `.collect()` or
   * `for await`; see {@link pipeline}.
   */
  readonly pipeline: typeof pipeline;
}

/**
 * Runs `fn` on every item on a pool of workers, like `items.map(fn)` on every core.
 *
 * `await parmap(fn, items)` gives the array of results in input order; `for await (const r of
 * parmap(fn, items))` streams them. `fn` travels to the workers by its source text: values it uses
 * from its surroundings must be passed with `scope`. `parmap.filter` and `parmap.flatMap` run `fn`
 * the same way and keep items, or spread results, instead.
 *
 * The call is type-checked against `fn`'s parameters: items (spread with `star`, `[arg, kw]` with
 * `kwstar`), `args`, the `context` value and `kwargs` must fit them, and `fn` may not require more
 * arguments than it is passed (no index, unlike `Array.map`). A function from a module
 * (`{ module, export }`) is not checked, and its results are `unknown`.
 *
 * @throws TypeError or RangeError at once, before any worker starts, for a bad call.
 */
export const parmap: Parmap = Object.assign(
  function parmap(fn: never, items: unknown, options?: ParmapOptions): ParmapResult<unknown> {
    return startCall('map', parmap, { fn, items, options }, { kind: 'own' });
  },
  {
    filter: function filter(fn: never, items: unknown, options?: ParmapOptions): ParmapResult<unknown> {
      return startCall('filter', filter, { fn, items, options }, { kind: 'own' });
    },
    flatMap: function flatMap(fn: never, items: unknown, options?: ParmapOptions): ParmapResult<unknown> {
      return startCall('flatMap', flatMap, { fn, items, options }, { kind: 'own' });
    },
    pipeline,
  },
) as Parmap;
