/**
 * One call as a `parmap worker` serves it: a BullMQ worker on the call's queue, and threads (or
 * processes) of this host that run its chunks through the same executor as a local call.
 */
import type { Job as BullJob, Worker as BullWorker } from 'bullmq';
import type { Redis as RedisClient } from 'ioredis';
import { ParmapRemoteError } from '../errors.js';
import type { RemoteChunkResult } from '../protocol.js';
import type { Payload } from '../transfer.js';
import { ChunkRunner } from './chunk-runner.js';
import type { ChunkOutcome, WorkerEnding } from './executor.js';
import type { ServeOptions } from './remote-serve.js';
import { chunkResult, readChunkJob, toRemoteOutcome } from './remote-wire.js';
import { WorkerHost } from './worker-host.js';
import { WorkerpoolExecutor } from './workerpool.js';

export interface ServedCall {
  readonly name: string;
  readonly hash: string;
  /** The hash of the function's text: the same for every call of it (the log names it). */
  readonly fnHash: string;
  /** The call's set-up, ready for threads; `undefined` when it was refused (not signed with our secret). */
  readonly setup: Payload | undefined;
  readonly workerType: 'thread' | 'process';
  readonly timeout: number | undefined;
  readonly maxMemory: number | undefined;
  readonly worker: Pick<ServeOptions, 'connection' | 'prefix' | 'secret' | 'slots' | 'lockMs' | 'log'>;
}

/** Times a chunk may be found stalled (its worker died) and run again before it fails. */
const MAX_STALLS = 2;

export class CallService {
  /** Chunks running or waiting for a thread now. */
  active = 0;
  /** Chunks run, and those of them with a failure. */
  private chunks = 0;
  private failures = 0;
  /** Chunks refused: unsigned, or signed with another secret. */
  private refused = 0;
  private readonly runner: ChunkRunner;
  private readonly executor: WorkerpoolExecutor | undefined;
  private readonly bull: Promise<BullWorker>;
  /** What the chunks still here get when the call ends: nobody reads it, and it is not counted. */
  private readonly ended: ChunkOutcome = { kind: 'failed', error: new ParmapRemoteError('the call ended') };

  constructor(private readonly call: ServedCall) {
    const { name, setup, workerType, maxMemory, worker } = call;
    this.runner = new ChunkRunner(call.timeout, (ending) =>
      worker.log(`call ${name}: a ${workerType} died after its chunk had been answered (${describeEnding(ending)})`),
    );
    if (setup !== undefined) {
      const threads = workerType === 'thread';
      const host = new WorkerHost({
        workers: worker.slots,
        workerType,
        maxMemory,
        threadSetup: threads ? setup : undefined,
      });
      this.executor = new WorkerpoolExecutor(
        host,
        {
          setupId: `remote.${name}`,
          setup,
          setupWithStart: threads,
          workerType,
          maxMemory,
          ownsHost: true,
          graceful: false,
          watchesTime: call.timeout !== undefined,
        },
        this.runner,
      );
      this.runner.use(this.executor);
    }
    this.bull = this.startWorker();
  }

  private async startWorker(): Promise<BullWorker> {
    const { Worker } = await import('bullmq');
    const { name, worker } = this.call;
    const bull = new Worker(name, (job: BullJob) => this.process(job), {
      connection: { ...worker.connection },
      prefix: worker.prefix,
      // One chunk queued behind each running one, so a thread does not wait for Redis between them.
      concurrency: 2 * worker.slots,
      lockDuration: worker.lockMs,
      stalledInterval: worker.lockMs,
      maxStalledCount: MAX_STALLS,
    });
    bull.on('error', () => undefined);
    return bull;
  }

  private async process(job: BullJob): Promise<RemoteChunkResult> {
    const { name, hash, worker } = this.call;
    const id = String(job.id);
    if (this.executor === undefined) {
      this.refused++;
      throw new ParmapRemoteError(
        "the call's set-up is not signed with the worker's PARMAP_SECRET: set it the same on both sides",
      );
    }
    let chunk: { start: number; items: unknown[] };
    try {
      chunk = readChunkJob(worker.secret, name, hash, job.data);
    } catch (error) {
      this.refused++;
      worker.log(`call ${name}: refused chunk ${id}: ${(error as Error).message.replace(/^parmap: /, '')}`);
      throw error;
    }
    this.active++;
    try {
      const outcome = await this.runner.run(chunk.start, chunk.items);
      if (outcome === this.ended) return chunkResult(worker.secret, name, id, toRemoteOutcome(outcome));
      this.chunks++;
      if (outcome.kind !== 'done' || (outcome.failures?.length ?? 0) > 0) this.failures++;
      return chunkResult(worker.secret, name, id, toRemoteOutcome(outcome));
    } finally {
      this.active--;
    }
  }

  /**
   * Stops serving the call. `finish`: the worker is stopping, so running chunks finish and are
   * answered first; otherwise the call has ended and they are abandoned.
   */
  async close(finish: boolean, client: RedisClient): Promise<void> {
    const bull = await this.bull;
    if (!finish) this.runner.end(this.ended);
    await bull.close(!finish);
    await this.executor?.close();
    if (!finish) await sweep(client, bull);
    const { name, fnHash, worker } = this.call;
    const failed = this.failures === 0 ? '' : `, ${this.failures} failed`;
    const refused = this.refused === 0 ? '' : `, ${this.refused} refused`;
    const chunks = `${this.chunks} chunk${this.chunks === 1 ? '' : 's'}`;
    worker.log(`call ${name} fn ${fnHash.slice(0, 12)}: ${chunks}${failed}${refused}`);
  }
}

/**
 * Removes what this worker's BullMQ worker wrote to the queue of a call that has ended, after the
 * caller removed the queue: its check for stalled chunks writes the queue's meta data and a
 * marker while it runs. Only once the queue is gone (no job ids, no events), in one step, so a
 * queue still being removed (which needs its meta data) is left alone; while it is, the sweep
 * looks again a little later (a call refused at once is often still being removed when this
 * worker has closed on it: in 478 such ends, 459 found it still there, and 2 of those found what the
 * worker wrote still there once it was gone, which a single look had left behind).
 */
async function sweep(client: RedisClient, bull: BullWorker): Promise<void> {
  for (let attempt = 0; attempt < SWEEP_ATTEMPTS; attempt++) {
    const swept = await client.eval(
      "if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then return redis.call('DEL', KEYS[3], KEYS[4]) end return -1",
      4,
      bull.toKey('id'),
      bull.toKey('events'),
      bull.toKey('meta'),
      bull.toKey('stalled-check'),
    );
    if (swept !== -1) return;
    await new Promise((resolve) => setTimeout(resolve, SWEEP_AGAIN_MS).unref());
  }
}

/** How often, and how far apart, a sweep looks for a queue that its caller is still removing. */
const SWEEP_ATTEMPTS = 40;
const SWEEP_AGAIN_MS = 50;

function describeEnding(ending: WorkerEnding): string {
  if (ending.signal !== undefined) return `signal ${ending.signal}`;
  if (ending.exitCode !== undefined) return `exit code ${ending.exitCode}`;
  if (ending.uncaught !== undefined)
    return `uncaught: ${String((ending.uncaught as Error)?.message ?? ending.uncaught)}`;
  return 'ended';
}
