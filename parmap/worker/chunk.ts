/**
 * Calls fn on the items of one chunk, in order. Shared by the workers and by the in-thread run of
 * `n: 1`, so a chunk fails, and `onError: 'return'` collects failures, the same way everywhere.
 * Failures carry what was thrown as it is: each side turns it into what it sends or rethrows.
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
  /** Told as each item starts; the hot loop pays for it only when given. */
  readonly onStart?: ((at: number) => void) | undefined;
  /** Stops between items once set (the chunk is no longer wanted). */
  readonly cancelled?: (() => boolean) | undefined;
}

export async function runItems(items: readonly unknown[], run: ItemsRun): Promise<ItemsOutcome> {
  const { invoke, onError, onStart, cancelled } = run;
  const values = new Array<unknown>(items.length);
  let failures: ItemThrew[] | undefined;
  const started = performance.now();
  for (let at = 0; at < items.length; at++) {
    if (cancelled?.()) break;
    onStart?.(at);
    try {
      let value = invoke(items[at]);
      if (isThenable(value)) value = await value;
      values[at] = value;
    } catch (thrown) {
      if (onError === 'throw') return { kind: 'threw', at, thrown, before: values.slice(0, at) };
      failures ??= [];
      failures.push({ at, thrown });
    }
  }
  const ms = performance.now() - started;
  return failures === undefined ? { kind: 'done', values, ms } : { kind: 'done', values, ms, failures };
}
