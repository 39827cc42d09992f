/**
 * The Node objects (a `Worker`, a `ChildProcess`) behind the workers workerpool creates for us.
 * workerpool documents no way to reach them, and reading its private fields is not an option; Node
 * itself announces every new thread and child process on its documented diagnostics channels
 * (`worker_threads`, `child_process`), synchronously, from inside the constructor. A pool's
 * `onCreateWorker` hook (documented) runs just before workerpool constructs the worker, so the
 * next announcement is that worker. With the object in hand we use only Node's public API: how it
 * ended (exit code, signal, the error that ended a thread), `ref`/`unref`, and ending it at once.
 */
import type { ChildProcess } from 'node:child_process';
import { subscribe } from 'node:diagnostics_channel';
import type { MessagePort, Worker } from 'node:worker_threads';
import type { WorkerEnding } from './executor.js';

/** One worker as this side sees it. */
export interface WorkerHandle {
  /** The thread id or the process id, as the worker reports it with each chunk it takes. */
  readonly id: () => number;
  /** How it ended, once it has; set before workerpool hears of the end. */
  ending: WorkerEnding | undefined;
  /** Whether this side asked it to end (a timeout, a close). */
  stoppedByUs: boolean;
  /** A thread's port for chunks queued behind the one it runs (see worker-host.ts). */
  chunkPort?: MessagePort | undefined;
  /** Resolves once it has exited. */
  readonly exited: Promise<void>;
  /** Ends it now, busy or not. */
  kill(): void;
  /**
   * Ends it and lets go: it no longer holds the event loop, whatever `hold` says later. A thread
   * blocked in a native call (`execSync`, `Atomics.wait`) dies only when that call returns.
   */
  abandon(): void;
  /** Whether it may keep the process alive. */
  hold(held: boolean): void;
  /**
   * Calls `listener` synchronously when the worker's end becomes known (its error or its exit),
   * before workerpool hears of it: what it was running is still known then.
   */
  onEnd(listener: (ending: WorkerEnding) => void): void;
}

/** The `onEnd` listeners of a handle, and setting its ending once. */
function endings(target: { handle?: { ending: WorkerEnding | undefined } }) {
  const listeners: ((ending: WorkerEnding) => void)[] = [];
  return {
    onEnd: (listener: (ending: WorkerEnding) => void) => listeners.push(listener),
    end: (ending: WorkerEnding) => {
      const handle = target.handle;
      if (handle === undefined || handle.ending !== undefined) return;
      handle.ending = ending;
      for (const listener of listeners) listener(ending);
    },
  };
}

type Claim = (handle: WorkerHandle) => void;
let pendingClaim: Claim | undefined;
let subscribed = false;

/**
 * Says that the next worker Node announces belongs to `claim`. Call it from `onCreateWorker`;
 * a claim nobody answered lapses at the next microtask, so it can never catch a stranger's worker.
 */
export function claimNextWorker(claim: Claim): void {
  if (!subscribed) {
    subscribed = true;
    subscribe('worker_threads', (message) => answer(threadHandle((message as { worker: Worker }).worker)));
    subscribe('child_process', (message) => answer(processHandle((message as { process: ChildProcess }).process)));
  }
  pendingClaim = claim;
  queueMicrotask(() => {
    if (pendingClaim === claim) pendingClaim = undefined;
  });
}

function answer(make: () => WorkerHandle): void {
  const claim = pendingClaim;
  if (claim === undefined) return;
  pendingClaim = undefined;
  claim(make());
}

function threadHandle(worker: Worker): () => WorkerHandle {
  return () => {
    const target: { handle?: WorkerHandle } = {};
    const ends = endings(target);
    let abandoned = false;
    const handle: WorkerHandle = {
      onEnd: ends.onEnd,
      // Read now: Node sets it to -1 once the thread has exited.
      id: (
        (threadId) => () =>
          threadId
      )(worker.threadId),
      ending: undefined,
      stoppedByUs: false,
      exited: new Promise((resolve) => worker.once('exit', () => resolve())),
      kill: () => {
        handle.stoppedByUs = true;
        void worker.terminate().catch(() => undefined);
      },
      abandon: () => {
        abandoned = true;
        handle.kill();
        worker.unref();
      },
      hold: (held) => {
        if (abandoned) return;
        if (held) worker.ref();
        else worker.unref();
      },
    };
    target.handle = handle;
    // Registered before workerpool's own listeners: the ending is known when it reports the loss.
    worker.on('error', (error: unknown) => {
      const outOfMemory = (error as { code?: unknown } | null)?.code === 'ERR_WORKER_OUT_OF_MEMORY';
      ends.end(
        outOfMemory ? { outOfMemory, stopped: handle.stoppedByUs } : { uncaught: error, stopped: handle.stoppedByUs },
      );
    });
    worker.on('exit', (exitCode: number) => ends.end({ exitCode, stopped: handle.stoppedByUs }));
    return handle;
  };
}

/**
 * Child processes alive now. When this process ends by `process.exit()` or by running out of
 * work, they are killed in the synchronous `'exit'` hook; a signal or SIGKILL skips that hook,
 * and each child's own watchdog (see the worker's watchdog module) ends it instead.
 */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function trackChild(child: ChildProcess): void {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const live of liveChildren) live.kill('SIGKILL');
  });
}

function processHandle(child: ChildProcess): () => WorkerHandle {
  return () => {
    let pid: number | undefined;
    let abandoned = false;
    const target: { handle?: WorkerHandle } = {};
    const ends = endings(target);
    const handle: WorkerHandle = {
      onEnd: ends.onEnd,
      // Known once the process has spawned, just after this is made; kept after it exits.
      id: () => {
        pid ??= child.pid;
        return pid ?? -1;
      },
      ending: undefined,
      stoppedByUs: false,
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
      kill: () => {
        handle.stoppedByUs = true;
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      },
      abandon: () => {
        abandoned = true;
        handle.kill();
        child.unref();
        child.channel?.unref();
      },
      hold: (held) => {
        if (abandoned) return;
        if (held) {
          child.ref();
          child.channel?.ref();
        } else {
          child.unref();
          child.channel?.unref();
        }
      },
    };
    target.handle = handle;
    trackChild(child);
    child.on('exit', (exitCode: number | null, signal: NodeJS.Signals | null) =>
      ends.end({ exitCode: exitCode ?? undefined, signal: signal ?? undefined, stopped: handle.stoppedByUs }),
    );
    return handle;
  };
}
