/**
 * Making and ending workerpool pools, through its documented API only: `pool()` with
 * `workerType`, `maxWorkers`, `workerThreadOpts` / `forkOpts`, `onCreateWorker` and
 * `workerTerminateTimeout`; `terminate()`; its exported `TerminateError`. What workerpool does not
 * offer (which worker runs a chunk, how it ended, holding the event loop) comes from Node's own
 * objects for those workers (see node-workers.ts).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { MessageChannel, type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { ParmapError } from '../errors.js';
import { DO_NOTHING, type ThreadOutput, type ThreadStart } from '../protocol.js';
import type { Payload } from '../transfer.js';
import { claimNextWorker, type WorkerHandle } from './node-workers.js';
import { workerFlags } from './worker-flags.js';

type Workerpool = typeof import('workerpool');
export type WorkerpoolPool = ReturnType<Workerpool['pool']>;

const lazyRequire = createRequire(import.meta.url);
let workerpoolLoaded: Workerpool | undefined;

/** Whether workerpool rejected a task because its worker ended (its exported `TerminateError`). */
export function isWorkerTermination(error: unknown): boolean {
  return workerpoolLoaded !== undefined && error instanceof workerpoolLoaded.TerminateError;
}

/**
 * The worker, bundled into one CommonJS file at build time (see the build script): it starts
 * faster. An application bundled into one file no longer has it beside this module: it ships the
 * package's `parmap/worker.cjs` export and says where with `PARMAP_WORKER_SCRIPT`.
 */
function workerScript(): string {
  const script = process.env.PARMAP_WORKER_SCRIPT || fileURLToPath(new URL('../worker.cjs', import.meta.url));
  if (!existsSync(script)) {
    throw new ParmapError(
      `parmap: cannot start workers: the worker script is not at ${script}. If this program is bundled ` +
        "into one file, ship parmap's worker script with it (the package export 'parmap/worker.cjs', which " +
        'needs tslib installed beside it) and set PARMAP_WORKER_SCRIPT to its path, or keep ' +
        'parmap out of the bundle.',
    );
  }
  return script;
}

/** How long workers told to stop may take (to release context values) before they are killed. */
export const STOP_GRACE_MS = 2_500;

/** What a pool is made with. */
export interface PoolSettings {
  /** The most workers it runs. */
  readonly workers: number;
  readonly workerType: 'thread' | 'process';
  /** Heap limit per worker in MB, when set. */
  readonly maxMemory: number | undefined;
  /** A call's set-up, given to each thread with its start when the pool serves that call alone. */
  readonly threadSetup?: Payload | undefined;
}

/** Makes a pool; each worker it starts is told to `onWorker` as it is made. */
export async function startWorkerpool(
  settings: PoolSettings,
  onWorker: (handle: WorkerHandle) => void,
): Promise<WorkerpoolPool> {
  // Loading workerpool costs milliseconds: calls that never run in parallel skip it. It is loaded
  // as what it is, a CommonJS package: import() first scans its source for named exports, which
  // doubled the time (5 ms more on a program's first call).
  workerpoolLoaded ??= lazyRequire('workerpool') as Workerpool;
  const workerpool = workerpoolLoaded;
  const { maxMemory, workerType, threadSetup } = settings;
  const threadOptions = {
    execArgv: workerFlags(process.execArgv, 'thread'),
    ...(maxMemory === undefined
      ? {}
      : { resourceLimits: { maxOldGenerationSizeMb: maxMemory, maxYoungGenerationSizeMb: Math.min(32, maxMemory) } }),
  };
  const forkOptions = {
    // Structured clone for process workers too, so Maps, Dates and BigInts survive.
    serialization: 'advanced' as const,
    execArgv: [
      ...workerFlags(process.execArgv, 'process'),
      ...(maxMemory === undefined ? [] : [`--max-old-space-size=${maxMemory}`]),
    ],
  };
  return workerpool.pool(workerScript(), {
    workerType,
    maxWorkers: settings.workers,
    workerThreadOpts: threadOptions,
    forkOpts: forkOptions,
    workerTerminateTimeout: STOP_GRACE_MS,
    onCreateWorker: () => {
      if (workerType !== 'thread') {
        claimNextWorker(onWorker);
        return undefined;
      }
      const output = threadOutput();
      const chunks = new MessageChannel();
      claimNextWorker((handle) => {
        handle.chunkPort = chunks.port1;
        void handle.exited.then(output.drain);
        onWorker(handle);
      });
      const workerData: ThreadStart = {
        parmapSetup: threadSetup,
        parmapOutput: output.port,
        parmapChunks: chunks.port2,
      };
      return { workerThreadOpts: { ...threadOptions, workerData, transferList: [output.port, chunks.port2] } };
    },
  });
}

/**
 * A port on which a thread sends what it writes to stdout and stderr, written here as it comes.
 * A thread's own stdout waits for this thread to ask for more after each write, which a thread
 * busy in a loop never lets happen, and a thread that is terminated loses what it had not sent:
 * the lines printed to debug a failure were exactly those that disappeared. `drain` writes what
 * is left once the thread has ended: the last lines (a teardown's) could otherwise still wait in
 * the port when this program exits (about one run in forty).
 */
function threadOutput(): { readonly port: MessagePort; readonly drain: () => void } {
  const { port1, port2 } = new MessageChannel();
  const write = ([stream, text]: ThreadOutput) => {
    (stream === 'stderr' ? process.stderr : process.stdout).write(text);
  };
  port1.on('message', write);
  // It closes when the thread ends; until then it must not keep this process alive on its own.
  port1.unref();
  const drain = () => {
    for (let left = receiveMessageOnPort(port1); left !== undefined; left = receiveMessageOnPort(port1)) {
      write(left.message as ThreadOutput);
    }
  };
  return { port: port2, drain };
}

/**
 * Waits for `work`, or `ms` at most. The timer is referenced: an abandoned worker no longer holds
 * the event loop, and a caller awaiting its exit would otherwise see the loop end under it.
 */
async function settledWithin(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/**
 * workerpool's `terminate` waits for an 'exit' from each worker it still lists, and a worker that
 * died while idle is still listed (workerpool finds a worker dead only when it gives it a task)
 * and has sent its one 'exit' already: `terminate` then never settles, and its timer holds the
 * program for the whole termination timeout (2.5 s after a worker's late error). So when one of
 * the pool's workers ended on its own, each idle worker is given a task that does nothing first:
 * workerpool drops those it finds dead, and the live ones answer at once.
 */
async function terminate(pool: WorkerpoolPool, lostWorkers: boolean): Promise<void> {
  const { idleWorkers, pendingTasks } = pool.stats();
  // A queued task would take an idle worker first, and a no-op could then start a new one.
  if (lostWorkers && pendingTasks === 0 && idleWorkers > 0) {
    const noOps = Array.from({ length: idleWorkers }, () => pool.exec(DO_NOTHING, []));
    await settledWithin(Promise.allSettled(noOps), STOP_GRACE_MS);
  }
  await Promise.resolve(pool.terminate(true)).catch(() => undefined);
}

/**
 * Ends a pool's workers and waits until each has exited. workerpool's own terminate is asked
 * first (idle workers then release their contexts); a worker still there after the grace is killed.
 */
export async function stopWorkers(
  pools: readonly (WorkerpoolPool | undefined)[],
  handles: readonly WorkerHandle[],
  /** Whether some worker of the pool ended on its own. */
  lostWorkers: (pool: WorkerpoolPool) => boolean,
): Promise<void> {
  for (const handle of handles) handle.stoppedByUs = true;
  for (const pool of pools) if (pool !== undefined) void terminate(pool, lostWorkers(pool));
  await settledWithin(Promise.all(handles.map((handle) => handle.exited)), STOP_GRACE_MS + 500);
  for (const handle of handles) if (handle.ending === undefined) handle.kill();
  await Promise.all(handles.map((handle) => handle.exited));
}
