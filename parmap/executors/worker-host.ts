/**
 * A set of workers run by workerpool, through its documented API only (see workerpool-pool.ts).
 * Its workers come from the process's worker budget; each chunk is one `exec`, sent only when a
 * granted worker is free, so workerpool never queues a chunk of ours. A host serves one call
 * (`parmap`) or many (`createPool`), each call through a {@link CallChannel} of its own.
 */
import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { IdMap } from '../id-map.js';
import type { ChunkReply, ChunkRequest, PortChunk, PortReply, WorkerEvent } from '../protocol.js';
import { CANCELLED, CLAIMED, MARK_CLAIM, MARK_STARTED, MARK_THREAD, RUN_CHUNK, UNCLAIMED } from '../protocol.js';
import { transferList } from '../transfer.js';
import { type Lease, workerBudget } from './budget.js';
import type { ChunkTask, WorkerEnding } from './executor.js';
import type { WorkerHandle } from './node-workers.js';
import { newProgressPrefix, ProgressFileReader, removeProgressFiles } from './progress-file.js';
import {
  type PoolSettings,
  STOP_GRACE_MS,
  startWorkerpool,
  stopWorkers,
  type WorkerpoolPool,
} from './workerpool-pool.js';

export { isWorkerTermination } from './workerpool-pool.js';

export type HostOptions = PoolSettings;

/** A chunk on its way, as the host tracks it. */
export interface HostChunk {
  /** The pool it went to, once sent. */
  pool?: WorkerpoolPool;
  readonly request: ChunkRequest;
  readonly task: ChunkTask;
  readonly channel: CallChannel;
  readonly id: number;
  /** Its key among the host's chunks on their way, given when it is sent or queued. */
  hostKey?: number;
  /** The size of its encoded items (they may be moved to the worker, leaving the buffer empty). */
  readonly sentBytes: number;
  /** Queued on a thread's own port behind the chunk it runs, rather than sent as a task. */
  queued?: boolean;
  /** When it was handed to workerpool or queued on a thread (ms). */
  sentAt?: number;
  /** The worker that took it, once known. */
  worker: WorkerHandle | undefined;
  /** A thread's task: the key of its answer on the thread's chunk port (see `replyKey`). */
  replyKey?: number | undefined;
  /** A process's marks for it, as last read from the worker's progress file once the worker ended. */
  endMarks?: Int32Array | undefined;
  reply: ChunkReply | undefined;
  /** Given up gracefully: stops its worker if the chunk is still running when it fires. */
  graceTimer?: NodeJS.Timeout;
  /** Its process said the call is set up there (see the `prepared` event). */
  prepared?: boolean;
}

/** What a host tells the call a chunk belongs to. */
export interface CallChannel {
  /** The chunk's worker replied, or workerpool settled the chunk's exec without a reply. */
  settled(chunk: HostChunk, error: unknown): void;
  /** A worker that had run this call's chunk `id` ended on its own while idle. */
  idleWorkerDied(id: number, ending: WorkerEnding): void;
  /** The chunk was taken back before it started (it waited behind a slow one): send it again. */
  takenBack(chunk: HostChunk): void;
  /** More workers can be used. */
  capacityChanged(): void;
  /** Whether someone waits for this call's results: the workers then hold the event loop. */
  readonly waiting: boolean;
  /** The host was closed under the call (a pool closed while it ran). */
  hostClosed(): void;
}

/**
 * The most chunks of short work a thread holds: the one it runs and one queued behind it, so it
 * goes from one to the next without waiting a round trip (about a millisecond) between them.
 */
const CHUNKS_PER_THREAD = 2;

/**
 * A chunk a thread holds that has not started after this long waits behind a slow one: it is
 * taken back and sent again, to go where a worker is free. Queued chunks are short (under 20 ms of
 * work), so one that waits this long is held up, not merely next.
 */
const TAKE_BACK_AFTER_MS = 60;

/** How long threads whose workers were lent back stay, idle, in case the host gets workers again. */
const KEEP_LENT_WARM_MS = 2_000;

/** Whether a thread's chunk is known to have started none of its items. */
function notStarted(chunk: HostChunk): boolean {
  const { progress } = chunk.request;
  return progress !== undefined && Atomics.load(progress, MARK_STARTED) === 0;
}

export class WorkerHost {
  private pool: WorkerpoolPool | undefined;
  private lease: Lease | undefined;
  private readonly handles = new Set<WorkerHandle>();
  private readonly inFlight = new ChunksInFlight();
  /**
   * Chunks a call gave up on while a worker still runs them (see `cancelChunk`): a retired pool
   * is stopped only once they are back too, and had been kept, with its workers, for ever.
   */
  private readonly cancelled = new ChunksInFlight();
  /**
   * Those of them that were queued on a thread's port, by their key there: a task settles when
   * its thread is done with it, a queued chunk only when the port's answer comes, or its thread ends.
   */
  private readonly cancelledOnPort = new IdMap<HostChunk>();
  /**
   * Chunks queued on threads' ports, by their key in the port's messages. This table and the next
   * are {@link IdMap}s: a `Map` would keep every chunk's items and results alive (see id-map.ts).
   */
  private readonly queued = new IdMap<HostChunk>();
  /** Chunks sent to threads as workerpool tasks, by the key of their answer on the thread's port. */
  private readonly answeredOnPort = new IdMap<HostChunk>();
  private nextQueueKey = 0;
  /** Threads a chunk was taken back from: nothing more is queued on them until their chunk ends. */
  private readonly stalled = new WeakSet<WorkerHandle>();
  private takeBackTimer: NodeJS.Timeout | undefined;
  /** Stops the workers lent back to the budget, unless they are wanted again first. */
  private lentTimer: NodeJS.Timeout | undefined;
  /** Threads kept warm after lending, counted in the budget's allowance for such threads. */
  private warmThreads = 0;

  /** Ends the warm period: the threads are wanted again, or about to stop. */
  private cool(): void {
    clearTimeout(this.lentTimer);
    this.lentTimer = undefined;
    workerBudget.cooled(this.warmThreads);
    this.warmThreads = 0;
  }
  /** The chunk each worker took last. */
  private readonly lastChunk = new WeakMap<WorkerHandle, HostChunk>();
  /**
   * The chunk each worker last answered, to blame a late failure on: one it took and never
   * started (its context was still being made) is not one it ran.
   */
  private readonly lastAnswered = new WeakMap<WorkerHandle, HostChunk>();
  /** Process workers' progress files (calls with a timeout), until the worker ends. */
  private readonly progressFiles = new Map<WorkerHandle, ProgressFileReader>();
  private progressFilesAt: string | undefined;
  private readonly channels = new Set<CallChannel>();
  /** The pool each worker belongs to. */
  private readonly poolOf = new WeakMap<WorkerHandle, WorkerpoolPool>();
  /** Pools a worker of which ended on its own (see `stopWorkers`). */
  private readonly poolsThatLostWorkers = new WeakSet<WorkerpoolPool>();
  private readonly lostWorkers = (pool: WorkerpoolPool): boolean => this.poolsThatLostWorkers.has(pool);
  /** How the latest worker of each pool that ended on its own ended (see `endingNear`). */
  private readonly lastEnding = new WeakMap<WorkerpoolPool, WorkerEnding>();
  /** Pools no longer given chunks, until the chunks they still run are done. */
  private readonly retired = new Set<WorkerpoolPool>();
  /** Workers stopped and let go, until they have exited. */
  private readonly dying = new Set<WorkerHandle>();
  private keepAliveTimer: NodeJS.Timeout | undefined;
  /** Calls with work and no worker, in the order they asked. */
  private readonly waiting: CallChannel[] = [];
  private held = true;
  /** Some call on this host has a context: busy workers are stopped gracefully (see `close`). */
  graceful = false;
  /** Whether the workers hold the event loop now. */
  private holding = true;
  /** Whether a chunk has been sent since the lease was granted. */
  private usedLease = false;
  private closing: Promise<void> | undefined;
  private stopping = false;

  constructor(private readonly options: HostOptions) {}

  /** Where this host's process workers make their progress files (see protocol.ts). */
  get progressPrefix(): string {
    this.progressFilesAt ??= newProgressPrefix();
    return this.progressFilesAt;
  }

  /** Workers granted to this host now. */
  get granted(): number {
    return this.lease?.granted ?? 0;
  }

  /**
   * Workers running a chunk sent as a task (a queued chunk needs no worker of its own), the
   * chunks given up but still running among them: a chunk sent while they run would wait in
   * workerpool's queue, and if their worker is stopped it is never sent.
   */
  get busy(): number {
    return this.inFlight.size - this.queued.size + this.cancelled.size;
  }

  get closed(): boolean {
    return this.stopping;
  }

  /** Calls attached now. */
  get callCount(): number {
    return Math.max(1, this.channels.size);
  }

  /** Workers alive now. */
  get workerCount(): number {
    return this.handles.size;
  }

  attach(channel: CallChannel): void {
    this.channels.add(channel);
  }

  detach(channel: CallChannel): void {
    this.channels.delete(channel);
    this.stopWaiting(channel);
    this.lendIfIdle();
    this.tellWaiting();
  }

  /** `channel` has work and no worker: it is told, in turn, when one is free. */
  wait(channel: CallChannel): void {
    if (this.channels.has(channel) && !this.waiting.includes(channel)) this.waiting.push(channel);
  }

  /** How many calls wait for a worker ahead of `channel` (all of them, if it does not wait). */
  waitingAhead(channel: CallChannel): number {
    const place = this.waiting.indexOf(channel);
    return place < 0 ? this.waiting.length : place;
  }

  private stopWaiting(channel: CallChannel): void {
    const place = this.waiting.indexOf(channel);
    if (place >= 0) this.waiting.splice(place, 1);
  }

  /** Offers free workers to the calls waiting for one, first come first served. */
  private tellWaiting(): void {
    for (const channel of [...this.waiting]) {
      if (this.busy >= this.granted) return;
      channel.capacityChanged();
      // Offered a free worker, it sent nothing: it has nothing to send now (its input ended after
      // it asked, or it waits for more) and asks again when it has. Left first in line, it would
      // keep the free worker from every call behind it, for ever.
      if (this.busy < this.granted) this.stopWaiting(channel);
    }
  }

  /** Asks the budget for workers when this host holds none. */
  ensureLease(): void {
    if (this.lease !== undefined || this.closed) return;
    this.cool();
    this.usedLease = false;
    // Grants are told after the current step: the scheduler may be in the middle of feeding.
    const lease = workerBudget.lease(this.options.workers, () =>
      queueMicrotask(() => {
        // The calls that waited first, in turn: each sends, or leaves the line (see tellWaiting).
        this.tellWaiting();
        this.tellCapacity();
        // Granted while its callers had stopped reading: nothing was sent, and others may wait.
        this.lendIfIdle();
      }),
    );
    lease.onPressure = () => {
      this.applyHold();
      this.lendIfIdle();
    };
    this.lease = lease;
  }

  private tellCapacity(): void {
    for (const channel of this.channels) channel.capacityChanged();
  }

  /**
   * Lends the workers back to the budget when another call waits for its first worker and none
   * of these is running a chunk (this host waits for input, or for its caller): a chain of calls
   * on a small budget takes turns, never deadlocks. The threads themselves stay, idle, for
   * {@link KEEP_LENT_WARM_MS}: a stage of a chain paused by its `buffer` gets workers back soon,
   * and starting threads again each turn made such a chain six times slower than one pool.
   */
  private lendIfIdle(): void {
    if (this.lease === undefined || this.inFlight.size > 0 || !workerBudget.hasStarvedLease) return;
    // A grant is used at least once before it can be lent (turns, not churn), unless nobody waits
    // for this host's results: its calls then cannot use it (their callers have stopped reading,
    // often because they wait for workers themselves), and keeping it would starve those callers.
    if (!this.usedLease && this.held) return;
    this.lease.release();
    this.lease = undefined;
    if (workerBudget.keepWarm(this.handles.size)) {
      this.warmThreads = this.handles.size;
      this.lentTimer = setTimeout(() => this.stopLentWorkers(), KEEP_LENT_WARM_MS).unref();
    } else this.stopLentWorkers();
    // A call with more work asks again, and waits its turn.
    queueMicrotask(() => {
      for (const channel of this.channels) channel.capacityChanged();
    });
  }

  /** Lent workers not wanted back in time are stopped. */
  private stopLentWorkers(): void {
    this.cool();
    if (this.lease !== undefined || this.stopping || this.inFlight.size > 0) return;
    const pool = this.pool;
    const handles = [...this.handles];
    this.pool = undefined;
    this.handles.clear();
    void stopWorkers([pool], handles, this.lostWorkers);
  }

  /** Sends a chunk; only call it while `busy < granted`. */
  async send(chunk: HostChunk): Promise<void> {
    this.inFlight.add(chunk);
    chunk.sentAt = performance.now();
    this.stopWaiting(chunk.channel);
    this.usedLease = true;
    let pool: WorkerpoolPool | undefined;
    try {
      pool = this.pool ?? (await this.startPool());
    } catch (error) {
      this.finish(chunk, error);
      return;
    }
    // Closed (or lent out) while workerpool was loading: the chunk's call is over, or will resend.
    if (pool === undefined || !this.inFlight.has(chunk)) return;
    chunk.pool = pool;
    this.keepAlive();
    const on = (event: WorkerEvent) => this.onEvent(chunk, event);
    let { request } = chunk;
    const threads = this.options.workerType === 'thread';
    if (threads) {
      chunk.replyKey = this.nextQueueKey++;
      this.answeredOnPort.set(chunk.replyKey, chunk);
      request = { ...request, replyKey: chunk.replyKey };
    }
    // The items are made for this chunk and can be moved; the set-up is sent again to other workers.
    const transfer = threads ? transferList([request.items]) : [];
    let settled: PromiseLike<unknown>;
    try {
      settled = pool.exec(RUN_CHUNK, [request], { on, transfer });
    } catch (error) {
      this.finish(chunk, error);
      return;
    }
    settled.then(
      () => this.taskSettled(chunk, undefined),
      (error: unknown) => this.taskSettled(chunk, error),
    );
  }

  /**
   * workerpool settled a chunk's task. A thread answered on its chunk port before the task ended,
   * so the answer is there to read, even when the thread has died since (workerpool then rejects
   * the task at once, with the thread's error, and drops what it had not delivered). A rejection
   * comes from inside workerpool's own handling of the end: it is settled after it, as `adopt`
   * settles a thread's other chunks.
   */
  private taskSettled(chunk: HostChunk, error: unknown): void {
    const settle = () => {
      if (chunk.replyKey !== undefined) this.readPort(this.workerOf(chunk));
      // An answer it sent stands, whatever became of the thread afterwards.
      this.finish(chunk, chunk.reply === undefined ? error : undefined);
    };
    if (error === undefined) settle();
    else queueMicrotask(settle);
  }

  /** Takes in every answer waiting on a thread's chunk port. */
  private readPort(worker: WorkerHandle | undefined): void {
    const port = worker?.chunkPort;
    if (port === undefined) return;
    for (let message = receiveMessageOnPort(port); message !== undefined; message = receiveMessageOnPort(port)) {
      this.onQueuedEvent(message.message as PortReply);
    }
  }

  /**
   * A thread running chunks of `channel` only, fewer than {@link CHUNKS_PER_THREAD}: a chunk
   * queued there runs as soon as the one before it ends, with no round trip in between. None
   * while other calls wait for a worker: a queued chunk would hold the thread from them.
   */
  threadToQueueOn(channel: CallChannel): WorkerHandle | undefined {
    if (this.waiting.length > 0 || this.stopping) return undefined;
    const loaded = new Map<WorkerHandle, number>();
    for (const chunk of this.inFlight) {
      const worker = this.workerOf(chunk);
      // Another call's chunk on a thread rules it out.
      const load = chunk.channel === channel ? 1 : CHUNKS_PER_THREAD;
      if (worker !== undefined) loaded.set(worker, (loaded.get(worker) ?? 0) + load);
    }
    let lightest: WorkerHandle | undefined;
    let lightestLoad: number = CHUNKS_PER_THREAD;
    for (const [worker, load] of loaded) {
      const usable =
        worker.chunkPort !== undefined &&
        worker.ending === undefined &&
        this.handles.has(worker) &&
        !this.stalled.has(worker);
      if (usable && load < lightestLoad) {
        lightest = worker;
        lightestLoad = load;
      }
    }
    return lightest;
  }

  /** Queues a chunk on `worker`'s port, behind the chunk it runs (see {@link threadToQueueOn}). */
  queueOn(worker: WorkerHandle, chunk: HostChunk): void {
    const key = this.nextQueueKey++;
    chunk.queued = true;
    chunk.worker = worker;
    this.lastChunk.set(worker, chunk);
    const pool = this.poolOf.get(worker);
    if (pool !== undefined) chunk.pool = pool;
    this.inFlight.add(chunk);
    this.queued.set(key, chunk);
    this.usedLease = true;
    chunk.sentAt = performance.now();
    this.takeBackTimer ??= setInterval(() => this.takeBackWaiting(), TAKE_BACK_AFTER_MS / 3).unref();
    const { request } = chunk;
    try {
      (worker.chunkPort as MessagePort).postMessage([key, request] satisfies PortChunk, transferList([request.items]));
    } catch (error) {
      this.queued.delete(key);
      this.finish(chunk, error);
    }
  }

  /**
   * An answer from a thread's port. A queued chunk is settled by it; a chunk sent as a task is
   * settled with its task, as before the answer came this way: settled earlier, the thread would
   * look free while workerpool still counts it busy, and the next chunk would wait in workerpool's
   * queue instead of behind the one it runs.
   */
  private onQueuedEvent([key, event]: PortReply): void {
    if (event.kind !== 'reply') return;
    const task = this.answeredOnPort.get(key);
    if (task !== undefined) task.reply = event.reply;
    const chunk = this.queued.get(key) ?? this.cancelledOnPort.get(key);
    if (chunk === undefined) return;
    chunk.reply = event.reply;
    this.queued.delete(key);
    this.cancelledOnPort.delete(key);
    this.finish(chunk, undefined);
  }

  /**
   * Takes back the chunks that wait on a thread behind a slow one (see {@link TAKE_BACK_AFTER_MS}),
   * so that `ordered: false` still gives each result as soon as a worker could have made it.
   */
  private takeBackWaiting(): void {
    const now = performance.now();
    for (const chunk of this.inFlight) {
      // Taken back, a chunk goes to a free worker; with none, it would wait in workerpool's queue,
      // which a worker that ends does not move on (only the next `exec` does). It stays queued on
      // its thread instead, and is sent again if that thread ends.
      if (this.busy >= this.granted) break;
      const { progress } = chunk.request;
      if (progress === undefined || chunk.sentAt === undefined || now - chunk.sentAt < TAKE_BACK_AFTER_MS) continue;
      // A task workerpool holds until a thread is free is on no thread yet; a queued chunk is on
      // its thread's port even while that thread, blocked in a synchronous call, has not read it.
      const onThread = chunk.queued === true || Atomics.load(progress, MARK_THREAD) !== 0;
      if (!onThread || Atomics.load(progress, MARK_STARTED) > 0) continue;
      if (Atomics.compareExchange(progress, MARK_CLAIM, UNCLAIMED, CANCELLED) !== UNCLAIMED) continue;
      const worker = this.workerOf(chunk);
      if (worker !== undefined) this.stalled.add(worker);
      this.forgetQueued(chunk);
      this.inFlight.delete(chunk);
      this.releaseIfRetired(chunk);
      chunk.channel.takenBack(chunk);
    }
    if (this.queued.size === 0) {
      clearInterval(this.takeBackTimer);
      this.takeBackTimer = undefined;
    }
  }

  /** A thread ended: the chunks queued on it are lost with it. */
  private loseQueued(worker: WorkerHandle): void {
    for (const table of [this.queued, this.cancelledOnPort]) {
      for (const [key, chunk] of table) {
        if (chunk.worker !== worker) continue;
        table.delete(key);
        this.finish(chunk, new Error('the thread ended'));
      }
    }
  }

  private finish(chunk: HostChunk, error: unknown): void {
    clearTimeout(chunk.graceTimer);
    if (chunk.reply !== undefined && chunk.worker !== undefined) this.lastAnswered.set(chunk.worker, chunk);
    if (chunk.replyKey !== undefined) this.answeredOnPort.delete(chunk.replyKey);
    const running = this.inFlight.delete(chunk);
    const givenUp = this.cancelled.delete(chunk);
    this.releaseIfRetired(chunk);
    if (!running) {
      // Its worker is free again, for the calls that wait.
      if (givenUp) this.tellWaiting();
      return;
    }
    if (chunk.worker !== undefined) this.stalled.delete(chunk.worker);
    chunk.channel.settled(chunk, error);
    this.tellWaiting();
    this.lendIfIdle();
    this.applyHold();
  }

  private onEvent(chunk: HostChunk, event: WorkerEvent): void {
    switch (event.kind) {
      case 'took':
        this.adoptChunk(chunk, event.worker);
        if (event.progressFile !== undefined) this.openProgressFile(chunk.worker, event.progressFile);
        return;
      case 'prepared':
        chunk.prepared = true;
        return;
      case 'reply':
        chunk.reply = event.reply;
        return;
    }
  }

  private openProgressFile(worker: WorkerHandle | undefined, path: string): void {
    const reader = ProgressFileReader.open(path);
    if (reader === undefined) return;
    if (worker === undefined || worker.ending !== undefined) reader.close();
    else this.progressFiles.set(worker, reader);
  }

  /**
   * A process's marks for `chunk`, read from its worker's progress file: `undefined` when the
   * chunk has none (no timeout), or its worker has not started it yet.
   */
  marksOf(chunk: HostChunk): Int32Array | undefined {
    const key = chunk.request.progressKey;
    if (key === undefined || chunk.endMarks !== undefined) return chunk.endMarks;
    const reader = chunk.worker === undefined ? undefined : this.progressFiles.get(chunk.worker);
    return reader?.marksOf(key);
  }

  /**
   * How a worker of `chunk`'s pool last ended on its own: for a chunk lost before any worker said
   * it took it (a thread that died making its context, before reading its chunks), the likeliest
   * account of its loss.
   */
  endingNear(chunk: HostChunk): WorkerEnding | undefined {
    return chunk.pool === undefined ? undefined : this.lastEnding.get(chunk.pool);
  }

  /** Finds the worker a chunk went to, from the id it reported. */
  workerOf(chunk: HostChunk): WorkerHandle | undefined {
    if (chunk.worker !== undefined) return chunk.worker;
    const id = chunk.request.progress?.[MARK_THREAD];
    if (id !== undefined && id !== 0) this.adoptChunk(chunk, id);
    return chunk.worker;
  }

  private adoptChunk(chunk: HostChunk, workerId: number): void {
    for (const handle of this.handles) {
      if (handle.id() === workerId) {
        chunk.worker = handle;
        this.lastChunk.set(handle, chunk);
        return;
      }
    }
  }

  /**
   * Asks the worker running `chunk` to stop after its current item (a thread; a process finishes
   * the chunk), and forgets the chunk: its worker goes back to work, or on to stop gracefully.
   */
  cancelChunk(chunk: HostChunk): void {
    if (chunk.pool === undefined) {
      // Not yet handed to a pool (it waits for one to start): no worker will ever answer it, and
      // kept as given up it counted as busy, so the pool's next call waited behind it.
      if (this.inFlight.delete(chunk)) this.tellWaiting();
      return;
    }
    const { progress } = chunk.request;
    const claim = progress === undefined ? undefined : Atomics.exchange(progress, MARK_CLAIM, CANCELLED);
    const queuedAt = this.forgetQueued(chunk);
    if (!this.inFlight.delete(chunk)) return;
    // A queued chunk its thread had not started is skipped unanswered; one it runs answers after
    // its current item.
    const running = queuedAt === undefined || claim === CLAIMED;
    if (queuedAt === undefined) this.cancelled.add(chunk);
    else if (running) this.cancelledOnPort.set(queuedAt, chunk);
    if (running) {
      // Its current item may never end, and nothing watches its timeout once its call has ended:
      // left running, it kept its worker from every later call on the pool.
      chunk.graceTimer = setTimeout(() => this.stopCancelled(chunk), STOP_GRACE_MS).unref();
    } else {
      this.releaseIfRetired(chunk);
    }
    this.tellWaiting();
  }

  /** A chunk given up gracefully that still runs after the grace: its worker is stopped. */
  private stopCancelled(chunk: HostChunk): void {
    const onPort = [...this.cancelledOnPort].find(([, each]) => each === chunk);
    if (!this.cancelled.delete(chunk) && onPort === undefined) return;
    if (onPort !== undefined) this.cancelledOnPort.delete(onPort[0]);
    this.stopWorkerOf(chunk);
    this.releaseIfRetired(chunk);
    this.tellWaiting();
  }

  /** No longer counts `chunk` as queued on its thread; gives the key it had there, if any. */
  private forgetQueued(chunk: HostChunk): number | undefined {
    if (!chunk.queued) return undefined;
    for (const [key, queued] of this.queued) {
      if (queued !== chunk) continue;
      this.queued.delete(key);
      return key;
    }
    return undefined;
  }

  /**
   * Stops the worker running `chunk` (a timeout, or its call is ending) and settles the chunk now:
   * a worker blocked in a native call may take long to die, and must neither delay the call nor
   * keep the process alive meanwhile.
   */
  stopChunk(chunk: HostChunk): void {
    this.stopWorkerOf(chunk);
    this.forgetQueued(chunk);
    const running = this.inFlight.delete(chunk);
    this.cancelled.delete(chunk);
    this.releaseIfRetired(chunk);
    if (!running) return;
    chunk.channel.settled(chunk, new Error('stopped by parmap'));
    // A worker is free for the calls that wait, as when a chunk finishes: told nothing, calls that
    // had waited behind this one on a shared pool waited for ever.
    this.tellWaiting();
    this.applyHold();
  }

  private stopWorkerOf(chunk: HostChunk): void {
    const worker = this.workerOf(chunk);
    if (worker === undefined) return;
    if (!this.stopping && this.poolOf.get(worker) === this.pool) this.retirePool();
    this.handles.delete(worker);
    worker.abandon();
    this.dying.add(worker);
    void worker.exited.then(() => {
      this.dying.delete(worker);
      this.keepAlive();
    });
  }

  /**
   * New chunks go to a fresh pool once a worker has been stopped: workerpool counts the stopped
   * worker until it has seen it exit, and a chunk it queued meanwhile might never be sent. The
   * old pool's other workers finish what they run, then stop.
   */
  private retirePool(): void {
    const old = this.pool;
    if (old === undefined) return;
    this.pool = undefined;
    this.retired.add(old);
    this.releaseRetired(old);
  }

  private releaseIfRetired(chunk: HostChunk): void {
    if (chunk.pool !== undefined && this.retired.has(chunk.pool)) this.releaseRetired(chunk.pool);
  }

  private releaseRetired(pool: WorkerpoolPool): void {
    for (const chunk of this.inFlight) if (chunk.pool === pool) return;
    for (const chunk of this.cancelled) if (chunk.pool === pool) return;
    for (const chunk of this.cancelledOnPort.values()) if (chunk.pool === pool) return;
    this.retired.delete(pool);
    const handles = [...this.handles].filter((handle) => this.poolOf.get(handle) === pool);
    for (const handle of handles) this.handles.delete(handle);
    void stopWorkers([pool], handles, this.lostWorkers);
  }

  /**
   * A stopped worker no longer holds the event loop, but until workerpool has seen it exit it may
   * still hand it a chunk, which then waits for that exit to be sent again. While that can be,
   * and someone waits for a result, a timer keeps the process alive.
   */
  private keepAlive(): void {
    const needed = this.dying.size > 0 && this.inFlight.size > 0 && this.held && !this.stopping;
    if (needed && this.keepAliveTimer === undefined) this.keepAliveTimer = setInterval(() => {}, 60_000);
    if (!needed && this.keepAliveTimer !== undefined) {
      clearInterval(this.keepAliveTimer);
      this.keepAliveTimer = undefined;
    }
  }

  /** Chunks of `channel` on their way. */
  chunksOf(channel: CallChannel): HostChunk[] {
    return [...this.inFlight].filter((chunk) => chunk.channel === channel);
  }

  hold(waiting: boolean): void {
    if (this.held === waiting || this.closed) return;
    this.held = waiting;
    this.applyHold();
    if (!waiting) this.lendIfIdle();
  }

  /**
   * Workers keep the process alive while someone waits for this host's results, or while another
   * call waits for workers that this one will hand back: a chained call reading this one's results
   * may be waiting for a worker, not for a result, and must not be left with nothing running.
   */
  private applyHold(): void {
    this.keepAlive();
    const holding = this.held || this.closed || (this.inFlight.size > 0 && workerBudget.hasStarvedLease);
    if (holding === this.holding) return;
    this.holding = holding;
    for (const handle of this.handles) handle.hold(holding);
  }

  /** Whether any call attached waits for results. */
  anyWaiting(): boolean {
    for (const channel of this.channels) if (channel.waiting) return true;
    return false;
  }

  private async startPool(): Promise<WorkerpoolPool | undefined> {
    const pool = await startWorkerpool(this.options, (handle) => this.adopt(handle));
    if (this.closed || this.lease === undefined) {
      void stopWorkers([pool], [], this.lostWorkers);
      return undefined;
    }
    this.pool ??= pool;
    if (this.pool !== pool) void stopWorkers([pool], [], this.lostWorkers);
    return this.pool;
  }

  private adopt(handle: WorkerHandle): void {
    this.handles.add(handle);
    if (this.pool !== undefined) this.poolOf.set(handle, this.pool);
    if (!this.holding) handle.hold(false);
    const port = handle.chunkPort;
    if (port !== undefined) {
      port.on('message', (reply: PortReply) => this.onQueuedEvent(reply));
      // The thread holds the event loop while it works; its port must not hold it on its own.
      port.unref();
    }
    handle.onEnd((ending) => {
      const pool = this.poolOf.get(handle);
      if (pool !== undefined && !handle.stoppedByUs) {
        this.poolsThatLostWorkers.add(pool);
        this.lastEnding.set(pool, ending);
      }
      // Found first: finding a chunk's worker (by the id it wrote) also makes it that worker's last.
      const held = [...this.inFlight].filter((chunk) => this.workerOf(chunk) === handle);
      // The newest chunk it answered, when it held some: finding workers above may have made an
      // older chunk its last.
      const answered = held.filter((chunk) => chunk.reply !== undefined);
      const newestAnswered = answered.reduce<HostChunk | undefined>(
        (newest, chunk) => (newest === undefined || chunk.id > newest.id ? chunk : newest),
        undefined,
      );
      const last = newestAnswered ?? this.lastChunk.get(handle);
      const reader = this.progressFiles.get(handle);
      if (reader !== undefined) {
        // Where its chunk had got, kept before the file is closed: it names the item that hung or crashed.
        const key = last?.request.progressKey;
        if (last !== undefined && key !== undefined) last.endMarks = reader.marksOf(key);
        reader.close();
        this.progressFiles.delete(handle);
      }
      // Settled after the end's own event: settling can close the call, and workerpool must have
      // seen the exit by then, or closing waits its whole termination timeout for an exit that
      // has already happened.
      queueMicrotask(() => {
        // Replies the thread sent on its port before it ended may not have been read yet: a chunk
        // it finished is not lost with it.
        this.readPort(handle);
        this.loseQueued(handle);
        // Every chunk it held was answered, or (a thread's) not started and so sent again without
        // blame: it died after its work (a timer or promise of fn's failing late), as an idle
        // worker does, though workerpool had not yet counted it free.
        const idle = held.every((chunk) => chunk.reply !== undefined || notStarted(chunk));
        // Blamed on a chunk it ran, not on one it took and never started (its context was still
        // being made: a death then is the set-up's, told once the chunk has been tried again).
        const lastRun = newestAnswered ?? this.lastAnswered.get(handle);
        if (idle && !handle.stoppedByUs && !this.closed && lastRun !== undefined) {
          // Told after the current event: the call may still be taking in that chunk's reply.
          queueMicrotask(() => lastRun.channel.idleWorkerDied(lastRun.id, ending));
        }
      });
    });
    void handle.exited.then(() => this.handles.delete(handle));
  }

  /** Ends every worker: busy ones at once, idle ones told to stop (releasing their contexts). */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    for (const channel of this.channels) channel.hostClosed();
    if (this.graceful) {
      // Each finishes its current item, then takes workerpool's stop and releases its context.
      for (const { request } of this.inFlight) {
        if (request.progress !== undefined) Atomics.store(request.progress, MARK_CLAIM, CANCELLED);
      }
    } else {
      // Nothing to release: busy workers, and those finishing a chunk given up, are ended now.
      for (const chunk of [...this.inFlight, ...this.cancelled, ...this.cancelledOnPort.values()]) {
        const worker = this.workerOf(chunk);
        if (worker === undefined) continue;
        this.handles.delete(worker);
        worker.abandon();
      }
    }
    if (this.options.workerType === 'process') {
      // A process that never took a chunk holds nothing to finish or release (a process makes its
      // context with its first chunk): ended now, rather than waited for while it starts (an
      // abort during start-up had waited 80 to 400 ms for the processes to boot and stop).
      for (const handle of [...this.handles]) {
        if (this.lastChunk.has(handle)) continue;
        this.handles.delete(handle);
        handle.abandon();
      }
    }
    this.inFlight.clear();
    for (const chunk of [...this.cancelled, ...this.cancelledOnPort.values()]) clearTimeout(chunk.graceTimer);
    this.cancelled.clear();
    this.cancelledOnPort.clear();
    this.queued.clear();
    clearInterval(this.takeBackTimer);
    this.cool();
    const handles = [...this.handles];
    // Stopping workers hold the event loop until they have exited, whoever waits.
    this.applyHold();
    this.lease?.release();
    this.lease = undefined;
    await stopWorkers([this.pool, ...this.retired], handles, this.lostWorkers);
    if (this.progressFilesAt !== undefined) removeProgressFiles(this.progressFilesAt);
    this.retired.clear();
  }
}

/**
 * The chunks a host has on their way, in the order they were sent: a set kept in an
 * {@link IdMap} rather than a `Set`, which would keep every chunk's items and results alive
 * (see id-map.ts).
 */
class ChunksInFlight implements Iterable<HostChunk> {
  private readonly chunks = new IdMap<HostChunk>();
  private nextKey = 0;

  get size(): number {
    return this.chunks.size;
  }

  add(chunk: HostChunk): void {
    chunk.hostKey ??= this.nextKey++;
    this.chunks.set(chunk.hostKey, chunk);
  }

  has(chunk: HostChunk): boolean {
    return chunk.hostKey !== undefined && this.chunks.get(chunk.hostKey) === chunk;
  }

  delete(chunk: HostChunk): boolean {
    return this.has(chunk) && this.chunks.delete(chunk.hostKey as number);
  }

  clear(): void {
    this.chunks.clear();
  }

  [Symbol.iterator](): IterableIterator<HostChunk> {
    return this.chunks.values();
  }
}
