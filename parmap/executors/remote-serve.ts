/**
 * `parmap worker`: serves the calls made with `backend: { redis }`. It finds running calls in
 * their set (and hears of new ones on a channel), takes each call's chunks from its BullMQ queue,
 * and runs them on threads of its own, through the same executor as a local call. Chunks it takes
 * are locked while it runs them: if it dies, BullMQ's stalled-job check gives them to another
 * worker once their lock expires.
 *
 * Nothing runs unless signed with the shared secret: the call's set-up and each chunk.
 */
import { hostname } from 'node:os';
import type { Redis as RedisClient } from 'ioredis';
import type { CallSetup, FunctionRef, RemoteCallRecord } from '../protocol.js';
import { encode, fromBytes } from '../transfer.js';
import { setWorkerBudget } from './budget.js';
import { CallService } from './remote-call-service.js';
import { connectRedis, type RedisTarget } from './remote-redis.js';
import { fromBase64, hashOf, nodeCrypto, remoteKeys, verify, WORKER_ENTRY_TTL_S } from './remote-wire.js';

export interface ServeOptions extends RedisTarget {
  readonly secret: string;
  readonly prefix: string;
  /** Threads (items running at once). */
  readonly slots: number;
  /** How long a chunk's lock lasts without renewal (ms): a dead worker's chunks go elsewhere after it. */
  readonly lockMs: number;
  /** One line per event worth telling (ready, a call served, a refusal, stopping). */
  readonly log: (line: string) => void;
  /** Aborted: stop taking chunks, finish those running, and return. */
  readonly signal: AbortSignal;
}

/** How often the worker renews its entry and looks for calls it missed or that ended. */
const TICK_MS = 1_000;

/** Serves calls until `options.signal` is aborted; rejects if Redis cannot be reached at the start. */
export async function serveCalls(options: ServeOptions): Promise<void> {
  const worker = new RemoteWorker(options);
  await worker.start();
  await worker.stopped;
}

class RemoteWorker {
  readonly id = `${hostname()}.${process.pid}.${nodeCrypto().randomBytes(2).toString('hex')}`;
  private readonly keys;
  private client: RedisClient | undefined;
  private listener: RedisClient | undefined;
  private readonly calls = new Map<string, CallService>();
  private ticker: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;
  private finish: (() => void) | undefined;
  readonly stopped = new Promise<void>((resolve) => {
    this.finish = resolve;
  });

  constructor(private readonly options: ServeOptions) {
    this.keys = remoteKeys(options.prefix);
  }

  async start(): Promise<void> {
    const { options } = this;
    setWorkerBudget(options.slots);
    const client = await connectRedis(options, true);
    this.client = client;
    const listener = client.duplicate();
    listener.on('error', () => undefined);
    this.listener = listener;
    listener.on('message', (_channel: string, message: string) => {
      if (message.startsWith('-')) void this.drop(message.slice(1), 'ended');
      else void this.serve(message);
    });
    await listener.subscribe(this.keys.announce);
    await this.renew();
    await this.look();
    this.ticker = setInterval(() => void this.tick(), TICK_MS);
    options.signal.addEventListener('abort', () => void this.stop(), { once: true });
    options.log(
      `ready: ${options.slots} thread${options.slots === 1 ? '' : 's'}, ${options.where}, prefix ${options.prefix}`,
    );
    if (options.signal.aborted) void this.stop();
  }

  private async tick(): Promise<void> {
    try {
      await this.renew();
      await this.look();
    } catch {
      // Redis is away for a moment: the client reconnects, and the next tick tries again.
    }
  }

  /** Says this worker is alive, with how many threads it has. */
  private async renew(): Promise<void> {
    const client = this.client as RedisClient;
    await client
      .multi()
      .set(this.keys.worker(this.id), String(this.options.slots), 'EX', WORKER_ENTRY_TTL_S)
      .sadd(this.keys.workers, this.id)
      .exec();
  }

  /**
   * Serves running calls it does not serve yet; drops those that ended without a word, and those
   * whose record expired (their caller was killed), removing what they left.
   */
  private async look(): Promise<void> {
    const client = this.client as RedisClient;
    const running = await client.smembers(this.keys.calls);
    const alive = await Promise.all(running.map((name) => client.exists(this.keys.call(name))));
    for (const [at, name] of running.entries()) {
      if (alive[at] === 1) void this.serve(name);
      else void this.drop(name, 'ended').then(() => this.removeOrphan(name).catch(() => undefined));
    }
    for (const name of this.calls.keys()) if (!running.includes(name)) void this.drop(name, 'ended');
  }

  private async serve(name: string): Promise<void> {
    if (this.calls.has(name) || this.stopping !== undefined || !/^c[0-9a-f]{16}$/.test(name)) return;
    const client = this.client as RedisClient;
    let record: Partial<RemoteCallRecord>;
    try {
      record = (await client.hgetall(this.keys.call(name))) as Partial<RemoteCallRecord>;
    } catch {
      // Redis is away for a moment: the next look tries again.
      return;
    }
    if (this.calls.has(name) || this.stopping !== undefined) return;
    if (record.setup === undefined || record.hash === undefined) {
      await this.removeOrphan(name).catch(() => undefined);
      return;
    }
    const setup = fromBase64(record.setup);
    const valid =
      hashOf(setup) === record.hash &&
      verify(this.options.secret, ['setup', name, record.hash, setup], record.signature);
    // A set-up that is not signed with this secret is never decoded: its chunks are refused.
    const decoded = valid ? (fromBytes(setup) as CallSetup) : undefined;
    const service = new CallService({
      name,
      hash: record.hash,
      fnHash: decoded === undefined ? record.hash : functionHash(decoded.fn),
      setup: decoded === undefined ? undefined : encode(decoded),
      workerType: record.workerType === 'process' ? 'process' : 'thread',
      timeout: record.timeout ? Number(record.timeout) : undefined,
      maxMemory: record.maxMemory ? Number(record.maxMemory) : undefined,
      worker: this.options,
    });
    this.calls.set(name, service);
    if (!valid) this.options.log(`call ${name}: refused: its set-up is not signed with this PARMAP_SECRET`);
  }

  /**
   * A call in the set without a record: its caller died (the record expired). Whoever takes it out
   * of the set first removes its queue.
   */
  private async removeOrphan(name: string): Promise<void> {
    const client = this.client as RedisClient;
    if ((await client.srem(this.keys.calls, name)) === 0) return;
    const { Queue } = await import('bullmq');
    const queue = new Queue(name, { connection: { ...this.options.connection }, prefix: this.options.prefix });
    queue.on('error', () => undefined);
    try {
      await queue.obliterate({ force: true });
      this.options.log(`call ${name}: its caller is gone; removed its queue`);
    } finally {
      await queue.close();
    }
  }

  private async drop(name: string, why: 'ended' | 'stopping'): Promise<void> {
    const service = this.calls.get(name);
    if (service === undefined) return;
    this.calls.delete(name);
    try {
      await service.close(why === 'stopping', this.client as RedisClient);
    } catch (error) {
      this.options.log(
        `call ${name}: could not stop cleanly: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  /** Stops taking chunks, lets running ones finish, and says goodbye. */
  private stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearInterval(this.ticker);
      const running = [...this.calls.values()].reduce((sum, service) => sum + service.active, 0);
      this.options.log(`stopping: finishing ${running} running chunk${running === 1 ? '' : 's'}`);
      await Promise.allSettled([...this.calls.keys()].map((name) => this.drop(name, 'stopping')));
      try {
        await (this.client as RedisClient)
          .multi()
          .del(this.keys.worker(this.id))
          .srem(this.keys.workers, this.id)
          .exec();
      } catch {
        // Its entry expires on its own.
      }
      this.listener?.disconnect();
      this.client?.disconnect();
      this.options.log('stopped');
      this.finish?.();
    })();
    return this.stopping;
  }
}

/** What the log names a call's function by: a hash of its text (or module and export), the same for every call of it. */
function functionHash(fn: FunctionRef): string {
  return hashOf(Buffer.from(fn.kind === 'source' ? fn.body : `${fn.specifier}#${fn.exportName}`));
}
