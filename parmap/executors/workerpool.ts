/**
 * The executor for workerpool threads and processes: one call's view of a {@link WorkerHost}.
 * It encodes each chunk (an item that cannot be sent is named here), attaches the call's set-up
 * while some worker may lack it, and turns what workerpool and the worker say into one
 * {@link ChunkOutcome} per chunk.
 */
import { ParmapError, ParmapScopeError, ParmapSetupError, rebuildThrown } from '../errors.js';
import { IdMap } from '../id-map.js';
import { type ChunkReply, type ChunkRequest, newChunkMarks, type SetupFailure } from '../protocol.js';
import { decode, encode, encodeList, firstUnsendable, type Payload, payloadSize } from '../transfer.js';
import {
  type ChunkOutcome,
  type ChunkTask,
  type Executor,
  type ExecutorListener,
  type ItemsStarted,
  itemsStartedOf,
  type WorkerEnding,
} from './executor.js';
import type { WorkerHandle } from './node-workers.js';
import { type CallChannel, type HostChunk, isWorkerTermination, type WorkerHost } from './worker-host.js';

/** Chunks that run shorter than this are queued on threads behind the one they run. */
const QUEUE_BELOW_MS = 20;

export interface CallOptions {
  readonly setupId: string;
  /** The encoded set-up, attached to chunks while some worker may not have it. */
  readonly setup: Payload;
  /** Threads of this host got the set-up with their start: never attach it. */
  readonly setupWithStart: boolean;
  readonly workerType: 'thread' | 'process';
  readonly maxMemory: number | undefined;
  /** The host serves this call alone: closing the call closes it. */
  readonly ownsHost: boolean;
  /**
   * The call has a context to release: when it ends, busy workers finish their current item and
   * release it, rather than being killed (within the grace of the worker host).
   */
  readonly graceful: boolean;
  /** The call has a timeout: process workers then write where each chunk has got (see protocol.ts). */
  readonly watchesTime: boolean;
}

/** Keys of process chunks in their workers' progress files, unique in this process. */
let lastProgressKey = 0;
function nextProgressKey(): number {
  lastProgressKey = (lastProgressKey + 1) | 0;
  return lastProgressKey;
}

export class WorkerpoolExecutor implements Executor, CallChannel {
  /** An {@link IdMap}: a `Map` would keep every chunk's items and results alive (see id-map.ts). */
  private readonly chunks = new IdMap<HostChunk>();
  /** Workers known to hold this call's set-up. */
  private readonly workersSetUp = new Set<number>();
  private closing: Promise<void> | undefined;
  /** The last chunk ran for less than {@link QUEUE_BELOW_MS} on a thread. */
  private shortChunks = false;
  waiting = true;
  readonly stoppable = true;
  readonly packsNumbers = true;

  constructor(
    private readonly host: WorkerHost,
    private readonly options: CallOptions,
    private readonly listener: ExecutorListener,
  ) {
    host.attach(this);
    if (options.graceful) host.graceful = true;
  }

  /**
   * A fair share of the host's granted workers, less those other calls are using; plus, for short
   * chunks on threads, one more chunk queued behind one that runs (see {@link queueTarget}).
   */
  get capacity(): number {
    const { granted, busy } = this.host;
    if (granted === 0 || this.closing !== undefined) return 0;
    const share = Math.max(1, Math.ceil(granted / this.host.callCount));
    // A free worker goes first to the calls that have been waiting for one, in turn.
    const free = Math.max(0, granted - busy - this.host.waitingAhead(this));
    const queued = this.queuedCount();
    const sent = Math.min(share, this.chunks.size - queued + free);
    return sent + queued + (this.queueTarget() === undefined ? 0 : 1);
  }

  /**
   * A thread to queue the next chunk on, behind the chunk it runs, when chunks are short: the
   * thread then goes from one straight to the next instead of waiting a round trip (about a
   * millisecond) for it. Long chunks are not queued: they would gain little, and a chunk queued
   * behind a long one waits for it while another thread may be idle.
   */
  private queueTarget(): WorkerHandle | undefined {
    if (!this.shortChunks || this.host.busy < this.host.granted) return undefined;
    return this.host.threadToQueueOn(this);
  }

  private queuedCount(): number {
    let count = 0;
    for (const chunk of this.chunks.values()) if (chunk.queued) count++;
    return count;
  }

  submit(task: ChunkTask): void {
    if (this.host.closed) {
      queueMicrotask(() => this.hostClosed());
      return;
    }
    let items: Payload;
    const sharing = this.options.workerType === 'thread' ? 'shared' : 'unshared';
    try {
      items = encodeList(task.items, sharing);
    } catch (error) {
      const at = firstUnsendable(task.items, (item) => encode(item, sharing));
      queueMicrotask(() => this.listener.outcome(task.id, { kind: 'unsendable', at, cause: error }));
      return;
    }
    this.send(task, items, false);
  }

  private send(task: ChunkTask, items: Payload, forceSetup: boolean): void {
    const { id } = task;
    const { workerType, setupWithStart } = this.options;
    const needsSetup =
      forceSetup || (!setupWithStart && this.workersSetUp.size < Math.max(this.host.granted, this.host.workerCount));
    const request: ChunkRequest = {
      setupId: this.options.setupId,
      setup: needsSetup ? this.options.setup : undefined,
      items,
      progress: workerType === 'thread' ? newChunkMarks(true) : undefined,
      ...(workerType === 'process' && this.options.watchesTime
        ? { progressKey: nextProgressKey(), progressPrefix: this.host.progressPrefix }
        : {}),
    };
    const chunk: HostChunk = {
      request,
      task,
      channel: this,
      id,
      sentBytes: payloadSize(items),
      worker: undefined,
      reply: undefined,
    };
    this.chunks.set(id, chunk);
    const thread = this.queueTarget();
    if (thread !== undefined) this.host.queueOn(thread, chunk);
    else void this.host.send(chunk);
  }

  takenBack(chunk: HostChunk): void {
    if (this.chunks.get(chunk.id) !== chunk || this.closing !== undefined) return;
    this.chunks.delete(chunk.id);
    // The items again: a thread's copy was moved, not copied, the first time.
    this.send(chunk.task, encodeList(chunk.task.items), false);
  }

  settled(chunk: HostChunk, error: unknown): void {
    if (this.chunks.get(chunk.id) !== chunk || this.closing !== undefined) return;
    this.chunks.delete(chunk.id);
    const worker = this.host.workerOf(chunk);
    const { reply } = chunk;
    if (error === undefined && reply?.kind === 'notSetUp') {
      // A worker that joined late: send the chunk again, with the set-up this time (the items
      // again too: a thread's copy was moved, not copied, the first time).
      this.send(chunk.task, encodeList(chunk.task.items), true);
      return;
    }
    if (error === undefined && reply !== undefined && worker !== undefined) this.workersSetUp.add(worker.id());
    if (reply?.kind === 'done') this.shortChunks = this.options.workerType === 'thread' && reply.ms < QUEUE_BELOW_MS;
    if (isWorkerTermination(error) && worker !== undefined && worker.ending === undefined && !worker.stoppedByUs) {
      // workerpool heard of the end first (a write to a process that had gone fails with EPIPE):
      // wait for the exit, which says how it ended (killed by which signal, which exit code).
      void worker.exited.then(() => {
        if (this.closing === undefined) this.listener.outcome(chunk.id, this.outcomeOf(chunk, error));
      });
      return;
    }
    this.listener.outcome(chunk.id, this.outcomeOf(chunk, error));
    // The host may keep the chunk a while (as its worker's last), but its results are taken in:
    // their buffer can go at the next young-generation collection.
    chunk.reply = undefined;
  }

  private outcomeOf(chunk: HostChunk, error: unknown): ChunkOutcome {
    const { reply } = chunk;
    if (error === undefined) {
      if (reply === undefined) return failed('a worker finished a chunk without replying');
      return outcomeOfReply(reply, chunk.sentBytes);
    }
    const worker = this.host.workerOf(chunk);
    const started = this.startedOf(chunk);
    if (worker?.ending !== undefined) return { kind: 'lost', ending: this.ending(worker.ending), started };
    if (worker?.stoppedByUs === true) return { kind: 'lost', ending: { stopped: true }, started };
    if (error instanceof ParmapError) return { kind: 'failed', error };
    if (worker === undefined || isWorkerTermination(error)) {
      // The worker ended before it took the chunk (or before anything said how it ended).
      const near = worker === undefined ? this.host.endingNear(chunk) : undefined;
      return {
        kind: 'lost',
        ending: near === undefined ? {} : this.ending(near),
        started: worker === undefined ? NONE_STARTED : started,
      };
    }
    return failed(`the worker pool failed: ${error instanceof Error ? error.message : String(error)}`, error);
  }

  /** A process over its heap limit is ended by V8 with an abort, not an error it could report. */
  private ending(ending: WorkerEnding): WorkerEnding {
    if (this.options.maxMemory === undefined || ending.outOfMemory) return ending;
    const aborted =
      ending.signal === 'SIGABRT' || ending.signal === 'SIGTRAP' || ending.exitCode === 134 || ending.exitCode === 133;
    return aborted ? { ...ending, outOfMemory: true } : ending;
  }

  /** How far the chunk got when its worker ended (`undefined`: a process that reported nothing). */
  private startedOf(chunk: HostChunk): ItemsStarted | undefined {
    const marks = chunk.request.progress ?? this.host.marksOf(chunk);
    if (marks !== undefined) return itemsStartedOf(marks);
    // A process that ended before the call was set up there had started no item.
    return chunk.worker === undefined || chunk.prepared !== true ? NONE_STARTED : undefined;
  }

  idleWorkerDied(id: number, ending: WorkerEnding): void {
    if (this.closing === undefined) this.listener.workerDiedAfter(id, this.ending(ending));
  }

  capacityChanged(): void {
    this.listener.capacityChanged();
  }

  hostClosed(): void {
    if (this.closing !== undefined) return;
    this.listener.failed(new ParmapError('parmap: the pool was closed while this call was running'));
  }

  started(id: number): ItemsStarted | undefined {
    const chunk = this.chunks.get(id);
    if (chunk === undefined) return undefined;
    // A process writes where it has got only when the call has a timeout.
    const marks = chunk.request.progress ?? this.host.marksOf(chunk);
    return marks === undefined ? NONE_STARTED : itemsStartedOf(marks);
  }

  stop(id: number): void {
    const chunk = this.chunks.get(id);
    if (chunk !== undefined) this.host.stopChunk(chunk);
  }

  hold(waiting: boolean): void {
    this.waiting = waiting;
    this.host.hold(this.host.anyWaiting());
  }

  want(): void {
    if (this.closing !== undefined) return;
    if (this.host.closed) {
      // A call made before its pool closed, and read after: it fails as a later call would.
      queueMicrotask(() => this.hostClosed());
      return;
    }
    this.host.ensureLease();
    if (this.capacity === 0) this.host.wait(this);
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.waiting = false;
    // Workers still running this call's chunks stop after their current item: on a pool they stay
    // warm for the next call (a thread took about 35 ms to start again, with every context lost),
    // and a context is released by teardown. One still running after the grace is stopped, so it
    // cannot hold a shared pool up. A call's own workers without a context are simply ended.
    const running = [...this.chunks.values()];
    this.chunks.clear();
    for (const chunk of running) {
      if (this.options.graceful || !this.options.ownsHost) this.host.cancelChunk(chunk);
      else this.host.stopChunk(chunk);
    }
    this.host.detach(this);
    if (this.options.ownsHost) await this.host.close();
  }
}

function outcomeOfReply(reply: ChunkReply, sentBytes: number): ChunkOutcome {
  switch (reply.kind) {
    case 'done': {
      const bytes = sentBytes + payloadSize(reply.values);
      // Numbers stay packed: the scheduler keeps them so, or unpacks them.
      const values = 'numbers' in reply.values ? reply.values.numbers : (decode(reply.values) as unknown[]);
      return { kind: 'done', values, ms: reply.ms, awaited: reply.awaited, failures: reply.failures, bytes };
    }
    case 'threw':
      return {
        kind: 'threw',
        at: reply.at,
        thrown: rebuildThrown(reply.thrown),
        before: reply.before === undefined ? undefined : (decode(reply.before) as unknown[]),
      };
    case 'uncloneable':
      return reply;
    case 'setupFailed':
      return { kind: 'failed', error: setupError(reply) };
    case 'notSetUp':
      return failed('a worker did not receive the set-up of the call');
  }
}

function failed(message: string, cause?: unknown): ChunkOutcome {
  return { kind: 'failed', error: new ParmapError(`parmap: ${message}`, cause === undefined ? undefined : { cause }) };
}

/**
 * The error a worker's failed set-up becomes: a {@link ParmapScopeError} for names no worker has,
 * else a {@link ParmapSetupError} with what the worker threw, if anything, as its `cause`.
 */
export function setupError(failure: SetupFailure): ParmapError {
  if (failure.missing.length > 0) return new ParmapScopeError(failure.missing);
  const problem = failure.problem ?? 'its set-up failed';
  return new ParmapSetupError(`parmap: a worker could not prepare the call: ${problem}`, {
    cause: failure.thrown === undefined ? undefined : rebuildThrown(failure.thrown),
  });
}

const NONE_STARTED: ItemsStarted = { started: 0, oldest: -1 };
