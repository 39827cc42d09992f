/**
 * The keyed steps of a pipeline, as pure state: `groupByKey` gathers every value under its key,
 * `reduceByKey` folds each value into its key's one accumulator as it arrives. No I/O, no workers:
 * the pipeline feeds them pairs and hands out what they hold once their input has ended.
 */
import { describeValue, ParmapGroupError, ParmapTaskError } from '../errors.js';
import { isThenable } from '../worker/invoke.js';

/** Checks that an item is a `[key, value]` pair, and names the item when it is not. */
export function checkPair(item: unknown, index: number): asserts item is readonly [unknown, unknown] {
  if (!Array.isArray(item) || item.length !== 2) {
    throw new ParmapGroupError(
      `item ${index} is not a [key, value] pair (an array of two elements): it is ${describeValue(item)}`,
      { index },
    );
  }
}

/**
 * Values gathered under their keys (compared as `Map` keys), keys in the order each first appeared.
 * Holds at most `limit` values: one more fails rather than exhausting memory.
 */
export class KeyGroups<K, V> {
  private readonly groups = new Map<K, V[]>();
  /** Values held so far. */
  held = 0;

  constructor(private readonly limit: number) {}

  /** Adds item `index` of the step's input, which must be a `[key, value]` pair. */
  add(item: unknown, index: number): void {
    checkPair(item, index);
    if (this.held === this.limit) {
      throw new ParmapGroupError(
        `groupByKey holds all its values until its input ends, and item ${index} is one more than its limit of ${this.limit.toLocaleString('en-US')} values. ` +
          "Raise `maxItems` (or the chain's `groupLimit`), or fold values as they come with reduceByKey.",
        { limit: this.limit },
      );
    }
    const [key, value] = item as readonly [K, V];
    const group = this.groups.get(key);
    if (group === undefined) this.groups.set(key, [value]);
    else group.push(value);
    this.held++;
  }

  /** The groups as `[key, values]`, in the order each key first appeared. */
  entries(): IterableIterator<[K, V[]]> {
    return this.groups.entries();
  }
}

/**
 * One accumulator per key, folded with `fn(acc, value)` as each pair arrives, so memory grows with
 * the number of keys only. The first value of a key is its accumulator, unless `initial(key)` makes one.
 */
export class KeyReducer<K, V, Acc> {
  private readonly accumulators = new Map<K, Acc>();

  constructor(
    private readonly fn: (acc: Acc, value: V) => Acc | PromiseLike<Acc>,
    private readonly initial: ((key: K) => Acc) | undefined,
  ) {}

  /** Keys held so far. */
  get held(): number {
    return this.accumulators.size;
  }

  /**
   * Folds item `index` in. Returns a promise only when fn did (an async fn): the caller awaits it
   * before the next item, so folds of a key never overlap.
   */
  add(item: unknown, index: number): Promise<void> | undefined {
    checkPair(item, index);
    const [key, value] = item as readonly [K, V];
    let acc: Acc;
    if (this.accumulators.has(key)) acc = this.accumulators.get(key) as Acc;
    else if (this.initial === undefined) {
      this.accumulators.set(key, value as unknown as Acc);
      return undefined;
    } else acc = this.call(() => (this.initial as (key: K) => Acc)(key), index) as Acc;
    const folded = this.call(() => this.fn(acc, value), index);
    if (!isThenable(folded)) {
      this.accumulators.set(key, folded as Acc);
      return undefined;
    }
    return Promise.resolve(folded).then(
      (settled) => {
        this.accumulators.set(key, settled);
      },
      (thrown: unknown) => {
        throw new ParmapTaskError(index, thrown);
      },
    );
  }

  /** The accumulators as `[key, acc]`, in the order each key first appeared. */
  entries(): IterableIterator<[K, Acc]> {
    return this.accumulators.entries();
  }

  /** Runs user code; what it throws becomes the item's task error. */
  private call<T>(run: () => T, index: number): T {
    try {
      return run();
    } catch (thrown) {
      throw new ParmapTaskError(index, thrown);
    }
  }
}
