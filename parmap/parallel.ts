/**
 * A call on workers, from start to finish: input → feeder → pool → reorder buffer → caller, handed
 * over a chunk of results at a time. Also where failures are sorted out: an item that threw, a
 * worker that died (its items re-run when `retries` allows), an item past its `timeout`.
 * `close()` is the single way out: it stops the feeder, closes the input, terminates the pool and
 * removes the abort listener, whatever ended the call.
 */
import { ChunkSizer } from './chunking.js';
import {
  AbortError,
  ParmapCloneError,
  ParmapTaskError,
  ParmapTimeoutError,
  ParmapWorkerError,
  rebuildThrown,
} from './errors.js';
import { type Chunk, Feeder } from './feeder.js';
import { checkItemShape, type ResolvedOptions } from './options.js';
import { type ChunkOutcome, ChunkPool, ItemSendError, type RunningChunk, WorkerEndedError } from './pool.js';
import { ProgressTracker } from './progress.js';
import { ReorderBuffer } from './reorder.js';
import { type ChunkRun, finishProgress, type Input } from './run.js';
import type { WorkerSetup } from './worker.js';

/** Chunks allowed between the feeder and the caller, per worker, beyond those the pool runs. */
const CHUNKS_PER_WORKER_WAITING = 1;

/** A chunk's results as they come in; complete when `remaining` is 0. */
interface ChunkResults {
  readonly chunk: Chunk;
  /** Filled as tasks answer; a chunk answered whole takes its reply's array as it is. */
  values: unknown[];
  remaining: number;
  failures: number;
}

/**
 * Work for one worker message: some items of a chunk (`positions` within it; all of them when
 * undefined), and how many times they have been tried before.
 */
interface Task {
  readonly results: ChunkResults;
  readonly positions: readonly number[] | undefined;
  readonly attempts: number;
  /** Times it went to a worker that died before starting it (it is not blamed for those). */
  readonly deferrals?: number;
}

/** Deaths before a task starts that are not counted against it; past them, they count. */
const MAX_DEFERRALS = 3;

interface ActiveTask {
  readonly task: Task;
  running?: RunningChunk;
  /** Items started, as process workers report them (threads share a counter instead). */
  reported: number;
  /** Items started, as the watchdog last saw. */
  started: number;
  /** When `started` last changed (ms). */
  changedAt: number;
  /** The position (within the task) of the item that ran past the timeout. */
  timedOutAt?: number;
}

export class ParallelRun<R> implements ChunkRun<R> {
  private pool: ChunkPool | undefined;
  private feeder: Feeder | undefined;
  private readonly sizer: ChunkSizer;
  private readonly reorder = new ReorderBuffer<R[]>();
  private readonly ready: R[][] = [];
  private progress: ProgressTracker | undefined;
  /** No more workers than items, when the number of items is known. */
  private readonly workers: number;
  private window: number;
  /** Chunks submitted and not yet taken by the caller. */
  private unconsumed = 0;
  /** Tasks to run again after a worker died, ahead of new chunks. */
  private readonly retryQueue: Task[] = [];
  private readonly active = new Set<ActiveTask>();
  private watchdog: NodeJS.Timeout | undefined;
  private inputEnded = false;
  /** Every result has been handed to the caller. */
  private completed = false;
  private failure: { error: unknown } | undefined;
  private closed = false;
  private started: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly onAbort = (): void => this.fail(new AbortError(this.options.signal?.reason));

  constructor(
    private readonly items: Input,
    private readonly options: ResolvedOptions,
    private readonly setup: WorkerSetup,
  ) {
    this.sizer = new ChunkSizer(options.chunksize, options.n, options.total);
    const length = options.knownLength;
    this.workers = length === undefined ? options.n : Math.max(1, Math.min(options.n, length));
    this.window = this.workers * (1 + CHUNKS_PER_WORKER_WAITING);
  }

  private async start(): Promise<void> {
    const { signal } = this.options;
    if (signal?.aborted) throw new AbortError(signal.reason);
    signal?.addEventListener('abort', this.onAbort, { once: true });
    this.progress = await ProgressTracker.start(this.options);
    // An input known to be empty needs no workers at all.
    if (this.options.knownLength !== 0) {
      const pool = await ChunkPool.create({
        workers: this.workers,
        workerType: this.options.workerType,
        setup: this.setup,
        maxMemory: this.options.maxMemory,
      });
      if (this.closed || this.failure !== undefined) {
        await pool.terminate();
        return;
      }
      this.pool = pool;
      this.window = pool.capacity + this.workers * CHUNKS_PER_WORKER_WAITING;
    }
    const shape = this.options.shape;
    const checkItem =
      shape.star || shape.kwstar ? (item: unknown, index: number) => checkItemShape(item, index, shape) : () => {};
    this.feeder = Feeder.for(this.items, this.sizer, checkItem, {
      hasRoom: () =>
        this.retryQueue.length === 0 &&
        !this.closed &&
        this.failure === undefined &&
        this.unconsumed < this.window &&
        (this.pool?.hasIdleWorker ?? true),
      submit: (chunk) => this.submitChunk(chunk),
      fail: (error) => this.fail(error),
      ended: () => {
        this.inputEnded = true;
        this.notify();
      },
    });
    this.feeder.pump();
  }

  async nextChunk(): Promise<R[] | undefined> {
    this.pool?.hold(true);
    try {
      return await this.waitForChunk();
    } finally {
      this.pool?.hold(false);
    }
  }

  private async waitForChunk(): Promise<R[] | undefined> {
    this.started ??= this.start();
    try {
      await this.started;
    } catch (error) {
      this.failure ??= { error };
      throw error;
    }
    for (;;) {
      if (this.failure !== undefined) throw this.failure.error;
      if (this.closed) return undefined;
      const chunk = this.options.ordered ? this.reorder.takeNext() : this.ready.shift();
      if (chunk !== undefined) {
        this.unconsumed--;
        this.pump();
        return chunk;
      }
      if (this.inputEnded && this.unconsumed === 0) {
        this.completed = true;
        return undefined;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /** Keeps the workers busy: tasks to re-run first, then new chunks from the feeder. */
  private pump(): void {
    while (this.retryQueue.length > 0 && this.pool?.hasIdleWorker && !this.closed && this.failure === undefined) {
      this.startTask(this.retryQueue.shift() as Task);
    }
    this.feeder?.pump();
  }

  private submitChunk(chunk: Chunk): void {
    this.unconsumed++;
    const results: ChunkResults = {
      chunk,
      values: [],
      remaining: chunk.items.length,
      failures: 0,
    };
    this.startTask({ results, positions: undefined, attempts: 0 });
  }

  private startTask(task: Task): void {
    const { chunk } = task.results;
    const items = task.positions === undefined ? chunk.items : task.positions.map((position) => chunk.items[position]);
    const active: ActiveTask = { task, reported: 0, started: 0, changedAt: performance.now() };
    const running = (this.pool as ChunkPool).run(items, (at) => {
      active.reported = at + 1;
    });
    active.running = running;
    if (this.options.timeout !== undefined) {
      this.active.add(active);
      this.watch();
    }
    running.outcome.then(
      (outcome) => this.settle(active, outcome),
      (error: unknown) => this.settle(active, error, true),
    );
  }

  private settle(active: ActiveTask, outcome: unknown, rejected = false): void {
    this.active.delete(active);
    if (this.closed || this.failure !== undefined) return;
    const { task } = active;
    if (!rejected) {
      this.accept(task, outcome as ChunkOutcome);
      return;
    }
    if (outcome instanceof WorkerEndedError) {
      this.recover(active, outcome);
      return;
    }
    if (outcome instanceof ItemSendError) {
      const error = new ParmapCloneError(this.indexOf(task, outcome.at), 'item', outcome.cause);
      if (this.options.onError === 'throw') {
        this.fail(error);
        return;
      }
      // Nothing of this task ran: the item that cannot be sent fails, the others are sent again.
      this.itemFailed(task, outcome.at, error);
      const rest = this.positionsOf(task).filter((_, at) => at !== outcome.at);
      if (rest.length > 0) this.requeue({ results: task.results, positions: rest, attempts: task.attempts });
      this.pump();
      return;
    }
    this.fail(outcome);
  }

  /** Takes in a task's reply. */
  private accept(task: Task, reply: ChunkOutcome): void {
    switch (reply.kind) {
      case 'done': {
        const { results } = task;
        if (task.positions === undefined) {
          results.values = reply.values;
          if (task.attempts === 0) this.sizer.record(reply.values.length, reply.ms);
        } else {
          for (const [at, position] of task.positions.entries()) results.values[position] = reply.values[at];
        }
        for (const failure of reply.failures ?? []) {
          const index = this.indexOf(task, failure.at);
          const error =
            failure.thrown !== undefined
              ? new ParmapTaskError(index, rebuildThrown(failure.thrown))
              : new ParmapCloneError(index, 'result', new Error(failure.uncloneable));
          results.values[this.positionsOf(task)[failure.at] as number] = error;
          results.failures++;
        }
        this.completeItems(results, reply.values.length);
        this.pump();
        return;
      }
      case 'threw':
        this.progress?.add(0, 1);
        this.fail(new ParmapTaskError(this.indexOf(task, reply.at), rebuildThrown(reply.thrown)));
        return;
      case 'uncloneable':
        this.fail(new ParmapCloneError(this.indexOf(task, Math.max(0, reply.at)), 'result', new Error(reply.message)));
        return;
    }
  }

  /**
   * A worker died (or was stopped for a timeout) holding `active`. When the item it was running is
   * known, only that item is blamed: it is retried alone while `retries` allows, and the others
   * of the task run again untouched. When it is not known, every item is retried alone.
   */
  private recover(active: ActiveTask, error: WorkerEndedError): void {
    const { task } = active;
    const deferrals = task.deferrals ?? 0;
    if (error.ending.neverStarted === true && deferrals < MAX_DEFERRALS) {
      this.requeue({ ...task, deferrals: deferrals + 1 });
      this.pumpAfterDeath();
      return;
    }
    const positions = this.positionsOf(task);
    const started = active.running?.started() ?? (this.options.timeout === undefined ? undefined : active.reported);
    const culprit =
      active.timedOutAt ??
      (positions.length === 1 ? 0 : started !== undefined && started > 0 ? started - 1 : undefined);
    const attempts = task.attempts + 1;
    if (culprit === undefined) {
      if (attempts > this.options.retries) {
        const indices = positions.map((_, at) => this.indexOf(task, at));
        const failure = this.workerError(error, indices, undefined, attempts);
        if (this.options.onError === 'throw') {
          this.fail(failure);
          return;
        }
        for (let at = 0; at < positions.length; at++) this.itemFailed(task, at, failure);
        this.pumpAfterDeath();
        return;
      }
      for (const position of positions) this.requeue({ results: task.results, positions: [position], attempts });
      this.pumpAfterDeath();
      return;
    }
    const before = positions.slice(0, culprit);
    const after = positions.slice(culprit + 1);
    if (attempts > this.options.retries) {
      const index = this.indexOf(task, culprit);
      const failure =
        error.ending.timedOut === true
          ? new ParmapTimeoutError(index, this.options.timeout as number, attempts)
          : this.workerError(
              error,
              positions.map((_, at) => this.indexOf(task, at)),
              index,
              attempts,
            );
      if (this.options.onError === 'throw') {
        this.fail(failure);
        return;
      }
      this.itemFailed(task, culprit, failure);
    } else {
      this.requeue({ results: task.results, positions: [positions[culprit] as number], attempts });
    }
    if (before.length > 0) this.requeue({ results: task.results, positions: before, attempts: task.attempts });
    if (after.length > 0) this.requeue({ results: task.results, positions: after, attempts: task.attempts });
    this.pumpAfterDeath();
  }

  /**
   * workerpool drops a dead worker from its list a few steps after reporting it; work sent
   * before then could be handed to the dead worker.
   */
  private pumpAfterDeath(): void {
    setImmediate(() => {
      if (!this.closed && this.failure === undefined) this.pump();
    });
  }

  private workerError(
    error: WorkerEndedError,
    indices: readonly number[],
    index: number | undefined,
    attempts: number,
  ): ParmapWorkerError {
    return new ParmapWorkerError(indices, { ...error.ending, maxMemory: this.options.maxMemory }, { index, attempts });
  }

  private requeue(task: Task): void {
    this.retryQueue.push(task);
  }

  /** `onError: 'return'`: item `at` of the task yields `error` in its place. */
  private itemFailed(task: Task, at: number, error: unknown): void {
    const { results } = task;
    results.values[this.positionsOf(task)[at] as number] = error;
    results.failures++;
    this.completeItems(results, 1);
  }

  /** Counts `count` more items of a chunk as finished; a finished chunk goes to the caller. */
  private completeItems(results: ChunkResults, count: number): void {
    results.remaining -= count;
    if (results.remaining > 0) return;
    if (this.options.ordered) this.reorder.put(results.chunk.sequence, results.values as R[]);
    else this.ready.push(results.values as R[]);
    try {
      this.progress?.add(results.chunk.items.length, results.failures);
    } catch (error) {
      this.fail(error);
      return;
    }
    this.notify();
  }

  private positionsOf(task: Task): readonly number[] {
    return task.positions ?? task.results.chunk.items.map((_, position) => position);
  }

  /** The input index of item `at` of a task. */
  private indexOf(task: Task, at: number): number {
    const position = task.positions === undefined ? at : (task.positions[at] as number);
    return task.results.chunk.start + position;
  }

  /**
   * Checks running tasks against `timeout`: an item whose start was seen more than `timeout` ms
   * ago, with no item started since, has its worker stopped.
   */
  private watch(): void {
    if (this.watchdog !== undefined) return;
    const timeout = this.options.timeout as number;
    const period = Math.min(250, Math.max(5, timeout / 8));
    this.watchdog = setInterval(() => {
      const now = performance.now();
      for (const active of this.active) {
        const started = active.running?.started() ?? active.reported;
        if (started !== active.started) {
          active.started = started;
          active.changedAt = now;
        } else if (started > 0 && active.timedOutAt === undefined && now - active.changedAt > timeout) {
          active.timedOutAt = started - 1;
          active.running?.stopForTimeout();
        }
      }
      if (this.active.size === 0) {
        clearInterval(this.watchdog);
        this.watchdog = undefined;
      }
    }, period).unref();
  }

  /** Records the first failure, wakes the caller, and stops the workers at once. */
  private fail(error: unknown): void {
    if (this.failure !== undefined || this.closed) return;
    this.failure = { error };
    this.notify();
    this.feeder?.close();
    void this.pool?.terminate();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.notify();
    clearInterval(this.watchdog);
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.feeder?.close();
    // A start still loading the pool sees `closed` and terminates what it made.
    await this.started?.catch(() => undefined);
    await this.pool?.terminate();
    finishProgress(this.progress, this.completed, this.failure);
  }
}
