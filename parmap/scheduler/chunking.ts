/**
 * How many items go into the next message to a worker. A fixed `chunksize` is used as given.
 * `'auto'` measures how long items take and combines three rules:
 *
 * - guided: when the total is known, a chunk holds at most the remaining items divided by twice
 *   the workers, so chunks are large at first (few messages) and shrink towards the end, where
 *   the last ones finish close together;
 * - lively: a chunk holds at most about a quarter of a second of work, so results and progress
 *   keep coming;
 * - worth a message: a chunk holds at least about 10 ms of work, which hides the message round
 *   trip (about 0.1 ms);
 * - overlapping: once fn has returned promises, a chunk holds at least `concurrency` items (or an
 *   even share of the rest per worker), since items overlap only within their chunk;
 * - small messages: a chunk holds at most 8,000 items, and items and results of at most about
 *   1 MiB together (or the call's share of `maxBytesInFlight`), as measured on earlier chunks.
 *   Larger arrays land in V8's large-object space, which only a full collection frees, and larger
 *   messages cost more per byte to copy and to parse; small ones also bound a stream's memory:
 *   V8 lets a heap grow to a multiple of what was alive at its last collection, so the bytes in
 *   flight are paid several times over (a stream of 200 KB strings peaked at about 230 MB of RSS
 *   with 2 MiB chunks, 170 MB with 1 MiB, at the same rate).
 *
 * Until the first chunk has been measured, chunks hold a single item.
 */

import { binaryBytes } from '../transfer.js';

/** The least work worth one message. */
export const MIN_CHUNK_MS = 10;
/** The most work in one chunk, so results and progress keep coming. */
export const MAX_CHUNK_MS = 250;
/** The most items in an automatic chunk: its arrays stay under 64 KB, out of the large-object space. */
export const MAX_AUTO_CHUNK = 8_000;
/** The most bytes of items and results one automatic chunk carries, whatever the budget. */
export const MAX_CHUNK_BYTES = 2 ** 20;
/** Guided rule: a chunk is at most the remaining items divided by this many per worker. */
export const GUIDED_SHARES_PER_WORKER = 2;

/**
 * A quick lower bound of the bytes `value` takes to send, for what can be large at no cost to
 * tell: a string (its length), binary data (its byte length). Anything else counts 0 here; its
 * bytes are known once its chunk has been encoded. It runs no code of the item's.
 */
export function roughBytes(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (typeof value !== 'object' || value === null) return 0;
  return binaryBytes(value) ?? 0;
}

/** The bytes one chunk may carry when `chunks` chunks may be on their way at once. */
export function chunkByteLimit(maxBytesInFlight: number, chunks: number): number {
  return Math.max(1, Math.min(MAX_CHUNK_BYTES, Math.floor(maxBytesInFlight / chunks)));
}

export class ChunkSizer {
  private measuredItems = 0;
  private measuredMs = 0;
  private weighedItems = 0;
  private weighedBytes = 0;

  /**
   * @param fixed the `chunksize` option (a number), or `'auto'`
   * @param workers the number of workers
   * @param total the number of items, when known
   * @param maxBytes the most bytes of items and results one chunk may carry
   */
  private readonly maxBytes: number;
  private readonly concurrency: number;
  /** fn has returned promises: its items overlap, `concurrency` at a time. */
  private awaited = false;

  constructor(
    private readonly fixed: number | 'auto',
    private readonly workers: number,
    private readonly total: number | undefined,
    limits: { readonly maxBytes?: number; readonly concurrency?: number } = {},
  ) {
    this.maxBytes = limits.maxBytes ?? MAX_CHUNK_BYTES;
    this.concurrency = limits.concurrency ?? 1;
  }

  /** The size of the next chunk, given how many items have been handed out already. */
  next(handedOut = 0): number {
    if (this.fixed !== 'auto') return this.fixed;
    if (this.measuredItems === 0) return 1;
    const perItemMs = this.measuredMs / this.measuredItems;
    const byTime = (ms: number) => (perItemMs > 0 ? ms / perItemMs : Number.POSITIVE_INFINITY);
    let size = byTime(MAX_CHUNK_MS);
    const remaining = this.total === undefined ? undefined : Math.max(0, this.total - handedOut);
    if (remaining !== undefined) {
      size = Math.min(size, Math.ceil(remaining / (this.workers * GUIDED_SHARES_PER_WORKER)));
    }
    size = Math.max(size, byTime(MIN_CHUNK_MS));
    if (this.awaited) {
      // Items that wait overlap only within a chunk: one of a single slow item (200 ms of waiting
      // is a chunk's worth of time) left `concurrency` doing nothing. At least that many items go,
      // or an even share of the rest per worker.
      const share = remaining === undefined ? this.concurrency : Math.ceil(remaining / this.workers);
      size = Math.max(size, Math.min(this.concurrency, share));
    }
    size = Math.round(size);
    const perItem = this.bytesPerItem();
    if (perItem !== undefined && perItem > 0) size = Math.min(size, Math.floor(this.maxBytes / perItem));
    return Math.max(1, Math.min(MAX_AUTO_CHUNK, size));
  }

  /**
   * The most bytes of items an automatic chunk is filled with, as {@link roughBytes} counts them:
   * an item that takes a chunk past it ends the chunk. None for a fixed `chunksize`.
   */
  get byteLimit(): number {
    return this.fixed === 'auto' ? this.maxBytes : Number.POSITIVE_INFINITY;
  }

  /** The bytes of one item and its result together, as measured so far, if they have been. */
  bytesPerItem(): number | undefined {
    return this.weighedItems === 0 ? undefined : this.weighedBytes / this.weighedItems;
  }

  /**
   * Records how long a worker spent on a chunk of `items` items and, when they crossed to a
   * worker, how many bytes its items and results took together; `awaited`: fn returned promises.
   */
  record(items: number, ms: number, bytes?: number, awaited = false): void {
    if (awaited) this.awaited = true;
    this.measuredItems += items;
    this.measuredMs += ms;
    if (bytes === undefined) return;
    this.weighedItems += items;
    this.weighedBytes += bytes;
  }
}
