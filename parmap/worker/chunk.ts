/**
 * Calls fn on the items of one chunk, in order. Shared by the workers and by the in-thread run of
 * `n: 1`, so a chunk fails, and `onError: 'return'` collects failures, the same way everywhere.
 * Failures carry what was thrown as it is: each side turns it into what it sends or rethrows.
 *
 * Items run one at a time until fn returns a promise; with `concurrency` above 1, the chunk then
 * keeps up to that many items in flight, so async functions overlap their waits, while a sync fn
 * pays nothing for the option.
 */
import { isThenable } from './invoke.js';

/** An item that failed while its chunk went on (`onError: 'return'`). */
export interface ItemThrew {
  readonly at: number;
  readonly thrown: unknown;
}

export type ItemsOutcome =
  | { readonly kind: 'done'; readonly values: unknown[]; readonly ms: number; readonly failures?: ItemThrew[] }
  | { readonly kind: 'threw'; readonly at: number; readonly thrown: unknown; readonly before: unknown[] };

export interface ItemsRun {
  readonly invoke: (item: unknown) => unknown;
  readonly onError: 'throw' | 'return';
  /** Told as item `at` starts, just before fn is called; the hot loop pays for it only when given. */
  readonly onStart?: ((at: number) => void) | undefined;
  /** Stops between items once set (the chunk is no longer wanted). */
  readonly cancelled?: (() => boolean) | undefined;
  /** The most items in flight at once when fn returns promises. Default: 1. */
  readonly concurrency?: number | undefined;
  /**
   * Told, once items overlap, when the oldest item still running changes (`at` equals the number
   * of items started when none is running). Until then the oldest is the last one started.
   */
  readonly onOldest?: ((at: number) => void) | undefined;
}

/** The results of one chunk as they come in. */
class ChunkResults {
  readonly values: unknown[];
  failures: ItemThrew[] | undefined;
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
    if (failures === undefined) return { kind: 'done', values, ms };
    failures.sort((a, b) => a.at - b.at);
    return { kind: 'done', values, ms, failures };
  }
}

export async function runItems(items: readonly unknown[], run: ItemsRun): Promise<ItemsOutcome> {
  const { invoke, onError, onStart, cancelled } = run;
  const results = new ChunkResults(items.length);
  const overlapping = (run.concurrency ?? 1) > 1;
  for (let at = 0; at < items.length; at++) {
    if (cancelled?.()) break;
    onStart?.(at);
    try {
      let value = invoke(items[at]);
      if (isThenable(value)) {
        if (overlapping) return await new Overlap(items, run, results).from(at, value);
        value = await value;
      }
      results.values[at] = value;
    } catch (thrown) {
      if (onError === 'throw') return results.threw(at, thrown);
      results.failed(at, thrown);
    }
  }
  return results.done();
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
    this.oldest = at;
    this.run.onOldest?.(at);
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
      if (run.cancelled?.()) {
        this.stopping = true;
        break;
      }
      const at = this.next++;
      run.onStart?.(at);
      let value: unknown;
      try {
        value = run.invoke(items[at]);
      } catch (thrown) {
        this.settle(at, false, thrown);
        continue;
      }
      if (isThenable(value)) this.track(at, value);
      else this.settle(at, true, value);
    }
    if (this.inFlight === 0) this.end();
  }

  private track(at: number, pending: PromiseLike<unknown>): void {
    this.inFlight++;
    Promise.resolve(pending).then(
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
    if (ok) this.results.values[at] = value;
    else if (this.run.onError === 'return') this.results.failed(at, value);
    else {
      this.stopping = true;
      if (this.firstFailure === undefined || at < this.firstFailure.at) this.firstFailure = { at, thrown: value };
    }
    if (at !== this.oldest) return;
    while (this.oldest < this.next && this.settled[this.oldest] === 1) this.oldest++;
    this.run.onOldest?.(this.oldest);
  }

  private end(): void {
    const finish = this.finish;
    this.finish = undefined;
    if (finish === undefined) return;
    const failure = this.firstFailure;
    finish(failure === undefined ? this.results.done() : this.results.threw(failure.at, failure.thrown));
  }
}
