/**
 * The seam between the scheduler and whatever runs chunks: workerpool threads or processes, this
 * thread (`n: 1`), later a remote queue. The scheduler sees only this interface: it submits
 * chunks when there is capacity, and hears back one outcome per chunk.
 */
import { type ItemFailure, MARK_OLDEST, MARK_STARTED, MARK_SYNC } from '../protocol.js';
import type { ChunkValues } from '../transfer.js';

/** Consecutive items handed to the executor as one unit; `id` is unique within a call. */
export interface ChunkTask {
  readonly id: number;
  /** The input position of the first item. */
  readonly start: number;
  /** Numbers kept packed only for an executor that {@link Executor.packsNumbers}. */
  readonly items: ChunkValues;
}

/** How far the items of a chunk have got. */
export interface ItemsStarted {
  /** How many items have started. */
  readonly started: number;
  /**
   * The place of the oldest item still running: `started - 1` while items run one at a time;
   * with `concurrency`, items from here to `started - 1` may all be running.
   */
  readonly oldest: number;
  /** With overlapping items, the place of the one whose synchronous call of fn runs now. */
  readonly blocking?: number | undefined;
}

/** How far a chunk has got, read from its marks (see protocol.ts). */
export function itemsStartedOf(marks: Int32Array): ItemsStarted {
  const started = Atomics.load(marks, MARK_STARTED);
  const oldestPlusOne = Atomics.load(marks, MARK_OLDEST);
  const syncPlusOne = Atomics.load(marks, MARK_SYNC);
  const oldest = oldestPlusOne > 0 ? oldestPlusOne - 1 : started - 1;
  return syncPlusOne > 0 ? { started, oldest, blocking: syncPlusOne - 1 } : { started, oldest };
}

/** How a worker ended while it held a chunk. */
export interface WorkerEnding {
  readonly exitCode?: number | undefined;
  readonly signal?: string | undefined;
  /** It went over its memory limit. */
  readonly outOfMemory?: boolean;
  /** An error thrown outside any item's call (a timer, an unhandled rejection) that ended it. */
  readonly uncaught?: unknown;
  /** The executor stopped it because the scheduler asked (an item ran past its timeout). */
  readonly stopped?: boolean;
}

/** What became of one chunk. `at` is a position within the chunk. */
export type ChunkOutcome =
  | {
      readonly kind: 'done';
      /** Numbers packed, from an executor that {@link Executor.packsNumbers}. */
      readonly values: ChunkValues;
      /** Time the worker spent on the items (for chunk sizing). */
      readonly ms: number;
      /** fn returned promises, so the items overlapped (for chunk sizing). */
      readonly awaited?: boolean | undefined;
      /** Bytes the items and results took on their way, when they crossed (for chunk sizing). */
      readonly bytes?: number | undefined;
      /** Items that failed while the chunk went on (`onError: 'return'`), as the worker reported them. */
      readonly failures?: readonly ItemFailure[] | undefined;
      /** Failures with what was thrown as it is (the in-thread run: nothing had to cross). */
      readonly localFailures?: readonly { readonly at: number; readonly thrown: unknown }[] | undefined;
    }
  /**
   * fn threw for item `at` (`onError: 'throw'`): the chunk stopped there. `final`: `thrown` is
   * already the error the call ends with (the in-thread run's own timeout).
   */
  | {
      readonly kind: 'threw';
      readonly at: number;
      readonly thrown: unknown;
      readonly final?: boolean;
      /** The results of the items before `at`. */
      readonly before?: readonly unknown[] | undefined;
    }
  /** The result of item `at` (or of some item, when -1) could not be sent back. */
  | { readonly kind: 'uncloneable'; readonly at: number; readonly message: string }
  /** Item `at` could not be sent to a worker; nothing of the chunk ran. */
  | { readonly kind: 'unsendable'; readonly at: number; readonly cause: unknown }
  /**
   * The worker ended while it held the chunk. `started` says how far its items had got
   * (`undefined` when unknown); none started means it may be sent again without blame.
   */
  | {
      readonly kind: 'lost';
      readonly ending: WorkerEnding;
      readonly started: ItemsStarted | undefined;
      /** The place of the item the executor stopped for its timeout, when it watches time itself. */
      readonly timedOutAt?: number | undefined;
    }
  /** The executor itself failed (a worker could not set up): the whole call fails with `error`. */
  | { readonly kind: 'failed'; readonly error: Error };

/** What an executor tells the scheduler. */
export interface ExecutorListener {
  /** What became of chunk `id`; told exactly once per chunk, never synchronously from `submit`. */
  outcome(id: number, outcome: ChunkOutcome): void;
  /**
   * A worker that had run chunk `id` ended on its own afterwards, while idle: a timer or promise
   * fn left behind failed (or called `process.exit()`).
   */
  workerDiedAfter(id: number, ending: WorkerEnding): void;
  /** `capacity` may have grown. */
  capacityChanged(): void;
  /** The executor can run nothing more (its pool was closed): the call fails with `error`. */
  failed(error: Error): void;
}

export interface Executor {
  /** How many chunks may be in flight at once right now (it may grow as workers are granted). */
  readonly capacity: number;
  /**
   * How many workers run chunks at once, when it is not the call's `n`: remote workers come and
   * go, and the scheduler reads ahead for each of them.
   */
  readonly workers?: number | undefined;
  /**
   * Chunks cross to its workers with lists of numbers packed (see transfer.ts): it takes items of
   * numbers packed, and may give such results packed.
   */
  readonly packsNumbers?: boolean;
  /** There is work ready while `capacity` is 0: get workers (they come with `capacityChanged`). */
  want(): void;
  /** Runs a chunk; its outcome comes to the listener, asynchronously, exactly once. */
  submit(task: ChunkTask): void;
  /** How far the items of chunk `id` have got, when the executor can tell. */
  started(id: number): ItemsStarted | undefined;
  /**
   * Whether {@link stop} can end a running item: the scheduler then watches `timeout` itself. The
   * in-thread run cannot; remote workers watch it where the items run.
   */
  readonly stoppable: boolean;
  /** Stops the worker running chunk `id` at once; the chunk is reported lost with `stopped`. */
  stop(id: number): void;
  /**
   * Whether someone is waiting for results. When nobody is, workers must not keep the process
   * alive: a caller that drops an iterator half-way is not held for ever.
   */
  hold(waiting: boolean): void;
  /** Stops everything; in-flight chunks are abandoned. Resolves once every worker has ended. */
  close(): Promise<void>;
}
