/**
 * What reaches the caller, and in which order: finished chunks (in input order when ordered, as
 * they finish otherwise) and the call's failure. A pure state machine, no workers: the run tells
 * it what finished and what failed, and asks it what the caller may have next.
 *
 * The rules for a failure: the first in input order wins (an ordered call failing at item 10 and
 * then at item 3 reports item 3, as `Array.map` would); a caller reading results one by one gets
 * every result before the failing item first; a caller awaiting the whole array gets the first
 * failure at once.
 */
import type { Chunk } from './feeder.js';
import { ReorderBuffer } from './reorder.js';

/** A chunk's results as they come in; complete when `remaining` is 0. */
export interface ChunkResults {
  readonly chunk: Chunk;
  values: unknown[];
  remaining: number;
  failures: number;
  /** Places filled so far, kept once the chunk is split (only then can a place be missing). */
  filled?: Set<number>;
}

/** Puts the result (or error) of one place of a chunk. */
export function fill(results: ChunkResults, position: number, value: unknown): void {
  results.values[position] = value;
  results.filled?.add(position);
}

/** A failure on its way to the caller. */
export interface Failure {
  readonly error: unknown;
  /**
   * The chunk it belongs to: in an ordered call the results of every earlier chunk reach the
   * caller first. `undefined`: it ends the call at once (an abort, a broken progress callback).
   */
  readonly sequence: number | undefined;
  /** The failing chunk and the place of the failing item: its results before that place come first. */
  readonly within?: { readonly results: ChunkResults; readonly position: number };
}

export type Delivered<R> =
  | { readonly kind: 'results'; readonly values: R[]; readonly counted: boolean }
  | { readonly kind: 'error'; readonly error: unknown };

export class Delivery<R> {
  private readonly reorder = new ReorderBuffer<R[]>();
  private readonly ready: R[][] = [];
  private current: Failure | undefined;
  /** The failure has been handed to the caller. */
  private delivered = false;

  constructor(
    private readonly ordered: boolean,
    /** The caller reads results one by one (`for await`), not the whole array. */
    private readonly streaming: boolean,
  ) {}

  get failure(): Failure | undefined {
    return this.current;
  }

  /** Whether the caller has been given the failure: the call is over. */
  get over(): boolean {
    return this.delivered;
  }

  /** A whole chunk finished. */
  finished(results: ChunkResults): void {
    if (this.ordered) this.reorder.put(results.chunk.sequence, results.values as R[]);
    else this.ready.push(results.values as R[]);
  }

  /** Results handed out ahead of their chunk (unordered: what ran before a failing item). */
  early(values: readonly unknown[]): void {
    this.ready.push(values as R[]);
  }

  /** Records a failure, unless one that comes first is already there. Whether it was recorded. */
  fail(given: Failure): boolean {
    if (this.delivered) return false;
    const failure = this.streaming ? given : { error: given.error, sequence: undefined };
    if (this.current !== undefined && !comesFirst(failure, this.current, this.ordered)) return false;
    this.current = failure;
    return true;
  }

  /** A failure that has nothing to wait for: the caller gets nothing more but the error. */
  failNow(error: unknown): void {
    this.current ??= { error, sequence: undefined };
    this.delivered = true;
  }

  /**
   * What the caller gets next, or `undefined` while it must wait. `counted` results are those of
   * a chunk the run fed (and counts as taken); the last results before a failure are not.
   */
  next(): Delivered<R> | undefined {
    if (this.delivered) return { kind: 'error', error: this.current?.error };
    const values = this.takeReady();
    if (values !== undefined) return { kind: 'results', values, counted: true };
    const failure = this.current;
    if (failure === undefined || !this.due(failure)) return undefined;
    this.delivered = true;
    const { within } = failure;
    if (this.ordered && within !== undefined && within.position > 0) {
      return { kind: 'results', values: within.results.values.slice(0, within.position) as R[], counted: false };
    }
    return { kind: 'error', error: failure.error };
  }

  /** Whether, after a failure, a task of this chunk over these places still matters. */
  stillOwed(sequence: number, lastPosition: number): boolean {
    const failure = this.current;
    if (failure === undefined) return true;
    if (!this.ordered || failure.sequence === undefined) return false;
    if (sequence !== failure.sequence) return sequence < failure.sequence;
    return failure.within !== undefined && lastPosition < failure.within.position;
  }

  /** Finished results the caller may have now: in order when ordered, and none past a failure. */
  private takeReady(): R[] | undefined {
    const failure = this.current;
    if (this.ordered) {
      const stop = failure === undefined ? undefined : (failure.sequence ?? 0);
      if (stop !== undefined && this.reorder.nextSequence >= stop) return undefined;
      return this.reorder.takeNext();
    }
    if (failure !== undefined && failure.sequence === undefined) return undefined;
    return this.ready.shift();
  }

  /** Whether everything that must reach the caller before the failure has. */
  private due(failure: Failure): boolean {
    if (failure.sequence === undefined || !this.ordered) return true;
    if (this.reorder.nextSequence < failure.sequence) return false;
    return failure.within === undefined || filledBefore(failure.within.results, failure.within.position);
  }
}

/** Whether every place of a chunk before `position` has its result. */
function filledBefore(results: ChunkResults, position: number): boolean {
  const { filled } = results;
  if (filled === undefined) return true;
  for (let place = 0; place < position; place++) if (!filled.has(place)) return false;
  return true;
}

/** Whether failure `a` reaches the caller instead of `b`: the one at the earlier item, when ordered. */
function comesFirst(a: Failure, b: Failure, ordered: boolean): boolean {
  if (a.sequence === undefined) return true;
  if (!ordered || b.sequence === undefined) return false;
  if (a.sequence !== b.sequence) return a.sequence < b.sequence;
  return (a.within?.position ?? 0) < (b.within?.position ?? 0);
}
