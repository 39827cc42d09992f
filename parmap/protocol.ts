/**
 * Every message between the main side and a worker, defined once and imported by both sides, so
 * a message cannot be misspelt on one side only. Workers are reached through workerpool: a chunk
 * is one `exec('runChunk', [request])`, and the worker answers with events (`workerEmit`) rather
 * than a return value, because sending is then a call the worker makes itself and a result that
 * cannot be cloned is caught there, with its item.
 */
import type { MessagePort } from 'node:worker_threads';
import type { ThrownReport } from './errors.js';
import type { Payload } from './transfer.js';

/** How an item becomes `fn`'s arguments. */
export interface CallShape {
  readonly star: boolean;
  readonly kwstar: boolean;
  readonly args: readonly unknown[];
  readonly kwargs: Readonly<Record<string, unknown>> | undefined;
}

/** A function sent as its source text: a body that returns it, with the scope it needs. */
export interface SourceFunction {
  readonly kind: 'source';
  /** A function body that declares the scope values holding code, and returns the function. */
  readonly body: string;
  /** Variables the body uses without declaring them: globals, helpers, or missing ones. */
  readonly freeNames: readonly string[];
  /** Scope values that are plain data, given to the body as parameters. */
  readonly scopeData: Readonly<Record<string, unknown>>;
  /** Free names that are coverage counters put in by an instrumenting tool: given a sink. */
  readonly coverageCounters: readonly string[];
}

/** A function a worker imports from a module: `(await import(url))[exportName]`. */
export interface ModuleFunction {
  readonly kind: 'module';
  /** A `file:` URL or a package name, resolved from the caller's file. */
  readonly specifier: string;
  readonly exportName: string;
}

export type FunctionRef = SourceFunction | ModuleFunction;

/** Everything a worker needs for one call, sent once per worker per call. */
export interface CallSetup {
  /** Unique within the calling process: workers keep set-ups by it. */
  readonly id: string;
  readonly fn: FunctionRef;
  /** Runs once per worker before its first item; its value is passed to fn. */
  readonly context: FunctionRef | undefined;
  /** Runs once per worker with the context value when the worker shuts down. */
  readonly teardown: FunctionRef | undefined;
  /** The file that called parmap: `require`, `import()` and `__dirname` inside fn resolve from it. */
  readonly callerFile: string;
  readonly shape: CallShape;
  /** `'return'`: an item that fails is reported and the chunk goes on; `'throw'`: the chunk stops. */
  readonly onError: 'throw' | 'return';
  /** Items of one chunk in flight at once inside a worker (async functions overlap their waits). */
  readonly concurrency: number;
  /**
   * `parmap.filter`: only whether each result is truthy comes back, so a result that could not
   * cross (a function) or that is large costs nothing.
   */
  readonly keepsTruth?: boolean;
}

/** One chunk for a worker: `exec('runChunk', [request])`. */
export interface ChunkRequest {
  readonly setupId: string;
  /** The encoded {@link CallSetup}, attached while some worker may not have it yet. */
  readonly setup: Payload | undefined;
  readonly items: Payload;
  /** Threads only: the chunk's marks ({@link newChunkMarks}), shared with the main side. */
  readonly progress: Int32Array | undefined;
  /**
   * Processes only, when the call has a timeout: the chunk's key in the worker's progress file,
   * where the worker writes the chunk's marks as each item starts (see {@link PROGRESS_FILE_INTS}).
   */
  readonly progressKey?: number | undefined;
  /**
   * With `progressKey`: where the worker makes its progress file, an absolute path to which it
   * adds its pid. The parent chooses it, so it can remove what a worker leaves there.
   */
  readonly progressPrefix?: string | undefined;
  /**
   * Threads only, for a chunk sent as a workerpool task: the key under which the thread answers on
   * its chunk port ({@link PortReply}), as it answers queued chunks. workerpool drops the events of
   * a worker's tasks once it hears of its end, and an answer sent just before an error ended the
   * thread would be lost with them; the port still holds it.
   */
  readonly replyKey?: number | undefined;
}

/**
 * Where a chunk has got, as four int32 marks. A thread shares them with the main side; a process
 * or the in-thread run keeps its own. Items write and read them as plain memory, so the hot loop
 * calls nothing but fn.
 * - `STARTED`: how many items of the chunk have started.
 * - `THREAD`: the id of the thread that took the chunk, so the main side knows what runs where.
 * - `CLAIM`: set to `CANCELLED` by the main side when the chunk is no longer wanted (the run
 *   stops after its current item, or skips a chunk it has not started); set to `CLAIMED` by the
 *   thread as it starts the chunk, so a chunk taken back before that (compare-and-exchange from
 *   `UNCLAIMED` to `CANCELLED`) never runs.
 * - `OLDEST`: 0 while items run one at a time; once they overlap (`concurrency`), the place of the
 *   oldest item still running, plus 1.
 * - `SYNC`: once items overlap, the place of the item whose call of fn has not returned yet,
 *   plus 1, else 0: while that call runs, no other item's promise can settle, so a timeout is its.
 */
export const MARK_STARTED = 0;
export const MARK_THREAD = 1;
export const MARK_CLAIM = 2;
export const MARK_OLDEST = 3;
export const MARK_SYNC = 4;
export const UNCLAIMED = 0;
export const CANCELLED = 1;
export const CLAIMED = 2;

const MARKS = 5;

/** Marks for one chunk; `shared` for a thread's chunk, which the main side reads as it runs. */
export function newChunkMarks(shared: boolean): Int32Array {
  return shared ? new Int32Array(new SharedArrayBuffer(MARKS * 4)) : new Int32Array(MARKS);
}

/**
 * A process cannot share memory with its parent, and while fn runs in a loop it can send nothing:
 * messages queue in it, and its parent would see no progress and stop it for a timeout no item
 * ran into. With a timeout, a process worker makes a small file instead and names it when it takes
 * a chunk (`took`); the parent opens it and unlinks it. The worker writes there, as each item
 * starts, the chunk's `progressKey` followed by its marks (one `pwrite`, about a microsecond); the
 * parent reads them when it checks the time, and after the worker died.
 */
export const PROGRESS_FILE_INTS = 1 + MARKS;

/** An item of a chunk that failed while the chunk went on (`onError: 'return'`). */
export interface ItemFailure {
  readonly at: number;
  /** What fn threw, or `undefined` when the result could not be sent back. */
  readonly thrown?: ThrownReport;
  /** Why the result could not be sent back. */
  readonly uncloneable?: string;
}

/** Why a worker could not prepare a call. */
export interface SetupFailure {
  /** Free variables of fn the worker cannot provide. */
  readonly missing: readonly string[];
  /** What went wrong otherwise: the module, the export, the context, evaluating the scope. */
  readonly problem?: string;
  readonly thrown?: ThrownReport;
}

/** What a worker says about a chunk. `at` is the position within the chunk. */
export type ChunkReply =
  | {
      readonly kind: 'done';
      readonly values: Payload;
      readonly ms: number;
      readonly failures?: readonly ItemFailure[];
      /** fn returned promises, so items overlapped (for chunk sizing). */
      readonly awaited?: boolean;
    }
  | { readonly kind: 'threw'; readonly at: number; readonly thrown: ThrownReport; readonly before?: Payload }
  | { readonly kind: 'uncloneable'; readonly at: number; readonly message: string }
  | { readonly kind: 'notSetUp' }
  | ({ readonly kind: 'setupFailed' } & SetupFailure);

/** Events a worker emits while it runs a chunk. */
export type WorkerEvent =
  /**
   * The worker took the chunk: `worker` is its pid (processes). `progressFile`: the worker's
   * progress file, named once, with the first chunk that has a `progressKey`.
   */
  | { readonly kind: 'took'; readonly worker: number; readonly progressFile?: string }
  /**
   * The call is set up on the worker (fn loaded, its context made): its items are about to run.
   * Sent by processes, which report no marks without a timeout: a process that ends before it is
   * known to have started no item.
   */
  | { readonly kind: 'prepared' }
  | { readonly kind: 'reply'; readonly reply: ChunkReply };

/** What a thread gets with its start (`workerData`). */
export interface ThreadStart {
  /** The call's set-up, when the thread's pool serves a single call. */
  readonly parmapSetup: Payload | undefined;
  /** Where the thread sends what it writes to stdout and stderr. */
  readonly parmapOutput: MessagePort;
  /** Where the main side queues chunks on this thread, and the thread answers them. */
  readonly parmapChunks?: MessagePort | undefined;
}

/**
 * A chunk queued on a thread's own port while the thread runs another, so it goes from one
 * straight to the next (threads only). `key` names the chunk in the answers.
 */
export type PortChunk = readonly [key: number, request: ChunkRequest];

/** An event about a chunk that came on the thread's port, sent back on that port. */
export type PortReply = readonly [key: number, event: WorkerEvent];

/** One write of a thread to its stdout or stderr. */
export type ThreadOutput = readonly [stream: 'stdout' | 'stderr', text: string];

/** The worker-side method names, shared so a rename cannot miss one side. */
export const RUN_CHUNK = 'runChunk';
/** Does nothing: a task that makes workerpool find a worker that died while idle (see `stopWorkers`). */
export const DO_NOTHING = 'doNothing';

// Remote workers (`backend: { redis }`): between a caller and `parmap worker` processes, through
// Redis. BullMQ keeps job data and return values as JSON, so bytes travel as base64 text; every
// payload is signed (see `executors/remote-wire.ts`).

/** A call as workers find it: the fields of its record in Redis. */
export interface RemoteCallRecord {
  /** The encoded {@link CallSetup} (V8 bytes, base64). */
  readonly setup: string;
  /** The SHA-256 of the set-up's bytes (hex): chunks refer to it. */
  readonly hash: string;
  readonly signature: string;
  readonly workerType: 'thread' | 'process';
  /** Milliseconds, or '' for none: the worker stops an item that runs longer. */
  readonly timeout: string;
  /** MB, or '' for none. */
  readonly maxMemory: string;
}

/** One chunk: a job of the call's queue. */
export interface RemoteChunkJob {
  /** The set-up it runs with ({@link RemoteCallRecord.hash}). */
  readonly setup: string;
  /** The input index of its first item. */
  readonly start: number;
  /** The items (V8 bytes, base64). */
  readonly items: string;
  readonly signature: string;
}

/** What a worker returns for a chunk: a {@link RemoteOutcome} as V8 bytes (base64), signed. */
export interface RemoteChunkResult {
  readonly outcome: string;
  readonly signature: string;
}

/** What became of a chunk on a remote worker, as it crosses back: errors as reports. */
export type RemoteOutcome =
  | {
      readonly kind: 'done';
      readonly values: unknown[];
      readonly ms: number;
      readonly failures?: readonly ItemFailure[] | undefined;
      /** fn returned promises, so items overlapped (for chunk sizing). */
      readonly awaited?: boolean | undefined;
    }
  | {
      readonly kind: 'threw';
      readonly at: number;
      readonly thrown: ThrownReport;
      readonly before?: unknown[] | undefined;
    }
  | { readonly kind: 'uncloneable'; readonly at: number; readonly message: string }
  | {
      readonly kind: 'lost';
      readonly exitCode?: number | undefined;
      readonly signal?: string | undefined;
      readonly outOfMemory?: boolean | undefined;
      readonly uncaught?: ThrownReport | undefined;
      readonly stopped?: boolean | undefined;
      /** Items started and the oldest still running, when known. */
      readonly started?: number | undefined;
      readonly oldest?: number | undefined;
      /** The place of the item the worker stopped for running past `timeout`. */
      readonly timedOutAt?: number | undefined;
    }
  | { readonly kind: 'failed'; readonly message: string; readonly missing?: readonly string[] | undefined };
