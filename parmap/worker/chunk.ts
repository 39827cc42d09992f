/**
 * Calls fn on the items of one chunk, in order. Shared by the workers and by the in-thread run of
 * `n: 1`, so a chunk fails, and `onError: 'return'` collects failures, the same way everywhere.
 * Failures carry what was thrown as it is: each side turns it into what it sends or rethrows.
 *
 * Items run one at a time until fn returns a promise; with `concurrency` above 1, the chunk then
 * keeps up to that many items in flight, so async functions overlap their waits, while a sync fn
 * pays nothing for the option.
 */
import { CANCELLED, MARK_CLAIM, MARK_OLDEST, MARK_STARTED, MARK_SYNC } from '../protocol.js';
import { isThenable } from './invoke.js';

/** An item that failed while its chunk went on (`onError: 'return'`). */
export interface ItemThrew {
  readonly at: number;
  readonly thrown: unknown;
}

/** A chunk whose items all ran (some may have failed, with `onError: 'return'`). */
export interface ItemsDone {
  readonly kind: 'done';
  readonly values: unknown[];
  readonly ms: number;
  readonly failures?: ItemThrew[];
  /** fn returned promises: items overlapped (see `concurrency`), which chunk sizing must allow for. */
  readonly awaited?: boolean;
}

export type ItemsOutcome =
  | ItemsDone
  | { readonly kind: 'threw'; readonly at: number; readonly thrown: unknown; readonly before: unknown[] };

export interface ItemsRun {
  readonly invoke: (item: unknown) => unknown;
  readonly onError: 'throw' | 'return';
  /**
   * The chunk's marks (see protocol.ts): the run counts items started and the oldest running
   * there, and stops between items once the claim mark is `CANCELLED`.
   */
  readonly marks: Int32Array;
  /**
   * Told each time the marks change (an item starts, the oldest one running changes), for a
   * watcher that cannot read them where they are (a process's parent).
   */
  readonly onMarks?: (() => void) | undefined;
  /** The most items in flight at once when fn returns promises. Default: 1. */
  readonly concurrency?: number | undefined;
}

/** The results of one chunk as they come in. */
class ChunkResults {
  readonly values: unknown[];
  failures: ItemThrew[] | undefined;
  /** Some item's call returned a promise. */
  awaited = false;
  private readonly began = performance.now();

  constructor(count: number) {
    this.values = new Array<unknown>(count);
  }

  failed(at: number, thrown: unknown): void {
    this.failures ??= [];
    this.failures.push({ at, thrown });
  }

  threw(at: number, thrown: unknown): ItemsOutcome {
    return { kind: 'threw', at, thrown, before: this.values.slice(0, at) };
  }

  done(): ItemsOutcome {
    const ms = performance.now() - this.began;
    const { values, failures } = this;
    const awaited = this.awaited ? { awaited: true } : {};
    if (failures === undefined) return { kind: 'done', values, ms, ...awaited };
    failures.sort((a, b) => a.at - b.at);
    return { kind: 'done', values, ms, failures, ...awaited };
  }
}

export async function runItems(items: readonly unknown[], run: ItemsRun): Promise<ItemsOutcome> {
  const results = new ChunkResults(items.length);
  for (let from = 0; ; ) {
    const stop = runWhileSync(items, from, run, results);
    if (stop === undefined) return results.done();
    if ('thrown' in stop) return results.threw(stop.at, stop.thrown);
    results.awaited = true;
    if ((run.concurrency ?? 1) > 1) return await new Overlap(items, run, results).from(stop.at, stop.pending);
    try {
      results.values[stop.at] = await stop.pending;
    } catch (thrown) {
      if (run.onError === 'throw') return results.threw(stop.at, thrown);
      results.failed(stop.at, thrown);
    }
    from = stop.at + 1;
  }
}

/**
 * Whether place `at` of a sparse array holds nothing: `Array.prototype.map` calls fn on no hole
 * and leaves one in its place among the results, as a run of a chunk does.
 */
export function isHole(values: ArrayLike<unknown>, at: number): boolean {
  return !(at in values);
}

/** What an item that is a hole leaves among the results: nothing. */
const HOLE = Symbol('hole');

/** Why {@link runWhileSync} stopped before the end. */
type SyncStop =
  | { readonly at: number; readonly pending: PromiseLike<unknown> }
  | { readonly at: number; readonly thrown: unknown };

/**
 * Runs items from `from` for as long as fn returns plain values: the hot loop of every sync fn,
 * kept free of awaits and calls other than fn (about 3 ns an item more than a bare loop; the same
 * loop in the async function with a callback per item cost 25). Stops at the end or a cancel
 * (`undefined`), at an item whose call returned a promise, or at one that threw, with
 * `onError: 'throw'`.
 */
function runWhileSync(
  items: readonly unknown[],
  from: number,
  run: ItemsRun,
  results: ChunkResults,
): SyncStop | undefined {
  const { invoke, marks, onMarks } = run;
  const { values } = results;
  const throwing = run.onError === 'throw';
  for (let at = from; at < items.length; at++) {
    if (marks[MARK_CLAIM] === CANCELLED) return undefined;
    marks[MARK_STARTED] = at + 1;
    if (onMarks !== undefined) onMarks();
    const item = items[at];
    if (item === undefined && isHole(items, at)) continue;
    let value: unknown;
    try {
      value = invoke(item);
      // Reading `then` runs the result's own code (a getter, a Proxy), which may throw too.
      if (isThenable(value)) return { at, pending: value };
    } catch (thrown) {
      if (throwing) return { at, thrown };
      results.failed(at, thrown);
      continue;
    }
    values[at] = value;
  }
  return undefined;
}

/**
 * The rest of a chunk once fn has returned a promise: items start in order while fewer than
 * `concurrency` are in flight. With `onError: 'throw'`, a failure starts no new item, waits for
 * those in flight, and reports the first failing item in input order with every result before it.
 */
class Overlap {
  private next = 0;
  private oldest = 0;
  private inFlight = 0;
  private stopping = false;
  private firstFailure: { at: number; thrown: unknown } | undefined;
  private readonly settled: Uint8Array;
  private finish: ((outcome: ItemsOutcome) => void) | undefined;

  constructor(
    private readonly items: readonly unknown[],
    private readonly run: ItemsRun,
    private readonly results: ChunkResults,
  ) {
    this.settled = new Uint8Array(items.length);
  }

  /** Continues from item `at`, whose call returned `pending`. */
  from(at: number, pending: PromiseLike<unknown>): Promise<ItemsOutcome> {
    this.next = at + 1;
    this.markOldest(at);
    return new Promise((resolve) => {
      this.finish = resolve;
      this.track(at, pending);
      this.launch();
    });
  }

  private launch(): void {
    const { items, run } = this;
    const limit = run.concurrency ?? 1;
    while (!this.stopping && this.inFlight < limit && this.next < items.length) {
      if (run.marks[MARK_CLAIM] === CANCELLED) {
        this.stopping = true;
        break;
      }
      const at = this.next++;
      run.marks[MARK_STARTED] = at + 1;
      if (items[at] === undefined && isHole(items, at)) {
        this.settle(at, true, HOLE);
        continue;
      }
      run.marks[MARK_SYNC] = at + 1;
      run.onMarks?.();
      let value: unknown;
      let pending: boolean;
      try {
        value = run.invoke(items[at]);
        pending = isThenable(value);
      } catch (thrown) {
        this.settle(at, false, thrown);
        continue;
      } finally {
        run.marks[MARK_SYNC] = 0;
        run.onMarks?.();
      }
      if (!pending) {
        this.settle(at, true, value);
        continue;
      }
      this.track(at, value as PromiseLike<unknown>);
      if (!this.stopping && this.inFlight < limit && this.next < items.length) {
        // The next item starts once the promises already settled have landed (an async fn that
        // computed without waiting): started one after another in one go, the first seemed to
        // run on through all the others' synchronous work, and a timeout stopped it.
        this.resumeSoon();
        return;
      }
    }
    if (this.inFlight === 0) this.end();
  }

  private resuming = false;

  private resumeSoon(): void {
    if (this.resuming) return;
    this.resuming = true;
    queueMicrotask(() => {
      this.resuming = false;
      this.launch();
    });
  }

  private track(at: number, pending: PromiseLike<unknown>): void {
    this.inFlight++;
    let settled: Promise<unknown>;
    try {
      // Reads the promise's `constructor`, whose getter may throw: that is the item's failure.
      settled = Promise.resolve(pending);
    } catch (thrown) {
      settled = Promise.reject(thrown);
    }
    settled.then(
      (value) => this.landed(at, true, value),
      (thrown: unknown) => this.landed(at, false, thrown),
    );
  }

  private landed(at: number, ok: boolean, value: unknown): void {
    this.inFlight--;
    this.settle(at, ok, value);
    this.launch();
  }

  private settle(at: number, ok: boolean, value: unknown): void {
    this.settled[at] = 1;
    if (ok) {
      if (value !== HOLE) this.results.values[at] = value;
    } else if (this.run.onError === 'return') this.results.failed(at, value);
    else {
      this.stopping = true;
      if (this.firstFailure === undefined || at < this.firstFailure.at) this.firstFailure = { at, thrown: value };
    }
    if (at !== this.oldest) return;
    let oldest = this.oldest;
    while (oldest < this.next && this.settled[oldest] === 1) oldest++;
    this.markOldest(oldest);
  }

  private markOldest(at: number): void {
    this.oldest = at;
    this.run.marks[MARK_OLDEST] = at + 1;
    this.run.onMarks?.();
  }

  private end(): void {
    const finish = this.finish;
    this.finish = undefined;
    if (finish === undefined) return;
    const failure = this.firstFailure;
    finish(failure === undefined ? this.results.done() : this.results.threw(failure.at, failure.thrown));
  }
}
