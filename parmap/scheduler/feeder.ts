/**
 * Reads the input lazily, numbers the items, cuts them into chunks and submits a chunk whenever
 * the run has room for one, so only a bounded number of chunks exist at a time, whatever the
 * input's length.
 */
import type { ChunkValues } from '../transfer.js';
import { type ChunkSizer, roughBytes } from './chunking.js';
import { checkStep, type TakenInput } from './input.js';
import { closesAtOnce } from './result.js';

/** What sizes the chunks: the run's `ChunkSizer`, or a bound on it. */
export type ChunkSizes = Pick<ChunkSizer, 'next'> & Partial<Pick<ChunkSizer, 'byteLimit'>>;

/** Consecutive items; `start` is the input position of the first one. */
export interface Chunk {
  readonly sequence: number;
  readonly start: number;
  /** An array as read; numbers may then be kept packed while the chunk is on its way. */
  readonly items: ChunkValues;
  /** Its items' bytes, as far as they can be told before they are encoded (see `roughBytes`). */
  readonly bytes: number;
}

/**
 * How many of the first `size` items fill a chunk: all of them, or up to and including the one
 * that reaches `byteLimit` bytes; and their bytes.
 */
function fitting(items: readonly unknown[], size: number, byteLimit: number): { count: number; bytes: number } {
  const end = Math.min(size, items.length);
  let bytes = 0;
  for (let at = 0; at < end; at++) {
    bytes += roughBytes(items[at]);
    if (bytes >= byteLimit) return { count: at + 1, bytes };
  }
  return { count: end, bytes };
}

/** What the feeder asks of the run that owns it. */
export interface FeederHooks {
  /** Whether another chunk may be submitted now: some worker is idle and the caller keeps up. */
  hasRoom(): boolean;
  submit(chunk: Chunk): void;
  /** Reading the input failed (the iterator threw, or an item has the wrong shape). */
  /** `sequence`: the chunk the failing item would have gone in; every earlier chunk was submitted. */
  fail(error: unknown, sequence: number): void;
  /** The input has ended; called once. */
  ended(): void;
}

type ItemCheck = (item: unknown, index: number) => void;

/** What every feeder works with besides its input. */
interface FeederContext {
  readonly sizer: ChunkSizes;
  /** Throws a TypeError naming the item when it has the wrong shape for the call; none to check. */
  readonly checkItem: ItemCheck | undefined;
  readonly hooks: FeederHooks;
}

export abstract class Feeder {
  protected sequence = 0;
  protected nextIndex = 0;
  protected finished = false;
  protected closed = false;
  protected readonly sizer: ChunkSizes;
  protected readonly checkItem: ItemCheck | undefined;
  protected readonly hooks: FeederHooks;

  constructor(context: FeederContext) {
    this.sizer = context.sizer;
    this.checkItem = context.checkItem;
    this.hooks = context.hooks;
  }

  /** A feeder for a taken input; arrays are sliced rather than iterated. */
  static for(input: TakenInput, sizer: ChunkSizes, checkItem: ItemCheck | undefined, hooks: FeederHooks): Feeder {
    const context = { sizer, checkItem, hooks };
    if (input.kind === 'array') return new ArrayFeeder(input.array, input.length, context);
    if (input.kind === 'sync') return new IteratorFeeder(input.iterator, context);
    return new AsyncIteratorFeeder(input.iterator, context);
  }

  /** Submits chunks while the run has room. Call it whenever room may have appeared. */
  abstract pump(): void;

  /**
   * Stops reading and closes the input's iterator if it is not finished. Settles once the input
   * is closed, when that is sure to happen (another parmap call's results: its workers stopped);
   * at once otherwise.
   */
  abstract close(): Promise<void>;

  /** The most bytes of items a chunk is filled with. */
  protected get byteLimit(): number {
    return this.sizer.byteLimit ?? Number.POSITIVE_INFINITY;
  }

  protected emit(items: unknown[], bytes: number): void {
    const start = this.nextIndex;
    this.nextIndex += items.length;
    this.hooks.submit({ sequence: this.sequence++, start, items, bytes });
  }

  private endReported = false;

  /** Marks the input as exhausted and, once every item has been submitted, tells the run. */
  protected finish(allSubmitted = true): void {
    this.finished = true;
    if (allSubmitted && !this.endReported && !this.closed) {
      this.endReported = true;
      this.hooks.ended();
    }
  }
}

class ArrayFeeder extends Feeder {
  private position = 0;
  /**
   * @param length the array's length at the call, as `Array.prototype.map` takes it: items pushed
   *   since are not mapped, and places emptied meanwhile give holes
   */
  constructor(
    private readonly array: readonly unknown[],
    private readonly length: number,
    context: FeederContext,
  ) {
    super(context);
  }

  pump(): void {
    while (!this.closed && !this.finished && this.hooks.hasRoom()) {
      if (this.position >= this.length) {
        this.finish();
        return;
      }
      const end = Math.min(this.length, this.position + this.sizer.next(this.nextIndex));
      let items = this.array.slice(this.position, end);
      // Shortened since the call: the places it lost are holes.
      if (items.length < end - this.position) items.length = end - this.position;
      // The copy is weighed, not the array: an index with a getter is read once, as map reads it.
      const { count, bytes } = fitting(items, items.length, this.byteLimit);
      if (count < items.length) items = items.slice(0, count);
      const check = this.checkItem;
      let valid = 0;
      try {
        if (check !== undefined) for (; valid < items.length; valid++) check(items[valid], this.position + valid);
      } catch (error) {
        // The items before the bad one still run: their results come before the error.
        if (valid > 0) this.emit(items.slice(0, valid), bytes);
        this.finished = true;
        this.hooks.fail(error, this.sequence);
        return;
      }
      this.position += items.length;
      this.emit(items, bytes);
    }
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

class IteratorFeeder extends Feeder {
  constructor(
    private readonly iterator: Iterator<unknown>,
    context: FeederContext,
  ) {
    super(context);
  }

  pump(): void {
    while (!this.closed && !this.finished && this.hooks.hasRoom()) {
      const size = this.sizer.next(this.nextIndex);
      const { byteLimit } = this;
      const items: unknown[] = [];
      let bytes = 0;
      let ended = false;
      try {
        while (items.length < size && bytes < byteLimit) {
          const step = checkStep(this.iterator.next(), this.nextIndex + items.length);
          if (step.done) {
            ended = true;
            break;
          }
          this.checkItem?.(step.value, this.nextIndex + items.length);
          items.push(step.value);
          bytes += roughBytes(step.value);
        }
      } catch (error) {
        // An iterator that threw is finished; there is nothing to close. The items it gave
        // before still run: their results come before the error, whatever the chunk size.
        this.finished = true;
        if (items.length > 0) this.emit(items, bytes);
        this.hooks.fail(error, this.sequence);
        return;
      }
      if (items.length > 0) this.emit(items, bytes);
      if (ended) {
        this.finish();
        return;
      }
    }
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    if (!this.finished) {
      try {
        this.iterator.return?.();
      } catch {
        // The input's own clean-up failed; the call's outcome is already decided.
      }
    }
    return Promise.resolve();
  }
}

/**
 * Reads one item at a time from an async input into a buffer. A chunk is sent when it is full, or
 * partly filled when a worker is idle while the input is still producing: a worker never waits for
 * a chunk to fill, and the first result of a slow source comes after one item, not a whole chunk.
 */
class AsyncIteratorFeeder extends Feeder {
  private buffer: unknown[] = [];
  /** The bytes of the items in `buffer` (see `roughBytes`). */
  private bufferBytes = 0;
  private reading = false;
  private waitingForInput = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly iterator: AsyncIterator<unknown>,
    context: FeederContext,
  ) {
    super(context);
  }

  pump(): void {
    this.dispatch();
    if (!this.reading && !this.closed && !this.finished && this.wantsMore()) {
      this.reading = true;
      void this.read();
    }
  }

  /** Whether the buffer holds less than a chunk, in items and in bytes. */
  private wantsMore(): boolean {
    return this.buffer.length < this.sizer.next(this.nextIndex) && this.bufferBytes < this.byteLimit;
  }

  private dispatch(): void {
    while (!this.closed && this.buffer.length > 0 && this.hooks.hasRoom()) {
      const worthSending = !this.wantsMore() || this.finished || this.waitingForInput;
      if (!worthSending) return;
      this.emitBuffered(this.sizer.next(this.nextIndex));
    }
    if (this.finished && this.buffer.length === 0) this.finish();
  }

  /** Sends a chunk of the first buffered items, at most `size` of them. */
  private emitBuffered(size: number): void {
    const { count, bytes } = fitting(this.buffer, size, this.byteLimit);
    this.bufferBytes -= bytes;
    this.emit(this.buffer.splice(0, count), bytes);
  }

  private async read(): Promise<void> {
    try {
      while (!this.closed && !this.finished && this.wantsMore()) {
        this.waitingForInput = true;
        this.dispatch();
        const step = checkStep(await this.iterator.next(), this.nextIndex + this.buffer.length);
        this.waitingForInput = false;
        if (this.closed) return;
        if (step.done) {
          this.finish(this.buffer.length === 0);
          break;
        }
        this.checkItem?.(step.value, this.nextIndex + this.buffer.length);
        this.buffer.push(step.value);
        this.bufferBytes += roughBytes(step.value);
        this.dispatch();
      }
    } catch (error) {
      this.finished = true;
      this.waitingForInput = false;
      if (this.closed) return;
      // The items read before the failure still run: their results come before the error.
      while (this.buffer.length > 0) this.emitBuffered(this.buffer.length);
      this.hooks.fail(error, this.sequence);
      return;
    } finally {
      this.reading = false;
    }
    this.dispatch();
  }

  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closed = true;
    if (this.finished) {
      this.closing = Promise.resolve();
      return this.closing;
    }
    const returned = Promise.resolve()
      .then(() => this.iterator.return?.())
      .then(
        () => undefined,
        () => undefined,
      );
    // Waited for only from an earlier stage, whose return() stops its workers and settles even
    // while a next() is pending; an async generator queues return() behind a pending next(),
    // which a slow or endless source may never settle.
    this.closing = closesAtOnce(this.iterator) ? returned : Promise.resolve();
    return this.closing;
  }
}
