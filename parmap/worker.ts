/**
 * The script each worker runs (a thread or a child process). It compiles `fn` once, when the pool
 * sends the set-up, then calls it on every item of each chunk it is given.
 *
 * Replies travel as workerpool events rather than return values: sending is then a call made here,
 * so a result that cannot be cloned is caught here and reported with its item, instead of failing
 * inside workerpool with no item to name.
 */
import { deserialize, serialize } from 'node:v8';
import workerpool from 'workerpool';
import { createInvoker } from './call.js';
import { reportThrown, type ThrownReport } from './errors.js';
import type { CallShape } from './options.js';
import { isProvidedName, providedValue } from './prelude.js';

/** Everything a worker needs once: the function's code and the fixed arguments. */
export interface WorkerSetup {
  readonly body: string;
  readonly freeNames: readonly string[];
  readonly callerFile: string;
  readonly shape: CallShape;
}

/** What a worker says about a chunk. `at` is the position within the chunk. */
export type ChunkReply =
  | { readonly kind: 'done'; readonly values: unknown[]; readonly ms: number }
  | { readonly kind: 'threw'; readonly at: number; readonly thrown: ThrownReport }
  | { readonly kind: 'uncloneable'; readonly at: number; readonly message: string }
  | { readonly kind: 'notSetUp' };

/** What a worker says about its set-up: `undefined` when it is ready for chunks. */
export type SetupFailure = { readonly missing: readonly string[]; readonly thrown?: ThrownReport } | undefined;

let invoke: ((item: unknown) => unknown) | undefined;

/** Receives the set-up, serialized once by the pool and copied to every worker as bytes. */
function setUp(serializedSetup: Uint8Array): SetupFailure {
  const setup = deserialize(serializedSetup) as WorkerSetup;
  const names: string[] = [];
  const values: unknown[] = [];
  const missing: string[] = [];
  for (const name of setup.freeNames) {
    if (isProvidedName(name)) {
      names.push(name);
      values.push(providedValue(name, setup.callerFile));
    } else if (!(name in globalThis)) {
      missing.push(name);
    }
  }
  if (missing.length > 0) return { missing };
  try {
    const fn = new Function(...names, setup.body)(...values) as (...args: unknown[]) => unknown;
    invoke = createInvoker(fn, setup.shape);
    return undefined;
  } catch (error) {
    return { missing: [], thrown: reportThrown(error) };
  }
}

async function runChunk(items: readonly unknown[]): Promise<void> {
  if (invoke === undefined) return send({ kind: 'notSetUp' });
  const values = new Array<unknown>(items.length);
  const started = performance.now();
  for (let i = 0; i < items.length; i++) {
    try {
      let value = invoke(items[i]);
      if (isThenable(value)) value = await value;
      values[i] = value;
    } catch (error) {
      return send({ kind: 'threw', at: i, thrown: reportThrown(error) });
    }
  }
  send({ kind: 'done', values, ms: performance.now() - started });
}

function send(reply: ChunkReply): void {
  try {
    workerpool.workerEmit(reply);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    workerpool.workerEmit({
      kind: 'uncloneable',
      at: reply.kind === 'done' ? firstUncloneable(reply.values) : -1,
      message,
    });
  }
}

function firstUncloneable(values: readonly unknown[]): number {
  for (let i = 0; i < values.length; i++) {
    try {
      serialize(values[i]);
    } catch {
      return i;
    }
  }
  return -1;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

workerpool.worker({ setUp, runChunk });
