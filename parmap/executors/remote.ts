/**
 * The executor for `backend: { redis }`: chunks run on `parmap worker` processes, on this host or
 * others, through a BullMQ queue of the call's own. The scheduler drives it like any executor, so
 * ordering, retries, progress and errors are the same code as for local workers.
 *
 * The call's set-up is stored once, in the call's record (a Redis hash that expires unless this
 * side renews it), and announced; workers serve every call in the set of running calls. Each chunk
 * is one job; its outcome comes back as the job's return value through QueueEvents, once per
 * chunk: a job that BullMQ re-runs after its worker died completes once, and an outcome for a
 * chunk no longer pending is ignored. On every way out, the queue and the call's keys are removed.
 */
import type { Queue as BullQueue, QueueEvents as BullQueueEvents } from 'bullmq';
import type { Redis as RedisClient } from 'ioredis';
import { ParmapRemoteError } from '../errors.js';
import type { RemoteJob } from '../front/backend.js';
import type { RemoteCallRecord } from '../protocol.js';
import { firstUnsendable, toBytes } from '../transfer.js';
import type { ChunkTask, Executor, ExecutorListener, ItemsStarted } from './executor.js';
import { connectRedis, reconnecting, workerSlots } from './remote-redis.js';
import {
  CALL_RECORD_TTL_S,
  chunkJob,
  hashOf,
  nodeCrypto,
  readChunkResult,
  remoteKeys,
  signSetup,
  toBase64,
} from './remote-wire.js';

/** What the executor is made with: the checked backend, and the call as workers need it. */
export interface RemoteCall {
  readonly remote: RemoteJob;
  /** The call's encoded set-up (`toBytes(CallSetup)`). */
  readonly setup: Uint8Array;
  readonly workerType: 'thread' | 'process';
  readonly timeout: number | undefined;
  readonly maxMemory: number | undefined;
}

/** How often the call renews its record, counts live workers, and checks it is being served. */
const TICK_MS = 1_000;
/** Chunks queued per worker thread: one running, one waiting, so a thread never waits for Redis. */
const CHUNKS_PER_SLOT = 2;
/** Failed ticks in a row (Redis not answering) after which the call fails. */
const MAX_FAILED_TICKS = 5;
/**
 * How long a tick waits for Redis's answers before it counts as failed: a Redis that is there but
 * does not answer (stopped, or stuck) fails no command, and the call had waited for ever. While
 * one tick's questions are unanswered, each later tick counts as failed without asking again.
 */
const TICK_ANSWER_MS = 5_000;
/** How long the call's removal from Redis, and the closing of its connections, may wait for answers. */
const CLOSE_ANSWER_MS = 2_000;
/**
 * How long setting the call up in Redis may wait for answers: a Redis that accepts connections and
 * answers nothing had held the call for ever, its abort included.
 */
const OPEN_ANSWER_MS = 10_000;

interface Connected {
  readonly client: RedisClient;
  readonly queue: BullQueue;
  readonly events: BullQueueEvents;
}

export class RemoteExecutor implements Executor {
  readonly stoppable = false;
  private readonly name = `c${nodeCrypto().randomBytes(8).toString('hex')}`;
  private readonly keys;
  private readonly hash: string;
  private connected: Connected | undefined;
  private readonly opening: Promise<void>;
  private closing: Promise<void> | undefined;
  /** Chunks queued or running on workers, by id. */
  private readonly pending = new Set<number>();
  /** Worker threads alive, as the workers last said. */
  private slots = 0;
  private ticker: NodeJS.Timeout | undefined;
  private failedTicks = 0;
  /** A tick waits for Redis: the next one is skipped rather than piled behind it. */
  private ticking = false;
  /** The renewal Redis has not answered yet, if any: a tick asks again only once it has. */
  private renewing: Promise<void> | undefined;
  /** Since when chunks have waited with no worker alive (ms). */
  private lonelySince: number | undefined;
  private hasFailed = false;
  /** Redis stopped answering: closing does not wait for it to remove the call. */
  private redisLost = false;

  constructor(
    private readonly call: RemoteCall,
    private readonly listener: ExecutorListener,
  ) {
    this.keys = remoteKeys(call.remote.prefix);
    this.hash = hashOf(call.setup);
    this.opening = answeredWithin(this.open(), OPEN_ANSWER_MS).catch((error: unknown) => {
      this.redisLost = true;
      this.fail(
        error instanceof Error && error.name !== 'Error'
          ? error
          : new ParmapRemoteError(
              `Redis at ${call.remote.where} does not answer (${error instanceof Error ? error.message : String(error)})`,
              { cause: error },
            ),
      );
    });
  }

  /** Worker threads alive, as the workers say: the scheduler reads ahead for each. */
  get workers(): number {
    return Math.max(1, this.slots);
  }

  get capacity(): number {
    if (this.connected === undefined || this.closing !== undefined) return 0;
    // With no worker yet, a few chunks wait in the queue for the first to come.
    return Math.max(CHUNKS_PER_SLOT, CHUNKS_PER_SLOT * this.slots);
  }

  private async open(): Promise<void> {
    const { remote } = this.call;
    const client = await connectRedis(remote, false, OPEN_ANSWER_MS);
    if (this.closing !== undefined) {
      client.disconnect();
      return;
    }
    const { Queue, QueueEvents } = await import('bullmq');
    const connection = { ...remote.connection, retryStrategy: reconnecting(false) };
    const options = { connection, prefix: remote.prefix };
    const queue = new Queue(this.name, options);
    // The queue is new, so its events are read from the start: none can slip past before the
    // first read, as with the default of reading only what comes after it.
    const events = new QueueEvents(this.name, { ...options, lastEventId: '0' });
    this.connected = { client, queue, events };
    // Connection errors: the tick notices Redis is away; an unheard 'error' would end the process.
    queue.on('error', () => undefined);
    events.on('error', () => undefined);
    events.on('completed', ({ jobId, returnvalue }) => this.completed(jobId, returnvalue));
    events.on('failed', ({ jobId, failedReason }) => this.jobFailed(jobId, failedReason));
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    if (this.closing !== undefined) {
      // Closed while Redis was slow to answer: the close may not have seen these connections.
      disconnect(this.connected);
      return;
    }
    const record: RemoteCallRecord = {
      setup: toBase64(this.call.setup),
      hash: this.hash,
      signature: signSetup(remote.secret, this.name, this.hash, this.call.setup),
      workerType: this.call.workerType,
      timeout: this.call.timeout === undefined ? '' : String(this.call.timeout),
      maxMemory: this.call.maxMemory === undefined ? '' : String(this.call.maxMemory),
    };
    const recordKey = this.keys.call(this.name);
    await client
      .multi()
      .hset(recordKey, record)
      .expire(recordKey, CALL_RECORD_TTL_S)
      .sadd(this.keys.calls, this.name)
      .publish(this.keys.announce, this.name)
      .exec();
    this.slots = await workerSlots(client, this.keys);
    this.ticker = setInterval(() => void this.tick(), TICK_MS);
    this.listener.capacityChanged();
  }

  /** Renews the call's record, counts live workers, and fails the call if none has come in time. */
  private async tick(): Promise<void> {
    const connected = this.connected;
    if (connected === undefined || this.closing !== undefined || this.ticking) return;
    this.ticking = true;
    try {
      if (this.renewing !== undefined) throw new Error('the last tick is still unanswered');
      const renewing = this.renew(connected).finally(() => {
        if (this.renewing === renewing) this.renewing = undefined;
      });
      this.renewing = renewing;
      await answeredWithin(renewing, TICK_ANSWER_MS);
    } catch (error) {
      if (++this.failedTicks >= MAX_FAILED_TICKS) {
        this.redisLost = true;
        this.fail(
          new ParmapRemoteError(`lost Redis at ${this.call.remote.where}: it stopped answering`, { cause: error }),
        );
      }
      return;
    } finally {
      this.ticking = false;
    }
    this.checkServed();
  }

  /** The tick's work with Redis: the record renewed, and the live workers counted. */
  private async renew(connected: Connected): Promise<void> {
    if ((await connected.client.expire(this.keys.call(this.name), CALL_RECORD_TTL_S)) === 0) {
      // Without its record, workers take the call for one whose caller died, and remove it.
      this.fail(
        new ParmapRemoteError(
          `the call's keys vanished from Redis at ${this.call.remote.where} (was it flushed or restarted?)`,
        ),
      );
      return;
    }
    const slots = await workerSlots(connected.client, this.keys);
    this.failedTicks = 0;
    const grew = slots > this.slots;
    this.slots = slots;
    if (grew) this.listener.capacityChanged();
  }

  private checkServed(): void {
    if (this.pending.size === 0 || this.slots > 0) {
      this.lonelySince = undefined;
      return;
    }
    const now = performance.now();
    this.lonelySince ??= now;
    const { waitForWorkers, where, prefix } = this.call.remote;
    if (now - this.lonelySince < waitForWorkers) return;
    const flag = prefix === 'parmap' ? '' : ` --prefix ${prefix}`;
    this.fail(
      new ParmapRemoteError(
        `no parmap worker has served this call for ${Math.round(waitForWorkers / 1000)} s: start one with ` +
          `\`parmap worker --redis ${where}${flag}\` and the same PARMAP_SECRET, or raise backend.waitForWorkers`,
      ),
    );
  }

  want(): void {
    // Capacity comes as workers say they are alive (see tick).
  }

  submit(task: ChunkTask): void {
    const connected = this.connected;
    if (connected === undefined || this.closing !== undefined) return;
    let items: Uint8Array;
    try {
      items = toBytes(task.items);
    } catch (error) {
      const at = firstUnsendable(task.items, toBytes);
      queueMicrotask(() => this.listener.outcome(task.id, { kind: 'unsendable', at, cause: error }));
      return;
    }
    this.pending.add(task.id);
    const { secret } = this.call.remote;
    const data = chunkJob(secret, this.name, this.hash, task.start, items);
    connected.queue
      .add('chunk', data, { jobId: jobIdOf(task.id), removeOnComplete: true, removeOnFail: true })
      .catch((error: unknown) => this.fail(new ParmapRemoteError('could not queue a chunk', { cause: error })));
  }

  private completed(jobId: string, value: unknown): void {
    const id = idOfJob(jobId);
    if (!this.pending.delete(id) || this.closing !== undefined) return;
    this.listener.outcome(id, readChunkResult(this.call.remote.secret, this.name, jobId, value));
  }

  private jobFailed(jobId: string, reason: string): void {
    const id = idOfJob(jobId);
    if (!this.pending.delete(id) || this.closing !== undefined) return;
    if (/stalled/i.test(reason)) {
      // Its workers kept dying under it: the scheduler decides, as for a local worker that died.
      this.listener.outcome(id, { kind: 'lost', ending: {}, started: undefined });
      return;
    }
    this.fail(new ParmapRemoteError(`a worker could not run a chunk: ${reason.replace(/^parmap: /, '')}`));
  }

  private fail(error: unknown): void {
    if (this.hasFailed || this.closing !== undefined) return;
    this.hasFailed = true;
    this.listener.failed(
      error instanceof Error ? error : new ParmapRemoteError('the remote backend failed', { cause: error }),
    );
  }

  started(_id: number): ItemsStarted | undefined {
    // Workers watch `timeout` where the items run; nothing to watch from here.
    return undefined;
  }

  stop(_id: number): void {}

  hold(_waiting: boolean): void {}

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** Removes the call: workers are told to stop its chunks, then its queue and keys go. */
  private async shutdown(): Promise<void> {
    clearInterval(this.ticker);
    // Opening waits for Redis at most OPEN_ANSWER_MS; an abort need not wait that long.
    await answeredWithin(this.opening, CLOSE_ANSWER_MS).catch(() => undefined);
    const connected = this.connected;
    if (connected === undefined) return;
    if (this.redisLost) {
      // Its record expires on its own, and a worker removes the queue it finds without one.
      disconnect(connected);
      return;
    }
    const { client, queue, events } = connected;
    const removal = async () => {
      await client
        .multi()
        .srem(this.keys.calls, this.name)
        .del(this.keys.call(this.name))
        .publish(this.keys.announce, `-${this.name}`)
        .exec();
      await queue.obliterate({ force: true });
    };
    try {
      await answeredWithin(removal(), CLOSE_ANSWER_MS);
    } catch {
      // Redis went away, or does not answer: the record expires on its own, and a worker removes
      // the queue it finds without a record.
    }
    const closed = Promise.allSettled([events.close(), queue.close()]);
    // A Redis that does not answer would hold the closing connections, and the call, for ever.
    await answeredWithin(closed, CLOSE_ANSWER_MS).catch(() =>
      Promise.allSettled([events.disconnect(), queue.disconnect()]),
    );
    client.disconnect();
  }
}

/** A chunk's job id: BullMQ takes no id of 0, nor one that is a bare number. */
function jobIdOf(id: number): string {
  return `k${id}`;
}

function idOfJob(jobId: string): number {
  return /^k\d+$/.test(jobId) ? Number(jobId.slice(1)) : -1;
}

/** `work`, or a rejection once `ms` have passed without its answer. */
async function answeredWithin<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Drops a call's connections at once, without waiting for Redis. */
function disconnect(connected: Connected | undefined): void {
  if (connected === undefined) return;
  // Closing stops their loops of reading (which reconnect after a bare disconnect); what they
  // would wait for on a Redis that answers nothing goes with the disconnect.
  const { events, queue, client } = connected;
  void Promise.allSettled([events.close(), queue.close()]);
  void Promise.allSettled([events.disconnect(), queue.disconnect()]);
  client.disconnect();
}
