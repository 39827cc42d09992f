/**
 * The only module that touches workerpool. One pool per call; workerpool starts, replaces and
 * stops the workers, and the chunks travel two ways:
 *
 * - Threads each get a MessagePort of their own with their start. Chunks go straight to a given
 *   thread's port: a value that cannot be cloned throws here, where its item can be named; a
 *   chunk costs two messages and no workerpool task; and a thread starts working as soon as it
 *   is up, with no set-up round trip.
 * - Processes run one chunk at a time as workerpool tasks. A chunk goes to workerpool only when a
 *   worker is idle, so workerpool sends it at once. (Tasks that workerpool queues itself are sent
 *   later from inside its event handlers, where a clone failure is lost or crashes the process.)
 *
 * What workerpool does not offer is reached through its worker handlers (`pool.workers`): which
 * worker a thread's port belongs to, stopping the one worker that runs a timed-out chunk, letting
 * workers not hold the event loop while nobody waits for a result, and replacing a dead thread.
 */
import { fileURLToPath } from 'node:url';
import { serialize } from 'node:v8';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import {
  cloneProblem,
  firstUncloneable,
  ParmapError,
  ParmapScopeError,
  rebuildThrown,
  type ThrownReport,
} from './errors.js';
import type { ChunkReply, ItemStarted, PortChunk, SetupFailure, ThreadStart, WorkerSetup } from './worker.js';

type Workerpool = typeof import('workerpool');
type WorkerpoolPool = ReturnType<Workerpool['pool']>;

/** The parts of workerpool's WorkerHandler this module relies on (workerpool 10). */
interface WorkerHandler {
  readonly worker: {
    ref?(): void;
    unref?(): void;
    /** A worker thread's own terminate, or a child process's kill. */
    terminate?(): unknown;
    kill?(signal?: string): unknown;
    /** Set by workerpool when the worker has said it is ready for messages. */
    readonly ready?: boolean;
    readonly channel?: { ref?(): void; unref?(): void } | null;
    on?(event: 'exit' | 'error', listener: (value: never) => void): unknown;
  } | null;
  readonly processing: Record<string, { readonly options?: unknown } | undefined>;
}

/** Ends a worker now, busy or not; resolves once it has exited. */
function killNow(handler: WorkerHandler): Promise<void> {
  const { worker } = handler;
  if (worker === null) return Promise.resolve();
  if (typeof worker.terminate === 'function') {
    // A worker thread: its own terminate stops even a busy loop, and settles on exit.
    return Promise.resolve(worker.terminate()).then(
      () => undefined,
      () => undefined,
    );
  }
  const child = worker as typeof worker & {
    readonly exitCode: number | null;
    readonly signalCode: string | null;
    once(event: 'exit', listener: () => void): unknown;
  };
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    worker.kill?.('SIGKILL');
  });
}

/** A chunk could not be sent; `at` is the first item (within the chunk) that cannot be cloned. */
export class ItemSendError extends Error {
  constructor(
    readonly at: number,
    cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'ItemSendError';
  }
}

/** How a worker ended while it held a chunk. */
export interface WorkerEnding {
  readonly exitCode?: number | undefined;
  readonly signal?: string | undefined;
  /** It went over its memory limit. */
  readonly outOfMemory?: boolean;
  /** An error thrown outside any item's call (a timer, an unhandled rejection) that ended it. */
  readonly uncaught?: unknown;
  /** The pool stopped it: the item ran past its timeout. */
  readonly timedOut?: boolean;
  /** The chunk went to a worker that had already ended, and never started: send it again. */
  readonly neverStarted?: boolean;
}

/** A worker ended while it held the chunk. */
export class WorkerEndedError extends Error {
  constructor(
    readonly ending: WorkerEnding,
    cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'WorkerEndedError';
  }
}

export type ChunkOutcome = Exclude<ChunkReply, { kind: 'notSetUp' } | { kind: 'setupFailed' }>;

/** A chunk on its way: its outcome, and a way to stop the worker that runs it. */
export interface RunningChunk {
  readonly outcome: Promise<ChunkOutcome>;
  /** How many of its items have started, while it runs; `undefined` when not tracked. */
  started(): number | undefined;
  /** Stops the worker running this chunk at once; the outcome rejects with a timed-out ending. */
  stopForTimeout(): void;
}

/**
 * Chunks queued on one thread at once. Two would hide the round trip between chunks (a few
 * percent with trivial items), but a chunk queued behind a straggler waits for it while another
 * thread idles, and `ordered: false` promises each result as soon as it is ready.
 */
const LANE_DEPTH = 1;

/** A thread, its port, and the chunks sent to it and not yet answered. */
interface Lane {
  readonly handler: WorkerHandler;
  readonly port: MessagePort;
  readonly inFlight: Map<number, PortTask>;
  /** An error the thread threw outside any item's call, just before it ended. */
  uncaught?: unknown;
}

interface PortTask {
  readonly resolve: (outcome: ChunkOutcome) => void;
  readonly reject: (error: Error) => void;
  readonly startedCount: Int32Array;
  timedOut: boolean;
}

/** The options object of a chunk's latest exec, as workerpool stores it with the task. */
interface ExecOptionsHolder {
  options?: object;
}

let workerpoolModule: Promise<Workerpool> | undefined;

// The worker bundled into one CommonJS file at build time (see the build script): it starts faster.
const WORKER_SCRIPT = fileURLToPath(new URL('./worker.cjs', import.meta.url));

export interface PoolOptions {
  readonly workers: number;
  readonly workerType: 'thread' | 'process';
  readonly setup: WorkerSetup;
  /** Heap limit per worker in MB, when set. */
  readonly maxMemory: number | undefined;
}

export class ChunkPool {
  private terminating: Promise<void> | undefined;
  private running = 0;
  private held = true;
  /**
   * Set once a process worker has died: workerpool then starts replacements that are neither ready
   * nor set up, so items are checked for cloning before they are handed over, and set-up travels
   * on demand. (Threads get both with their start, and their ports take messages at once.)
   */
  private replacing = false;
  private readonly lanes = new Map<WorkerHandler, Lane>();
  private nextChunkId = 0;

  private constructor(
    private readonly pool: WorkerpoolPool,
    private readonly options: PoolOptions,
    private readonly serializedSetup: Uint8Array,
    /** Ports made for threads workerpool has just created, not yet tied to their handler. */
    private readonly unclaimedPorts: MessagePort[],
  ) {
    this.claimPorts();
  }

  /** Chunks that may be on their way at once. */
  get capacity(): number {
    return this.options.workers * (this.options.workerType === 'thread' ? LANE_DEPTH : 1);
  }

  /**
   * Starts the workers and sets each one up (compiles fn, receives args, kwargs and scope).
   * Rejects, with every worker stopped, when a worker cannot set up.
   */
  static async create(options: PoolOptions): Promise<ChunkPool> {
    // Loading workerpool costs several milliseconds: calls that never run in parallel skip it.
    workerpoolModule ??= import('workerpool').then((module) => (module.default ?? module) as Workerpool);
    const workerpool = await workerpoolModule;
    const { maxMemory } = options;
    const threads = options.workerType === 'thread';
    // A thread gets its set-up with its start (workerData) and sets up before it takes work: no
    // round trip. A process cannot, so it gets a set-up message as soon as it is ready.
    const threadSetup = threads ? serializeSetup(options.setup) : undefined;
    const threadOptions = {
      execArgv: workerFlags(process.execArgv),
      ...(maxMemory === undefined
        ? {}
        : {
            resourceLimits: { maxOldGenerationSizeMb: maxMemory, maxYoungGenerationSizeMb: Math.min(32, maxMemory) },
          }),
    };
    const unclaimedPorts: MessagePort[] = [];
    const pool = workerpool.pool(WORKER_SCRIPT, {
      // Each thread gets its set-up and its own port with its start.
      onCreateWorker: () => {
        if (!threads) return undefined;
        const { port1, port2 } = new MessageChannel();
        unclaimedPorts.push(port1);
        const workerData: ThreadStart = { setup: threadSetup as Uint8Array, port: port2 };
        return { workerThreadOpts: { ...threadOptions, workerData, transferList: [port2] } };
      },
      // Every worker starts now, and a dead one is replaced at once.
      minWorkers: options.workers,
      maxWorkers: options.workers,
      workerType: options.workerType,
      // Structured clone for process workers too, so Maps, Dates and BigInts survive.
      forkOpts: {
        serialization: 'advanced',
        ...(maxMemory === undefined ? {} : { execArgv: [`--max-old-space-size=${maxMemory}`] }),
      },
      workerThreadOpts: threadOptions,
    });
    try {
      // Serialized once (for processes while they boot); each worker gets a copy of the bytes.
      const serializedSetup = threadSetup ?? serializeSetup(options.setup);
      const chunkPool = new ChunkPool(pool, options, serializedSetup, unclaimedPorts);
      if (threads) {
        chunkPool.applyHold();
        return chunkPool;
      }
      // One set-up per worker: each goes to a different worker, since the earlier ones are busy.
      const setups = Array.from({ length: options.workers }, () =>
        Promise.resolve(pool.exec('setUp', [serializedSetup]) as PromiseLike<SetupFailure>),
      );
      chunkPool.applyHold();
      const failure = (await Promise.all(setups)).find((candidate) => candidate !== undefined);
      if (failure !== undefined) throw setupError(failure);
      return chunkPool;
    } catch (error) {
      await stopPool(pool);
      throw error instanceof ParmapError || error instanceof TypeError ? error : poolError(error);
    }
  }

  /** Whether a worker can take a chunk now. */
  get hasIdleWorker(): boolean {
    if (this.options.workerType === 'process') return this.running < this.options.workers;
    for (const lane of this.lanes.values()) if (lane.inFlight.size < LANE_DEPTH) return true;
    return false;
  }

  /** Runs one chunk. Only call it when `hasIdleWorker` is true. */
  run(items: readonly unknown[], onStarted?: (at: number) => void): RunningChunk {
    if (this.options.workerType === 'thread') return this.runOnLane(items);
    let timedOut = false;
    const execOptions: ExecOptionsHolder = {};
    const outcome = this.send(items, onStarted, execOptions).catch((error: unknown) => {
      if (timedOut) throw new WorkerEndedError({ timedOut: true }, error);
      throw error;
    });
    return {
      outcome,
      // A process reports the items it starts only when a timeout is set (`onStarted`).
      started: () => undefined,
      stopForTimeout: () => {
        timedOut = true;
        const handler = this.handlerRunning(execOptions);
        if (handler !== undefined) void killNow(handler);
      },
    };
  }

  /** Sends a chunk to the thread with the fewest chunks queued. */
  private runOnLane(items: readonly unknown[]): RunningChunk {
    let lane: Lane | undefined;
    for (const candidate of this.lanes.values()) {
      if (lane === undefined || candidate.inFlight.size < lane.inFlight.size) lane = candidate;
    }
    const startedCount = new Int32Array(new SharedArrayBuffer(4));
    const started = () => Atomics.load(startedCount, 0);
    if (lane === undefined || lane.inFlight.size >= LANE_DEPTH) {
      return {
        outcome: Promise.reject(new ParmapError('parmap: no worker could take a chunk')),
        started,
        stopForTimeout() {},
      };
    }
    const id = this.nextChunkId++;
    let task: PortTask | undefined;
    const outcome = new Promise<ChunkOutcome>((resolve, reject) => {
      task = { resolve, reject, startedCount, timedOut: false };
    });
    try {
      lane.port.postMessage([id, items, startedCount] satisfies PortChunk);
    } catch (error) {
      return {
        outcome: Promise.reject(new ItemSendError(Math.max(0, firstUncloneable(items)), error)),
        started,
        stopForTimeout() {},
      };
    }
    lane.inFlight.set(id, task as PortTask);
    this.running++;
    const { handler } = lane;
    return {
      outcome,
      started,
      stopForTimeout: () => {
        (task as PortTask).timedOut = true;
        void killNow(handler);
      },
    };
  }

  /** Ties each new thread to the port made for it, in the order workerpool created them. */
  private claimPorts(): void {
    for (const handler of this.handlers()) {
      if (this.lanes.has(handler)) continue;
      const port = this.unclaimedPorts.shift();
      if (port === undefined) return;
      this.openLane(handler, port);
    }
  }

  private openLane(handler: WorkerHandler, port: MessagePort): void {
    const lane: Lane = { handler, port, inFlight: new Map() };
    this.lanes.set(handler, lane);
    port.on('message', ([id, reply]: [number, ChunkReply]) => {
      const task = lane.inFlight.get(id);
      if (task === undefined) return;
      lane.inFlight.delete(id);
      this.running--;
      if (reply.kind === 'setupFailed') task.reject(setupError(reply));
      else if (reply.kind === 'notSetUp') task.reject(new ParmapError('parmap: a thread had no set-up'));
      else task.resolve(reply);
    });
    handler.worker?.on?.('error', (error: unknown) => {
      lane.uncaught = error;
    });
    handler.worker?.on?.('exit', (exitCode: number) => this.closeLane(lane, exitCode));
    if (!this.held) port.unref();
  }

  /**
   * A thread ended: its chunks fail with how it ended (a chunk it had not started is sent again
   * without blame), and workerpool starts a replacement with a port of its own.
   */
  private closeLane(lane: Lane, exitCode: number): void {
    this.lanes.delete(lane.handler);
    lane.port.close();
    for (const task of lane.inFlight.values()) {
      this.running--;
      const cause = lane.uncaught ?? new Error(`worker exited with code ${exitCode}`);
      if (task.timedOut) task.reject(new WorkerEndedError({ timedOut: true }, cause));
      else if (Atomics.load(task.startedCount, 0) === 0)
        task.reject(new WorkerEndedError({ neverStarted: true }, cause));
      else task.reject(new WorkerEndedError(this.threadEnding(exitCode, lane.uncaught), cause));
    }
    lane.inFlight.clear();
    if (this.terminating !== undefined) return;
    const internals = this.pool as unknown as { workers: WorkerHandler[]; _ensureMinWorkers(): void };
    const index = internals.workers.indexOf(lane.handler);
    if (index >= 0) internals.workers.splice(index, 1);
    internals._ensureMinWorkers();
    this.claimPorts();
    this.applyHold();
  }

  private threadEnding(exitCode: number, uncaught: unknown): WorkerEnding {
    const outOfMemory = (uncaught as { code?: unknown } | undefined)?.code === 'ERR_WORKER_OUT_OF_MEMORY';
    return { exitCode, outOfMemory, uncaught: outOfMemory ? undefined : uncaught };
  }

  private async send(
    items: readonly unknown[],
    onStarted: ((at: number) => void) | undefined,
    execOptions: ExecOptionsHolder,
  ): Promise<ChunkOutcome> {
    // A worker still starting gets its message later, from inside workerpool: check it can go.
    if (this.replacing || !this.allReady()) {
      const at = firstUncloneable(items);
      if (at >= 0) throw new ItemSendError(at, new Error(cloneProblem(items[at])));
    }
    let reply = await this.exec(items, undefined, onStarted, execOptions);
    if (reply.kind === 'notSetUp') {
      // A replacement process: send the chunk again, with the set-up this time.
      reply = await this.exec(items, this.serializedSetup, onStarted, execOptions);
    }
    if (reply.kind === 'setupFailed') throw setupError(reply);
    if (reply.kind === 'notSetUp') throw new ParmapError('parmap: a worker answered a chunk without a result');
    return reply;
  }

  private exec(
    items: readonly unknown[],
    setup: Uint8Array | undefined,
    onStarted: ((at: number) => void) | undefined,
    holder: ExecOptionsHolder,
  ): Promise<ChunkReply> {
    return new Promise<ChunkReply>((resolve, reject) => {
      let reply: ChunkReply | undefined;
      let pending: PromiseLike<unknown>;
      const params = setup !== undefined ? [items, undefined, setup] : [items];
      // workerpool keeps this very object with the task: it is how the worker running it is found.
      const options = {
        on: (payload: unknown) => {
          const message = payload as ChunkReply | ItemStarted;
          if (message.kind === 'started') onStarted?.(message.at);
          else reply = message;
        },
      };
      holder.options = options;
      try {
        pending = this.pool.exec('runChunk', params, options);
      } catch (error) {
        reject(new ItemSendError(Math.max(0, firstUncloneable(items)), error));
        return;
      }
      this.running++;
      this.applyHold();
      pending.then(
        () => {
          this.running--;
          if (reply === undefined) reject(new ParmapError('parmap: a worker finished a chunk without a reply'));
          else resolve(reply);
        },
        (error: unknown) => {
          this.running--;
          reject(this.taskError(items, error));
        },
      );
    });
  }

  private allReady(): boolean {
    return this.handlers().every((handler) => handler.worker !== null && handler.worker.ready === true);
  }

  private handlers(): WorkerHandler[] {
    return (this.pool as unknown as { workers: WorkerHandler[] }).workers;
  }

  private handlerRunning(holder: ExecOptionsHolder): WorkerHandler | undefined {
    return this.handlers().find((handler) =>
      Object.values(handler.processing).some((task) => task !== undefined && task.options === holder.options),
    );
  }

  /**
   * Workers hold the event loop only while someone waits for a result: a caller that abandons
   * an iterator half-way does not keep the process alive for ever.
   */
  hold(waiting: boolean): void {
    // Stopping workers hold the event loop until they have exited, whoever waits.
    if (this.held === waiting || this.terminating !== undefined) return;
    this.held = waiting;
    this.applyHold();
  }

  private applyHold(): void {
    for (const { port } of this.lanes.values()) {
      if (this.held) port.ref();
      else port.unref();
    }
    for (const { worker } of this.handlers()) {
      if (worker === null) continue;
      if (this.held) {
        worker.ref?.();
        worker.channel?.ref?.();
      } else {
        worker.unref?.();
        worker.channel?.unref?.();
      }
    }
  }

  private taskError(items: readonly unknown[], error: unknown): Error {
    const message = error instanceof Error ? error.message : String(error);
    if (message === 'Worker is terminated') return new WorkerEndedError({ neverStarted: true }, error);
    if (/terminated unexpectedly|Workerpool Worker error|Worker terminated/i.test(message)) {
      this.replacing = true;
      return new WorkerEndedError(this.endingOf(message, error), error);
    }
    if (/could not be cloned|DataCloneError/i.test(message)) {
      return new ItemSendError(Math.max(0, firstUncloneable(items)), error);
    }
    return poolError(error);
  }

  private endingOf(message: string, error: unknown): WorkerEnding {
    const exitCode = /exitCode: `(-?\d+)`/.exec(message)?.[1];
    const signal = /signalCode: `([A-Z0-9]+)`/.exec(message)?.[1];
    const uncaught = /Workerpool Worker error/.test(message) ? (error as { cause?: unknown }).cause : undefined;
    const code = (uncaught as { code?: unknown } | undefined)?.code;
    const limited = this.options.maxMemory !== undefined;
    const outOfMemory =
      code === 'ERR_WORKER_OUT_OF_MEMORY' ||
      (limited && (signal === 'SIGABRT' || signal === 'SIGTRAP' || exitCode === '134' || exitCode === '133'));
    return {
      exitCode: exitCode === undefined ? undefined : Number(exitCode),
      signal,
      outOfMemory,
      uncaught: outOfMemory ? undefined : uncaught,
    };
  }

  /** Stops every worker at once, busy or not. Safe to call more than once. */
  terminate(): Promise<void> {
    this.terminating ??= this.stopAll();
    return this.terminating;
  }

  private async stopAll(): Promise<void> {
    this.held = true;
    this.applyHold();
    await stopPool(this.pool);
  }
}

// Of the caller's Node flags, threads get only these. An explicit list must hold nothing a worker
// refuses (V8 and process-wide flags such as --expose-gc make Worker throw), and the rest mean
// nothing or harm there: module hooks (fn arrives as plain JavaScript; tsx alone costs about
// 150 ms per worker), the inline script and its --input-type, the test runner, watch mode.
const WORKER_FLAGS =
  /^--(enable-source-maps|no-warnings|no-deprecation|trace-warnings|trace-deprecation|throw-deprecation|pending-deprecation|unhandled-rejections|conditions)(=|$)/;

function workerFlags(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const flag = execArgv[i] as string;
    if (WORKER_FLAGS.test(flag)) {
      kept.push(flag);
      if (flag === '--conditions' && i + 1 < execArgv.length) kept.push(execArgv[++i] as string);
    } else if ((flag === '-C' || flag === '--conditions') && i + 1 < execArgv.length) {
      kept.push(flag, execArgv[++i] as string);
    }
  }
  return kept;
}

/**
 * Kills every worker now and waits until each has exited. workerpool's own terminate is not used:
 * it asks each worker to exit and waits for a reply that a busy worker never gives.
 */
async function stopPool(pool: WorkerpoolPool): Promise<void> {
  const internals = pool as unknown as { workers: WorkerHandler[]; minWorkers: number };
  // workerpool replaces a worker that dies while the pool holds fewer than minWorkers.
  internals.minWorkers = 0;
  await Promise.all(internals.workers.map(killNow));
}

function serializeSetup(setup: WorkerSetup): Uint8Array {
  try {
    return serialize(setup);
  } catch (error) {
    const culprit = cloneProblem(setup.shape.args) !== undefined ? 'args' : 'kwargs';
    throw new TypeError(
      `\`${culprit}\` cannot be sent to workers (${error instanceof Error ? error.message : String(error)}). ` +
        'Values cross by structured clone: pass plain data (functions go in scope), or use n: 1.',
      { cause: error },
    );
  }
}

function setupError(failure: {
  readonly missing: readonly string[];
  readonly thrown?: ThrownReport | undefined;
}): ParmapError {
  if (failure.missing.length > 0) return new ParmapScopeError(failure.missing);
  return new ParmapError('parmap: fn could not be set up in a worker: evaluating its scope values or its code threw', {
    cause: failure.thrown === undefined ? undefined : rebuildThrown(failure.thrown),
  });
}

function poolError(error: unknown): ParmapError {
  const message = error instanceof Error ? error.message : String(error);
  return new ParmapError(`parmap: the worker pool failed: ${message}`, { cause: error });
}
