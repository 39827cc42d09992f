/**
 * The Redis client both sides use for their own keys (a call's record, the set of calls, the
 * workers alive), beside the connections BullMQ makes for its queue. ioredis is BullMQ's own
 * driver; both are loaded only when a call or a worker uses Redis.
 */
import type { Redis as RedisClient } from 'ioredis';
import { ParmapRemoteError } from '../errors.js';
import type { remoteKeys } from './remote-wire.js';

export interface RedisTarget {
  /** `{ url }` or ioredis options. */
  readonly connection: Readonly<Record<string, unknown>>;
  /** How messages name it (no password). */
  readonly where: string;
}

/** How a connection reconnects: for ever (a worker outlives a Redis restart), or not past ~10 s. */
export function reconnecting(persistent: boolean): (times: number) => number | null {
  // A caller's connections give up, so that a call fails rather than waits for ever, and closing
  // them ends (BullMQ's QueueEvents does not close while its connection is still reconnecting).
  return (times) => (!persistent && times > 8 ? null : Math.min(times * 250, 2_000));
}

/**
 * A connected client; fails at once, naming the Redis, when it cannot be reached. Afterwards it
 * reconnects on its own (a command waits, then fails, while Redis is away).
 */
export async function connectRedis(
  target: RedisTarget,
  persistent: boolean,
  /** How long its first answers may take (a Redis that accepts connections and then answers nothing). */
  answerMs = Number.POSITIVE_INFINITY,
): Promise<RedisClient> {
  const { Redis } = await import('ioredis');
  const { url, ...options } = target.connection as { readonly url?: string };
  const settings = {
    ...options,
    lazyConnect: true,
    maxRetriesPerRequest: 2,
    retryStrategy: reconnecting(persistent),
  };
  const client = url === undefined ? new Redis(settings) : new Redis(url, settings);
  let lastError: unknown;
  // An 'error' event without a listener would end the process: errors reach the caller instead.
  client.on('error', (error: unknown) => {
    lastError = error;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const silent = new Promise<never>((_, reject) => {
      if (answerMs === Number.POSITIVE_INFINITY) return;
      timer = setTimeout(
        () => reject(new Error(`it accepted the connection but answered nothing in ${answerMs / 1000} s`)),
        answerMs,
      );
    });
    await Promise.race([client.connect(), silent]);
  } catch (error) {
    client.disconnect();
    const reason = lastError ?? error;
    throw new ParmapRemoteError(
      `cannot reach Redis at ${target.where} (${reason instanceof Error ? reason.message : String(reason)}): ` +
        'start it, or check backend.redis (or --redis)',
      { cause: reason },
    );
  } finally {
    clearTimeout(timer);
  }
  return client;
}

/**
 * Worker threads alive under this prefix, as the workers' own entries say; entries that expired
 * (a worker killed) are dropped from the set.
 */
export async function workerSlots(client: RedisClient, keys: ReturnType<typeof remoteKeys>): Promise<number> {
  const ids = await client.smembers(keys.workers);
  if (ids.length === 0) return 0;
  const entries = await client.mget(ids.map((id) => keys.worker(id)));
  let slots = 0;
  const gone: string[] = [];
  for (const [at, entry] of entries.entries()) {
    if (entry === null) gone.push(ids[at] as string);
    else slots += Number(entry) || 0;
  }
  if (gone.length > 0) await client.srem(keys.workers, ...gone);
  return slots;
}
