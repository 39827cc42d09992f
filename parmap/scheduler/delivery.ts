/**
 * What reaches the caller, and in which order: finished chunks (in input order when ordered, as
 * they finish otherwise) and the call's failure. A pure state machine, no workers: the run tells
 * it what finished and what failed, and asks it what the caller may have next.
 *
 * The rules for a failure: the first in input order wins (an ordered call failing at item 10 and
 * then at item 3 reports item 3, as `Array.map` would); a caller reading results one by one gets
 * every result before the failing item first; a caller awaiting the whole array gets the first
 * failure at once.
 *
 * It is also where a call's stage applies (filter, flatMap): to a chunk's results as they are handed
 * out, since fn runs in workers the same way for every stage.
 */
import { types } from 'node:util';
import type { StageKind } from '../job.js';
import { unpacked } from '../transfer.js';
import type { Chunk } from './feeder.js';
import { ReorderBuffer } from './reorder.js';

/** A chunk's results as they come in; complete when `remaining` is 0. */
export interface ChunkResults {
  readonly chunk: Chunk;
  /** Numbers may stay packed (see transfer.ts) as long as no place is written to. */
  values: unknown[] | Float64Array;
  remaining: number;
  failures: number;
  /** The bytes its items and results take on their way, as best known now (see `CallRun`). */
  bytes: number;
  /** Places filled so far, kept once the chunk is split (only then can a place be missing). */
  filled?: Set<number>;
  /** Places that hold their item's error (`onError: 'return'`) rather than fn's result. */
  failed?: Set<number>;
}

/** Puts the result (or error) of one place of a chunk. */
export function fill(results: ChunkResults, position: number, value: unknown): void {
  if (results.values instanceof Float64Array) results.values = unpacked(results.values);
  results.values[position] = value;
  results.filled?.add(position);
}

/**
 * Puts the results of a task's first `count` places, from the worker's `values` (by place in the
 * task). A hole there, an item that was a hole of a sparse array, stays a hole, as in
 * `Array.prototype.map`'s result.
 */
export function fillPlaces(
  results: ChunkResults,
  positions: readonly number[],
  values: ArrayLike<unknown>,
  count: number,
): void {
  results.filled ??= new Set();
  for (let at = 0; at < count; at++) {
    const position = positions[at] as number;
    const value = values[at];
    if (value === undefined && !(at in values)) results.filled.add(position);
    else fill(results, position, value);
  }
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

/** Results the caller gets at once, and how many input items they stand for. */
interface Batch<R> {
  /** An array, or numbers kept packed for a caller reading them one by one. */
  readonly values: ArrayLike<R>;
  readonly inputs: number;
  /** The bytes the run counted for them in flight. */
  readonly bytes: number;
}

export type Delivered<R> =
  | {
      readonly kind: 'results';
      readonly values: ArrayLike<R>;
      readonly counted: boolean;
      readonly inputs: number;
      readonly bytes: number;
    }
  | { readonly kind: 'error'; readonly error: unknown };

/**
 * What the caller gets of some results of a chunk, by the call's stage. `'map'`: the results as
 * they are. `'filter'`: the items whose result is truthy (the items themselves, not copies back
 * from a worker). `'flatMap'`: each result spread one level, as `Array.prototype.flatMap` does
 * (an array's elements, holes skipped), and also a Set's values and a Map's `[key, value]`
 * entries; anything else (a string, a typed array, an object) is one element. A place that holds
 * its item's error (`onError: 'return'`) gives that error, as one element, in every stage.
 */
export function stageResults(
  stage: StageKind,
  items: ArrayLike<unknown>,
  values: ArrayLike<unknown>,
  failed: ReadonlySet<number> | undefined,
): ArrayLike<unknown> {
  if (stage === 'map') return values;
  const kept: unknown[] = [];
  for (let place = 0; place < items.length; place++) {
    const value = values[place];
    // A hole of a sparse input, which filter and flatMap skip.
    if (value === undefined && !(place in values)) continue;
    if (failed?.has(place)) kept.push(value);
    else if (stage === 'flatMap') spreadInto(kept, value);
    else if (value) kept.push(items[place]);
  }
  return kept;
}

function spreadInto(kept: unknown[], value: unknown): void {
  if (Array.isArray(value)) {
    for (let at = 0; at < value.length; at++) if (at in value) kept.push(value[at]);
  } else if (types.isSet(value) || types.isMap(value)) {
    for (const element of value as Iterable<unknown>) kept.push(element);
  } else kept.push(value);
}

export class Delivery<R> {
  private readonly reorder = new ReorderBuffer<Batch<R>>();
  private readonly ready: Batch<R>[] = [];
  private current: Failure | undefined;
  /** The failure has been handed to the caller. */
  private delivered = false;

  constructor(
    private readonly ordered: boolean,
    /** The caller reads results one by one (`for await`), not the whole array. */
    private readonly streaming: boolean,
    private readonly stage: StageKind = 'map',
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
    const { items } = results.chunk;
    const batch = {
      values: this.shape(items, results.values, results.failed),
      inputs: items.length,
      bytes: results.bytes,
    };
    if (this.ordered) this.reorder.put(results.chunk.sequence, batch);
    else this.ready.push(batch);
  }

  /**
   * Results handed out ahead of their chunk (unordered: what ran before a failing item), with
   * their items. They stand for no input items: after a failure, nothing more is fed.
   */
  early(items: ArrayLike<unknown>, values: ArrayLike<unknown>): void {
    this.ready.push({ values: this.shape(items, values, undefined), inputs: 0, bytes: 0 });
  }

  /** Records a failure, unless one that comes first is already there. Whether it was recorded. */
  fail(given: Failure): boolean {
    if (this.delivered) return false;
    if (!this.streaming) {
      // Awaited, the call fails at once, with the earliest item's failure known by then, as
      // Array.map throws the first: each later one had replaced it (two items failing gave either).
      // One that ends the call at once (an abort) wins.
      if (this.awaitedGiven !== undefined && !comesFirst(given, this.awaitedGiven, true)) return false;
      this.awaitedGiven = given;
      this.current = { error: given.error, sequence: undefined };
      return true;
    }
    if (this.current !== undefined && !comesFirst(given, this.current, this.ordered)) return false;
    this.current = given;
    return true;
  }

  /** An awaited call's failure as it was given, with its place in the input. */
  private awaitedGiven: Failure | undefined;

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
    const batch = this.takeReady();
    if (batch !== undefined) {
      return { kind: 'results', values: batch.values, counted: true, inputs: batch.inputs, bytes: batch.bytes };
    }
    const failure = this.current;
    if (failure === undefined || !this.due(failure)) return undefined;
    this.delivered = true;
    const { within } = failure;
    if (this.ordered && within !== undefined && within.position > 0) {
      const { chunk, values, failed } = within.results;
      const before = this.shape(chunk.items.slice(0, within.position), values.slice(0, within.position), failed);
      return { kind: 'results', values: before, counted: false, inputs: 0, bytes: 0 };
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

  private shape(
    items: ArrayLike<unknown>,
    values: ArrayLike<unknown>,
    failed: ReadonlySet<number> | undefined,
  ): ArrayLike<R> {
    return stageResults(this.stage, items, values, failed) as ArrayLike<R>;
  }

  /** Finished results the caller may have now: in order when ordered, and none past a failure. */
  private takeReady(): Batch<R> | undefined {
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
