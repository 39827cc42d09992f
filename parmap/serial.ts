/**
 * `n: 1`: the call runs in this thread with no pool, so closures work and stack traces are whole.
 * The same call rules, errors, `onError` and progress as on workers; `timeout` can only stop
 * waiting for an async item (a busy loop in this thread cannot be interrupted, so a sync item is
 * judged when it returns); `retries` and `maxMemory` have no worker to act on.
 */
import { createInvoker, isThenable } from './call.js';
import { AbortError, ParmapTaskError, ParmapTimeoutError } from './errors.js';
import { checkItemShape, type ResolvedOptions } from './options.js';
import { ProgressTracker } from './progress.js';
import { type ChunkRun, finishProgress, type Input } from './run.js';

/** Results per chunk: small, so a `for await` caller sees each result soon after it is computed. */
const SERIAL_CHUNK = 64;

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
    const { signal, shape, onError } = this.options;
    if (this.closed || this.finished) return undefined;
    this.iterator ??=
      typeof (this.items as Iterable<unknown>)[Symbol.iterator] === 'function'
        ? (this.items as Iterable<unknown>)[Symbol.iterator]()
        : (this.items as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    const results: R[] = [];
    let failures = 0;
    while (results.length < SERIAL_CHUNK) {
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
        results.push((await this.call(step.value, index)) as R);
      } catch (thrown) {
        const error = thrown instanceof ParmapTimeoutError ? thrown : new ParmapTaskError(index, thrown);
        if (onError === 'throw') {
          this.progress?.add(0, 1);
          throw error;
        }
        results.push(error as R);
        failures++;
      }
    }
    if (results.length > 0) this.progress?.add(results.length, failures);
    return results.length > 0 ? results : undefined;
  }

  private async call(item: unknown, index: number): Promise<unknown> {
    const { timeout } = this.options;
    if (timeout === undefined) return this.invoke(item);
    const startedAt = performance.now();
    const value = this.invoke(item);
    if (performance.now() - startedAt > timeout) throw new ParmapTimeoutError(index, timeout, 1, true);
    if (!isThenable(value)) return value;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ParmapTimeoutError(index, timeout, 1, true)),
        timeout - (performance.now() - startedAt),
      );
    });
    // The abandoned item may still settle later; its outcome is no longer anyone's concern.
    Promise.resolve(value).catch(() => undefined);
    try {
      return await Promise.race([value, expired]);
    } finally {
      clearTimeout(timer);
    }
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
