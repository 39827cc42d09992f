/**
 * What `parmap()` returns: an async iterable of results that is also a promise of their array.
 * Nothing starts until it is awaited or iterated; each result object runs its call once.
 */
import { AbortError, isInstance } from '../errors.js';
import { CallSite } from './call-site.js';
import type { Ending, ProgressTracker } from './progress.js';

/** A call in progress, as the result object consumes it. */
export interface ChunkRun<R> {
  /**
   * The next results (in input order when ordered), or `undefined` once every item is out. Read
   * them before asking for more: numbers may be handed out packed, in a buffer used again for
   * later results (only to a caller reading them one by one).
   */
  nextChunk(): Promise<ArrayLike<R> | undefined>;
  /** Ends the call and releases everything it holds. Safe to call at any time, more than once. */
  close(): Promise<void>;
}

/** Ends the progress display with how the call ended. A failing final callback fails a success only. */
export function finishProgress(
  progress: ProgressTracker | undefined,
  completed: boolean,
  failure: { error: unknown } | undefined,
): void {
  const ending: Ending =
    failure === undefined
      ? completed
        ? 'done'
        : 'stopped'
      : isInstance(failure.error, AbortError)
        ? 'aborted'
        : 'failed';
  try {
    progress?.finish(ending);
  } catch (error) {
    if (ending === 'done') throw error;
  }
}

/**
 * Runs closed when the iterator reading them is dropped without `return()`: its workers stop once
 * the garbage collector finds the iterator unreachable (until then they hold no event loop).
 */
const abandoned = new FinalizationRegistry<ChunkRun<unknown>>((run) => {
  void run.close().catch(() => undefined);
});

/** The result of {@link parmap}: `await` it for the array, or `for await` it to stream. */
export interface ParmapResult<R> extends AsyncIterable<R>, PromiseLike<R[]> {
  /** Runs the call (once) and settles with the array of results (in input order unless `ordered: false`) or the first error. */
  then<A = R[], B = never>(
    onFulfilled?: ((value: R[]) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B>;
  /** Like `Promise.prototype.catch`, on the array of results. */
  catch<E = never>(onRejected?: ((reason: unknown) => E | PromiseLike<E>) | null): Promise<R[] | E>;
  /** Like `Promise.prototype.finally`, on the array of results. */
  finally(onFinally?: (() => void) | null): Promise<R[]>;
  [Symbol.asyncIterator](): AsyncIterableIterator<R>;
  /** `'ParmapResult'`; with `then`, `catch` and `finally` it makes the result usable as a Promise. */
  readonly [Symbol.toStringTag]: string;
  /**
   * How many results the call will give (one per item), when the input or the `total` option
   * tells; otherwise `undefined`, as always for `filter` and `flatMap`, whose count is known only
   * at the end. A chained call reads it, so its progress shows a total too.
   */
  readonly total: number | undefined;
}

export class LazyResult<R> implements ParmapResult<R> {
  private promise: Promise<R[]> | undefined;
  private consumedBy: 'await' | 'iteration' | undefined;
  /** Where the caller called parmap: its errors point there. */
  private readonly site = new CallSite(LazyResult);

  constructor(
    /** `streaming`: the caller reads results one by one (`for await`), not the whole array. */
    private readonly createRun: (streaming: boolean) => ChunkRun<R>,
    readonly total: number | undefined,
  ) {}

  get [Symbol.toStringTag](): string {
    return 'ParmapResult';
  }

  // biome-ignore lint/suspicious/noThenProperty: being awaitable is the point of this object.
  then<A = R[], B = never>(
    onFulfilled?: ((value: R[]) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    if (this.promise === undefined) {
      this.claim('await');
      this.promise = collect(this.createRun(false), this.site, this.total);
    }
    return this.promise.then(onFulfilled, onRejected);
  }

  catch<E = never>(onRejected?: ((reason: unknown) => E | PromiseLike<E>) | null): Promise<R[] | E> {
    return this.then(undefined, onRejected);
  }

  finally(onFinally?: (() => void) | null): Promise<R[]> {
    return this.then().finally(onFinally);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<R> {
    this.claim('iteration');
    const run = this.createRun(true);
    const iterator = new ResultIterator(run, this.site);
    abandoned.register(iterator, run as ChunkRun<unknown>, iterator);
    return iterator;
  }

  private claim(way: 'await' | 'iteration'): void {
    if (this.consumedBy !== undefined) {
      throw new TypeError(
        `This parmap result is already being consumed by ${this.consumedBy === 'await' ? 'await' : 'for await'}; ` +
          'a result runs its call once. Call parmap() again to run it again.',
      );
    }
    this.consumedBy = way;
  }
}

/**
 * Awaits every chunk into one array. With the count known, each chunk is copied into its place
 * as it comes and dropped at once, as a hand-written pool does: chunks kept until the end would
 * survive young-generation collections and be copied by the collector, which on 2M numbers cost
 * more than the copying itself. Otherwise chunks are kept and joined at the end.
 */
async function collect<R>(run: ChunkRun<R>, site: CallSite, total: number | undefined): Promise<R[]> {
  // The count is the input's own say (a `length` may be anything) or the `total` option: trusted
  // for the size of an array, never for which results there are.
  const preallocate = total !== undefined && Number.isSafeInteger(total) && total >= 0 && total <= MAX_PREALLOCATED;
  const joined = preallocate ? new JoinedInPlace<R>(total) : new JoinedAtEnd<R>();
  try {
    for (let chunk = await run.nextChunk(); chunk !== undefined; chunk = await run.nextChunk()) joined.add(chunk);
  } catch (error) {
    site.attach(error);
    throw error;
  } finally {
    await run.close();
  }
  return joined.results();
}

/** Larger counts (a `length` or `total` far off the mark) are not trusted with an array up front. */
const MAX_PREALLOCATED = 2 ** 27;

class JoinedInPlace<R> {
  private readonly all: R[];
  private filled = 0;

  constructor(total: number) {
    this.all = new Array<R>(total);
  }

  add(chunk: ArrayLike<R>): void {
    const { all, filled } = this;
    for (let i = 0; i < chunk.length; i++) {
      const value = chunk[i] as R;
      // A hole (an item that was a hole of a sparse input) stays one.
      if (value !== undefined || i in chunk) all[filled + i] = value;
    }
    this.filled += chunk.length;
  }

  results(): R[] {
    // A `total` option larger than the input leaves no hole at the end.
    if (this.filled < this.all.length) this.all.length = this.filled;
    return this.all;
  }
}

class JoinedAtEnd<R> {
  private readonly chunks: R[][] = [];

  add(chunk: ArrayLike<R>): void {
    this.chunks.push(Array.isArray(chunk) ? chunk : Array.from(chunk));
  }

  results(): R[] {
    const { chunks } = this;
    if (chunks.length === 1) return chunks[0] as R[];
    // concat copies whole arrays in bulk: a tenth of the time of pushing item by item (and
    // Array.prototype.flat is slower still). It spreads only its arguments, so results that are
    // arrays stay whole. Batches keep the argument count within what a call allows.
    let results: R[] = [];
    for (let i = 0; i < chunks.length; i += CONCAT_BATCH)
      results = results.concat(...chunks.slice(i, i + CONCAT_BATCH));
    return results;
  }
}

const CONCAT_BATCH = 10_000;

/**
 * Whether an iterator is a parmap result's own: its `return()` closes that call (its workers
 * stopped) and settles even while a `next()` is pending, so a call reading it can wait for it.
 */
export function closesAtOnce(iterator: unknown): boolean {
  return iterator instanceof ResultIterator;
}

/**
 * Hands out one result per `next()`, straight from the current chunk, so a whole chunk costs a
 * single wait for the run. Any way out (end, error, `return()` from `break`) closes the run.
 */
class ResultIterator<R> implements AsyncIterableIterator<R> {
  private chunk: ArrayLike<R> = [];
  private position = 0;
  private done = false;
  private pending: Promise<IteratorResult<R>> | undefined;

  constructor(
    private readonly run: ChunkRun<R>,
    private readonly site: CallSite,
  ) {}

  [Symbol.asyncIterator](): AsyncIterableIterator<R> {
    return this;
  }

  next(): Promise<IteratorResult<R>> {
    if (this.pending !== undefined) {
      // Calls made without waiting are answered in turn.
      const after = this.pending.then(() => this.next());
      return after;
    }
    if (this.position < this.chunk.length) {
      return Promise.resolve({ value: this.chunk[this.position++] as R, done: false });
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    const pending = this.refill();
    this.pending = pending;
    void pending.then(
      () => this.clearPending(pending),
      () => this.clearPending(pending),
    );
    return pending;
  }

  private clearPending(pending: Promise<IteratorResult<R>>): void {
    if (this.pending === pending) this.pending = undefined;
  }

  private async refill(): Promise<IteratorResult<R>> {
    let chunk: ArrayLike<R> | undefined;
    try {
      chunk = await this.run.nextChunk();
    } catch (error) {
      this.done = true;
      this.site.attach(error);
      await this.run.close();
      throw error;
    }
    if (chunk === undefined || this.done) {
      this.done = true;
      await this.run.close();
      return { value: undefined, done: true };
    }
    this.chunk = chunk;
    this.position = 1;
    return { value: chunk[0] as R, done: false };
  }

  async return(value?: unknown): Promise<IteratorResult<R>> {
    this.done = true;
    this.chunk = [];
    await this.run.close();
    return { value: value as R, done: true };
  }

  async throw(error?: unknown): Promise<IteratorResult<R>> {
    this.done = true;
    this.chunk = [];
    await this.run.close();
    throw error;
  }
}
