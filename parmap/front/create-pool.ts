/**
 * `createPool()`: workers that outlive one call. `pool.map(fn, items, options)` is `parmap` on
 * warm workers (and `pool.filter`, `pool.flatMap` are `parmap.filter`, `parmap.flatMap`):
 * functions are compiled once per worker and kept by source, a call's scope and args reach each
 * worker once, concurrent calls (chained stages among them) share the workers fairly, and a call
 * that fails or is aborted leaves the pool ready for the next (a crashed worker is replaced).
 */
import { availableParallelism } from 'node:os';
import { describeValue, ParmapError } from '../errors.js';
import { WorkerHost } from '../executors/worker-host.js';
import type { StageKind } from '../job.js';
import type { ParmapResult } from '../scheduler/result.js';
import type { StageCall } from './call-types.js';
import { isPlainObject, type ParmapOptions, resolveOptions } from './options.js';
import { startCall } from './stages.js';

/** Options of {@link createPool}. Every one is optional. */
export interface PoolOptions {
  /** Number of workers. Default: `os.availableParallelism()` (within the process's worker budget). */
  readonly n?: number;
  /** `'thread'` (worker_threads) or `'process'` (child processes). Default: `'thread'`. */
  readonly workerType?: 'thread' | 'process';
  /** Heap limit per worker, in MB. Default: none. */
  readonly maxMemory?: number;
}

/** The options of one `pool.map` call: those of `parmap`, less what belongs to the pool. */
export type MapOptions = Omit<ParmapOptions, 'n' | 'workerType' | 'maxMemory' | 'backend'>;

/** A pool of warm workers; see {@link createPool}. */
export interface ParmapPool {
  /** `parmap(fn, items, options)` on this pool's workers, with the same type checks. */
  readonly map: StageCall<MapOptions, 'map'>;
  /** `parmap.filter(fn, items, options)` on this pool's workers. */
  readonly filter: StageCall<MapOptions, 'filter'>;
  /** `parmap.flatMap(fn, items, options)` on this pool's workers. */
  readonly flatMap: StageCall<MapOptions, 'flatMap'>;
  /** Stops the workers (calls still running fail). Safe to call more than once. */
  close(): Promise<void>;
  /** `await using pool = createPool()` closes it at the end of the block. */
  [Symbol.asyncDispose](): Promise<void>;
  /** Whether `close()` has been called. */
  readonly closed: boolean;
  /** The most workers it runs. */
  readonly size: number;
}

/** Creates a reusable pool of workers. Nothing starts until the first `map` has work. */
export function createPool(options: PoolOptions = {}): ParmapPool {
  const { n, workerType, maxMemory } = checkPoolOptions(options);
  const host = new WorkerHost({ workers: n, workerType, maxMemory });
  let closed = false;
  /** `pool.map`, `pool.filter` or `pool.flatMap`. */
  const stage = (kind: StageKind) => {
    const call = (fn: never, items: unknown, mapOptions?: MapOptions): ParmapResult<unknown> => {
      if (closed) throw new ParmapError('parmap: this pool is closed; create another with createPool()');
      if (isPlainObject(mapOptions) && 'backend' in mapOptions) {
        throw new TypeError(
          `\`backend\` does not go with a pool, whose workers are this process's: pass it to parmap() itself`,
        );
      }
      for (const key of ['n', 'workerType', 'maxMemory'] as const) {
        if (isPlainObject(mapOptions) && key in mapOptions) {
          throw new TypeError(
            `\`${key}\` belongs to the pool: set it in createPool({ ${key} }), not in pool.${kind}()`,
          );
        }
      }
      const options = { ...mapOptions, n, workerType, maxMemory };
      return startCall(kind, call, { fn, items, options }, { kind: 'pool', host, workerType });
    };
    return call;
  };
  const pool = {
    map: stage('map'),
    filter: stage('filter'),
    flatMap: stage('flatMap'),
    close() {
      closed = true;
      return host.close();
    },
    [Symbol.asyncDispose]() {
      return pool.close();
    },
    get closed() {
      return closed;
    },
    size: n,
  } as ParmapPool;
  return pool;
}

function checkPoolOptions(options: unknown): {
  n: number;
  workerType: 'thread' | 'process';
  maxMemory: number | undefined;
} {
  if (!isPlainObject(options)) {
    throw new TypeError(`Expected the options of createPool to be a plain object, got ${describeValue(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== 'n' && key !== 'workerType' && key !== 'maxMemory') {
      throw new TypeError(
        `Unknown option \`${key}\` of createPool. Known: n, workerType, maxMemory (the others go to pool.map)`,
      );
    }
  }
  // The same checks as parmap's, on a call that is never run.
  const checked = resolveOptions(() => undefined, [], options);
  return {
    n: (options as PoolOptions).n ?? availableParallelism(),
    workerType: checked.workerType,
    maxMemory: checked.maxMemory,
  };
}
