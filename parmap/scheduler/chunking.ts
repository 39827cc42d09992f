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
 *   trip (about 0.1 ms), and at most 20,000 items (8,000 from an input of unknown length).
 *
 * Until the first chunk has been measured, chunks hold a single item.
 */

/** The least work worth one message. */
export const MIN_CHUNK_MS = 10;
/** The most work in one chunk, so results and progress keep coming. */
export const MAX_CHUNK_MS = 250;
/** Upper bound of an automatic chunk: trivial items pay little per message, memory stays small. */
export const MAX_AUTO_CHUNK = 20_000;
/**
 * The bound for an input of unknown length (a stream): arrays under 64 KB stay out of V8's large
 * object space, which only a full collection frees, so a long stream's memory stays lower.
 */
export const MAX_STREAM_CHUNK = 8_000;
/** Guided rule: a chunk is at most the remaining items divided by this many per worker. */
export const GUIDED_SHARES_PER_WORKER = 2;

export class ChunkSizer {
  private measuredItems = 0;
  private measuredMs = 0;

  /**
   * @param fixed the `chunksize` option (a number), or `'auto'`
   * @param workers the number of workers
   * @param total the number of items, when known
   */
  constructor(
    private readonly fixed: number | 'auto',
    private readonly workers: number,
    private readonly total: number | undefined,
  ) {}

  /** The size of the next chunk, given how many items have been handed out already. */
  next(handedOut = 0): number {
    if (this.fixed !== 'auto') return this.fixed;
    if (this.measuredItems === 0) return 1;
    const perItemMs = this.measuredMs / this.measuredItems;
    const byTime = (ms: number) => (perItemMs > 0 ? ms / perItemMs : Number.POSITIVE_INFINITY);
    let size = byTime(MAX_CHUNK_MS);
    if (this.total !== undefined) {
      const remaining = Math.max(0, this.total - handedOut);
      size = Math.min(size, Math.ceil(remaining / (this.workers * GUIDED_SHARES_PER_WORKER)));
    }
    size = Math.max(size, byTime(MIN_CHUNK_MS));
    const cap = this.total === undefined ? MAX_STREAM_CHUNK : MAX_AUTO_CHUNK;
    return Math.max(1, Math.min(cap, Math.round(size)));
  }

  /** Records how long a worker spent on a chunk of `items` items. */
  record(items: number, ms: number): void {
    this.measuredItems += items;
    this.measuredMs += ms;
  }
}
