/**
 * The `backend` option: run a call's chunks on `parmap worker` processes, on this host or others,
 * through Redis, instead of on workers of this process. Checked here, at the call, like every
 * other option; the executor (`executors/remote.ts`) gets the plain result.
 */
import { describeValue } from '../errors.js';
import { closestName, isPlainObject } from './options.js';

/** Connection options for Redis, passed to its client as they are (ioredis's options). */
export interface RedisConnectionOptions {
  readonly host?: string;
  readonly port?: number;
  readonly username?: string;
  readonly password?: string;
  readonly db?: number;
  /** TLS options (`{}` for the defaults), as Node's `tls.connect` takes them. */
  readonly tls?: object;
  readonly [option: string]: unknown;
}

/** Where and how a call's chunks run remotely. */
export interface RemoteBackendOptions {
  /**
   * The Redis that the workers watch: a URL (`redis://[user:password@]host:6379[/db]`, or
   * `rediss://` for TLS) or connection options.
   */
  readonly redis: string | RedisConnectionOptions;
  /**
   * The shared secret that signs the call's code and data, the same as the workers'. Default:
   * the `PARMAP_SECRET` environment variable.
   */
  readonly secret?: string;
  /**
   * How long the call waits, with chunks queued and no worker alive, before it fails (ms).
   * Default: 30 000.
   */
  readonly waitForWorkers?: number;
  /** The prefix of the call's keys in Redis; workers must use the same (`--prefix`). Default: `'parmap'`. */
  readonly prefix?: string;
}

/** The checked backend, as the executor takes it. */
export interface RemoteJob {
  /** Options for the Redis client: `{ url }` or the options given. */
  readonly connection: Readonly<Record<string, unknown>>;
  /** The Redis as messages name it: the URL without its password. */
  readonly where: string;
  readonly secret: string;
  readonly waitForWorkers: number;
  readonly prefix: string;
}

const BACKEND_OPTIONS = ['redis', 'secret', 'waitForWorkers', 'prefix'] as const;

export const DEFAULT_WAIT_FOR_WORKERS_MS = 30_000;

/** Checks `backend`; throws a TypeError or RangeError naming the part that is wrong. */
export function checkBackend(backend: unknown, env: NodeJS.ProcessEnv = process.env): RemoteJob {
  if (!isPlainObject(backend)) {
    throw new TypeError(`Expected \`backend\` to be { redis: 'redis://host:6379' }, got ${describeValue(backend)}`);
  }
  for (const key of Object.keys(backend)) {
    if (!(BACKEND_OPTIONS as readonly string[]).includes(key)) {
      const near = closestName(key, BACKEND_OPTIONS);
      throw new TypeError(
        `Unknown option \`backend.${key}\`${near === undefined ? '' : `. Did you mean \`backend.${near}\`?`} Known: ${BACKEND_OPTIONS.join(', ')}`,
      );
    }
  }
  const given = backend as Partial<RemoteBackendOptions>;
  const { connection, where } = checkRedis(given.redis);
  const secret = given.secret ?? env.PARMAP_SECRET;
  if (typeof secret !== 'string' || secret === '') {
    throw new TypeError(
      given.secret === undefined
        ? '`backend` needs the secret that signs what workers run: set PARMAP_SECRET (the same as on the workers) or pass `backend.secret`'
        : `Expected \`backend.secret\` to be a non-empty string, got ${describeValue(given.secret)}`,
    );
  }
  const waitForWorkers = given.waitForWorkers ?? DEFAULT_WAIT_FOR_WORKERS_MS;
  if (typeof waitForWorkers !== 'number' || !(waitForWorkers > 0) || !Number.isFinite(waitForWorkers)) {
    throw new RangeError(
      `Expected \`backend.waitForWorkers\` to be a positive number of milliseconds, got ${describeValue(given.waitForWorkers)}`,
    );
  }
  const prefix = given.prefix ?? 'parmap';
  if (typeof prefix !== 'string' || !/^[\w.-]+$/.test(prefix)) {
    throw new TypeError(
      `Expected \`backend.prefix\` to be letters, digits, '_', '.' or '-', got ${describeValue(given.prefix)}`,
    );
  }
  return { connection, where, secret, waitForWorkers, prefix };
}

/** A Redis URL or connection options, as the client takes them, and how messages name it. */
export function checkRedis(redis: unknown): { connection: Readonly<Record<string, unknown>>; where: string } {
  if (typeof redis === 'string') {
    let url: URL;
    try {
      url = new URL(redis);
    } catch {
      throw new TypeError(
        `Expected \`backend.redis\` to be a URL such as 'redis://host:6379', got ${describeValue(redis)}`,
      );
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      throw new TypeError(
        `Expected \`backend.redis\` to start with redis:// (or rediss:// for TLS), got ${describeValue(redis)}`,
      );
    }
    if (url.password !== '') url.password = '***';
    return { connection: { url: redis }, where: url.href };
  }
  if (!isPlainObject(redis)) {
    throw new TypeError(
      `Expected \`backend.redis\` to be a URL ('redis://host:6379') or connection options ({ host, port, password, tls }), got ${describeValue(redis)}`,
    );
  }
  const options = redis as RedisConnectionOptions;
  if (options.host !== undefined && typeof options.host !== 'string') {
    throw new TypeError(`Expected \`backend.redis.host\` to be a string, got ${describeValue(options.host)}`);
  }
  if (options.port !== undefined && (!Number.isSafeInteger(options.port) || options.port < 1 || options.port > 65535)) {
    throw new RangeError(`Expected \`backend.redis.port\` to be a port number, got ${describeValue(options.port)}`);
  }
  const scheme = options.tls === undefined ? 'redis' : 'rediss';
  return { connection: { ...options }, where: `${scheme}://${options.host ?? '127.0.0.1'}:${options.port ?? 6379}` };
}
