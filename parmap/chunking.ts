/**
 * How many items go into the next message to a worker. A fixed `chunksize` is used as given; with
 * `'auto'` the size follows the measured time per item.
 */

/** The work one chunk should hold: long enough to hide a message round trip (about 0.1 ms). */
export const TARGET_CHUNK_MS = 10;
/** Upper bound of an automatic chunk, so memory per message stays small. */
export const MAX_AUTO_CHUNK = 1000;
/** Each worker's share is cut into at least this many chunks, so the last ones end together. */
export const CHUNKS_PER_WORKER = 4;

export class ChunkSizer {
  private measuredItems = 0;
  private measuredMs = 0;
  private readonly ceiling: number;

  /**
   * @param fixed the `chunksize` option (a number), or `'auto'`
   * @param workers the number of workers
   * @param total the number of items, when known
   */
  constructor(
    private readonly fixed: number | 'auto',
    workers: number,
    total: number | undefined,
  ) {
    const share = total === undefined ? MAX_AUTO_CHUNK : Math.ceil(total / (workers * CHUNKS_PER_WORKER));
    this.ceiling = Math.max(1, Math.min(MAX_AUTO_CHUNK, share));
  }

  /** The size of the next chunk. Until a chunk has been measured, auto starts with single items. */
  next(): number {
    if (this.fixed !== 'auto') return this.fixed;
    if (this.measuredItems === 0) return 1;
    const perItemMs = this.measuredMs / this.measuredItems;
    if (perItemMs <= 0) return this.ceiling;
    return Math.max(1, Math.min(this.ceiling, Math.round(TARGET_CHUNK_MS / perItemMs)));
  }

  /** Records how long a worker spent on a chunk of `items` items. */
  record(items: number, ms: number): void {
    this.measuredItems += items;
    this.measuredMs += ms;
  }
}
