/**
 * The script each worker runs (a thread or a child process). It compiles `fn` once, when the pool
 * sends the set-up, then calls it on every item of each chunk it is given.
 *
 * Replies travel as workerpool events rather than return values: sending is then a call made here,
 * so a result that cannot be cloned is caught here and reported with its item, instead of failing
 * inside workerpool with no item to name.
 */
import { createRequire } from 'node:module';
import { deserialize } from 'node:v8';
import { isMainThread, type MessagePort, workerData } from 'node:worker_threads';
import { createInvoker, isThenable } from './call.js';
import { cloneProblem, firstUncloneable, reportThrown, type ThrownReport } from './errors.js';
import type { CallShape } from './options.js';
import { isProvidedName, providedValue } from './prelude.js';

/** Everything a worker needs once: the function's code, the fixed arguments, how to report. */
export interface WorkerSetup {
  readonly body: string;
  readonly freeNames: readonly string[];
  /** Scope values that are plain data, given to the body as parameters. */
  readonly scopeData: Readonly<Record<string, unknown>>;
  readonly callerFile: string;
  readonly shape: CallShape;
  /** `'return'`: an item that fails is reported and the chunk goes on; `'throw'`: the chunk stops. */
  readonly onError: 'throw' | 'return';
  /** Send an event as each item starts (process workers with a timeout; threads share a counter). */
  readonly reportStarts: boolean;
}

/** An item of a chunk that failed while the chunk went on (`onError: 'return'`). */
export interface ItemFailure {
  readonly at: number;
  /** What fn threw, or `undefined` when the result could not be sent back. */
  readonly thrown?: ThrownReport;
  /** Why the result could not be sent back. */
  readonly uncloneable?: string;
}

/** What a worker says about a chunk. `at` is the position within the chunk. */
export type ChunkReply =
  | {
      readonly kind: 'done';
      readonly values: unknown[];
      readonly ms: number;
      readonly failures?: readonly ItemFailure[];
    }
  | { readonly kind: 'threw'; readonly at: number; readonly thrown: ThrownReport }
  | { readonly kind: 'uncloneable'; readonly at: number; readonly message: string }
  | { readonly kind: 'notSetUp' }
  | { readonly kind: 'setupFailed'; readonly missing: readonly string[]; readonly thrown?: ThrownReport };

/** An event while a chunk runs: item `at` has started (sent only when `reportStarts`). */
export interface ItemStarted {
  readonly kind: 'started';
  readonly at: number;
}

/** What a worker says about its set-up: `undefined` when it is ready for chunks. */
export type SetupFailure = { readonly missing: readonly string[]; readonly thrown?: ThrownReport } | undefined;

/**
 * The worker half of workerpool alone (what `workerpool.worker` and `workerEmit` call): its main
 * module would also load the pool half, which a worker never uses, and slow every worker's start.
 */
const workerpool = createRequire(import.meta.url)('workerpool/src/worker.js') as {
  add(methods: Record<string, (...args: never[]) => unknown>): void;
  emit(payload: unknown): void;
};

let invoke: ((item: unknown) => unknown) | undefined;
let onError: 'throw' | 'return' = 'throw';
let reportStarts = false;

/** Receives the set-up, serialized once by the pool and copied to every worker as bytes. */
function setUp(serializedSetup: Uint8Array): SetupFailure {
  if (invoke !== undefined) return undefined;
  const setup = deserialize(serializedSetup) as WorkerSetup;
  const names: string[] = Object.keys(setup.scopeData);
  const values: unknown[] = Object.values(setup.scopeData);
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
    onError = setup.onError;
    reportStarts = setup.reportStarts;
    return undefined;
  } catch (error) {
    return { missing: [], thrown: reportThrown(error) };
  }
}

/**
 * Runs fn on each item. `startedCount`, shared with the main thread, holds how many items have
 * started, so the main thread knows which item is running (for timeouts, and to name the item a
 * dying worker was running). A process worker the pool made to replace a dead one gets its
 * set-up here.
 */
async function runChunk(items: readonly unknown[], startedCount?: Int32Array, setup?: Uint8Array): Promise<void> {
  sendReply(workerpool.emit, await processChunk(items, startedCount, setup));
}

async function processChunk(
  items: readonly unknown[],
  startedCount: Int32Array | undefined,
  setup?: Uint8Array,
): Promise<ChunkReply> {
  if (invoke === undefined && setup !== undefined) setupFailure = setUp(setup);
  if (setupFailure !== undefined) return { kind: 'setupFailed', ...setupFailure };
  if (invoke === undefined) return { kind: 'notSetUp' };
  const values = new Array<unknown>(items.length);
  let failures: ItemFailure[] | undefined;
  const started = performance.now();
  for (let i = 0; i < items.length; i++) {
    // A plain store: cheaper than Atomics.store in this loop, and an aligned int32 never tears.
    if (startedCount !== undefined) startedCount[0] = i + 1;
    if (reportStarts) workerpool.emit({ kind: 'started', at: i } satisfies ItemStarted);
    try {
      let value = invoke(items[i]);
      if (isThenable(value)) value = await value;
      values[i] = value;
    } catch (error) {
      if (onError === 'throw') return { kind: 'threw', at: i, thrown: reportThrown(error) };
      failures ??= [];
      failures.push({ at: i, thrown: reportThrown(error) });
    }
  }
  const ms = performance.now() - started;
  return failures === undefined ? { kind: 'done', values, ms } : { kind: 'done', values, ms, failures };
}

/**
 * Sends a reply. Sending is a call made here, so a result that cannot be cloned is caught here and
 * reported with its item: in `'return'` mode each such result becomes its item's failure.
 */
function sendReply(post: (reply: ChunkReply) => void, reply: ChunkReply): void {
  try {
    post(reply);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (reply.kind !== 'done') {
      post({ kind: 'uncloneable', at: -1, message });
    } else if (onError === 'throw') {
      post({ kind: 'uncloneable', at: firstUncloneable(reply.values), message });
    } else {
      const failures = [...(reply.failures ?? [])];
      const values = reply.values.map((value, at) => {
        const problem = cloneProblem(value);
        if (problem === undefined) return value;
        failures.push({ at, uncloneable: problem });
        return undefined;
      });
      post({ ...reply, values, failures });
    }
  }
}

// A process worker whose parent has gone (the caller exited mid-call) leaves quietly, instead of
// dying loud on a reply it can no longer send.
if (process.send !== undefined) {
  process.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE' || error.code === 'ERR_IPC_CHANNEL_CLOSED') process.exit(0);
    throw error;
  });
}

/** What a thread gets with its start: its set-up, and its own port for chunks and replies. */
export interface ThreadStart {
  readonly setup: Uint8Array;
  readonly port: MessagePort;
}

/** A chunk on a thread's port: its id, its items, the counter of items started. */
export type PortChunk = readonly [id: number, items: readonly unknown[], startedCount: Int32Array];

let setupFailure: SetupFailure;

if (!isMainThread && workerData !== null && typeof workerData === 'object' && 'port' in workerData) {
  // A thread: set up now (a failure is told with the first chunk), then take chunks from its
  // port one after the other, however many are waiting.
  const { setup, port } = workerData as ThreadStart;
  setupFailure = setUp(setup);
  let previous: Promise<void> = Promise.resolve();
  port.on('message', ([id, items, startedCount]: PortChunk) => {
    previous = previous.then(async () => {
      const reply = await processChunk(items, startedCount);
      sendReply((message) => port.postMessage([id, message]), reply);
    });
  });
}

workerpool.add({ setUp, runChunk });
