/**
 * groupByKey and reduceByKey as steps of a pipeline: an iterator whose first `next()` reads all of
 * its input into a fold (`grouping.ts`), then hands out what was folded, counting on the step's
 * row of the board as it reads.
 */
import { AbortError, isInstance, nameStage } from '../errors.js';
import { type BoardRow, type Ending, ProgressTracker } from './progress.js';

type Items = Iterable<unknown> | AsyncIterable<unknown>;

/** How a run ended, from the error it ended with. */
export function endingOf(error: unknown): Ending {
  return isInstance(error, AbortError) ? 'aborted' : 'failed';
}

/** What a keyed step folds its pairs into. */
export interface Fold {
  add(item: unknown, index: number): Promise<void> | undefined | void;
  entries(): Iterator<unknown>;
  readonly held: number;
}

/** Counts reach the board in batches: the step reads items one at a time. */
const COUNT_BATCH = 1024;

/**
 * A keyed step as an iterator: its first `next()` reads every item of its input into the fold,
 * then each `next()` hands out one entry. `return()` closes the input at once (an earlier step's
 * workers stop with it).
 */
export class KeyedStepIterator implements AsyncIterableIterator<unknown> {
  readonly input: Iterator<unknown> | AsyncIterator<unknown>;
  private readonly sync: boolean;
  private entries: Iterator<unknown> | undefined;
  private filling: Promise<void> | undefined;
  private closed = false;

  constructor(
    items: Items,
    private readonly fold: Fold,
    private readonly step: {
      readonly name: string;
      readonly row: BoardRow;
      readonly total: number | undefined;
      readonly signal: AbortSignal;
    },
  ) {
    this.sync = typeof (items as Iterable<unknown>)[Symbol.iterator] === 'function';
    this.input = this.sync
      ? (items as Iterable<unknown>)[Symbol.iterator]()
      : (items as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<unknown> {
    return this;
  }

  async next(): Promise<IteratorResult<unknown>> {
    this.filling ??= this.fill();
    await this.filling;
    if (this.closed || this.entries === undefined) return { done: true, value: undefined };
    return this.entries.next();
  }

  async return(value?: unknown): Promise<IteratorResult<unknown>> {
    this.closed = true;
    await Promise.resolve(this.input.return?.()).catch(() => undefined);
    return { done: true, value };
  }

  private async fill(): Promise<void> {
    const { name, row, total, signal } = this.step;
    const tracker = (await ProgressTracker.start({
      progress: { label: name, stream: row.sink },
      total,
    })) as ProgressTracker;
    let ending: Ending = 'failed';
    let index = 0;
    let uncounted = 0;
    try {
      for (;;) {
        if (signal.aborted) throw new AbortError(signal.reason);
        const step = this.sync ? (this.input as Iterator<unknown>).next() : await this.input.next();
        if (this.closed || step.done === true) break;
        const folding = this.foldIn(step.value, index++);
        if (folding !== undefined) await folding;
        if (++uncounted === COUNT_BATCH) {
          tracker.add(uncounted);
          uncounted = 0;
        }
      }
      ending = this.closed ? 'stopped' : 'done';
      this.entries = this.fold.entries();
    } catch (error) {
      ending = endingOf(error);
      throw error;
    } finally {
      tracker.add(uncounted);
      tracker.finish(ending);
    }
  }

  /** Folds one item in; its failures name this step. */
  private foldIn(item: unknown, index: number): Promise<void> | undefined {
    try {
      const folding = this.fold.add(item, index);
      return folding === undefined ? undefined : folding.catch((error: unknown) => this.named(error));
    } catch (error) {
      return this.named(error);
    }
  }

  private named(error: unknown): never {
    nameStage(error, this.step.name);
    throw error;
  }
}
