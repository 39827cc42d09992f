/**
 * One call from start to finish: input → feeder → pool → reorder buffer → caller, handed over a
 * chunk of results at a time. `close()` is the single way out: it stops the feeder, closes the
 * input, terminates the pool and removes the abort listener, whatever ended the call.
 */

import { createInvoker } from './call.js';
import { ChunkSizer } from './chunking.js';
import { AbortError, ParmapCloneError, ParmapTaskError, ParmapWorkerError, rebuildThrown } from './errors.js';
import { type Chunk, Feeder } from './feeder.js';
import { checkItemShape, type ResolvedOptions } from './options.js';
import { type ChunkOutcome, ChunkPool, ItemSendError, WorkerEndedError } from './pool.js';
import { type Ending, ProgressTracker } from './progress.js';
import { ReorderBuffer } from './reorder.js';
import type { WorkerSetup } from './worker.js';

/** A call in progress, as the result object consumes it. */
export interface ChunkRun<R> {
  /** The next results (in input order when ordered), or `undefined` once every item is out. */
  nextChunk(): Promise<R[] | undefined>;
  /** Ends the call and releases everything it holds. Safe to call at any time, more than once. */
  close(): Promise<void>;
}

type Input = Iterable<unknown> | AsyncIterable<unknown>;

/** Chunks allowed between the feeder and the caller, per worker: one running, one waiting. */
const CHUNKS_PER_WORKER_UNCONSUMED = 2;

export class ParallelRun<R> implements ChunkRun<R> {
  private pool: ChunkPool | undefined;
  private feeder: Feeder | undefined;
  private readonly sizer: ChunkSizer;
  private readonly reorder = new ReorderBuffer<R[]>();
  private readonly ready: R[][] = [];
  private progress: ProgressTracker | undefined;
  private readonly window: number;
  /** Chunks sent to the pool and not yet taken by the caller. */
  private unconsumed = 0;
  private inputEnded = false;
  /** Every result has been handed to the caller. */
  private completed = false;
  private failure: { error: unknown } | undefined;
  private closed = false;
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
    this.window = this.workers * CHUNKS_PER_WORKER_UNCONSUMED;
  }

  /** No more workers than items, when the number of items is known. */
  private readonly workers: number;

  private started: Promise<void> | undefined;

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
      });
      if (this.closed || this.failure !== undefined) {
        await pool.terminate();
        return;
      }
      this.pool = pool;
    }
    const shape = this.options.shape;
    const checkItem =
      shape.star || shape.kwstar ? (item: unknown, index: number) => checkItemShape(item, index, shape) : () => {};
    this.feeder = Feeder.for(this.items, this.sizer, checkItem, {
      hasRoom: () =>
        !this.closed &&
        this.failure === undefined &&
        this.unconsumed < this.window &&
        (this.pool?.hasIdleWorker ?? true),
      submit: (chunk) => this.submit(chunk),
      fail: (error) => this.fail(error),
      ended: () => {
        this.inputEnded = true;
        this.notify();
      },
    });
    this.feeder.pump();
  }

  async nextChunk(): Promise<R[] | undefined> {
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
        this.feeder?.pump();
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

  private submit(chunk: Chunk): void {
    this.unconsumed++;
    (this.pool as ChunkPool).run(chunk.items).then(
      (reply) => this.settle(chunk, reply),
      (error: unknown) => this.settle(chunk, error, true),
    );
  }

  private settle(chunk: Chunk, outcome: unknown, rejected = false): void {
    if (this.closed || this.failure !== undefined) return;
    const error = rejected ? chunkError(chunk, outcome) : this.accept(chunk, outcome as ChunkOutcome);
    if (error !== undefined) this.fail(error);
  }

  /** Takes in a chunk's reply; returns the error that ends the call, if it brings one. */
  private accept(chunk: Chunk, reply: ChunkOutcome): unknown {
    switch (reply.kind) {
      case 'done':
        this.sizer.record(chunk.items.length, reply.ms);
        if (this.options.ordered) this.reorder.put(chunk.sequence, reply.values as R[]);
        else this.ready.push(reply.values as R[]);
        try {
          this.progress?.add(chunk.items.length);
        } catch (error) {
          return error;
        }
        this.notify();
        this.feeder?.pump();
        return undefined;
      case 'threw':
        this.progress?.add(0, 1);
        return new ParmapTaskError(chunk.start + reply.at, rebuildThrown(reply.thrown));
      case 'uncloneable':
        return new ParmapCloneError(chunk.start + Math.max(0, reply.at), 'result', new Error(reply.message));
    }
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
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.feeder?.close();
    // A start still loading the pool sees `closed` and terminates what it made.
    await this.started?.catch(() => undefined);
    await this.pool?.terminate();
    finishProgress(this.progress, this.completed, this.failure);
  }
}

/** Ends the progress display with how the call ended. A failing final callback fails a success only. */
function finishProgress(
  progress: ProgressTracker | undefined,
  completed: boolean,
  failure: { error: unknown } | undefined,
): void {
  const ending: Ending =
    failure === undefined
      ? completed
        ? 'done'
        : 'stopped'
      : failure.error instanceof AbortError
        ? 'aborted'
        : 'failed';
  try {
    progress?.finish(ending);
  } catch (error) {
    if (ending === 'done') throw error;
  }
}

function chunkError(chunk: Chunk, error: unknown): unknown {
  if (error instanceof ItemSendError) return new ParmapCloneError(chunk.start + error.at, 'item', error.cause);
  if (error instanceof WorkerEndedError) {
    const indices = chunk.items.map((_, i) => chunk.start + i);
    return new ParmapWorkerError(indices, { exitCode: error.exitCode, signal: error.signal }, error.cause);
  }
  return error;
}

/** `n: 1`: everything in this thread, no pool, the same call rules and errors. */
export class SerialRun<R> implements ChunkRun<R> {
  private iterator: Iterator<unknown> | AsyncIterator<unknown> | undefined;
  private readonly invoke: (item: unknown) => unknown;
  private progress: ProgressTracker | undefined;
  private started: Promise<void> | undefined;
  private index = 0;
  private finished = false;
  private closed = false;
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly items: Input,
    private readonly options: ResolvedOptions,
    fn: (...args: unknown[]) => unknown,
  ) {
    this.invoke = createInvoker(fn, options.shape);
  }

  async nextChunk(): Promise<R[] | undefined> {
    this.started ??= ProgressTracker.start(this.options).then((progress) => {
      this.progress = progress;
    });
    await this.started;
    try {
      return await this.readChunk();
    } catch (error) {
      this.failure ??= { error };
      throw error;
    }
  }

  private async readChunk(): Promise<R[] | undefined> {
    const { signal, shape } = this.options;
    if (this.closed || this.finished) return undefined;
    this.iterator ??=
      typeof (this.items as Iterable<unknown>)[Symbol.iterator] === 'function'
        ? (this.items as Iterable<unknown>)[Symbol.iterator]()
        : (this.items as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    const results: R[] = [];
    // Small chunks: a for-await caller sees each result soon after it is computed.
    while (results.length < 64) {
      if (signal?.aborted) throw new AbortError(signal.reason);
      const step = await this.iterator.next();
      if (this.closed) return undefined;
      if (step.done) {
        this.finished = true;
        break;
      }
      const index = this.index++;
      if (shape.star || shape.kwstar) checkItemShape(step.value, index, shape);
      try {
        results.push((await this.invoke(step.value)) as R);
      } catch (error) {
        this.progress?.add(0, 1);
        throw new ParmapTaskError(index, error);
      }
    }
    if (results.length > 0) this.progress?.add(results.length);
    return results.length > 0 ? results : undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.finished) await this.iterator?.return?.();
    } finally {
      await this.started?.catch(() => undefined);
      finishProgress(this.progress, this.finished && this.failure === undefined, this.failure);
    }
  }
}
