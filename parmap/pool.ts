/**
 * The only module that touches workerpool. One pool per call. It owns the queue: a chunk goes to
 * workerpool only when a worker is set up and idle, so workerpool sends it at once and a value that
 * cannot be cloned throws here, where the item can be named. (Chunks that workerpool queues itself
 * are sent later from inside its event handlers, where such a failure is lost or crashes.)
 */
import { fileURLToPath } from 'node:url';
import { serialize } from 'node:v8';
import { ParmapError, ParmapScopeError, rebuildThrown } from './errors.js';
import type { ChunkReply, SetupFailure, WorkerSetup } from './worker.js';

type Workerpool = typeof import('workerpool');
type WorkerpoolPool = ReturnType<Workerpool['pool']>;

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

/** A worker ended while it held the chunk. */
export class WorkerEndedError extends Error {
  constructor(
    readonly exitCode: number | undefined,
    readonly signal: string | undefined,
    cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'WorkerEndedError';
  }
}

export type ChunkOutcome = Exclude<ChunkReply, { kind: 'notSetUp' }>;

let workerpoolModule: Promise<Workerpool> | undefined;

const WORKER_SCRIPT = fileURLToPath(new URL('./worker.js', import.meta.url));

export interface PoolOptions {
  readonly workers: number;
  readonly workerType: 'thread' | 'process';
  readonly setup: WorkerSetup;
}

export class ChunkPool {
  private terminating: Promise<void> | undefined;
  private running = 0;

  private constructor(
    private readonly pool: WorkerpoolPool,
    readonly workers: number,
  ) {}

  /**
   * Starts the workers and sets each one up (compiles fn, receives args, kwargs and scope).
   * Rejects, with every worker stopped, when a worker cannot set up.
   */
  static async create(options: PoolOptions): Promise<ChunkPool> {
    // Serialized once here: a failure names the option, and each worker gets a copy of bytes.
    const serializedSetup = serializeSetup(options.setup);
    // Loading workerpool costs several milliseconds: calls that never run in parallel skip it.
    workerpoolModule ??= import('workerpool').then((module) => (module.default ?? module) as Workerpool);
    const workerpool = await workerpoolModule;
    const pool = workerpool.pool(WORKER_SCRIPT, {
      maxWorkers: options.workers,
      workerType: options.workerType,
      // Structured clone for process workers too, so Maps, Dates and BigInts survive.
      forkOpts: { serialization: 'advanced' },
      // fn arrives as plain JavaScript, so threads skip the caller's loader hooks (tsx alone costs
      // about 150 ms per worker), as process workers do in workerpool.
      workerThreadOpts: { execArgv: withoutModuleHooks(process.execArgv) },
    });
    const chunkPool = new ChunkPool(pool, options.workers);
    try {
      // One set-up per worker: each goes to a new worker, since the earlier ones are busy.
      const failures = await Promise.all(
        Array.from({ length: options.workers }, () =>
          Promise.resolve(pool.exec('setUp', [serializedSetup]) as PromiseLike<SetupFailure>),
        ),
      );
      const failure = failures.find((candidate) => candidate !== undefined);
      if (failure !== undefined) throw setupError(failure);
    } catch (error) {
      await chunkPool.terminate();
      throw error instanceof ParmapError ? error : poolError(error);
    }
    return chunkPool;
  }

  /** Whether a worker is idle, so `run` would start at once. */
  get hasIdleWorker(): boolean {
    return this.running < this.workers;
  }

  /** Runs one chunk on an idle worker. Only call it when `hasIdleWorker` is true. */
  run(items: readonly unknown[]): Promise<ChunkOutcome> {
    return new Promise<ChunkOutcome>((resolve, reject) => {
      let reply: ChunkReply | undefined;
      let pending: PromiseLike<unknown>;
      try {
        pending = this.pool.exec('runChunk', [items], {
          on: (payload: unknown) => {
            reply = payload as ChunkReply;
          },
        });
      } catch (error) {
        reject(new ItemSendError(firstUncloneable(items), error));
        return;
      }
      this.running++;
      pending.then(
        () => {
          this.running--;
          if (reply === undefined || reply.kind === 'notSetUp') {
            reject(new ParmapError('parmap: a worker answered a chunk without a result'));
          } else resolve(reply);
        },
        (error: unknown) => {
          this.running--;
          reject(taskError(items, error));
        },
      );
    });
  }

  /** Stops every worker at once, busy or not. Safe to call more than once. */
  terminate(): Promise<void> {
    this.terminating ??= Promise.resolve(this.pool.terminate(true)).then(
      () => undefined,
      () => undefined,
    );
    return this.terminating;
  }
}

// Flags of the caller's entry point that mean nothing, or harm, in a worker: module hooks (fn is
// plain JavaScript), the script given inline, the test runner and watch mode.
const DROPPED_WITH_VALUE = new Set([
  '--import',
  '--require',
  '-r',
  '--loader',
  '--experimental-loader',
  '-e',
  '--eval',
  '-p',
  '--print',
]);
const DROPPED =
  /^(--import|--require|--loader|--experimental-loader|--eval|--print|--input-type|--test|--watch|--experimental-test|--experimental-default-type)(=|-|$)/;

function withoutModuleHooks(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const flag = execArgv[i] as string;
    if (DROPPED_WITH_VALUE.has(flag)) i++;
    else if (!DROPPED.test(flag) && flag !== '-i' && flag !== '--interactive') kept.push(flag);
  }
  return kept;
}

function serializeSetup(setup: WorkerSetup): Uint8Array {
  try {
    return serialize(setup);
  } catch (error) {
    const culprit = !canSerialize(setup.shape.args) ? 'args' : 'kwargs';
    throw new TypeError(
      `\`${culprit}\` cannot be sent to workers (${error instanceof Error ? error.message : String(error)}). ` +
        'Values cross by structured clone: pass plain data (functions go in scope), or use n: 1.',
      { cause: error },
    );
  }
}

function setupError(failure: NonNullable<SetupFailure>): ParmapError {
  if (failure.missing.length > 0) return new ParmapScopeError(failure.missing);
  return new ParmapError('parmap: fn could not be set up in a worker: evaluating its scope values or its code threw', {
    cause: failure.thrown === undefined ? undefined : rebuildThrown(failure.thrown),
  });
}

function taskError(items: readonly unknown[], error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error);
  if (/terminated unexpectedly/i.test(message)) {
    const exitCode = /exitCode: `(-?\d+)`/.exec(message)?.[1];
    const signal = /signalCode: `([A-Z0-9]+)`/.exec(message)?.[1];
    return new WorkerEndedError(exitCode === undefined ? undefined : Number(exitCode), signal, error);
  }
  if (/could not be cloned|DataCloneError/i.test(message)) return new ItemSendError(firstUncloneable(items), error);
  return poolError(error);
}

function poolError(error: unknown): ParmapError {
  const message = error instanceof Error ? error.message : String(error);
  return new ParmapError(`parmap: the worker pool failed: ${message}`, { cause: error });
}

function firstUncloneable(items: readonly unknown[]): number {
  return Math.max(
    0,
    items.findIndex((item) => !canSerialize(item)),
  );
}

function canSerialize(value: unknown): boolean {
  try {
    serialize(value);
    return true;
  } catch {
    return false;
  }
}
