/**
 * `parmap worker --redis URL [-n count] [--prefix name] [--lock-ms ms]`: the command line of a
 * worker that serves calls made with `backend: { redis }`. Pure, like `arguments.ts`.
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { checkRedis } from '../front/backend.js';
import { quote, UsageError } from './arguments.js';

export interface WorkerCommand {
  readonly kind: 'worker';
  /** `{ url }` for the Redis client. */
  readonly connection: Readonly<Record<string, unknown>>;
  /** The URL without its password, for the log. */
  readonly where: string;
  /** Threads: items run at once. */
  readonly slots: number;
  readonly prefix: string;
  readonly lockMs: number;
}

/** BullMQ's own default: a chunk whose worker died runs elsewhere about this long after. */
export const DEFAULT_LOCK_MS = 30_000;

const OPTIONS = {
  redis: { type: 'string' },
  workers: { type: 'string', short: 'n' },
  prefix: { type: 'string' },
  'lock-ms': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const WORKER_HELP_COMMAND = 'parmap worker --help';
const KNOWN = '--redis, --workers (-n), --prefix, --lock-ms and --help';

/** The first option `parmap worker` does not know, as written. */
function unknownOption(argv: readonly string[]): string | undefined {
  const { tokens } = parseArgs({
    args: [...argv],
    options: OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const found = tokens.find((token) => token.kind === 'option' && !Object.hasOwn(OPTIONS, token.name));
  return found?.kind === 'option' ? found.rawName : undefined;
}

/**
 * Reads the arguments after `parmap worker`; the Redis may come from `PARMAP_REDIS` instead of
 * `--redis` (which the host's process list shows, password and all). Throws a {@link UsageError}.
 */
export function parseWorkerCommand(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): WorkerCommand | { readonly kind: 'workerHelp' } {
  let values: { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'string' ? string : boolean };
  let positionals: string[];
  const unknown = unknownOption(argv);
  if (unknown !== undefined) {
    throw new UsageError(`parmap worker has no option ${quote(unknown)}; it takes ${KNOWN}`, WORKER_HELP_COMMAND);
  }
  try {
    ({ values, positionals } = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: true }));
  } catch (error) {
    throw new UsageError(`parmap worker: ${(error as Error).message.split('\n')[0]}`, WORKER_HELP_COMMAND);
  }
  if (values.help === true) return { kind: 'workerHelp' };
  if (positionals.length > 0)
    throw new UsageError(`parmap worker takes no arguments, got ${quote(positionals[0] ?? '')}`, WORKER_HELP_COMMAND);
  const redis = values.redis ?? (env.PARMAP_REDIS || undefined);
  if (redis === undefined) {
    throw new UsageError(
      'parmap worker needs --redis <url> (or PARMAP_REDIS), the Redis that callers use: --redis redis://host:6379',
      WORKER_HELP_COMMAND,
    );
  }
  let target: ReturnType<typeof checkRedis>;
  try {
    target = checkRedis(redis);
  } catch {
    const flag = values.redis === undefined ? 'PARMAP_REDIS' : '--redis';
    throw new UsageError(
      `${flag} expects a URL such as redis://host:6379 (rediss:// for TLS), got ${quote(redis)}`,
      WORKER_HELP_COMMAND,
    );
  }
  const prefix = values.prefix ?? 'parmap';
  if (!/^[\w.-]+$/.test(prefix))
    throw new UsageError(
      `--prefix expects letters, digits, '_', '.' or '-', got ${quote(prefix)}`,
      WORKER_HELP_COMMAND,
    );
  return {
    kind: 'worker',
    ...target,
    slots: values.workers === undefined ? availableParallelism() : whole('-n', values.workers, 1),
    prefix,
    lockMs: values['lock-ms'] === undefined ? DEFAULT_LOCK_MS : whole('--lock-ms', values['lock-ms'], 100),
  };
}

function whole(flag: string, text: string, least: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < least)
    throw new UsageError(`${flag} expects a whole number, at least ${least}, got ${quote(text)}`, WORKER_HELP_COMMAND);
  return value;
}

export const WORKER_HELP = `Usage: parmap worker --redis <url> [-n <count>] [--prefix <name>] [--lock-ms <ms>]

Serves the calls made with parmap(fn, items, { backend: { redis: url } }) from this host or any
other: takes their chunks from Redis and runs them on threads of this host. Start as many as you
like, on as many hosts; each call uses every worker alive. Stop one with SIGTERM (or Ctrl-C): it
finishes the chunks it runs, then exits.

  --redis <url>       the callers' Redis: redis://[user:password@]host:6379[/db], or
                      rediss:// for TLS
  -n, --workers <count>
                      threads, so items run at once (default: one per core)
  --prefix <name>     the prefix of parmap's keys in Redis, as the callers' backend.prefix
                      (default: parmap)
  --lock-ms <ms>      how long a chunk stays with this worker without word from it: if the
                      worker dies, its chunks run elsewhere this long after (default: 30000)

Environment
  PARMAP_SECRET       required: the secret that signs what callers send, the same on every
                      caller and worker. A chunk not signed with it is refused, and logged.
  PARMAP_REDIS        the Redis URL, in place of --redis (which the host's process list shows,
                      password and all)

Each call served is logged on stderr when it ends: its queue, its function's hash, its chunks
and how many failed.
`;
