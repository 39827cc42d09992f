/**
 * The remote backend (`backend: { redis }`) end to end: a real redis-server on a free port, real
 * `parmap worker` processes (three shared by most tests, started with `--lock-ms 1000` so that a
 * dead worker's chunks move on within seconds), and calls made from this process or from child
 * processes that must end by themselves.
 *
 * Tests that must see chunks running use `probe` below: each item leaves a file named
 * `<worker pid>-<item>` as it starts, and the held items wait for a `go` file, so a test knows which
 * worker runs what and decides when the items finish. Every wait is a bounded poll of the workers'
 * logs, of Redis or of those files, and fails past its limit.
 *
 * Without redis-server the tests that need it are skipped, saying so, unless `CI` is set: there
 * they fail (CI installs it, see .ci/run).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import {
  AbortError,
  createPool,
  ParmapRemoteError,
  ParmapTaskError,
  ParmapTimeoutError,
  parmap,
} from '../dist/index.js';
import { chunkJob, toBase64 } from '../dist/parmap/executors/remote-wire.js';
import type { RemoteBackendOptions } from '../dist/parmap/front/backend.js';
import { toBytes } from '../dist/parmap/transfer.js';
import { assertClean, entry, lastJson, type Outcome, runNode, runScenario } from './fixtures/child-scenario.js';
import {
  cli,
  hasRedisServer,
  type RedisServer,
  startRedis,
  startWorker,
  type WorkerProcess,
} from './fixtures/redis-server.js';

/** The secret the fixture's workers have. */
const SECRET = 'test secret';
const WORKER_ARGS = ['-n', '1', '--lock-ms', '1000'] as const;
/** The longest a test waits for one thing to happen (a log line, a key to go, a chunk to start). */
const WAIT_MS = 10_000;
/** The longest one call may take. */
const CALL_MS = 15_000;
/** The longest a child process may run. */
const CHILD_MS = 30_000;

const HAVE_REDIS = hasRedisServer();
const NO_REDIS =
  'redis-server is not installed: install it (apt-get install redis-server, or brew install redis) to run the remote backend tests';
const skip = HAVE_REDIS || process.env.CI ? false : NO_REDIS;

const range = (count: number): number[] => Array.from({ length: count }, (_, i) => i);
const twice = (x: number): number => x * 2;
const numeric = (a: number, b: number): number => a - b;

/** Polls `probe` every 20 ms until it gives a value other than `undefined`; fails past `limitMs`. */
async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, limitMs = WAIT_MS) {
  const deadline = performance.now() + limitMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`gave up after ${limitMs} ms waiting for ${what}`);
    await delay(20);
  }
}

/** `promise`, or a failure naming `what` once `limitMs` has passed. */
async function within<T>(promise: PromiseLike<T>, what: string, limitMs = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${limitMs} ms`)), limitMs);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts a call now, with a signal that aborts it past `limitMs`: a call that hangs fails its test
 * saying so, and is ended, so that the next test finds the workers free. Awaited later, it gives
 * the call's outcome (no unhandled rejection meanwhile).
 */
function call<T>(what: string, start: (signal: AbortSignal) => PromiseLike<T>, limitMs = CALL_MS): Promise<T> {
  const controller = new AbortController();
  const late = new Error(`${what} did not settle within ${limitMs} ms, and was aborted`);
  const timer = setTimeout(() => controller.abort(late), limitMs);
  const settled = within(
    Promise.resolve(start(controller.signal)).then(
      (value) => value,
      (error: unknown) => {
        throw error instanceof AbortError && error.cause === late ? late : error;
      },
    ),
    `${what}, aborted past its limit,`,
    limitMs + WAIT_MS,
  ).finally(() => clearTimeout(timer));
  settled.catch(() => undefined);
  return settled;
}

/** What a call rejects with (fails if it fulfils). */
async function rejection(settled: Promise<unknown>, what: string): Promise<unknown> {
  return settled.then(
    (value) => assert.fail(`${what} should fail, got ${JSON.stringify(value)}`),
    (error: unknown) => error,
  );
}

/**
 * Runs on the workers' threads: leaves `<pid>-<x>` in `dir` as it starts; holds the items below
 * `held`, and every item on the worker whose pid is `holdOn`, until `dir/go` exists or `dir` is
 * gone (20 s at most); throws for item `failAt`.
 */
function probe(x: number, dir: string, held: number, failAt = -1, holdOn = 0): number {
  const fs = require('node:fs');
  fs.writeFileSync(`${dir}/${process.pid}-${x}`, '');
  if (x < held || process.pid === holdOn) {
    const pause = new Int32Array(new SharedArrayBuffer(4));
    const end = Date.now() + 20_000;
    while (fs.existsSync(dir) && !fs.existsSync(`${dir}/go`) && Date.now() < end) Atomics.wait(pause, 0, 0, 5);
  }
  if (x === failAt) throw new Error(`item ${x} fails`);
  return x * 2;
}

/** The same as `probe`, as the text of a script run in a child process. */
const PROBE_SOURCE = `(x, dir) => {
  const fs = require('node:fs');
  fs.writeFileSync(dir + '/' + process.pid + '-' + x, '');
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const end = Date.now() + 20000;
  while (fs.existsSync(dir) && !fs.existsSync(dir + '/go') && Date.now() < end) Atomics.wait(pause, 0, 0, 5);
  return x * 2;
}`;

/** The items started so far in `dir`, by the pid of the worker that ran them. */
function startedIn(dir: string): Map<number, number[]> {
  const started = new Map<number, number[]>();
  for (const name of readdirSync(dir)) {
    const match = /^(\d+)-(\d+)$/.exec(name);
    if (match === null) continue;
    const pid = Number(match[1]);
    started.set(pid, [...(started.get(pid) ?? []), Number(match[2])]);
  }
  return started;
}

/** Lets the held items of `probe` go. */
function go(dir: string): void {
  writeFileSync(join(dir, 'go'), '');
}

function temporaryDir(): string {
  return mkdtempSync(join(tmpdir(), 'parmap-remote-'));
}

/** Runs `node cli args` with `env` (and no PARMAP_SECRET or PARMAP_REDIS unless given), killed past the limit. */
function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<Outcome> {
  const { PARMAP_SECRET: _secret, PARMAP_REDIS: _redis, ...inherited } = process.env;
  return runNode([cli, ...args], {
    env: { ...inherited, ...env },
    limitMs: CHILD_MS,
    ...(input === undefined ? {} : { input }),
  });
}

if (!HAVE_REDIS && process.env.CI) {
  it('has redis-server to run against', () =>
    assert.fail(`${NO_REDIS} (CI is set, so this fails instead of skipping)`));
}

describe('the backend option is checked at the call', () => {
  const backend = { redis: 'redis://127.0.0.1:6379', secret: SECRET };

  it('does not go with n, each worker’s -n decides', () => {
    assert.throws(() => parmap(twice, [1], { n: 2, backend }), {
      name: 'TypeError',
      message: /`n` and `backend` do not go together/,
    });
  });

  it('names an unknown backend option, with the one meant', () => {
    assert.throws(() => parmap(twice, [1], { backend: { ...backend, prefx: 'jobs' } as RemoteBackendOptions }), {
      name: 'TypeError',
      message: /Unknown option `backend\.prefx`\. Did you mean `backend\.prefix`\?/,
    });
  });

  it('takes only redis:// and rediss:// URLs', () => {
    assert.throws(() => parmap(twice, [1], { backend: { ...backend, redis: 'http://127.0.0.1:6379' } }), {
      name: 'TypeError',
      message: /`backend\.redis` to start with redis:\/\/ \(or rediss:\/\/ for TLS\)/,
    });
  });

  it('needs a secret, from PARMAP_SECRET or backend.secret', () => {
    const saved = process.env.PARMAP_SECRET;
    delete process.env.PARMAP_SECRET;
    try {
      assert.throws(() => parmap(twice, [1], { backend: { redis: backend.redis } }), {
        name: 'TypeError',
        message: /set PARMAP_SECRET \(the same as on the workers\) or pass `backend\.secret`/,
      });
    } finally {
      if (saved !== undefined) process.env.PARMAP_SECRET = saved;
    }
  });

  it('is refused by a pool, whose workers are this process’s', async () => {
    const pool = createPool({ n: 1 });
    try {
      assert.throws(() => pool.map(twice, [1], { backend } as never), {
        name: 'TypeError',
        message: /`backend` does not go with a pool/,
      });
    } finally {
      await pool.close();
    }
  });
});

describe('parmap worker: mistakes at the start', () => {
  it('exits with code 2 without --redis', async () => {
    const outcome = await runCli(['worker'], { PARMAP_SECRET: SECRET });
    assert.equal(outcome.timedOut, false);
    assert.equal(outcome.status, 2, outcome.stderr);
    assert.match(outcome.stderr, /parmap worker needs --redis <url> \(or PARMAP_REDIS\)/);
  });

  it('exits with code 2 on a URL that is not redis://', async () => {
    const outcome = await runCli(['worker', '--redis', 'http://127.0.0.1:6379'], { PARMAP_SECRET: SECRET });
    assert.equal(outcome.status, 2, outcome.stderr);
    assert.match(outcome.stderr, /--redis expects a URL such as redis:\/\/host:6379/);
  });

  it('refuses to start without PARMAP_SECRET (exit code 2), before connecting', async () => {
    const outcome = await runCli(['worker', '--redis', 'redis://127.0.0.1:1']);
    assert.equal(outcome.status, 2, outcome.stderr);
    assert.match(
      outcome.stderr,
      /^parmap worker \d+: PARMAP_SECRET is not set: set it to the secret the callers sign with/,
    );
  });
});

describe('remote backend: calls on parmap worker processes through Redis', { skip }, () => {
  let redis: RedisServer | undefined;
  let client: Redis;
  let workers: WorkerProcess[] = [];
  let backend: RemoteBackendOptions;

  before(async () => {
    if (!HAVE_REDIS) assert.fail(`${NO_REDIS} (CI is set, so this fails instead of skipping)`);
    redis = await startRedis();
    client = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    const url = redis.url;
    workers = await Promise.all(range(3).map(() => startWorker(url, WORKER_ARGS)));
    backend = { redis: url, secret: SECRET };
  });

  after(async () => {
    const codes = await Promise.all(workers.map((worker) => stopWorker(worker)));
    client?.disconnect();
    await redis?.stop();
    if (codes.length > 0) assert.deepEqual(codes, [0, 0, 0], 'the shared workers should exit with code 0 on SIGTERM');
  });

  afterEach(async () => {
    if (redis === undefined) return;
    // No test leaves a key of a call behind. Leftovers are removed once reported, so that one
    // leak fails the test it happened in, not every test after it.
    const left = await until(
      'Redis to hold no key of any call',
      async () => {
        const keys = await callKeys();
        return keys.length === 0 ? [] : undefined;
      },
      3_000,
    ).catch(async () => callKeys());
    if (left.length > 0) {
      await client.del(...left);
      assert.fail(`keys of calls were left in Redis: ${left.join(', ')}`);
    }
  });

  /** Every key of every call under `prefix`: records, the set of calls, queues. */
  async function callKeys(prefix = 'parmap'): Promise<string[]> {
    return (await client.keys(`${prefix}:c*`)).sort();
  }

  /** What Redis holds of call `name`: its record, its place in the set of calls, its queue's keys. */
  async function keysOf(name: string, prefix = 'parmap'): Promise<string[]> {
    const keys = [...(await client.keys(`${prefix}:${name}:*`)), ...(await client.keys(`${prefix}:call:${name}`))];
    if ((await client.sismember(`${prefix}:calls`, name)) === 1) keys.push(`${name} in ${prefix}:calls`);
    return keys.sort();
  }

  /**
   * The calls whose queue some process still has a Redis connection to: BullMQ names each of its
   * connections after the queue, `<prefix>:<base64 of the queue's name>`.
   */
  async function queueConnections(prefix = 'parmap'): Promise<string[]> {
    const list = (await client.client('LIST')) as string;
    const names: string[] = [];
    for (const [, encoded] of list.matchAll(new RegExp(` name=${prefix}:([A-Za-z0-9+/]+=*)(?::qe)? `, 'g'))) {
      const name = Buffer.from(encoded as string, 'base64').toString();
      if (/^c[0-9a-f]{16}$/.test(name)) names.push(name);
    }
    return names.sort();
  }

  /** Waits until no process has a connection to the queue of `name` (any call's, if not given). */
  function connectionsClosed(name?: string): Promise<true> {
    return until(`every connection to ${name === undefined ? 'a call' : name}'s queue to close`, async () => {
      const open = await queueConnections();
      return open.some((queue) => name === undefined || queue === name) ? undefined : true;
    });
  }

  /** Where each shared worker's log ends now, for {@link logsSince}. */
  function logMarks(): number[] {
    return workers.map((worker) => worker.log().length);
  }

  /** What each shared worker has logged since `marks`. */
  function logsSince(marks: readonly number[]): string[] {
    return workers.map((worker, at) => worker.log().slice(marks[at]));
  }

  /** The name of the call running now (the only one). */
  function runningCall(): Promise<string> {
    return until('a call in parmap:calls', async () => (await client.smembers('parmap:calls'))[0]);
  }

  /** The shared workers' logs, one after the other. */
  function allLogs(): string {
    return workers.map((worker) => worker.log()).join('');
  }

  /** Stops a worker with SIGTERM, or SIGKILL if it has not exited in time; its exit code (or signal). */
  async function stopWorker(worker: WorkerProcess): Promise<number | string | null> {
    try {
      return await within(worker.stop('SIGTERM'), 'a worker stopped with SIGTERM');
    } catch (error) {
      await worker.stop('SIGKILL');
      throw error;
    }
  }

  /** Waits until every shared worker has logged the end of `name`; the chunks run, failed and refused each counted. */
  function endedEverywhere(name: string): Promise<{ chunks: number; failed: number; refused: number }[]> {
    const line = new RegExp(
      `: call ${name} fn [0-9a-f]{12}: (\\d+) chunks?(?:, (\\d+) failed)?(?:, (\\d+) refused)?\\n`,
    );
    return until(`every worker to log the end of ${name}`, () => {
      const ends = workers.map((worker) => line.exec(worker.log()));
      if (ends.some((end) => end === null)) return undefined;
      return ends.map((end) => ({
        chunks: Number(end?.[1]),
        failed: Number(end?.[2] ?? 0),
        refused: Number(end?.[3] ?? 0),
      }));
    });
  }

  describe('results are those of Array.map', () => {
    it('the command line runs lines on the workers with --redis', async () => {
      const input = `${range(50).join('\n')}\n`;
      const outcome = await runCli(['--redis', redis?.url as string, 'n => n * 2'], { PARMAP_SECRET: SECRET }, input);
      assert.equal(outcome.status, 0, outcome.stderr);
      assert.equal(outcome.stdout, range(50).map(twice).join('\n'));
      const refused = await runCli(['--redis', redis?.url as string, 'n => n'], {}, '1\n');
      assert.equal(refused.status, 2);
      assert.match(refused.stderr, /--redis needs PARMAP_SECRET/);
    });

    it('in input order, and as they come with ordered: false', async () => {
      const items = range(300);
      const expected = items.map((x) => x * x + 1);
      const ordered = await call('the call', (signal) => parmap((x: number) => x * x + 1, items, { backend, signal }));
      assert.deepEqual(ordered, expected);
      const unordered = await call('the call', (signal) =>
        parmap((x: number) => x * x + 1, items, { backend, ordered: false, signal }),
      );
      assert.equal(unordered.length, items.length);
      assert.deepEqual([...unordered].sort(numeric), expected);
    });

    it('with star, kwstar, args, kwargs and scope', async () => {
      const pairs: [number, number][] = range(20).map((x) => [x, x + 1]);
      assert.deepEqual(
        await call('star', (signal) => parmap((a: number, b: number) => a * b, pairs, { backend, star: true, signal })),
        pairs.map(([a, b]) => a * b),
      );
      assert.deepEqual(
        await call('star and kwstar', (signal) =>
          parmap(
            (a: number, b: number, label: string, kw: { opt?: boolean; opt2?: boolean }) => [a, b, label, kw],
            [[[1, 2], { opt: true }]],
            { backend, star: true, kwstar: true, args: ['C'], kwargs: { opt2: false }, signal },
          ),
        ),
        [[1, 2, 'C', { opt2: false, opt: true }]],
      );
      assert.deepEqual(
        await call('args and kwargs', (signal) =>
          parmap((x: number, add: number, kw: { mul: number }) => (x + add) * kw.mul, range(20), {
            backend,
            args: [1],
            kwargs: { mul: 3 },
            signal,
          }),
        ),
        range(20).map((x) => (x + 1) * 3),
      );
      const factor = 7;
      const offset = { by: 2 };
      assert.deepEqual(
        await call('scope', (signal) =>
          parmap((x: number) => x * factor + offset.by, range(20), { backend, scope: { factor, offset }, signal }),
        ),
        range(20).map((x) => x * factor + offset.by),
      );
    });

    it('keeps a Buffer a Buffer and every typed array its type', async () => {
      const values = [
        Buffer.from('parmap'),
        new Uint8Array([1, 2, 255]),
        new Int16Array([-3, 4]),
        new Float64Array([0.5, -1.25]),
        new BigInt64Array([2n ** 40n, -1n]),
        new Uint8ClampedArray([7]),
      ];
      const results = await call('the call', (signal) =>
        parmap((value: unknown) => value, values, { backend, chunksize: 2, signal }),
      );
      assert.equal(results.length, values.length);
      assert.ok(Buffer.isBuffer(results[0]), 'a Buffer should come back as a Buffer');
      assert.equal((results[0] as Buffer).toString(), 'parmap');
      for (const [at, value] of values.entries()) {
        assert.equal(Object.getPrototypeOf(results[at]), Object.getPrototypeOf(value), `item ${at} changed its type`);
        assert.deepEqual(results[at], value);
      }
    });

    it('with parmap.filter and parmap.flatMap', async () => {
      const items = range(50);
      assert.deepEqual(
        await call('filter', (signal) => parmap.filter((x: number) => x % 3 === 0, items, { backend, signal })),
        items.filter((x) => x % 3 === 0),
      );
      assert.deepEqual(
        await call('flatMap', (signal) =>
          parmap.flatMap((x: number) => (x % 2 === 0 ? [x, -x] : []), items, { backend, signal }),
        ),
        items.flatMap((x) => (x % 2 === 0 ? [x, -x] : [])),
      );
    });

    it('counting progress up to the total', async () => {
      const seen: { done: number; total: number | undefined; failed: number }[] = [];
      const results = await call('the call', (signal) =>
        parmap(twice, range(120), {
          backend,
          chunksize: 10,
          progress: ({ done, total, failed }) => seen.push({ done, total, failed }),
          signal,
        }),
      );
      assert.deepEqual(results, range(120).map(twice));
      assert.deepEqual(seen.at(-1), { done: 120, total: 120, failed: 0 });
      for (const [at, info] of seen.entries()) {
        assert.ok(info.done <= 120 && info.done >= (seen[at - 1]?.done ?? 0), `progress went ${JSON.stringify(seen)}`);
      }
    });

    it('streamed with for await', async () => {
      const streamed: number[] = [];
      await call('the loop', async (signal) => {
        for await (const result of parmap(twice, range(80), { backend, chunksize: 5, signal })) streamed.push(result);
      });
      assert.deepEqual(streamed, range(80).map(twice));
    });
  });

  describe('errors are those of a local call', () => {
    it('fn throwing: a ParmapTaskError names the item and keeps what was thrown', async () => {
      const failing = call('the call', (signal) =>
        parmap(
          (x: number) => {
            if (x === 13)
              throw Object.assign(new RangeError(`item ${x} is out of range`), { code: 'E_RANGE', limit: 12 });
            return x;
          },
          range(40),
          { backend, signal },
        ),
      );
      const error = await rejection(failing, 'the call');
      assert.ok(error instanceof ParmapTaskError, String(error));
      assert.equal(error.index, 13);
      assert.match(error.message, /fn failed on item 13: .*item 13 is out of range/);
      assert.ok(error.cause instanceof RangeError, `cause: ${String(error.cause)}`);
      assert.equal(error.cause.message, 'item 13 is out of range');
      assert.equal((error.cause as RangeError & { code?: string }).code, 'E_RANGE');
      assert.equal((error.cause as RangeError & { limit?: number }).limit, 12);
    });

    it("onError: 'return' puts each error in its item's place", async () => {
      const results = await call('the call', (signal) =>
        parmap(
          (x: number) => {
            if (x % 10 === 3) throw new TypeError(`bad ${x}`);
            return x * 2;
          },
          range(30),
          { backend, onError: 'return', signal },
        ),
      );
      assert.equal(results.length, 30);
      for (const [at, result] of results.entries()) {
        if (at % 10 === 3) {
          assert.ok(result instanceof ParmapTaskError, `item ${at}: ${String(result)}`);
          assert.equal(result.index, at);
          assert.ok(result.cause instanceof TypeError);
          assert.equal(result.cause.message, `bad ${at}`);
        } else {
          assert.equal(result, at * 2);
        }
      }
    });

    it('timeout: items that never end fail with a ParmapTimeoutError naming them; the others come back', async () => {
      // One worker of one thread, under a prefix of its own: the chunks after an endless item
      // wait on that thread behind it, as on any worker that is busier than its threads.
      const solo = await startWorker(redis?.url as string, [...WORKER_ARGS, '--prefix', 'solo']);
      const endless = [4, 11, 18];
      try {
        const results = await call(
          'the call',
          (signal) =>
            parmap(
              (x: number, never: number[]) => {
                if (never.includes(x)) for (;;);
                return x * 2;
              },
              range(22),
              {
                backend: { ...backend, prefix: 'solo' },
                timeout: 1_000,
                onError: 'return',
                chunksize: 1,
                args: [endless],
                signal,
              },
            ),
          10_000,
        );
        assert.equal(results.length, 22);
        for (const x of endless) {
          const timedOut = results[x];
          assert.ok(timedOut instanceof ParmapTimeoutError, `item ${x}: ${String(timedOut)}`);
          assert.equal(timedOut.index, x);
          assert.equal(timedOut.timeout, 1_000);
          assert.match(timedOut.message, new RegExp(`item ${x} ran longer than the timeout of 1000 ms`));
        }
        assert.deepEqual(
          results.filter((_, at) => !endless.includes(at)),
          range(22)
            .filter((x) => !endless.includes(x))
            .map(twice),
        );
        assert.deepEqual(await callKeys('solo'), []);
      } finally {
        await stopWorker(solo);
      }
    });

    it('retries: a thread that exits on an item once is replaced, and the call gives every result', async () => {
      const dir = temporaryDir();
      try {
        const results = await call('the call', (signal) =>
          parmap(
            (x: number, marks: string) => {
              const fs = require('node:fs');
              if (x === 7 && !fs.existsSync(`${marks}/died`)) {
                fs.writeFileSync(`${marks}/died`, '');
                process.exit(3);
              }
              return x * 2;
            },
            range(20),
            { backend, retries: 1, args: [dir], signal },
          ),
        );
        assert.deepEqual(results, range(20).map(twice));
        assert.ok(readdirSync(dir).includes('died'), 'item 7 should have ended its thread once');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('security: only what is signed with the secret runs', () => {
    it('refuses and logs chunks added by hand, unsigned or signed with another secret; the call goes on', async () => {
      const dir = temporaryDir();
      try {
        // Item 0 holds its thread until the forged chunks have been refused; the others run at once.
        const running = call('the call', (signal) =>
          parmap(probe, range(12), { backend, chunksize: 1, args: [dir, 1, -1], signal }),
        );
        const name = await runningCall();
        await until('item 0 to start', () => ([...startedIn(dir).values()].flat().includes(0) ? true : undefined));
        const hash = await client.hget(`parmap:call:${name}`, 'hash');
        assert.ok(hash !== null && /^[0-9a-f]{64}$/.test(hash), `the call's record should name its set-up: ${hash}`);
        const forged = toBytes([666]);
        const port = redis?.port as number;
        const queue = new Queue(name, { connection: { host: '127.0.0.1', port }, prefix: 'parmap' });
        queue.on('error', () => undefined);
        try {
          const options = { removeOnComplete: true, removeOnFail: true };
          await queue.add(
            'chunk',
            { setup: hash, start: 0, items: toBase64(forged) },
            { ...options, jobId: 'unsigned' },
          );
          await queue.add('chunk', chunkJob('not the secret', name, hash, 0, forged), { ...options, jobId: 'forged' });
          await until('both forged chunks to be refused', () =>
            allLogs().includes(`: call ${name}: refused chunk unsigned: a chunk is unsigned\n`) &&
            allLogs().includes(`: call ${name}: refused chunk forged: a chunk is signed with another secret`)
              ? true
              : undefined,
          );
        } finally {
          await queue.close();
        }
        go(dir);
        assert.deepEqual(await running, range(12).map(twice));
        assert.ok(!readdirSync(dir).some((file) => file.endsWith('-666')), 'a forged item must never run');
        const ends = await endedEverywhere(name);
        assert.deepEqual(
          [ends.reduce((sum, end) => sum + end.refused, 0), ends.reduce((sum, end) => sum + end.failed, 0)],
          [2, 0],
          `the forged chunks are counted as refused, none as failed: ${JSON.stringify(ends)}`,
        );
      } finally {
        go(dir);
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('a caller with another secret fails with a ParmapRemoteError about PARMAP_SECRET, and does not hang', async () => {
      const marks = logMarks();
      const failing = call('a call signed with another secret', (signal) =>
        parmap(twice, range(10), { backend: { ...backend, secret: 'another secret' }, signal }),
      );
      const error = await rejection(failing, 'a call signed with another secret');
      assert.ok(error instanceof ParmapRemoteError, String(error));
      assert.match(error.message, /not signed with the worker's PARMAP_SECRET/);
      const refusal = /: call (c[0-9a-f]{16}): refused: its set-up is not signed with this PARMAP_SECRET\n/;
      const name = refusal.exec(logsSince(marks).join(''))?.[1];
      assert.ok(name !== undefined, `a worker should log the refusal: ${logsSince(marks).join('')}`);
      // What the caller owns is gone once the call has failed (what a worker may write to the queue
      // afterwards is the subject of a test below).
      assert.equal(await client.exists(`parmap:call:${name}`), 0, 'its record');
      assert.equal(await client.sismember('parmap:calls', name), 0, 'its place in the set of calls');
      assert.deepEqual(await client.keys(`parmap:${name}:k*`), [], 'its jobs');
    });
  });

  describe('every way out removes the call from Redis', () => {
    /** Runs `test` with a folder for the probe's files; every held item is let go at the end. */
    async function withProbeDir(test: (dir: string) => Promise<void>): Promise<void> {
      const dir = temporaryDir();
      try {
        await test(dir);
      } finally {
        go(dir);
        rmSync(dir, { recursive: true, force: true });
      }
    }

    /** Nothing of the call is left once `ended`: by the caller, and by the workers once they let go. */
    async function leftNothing(
      name: string,
      ended: string,
    ): Promise<{ chunks: number; failed: number; refused: number }[]> {
      assert.deepEqual(await keysOf(name), [], `nothing of the call is left once ${ended}`);
      const ends = await endedEverywhere(name);
      await connectionsClosed(name);
      assert.deepEqual(await keysOf(name), [], 'the workers leave nothing of the call either');
      return ends;
    }

    it('after a call that succeeds', () =>
      withProbeDir(async (dir) => {
        const running = call('the call', (signal) =>
          parmap(probe, range(30), { backend, chunksize: 1, args: [dir, 30, -1], signal }),
        );
        const name = await runningCall();
        const held = await keysOf(name);
        assert.ok(held.includes(`parmap:call:${name}`), `the call has a record: ${held}`);
        assert.ok(held.includes(`${name} in parmap:calls`), `the call is in the set of calls: ${held}`);
        assert.ok(held.includes(`parmap:${name}:meta`), `the call has a queue: ${held}`);
        go(dir);
        assert.deepEqual(await running, range(30).map(twice));
        const ends = await leftNothing(name, 'it has returned');
        assert.equal(
          ends.reduce((sum, end) => sum + end.chunks, 0),
          30,
          `the workers ran 30 chunks of 1 item: ${JSON.stringify(ends)}`,
        );
      }));

    it('after a call that fails', () =>
      withProbeDir(async (dir) => {
        const failing = call('the call', (signal) =>
          parmap(probe, range(30), { backend, chunksize: 1, args: [dir, 30, 5], signal }),
        );
        const name = await runningCall();
        go(dir);
        const error = await rejection(failing, 'the call');
        assert.ok(error instanceof ParmapTaskError, String(error));
        assert.equal(error.index, 5);
        await leftNothing(name, 'it has failed');
      }));

    it('after an abort mid-run: an AbortError, and the workers stop its chunks', () =>
      withProbeDir(async (dir) => {
        const controller = new AbortController();
        const aborted = within(
          parmap(probe, range(30), { backend, chunksize: 1, args: [dir, 30, -1], signal: controller.signal }).then(
            (value) => assert.fail(`the call should be aborted, got ${JSON.stringify(value)}`),
            (error: unknown) => error,
          ),
          'the aborted call',
        );
        const name = await runningCall();
        await until('a chunk to start', () => (startedIn(dir).size > 0 ? true : undefined));
        controller.abort(new Error('enough'));
        const error = await aborted;
        assert.ok(error instanceof AbortError, String(error));
        assert.equal((error.cause as Error).message, 'enough');
        // The held items would run for 20 s: the workers must stop them to say the call has ended.
        await leftNothing(name, 'it has been aborted');
      }));

    it('after a loop that breaks halfway, and the caller exits by itself', () =>
      withProbeDir(async (dir) => {
        const outcome = runScenario(
          `const seen = [];
           for await (const result of parmap(${PROBE_SOURCE}, range(40), {
             backend: ${JSON.stringify(backend)}, chunksize: 1, args: [${JSON.stringify(dir)}] })) {
             seen.push(result);
             if (seen.length === 20) break;
           }
           console.log(JSON.stringify(seen));`,
          { limitMs: CHILD_MS },
        );
        const name = await runningCall();
        go(dir);
        const ended = await outcome;
        assertClean(ended);
        assert.deepEqual(lastJson(ended), range(20).map(twice));
        await leftNothing(name, 'the loop has broken');
      }));

    it('after the caller is killed: once its record expires, a worker removes its queue', async () => {
      const dir = temporaryDir();
      const caller = spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { parmap } from ${JSON.stringify(entry)};
           await parmap(${PROBE_SOURCE}, Array.from({ length: 40 }, (_, i) => i), {
             backend: ${JSON.stringify(backend)}, chunksize: 1, args: [${JSON.stringify(dir)}] });
           console.log('the call returned');`,
        ],
        { stdio: 'ignore' },
      );
      const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
        caller.on('exit', (code, signal) => resolve(signal ?? code)),
      );
      try {
        const name = await runningCall();
        await until('a chunk to start', () => (startedIn(dir).size > 0 ? true : undefined));
        caller.kill('SIGKILL');
        assert.equal(await within(exited, 'the killed caller'), 'SIGKILL');
        assert.ok((await keysOf(name)).includes(`parmap:${name}:meta`), 'its queue is still there');
        // What the expiry of its record (30 s after the caller's last renewal) does.
        assert.equal(redis?.cli('DEL', `parmap:call:${name}`).trim(), '1');
        await until(`the queue of ${name} to be removed`, async () =>
          (await keysOf(name)).length === 0 ? true : undefined,
        ).catch(async (error: unknown) => {
          throw new Error(`${(error as Error).message}; left: ${(await keysOf(name)).join(', ')}\n${allLogs()}`);
        });
        // The worker says so once the removal has returned, which may be after the keys are gone.
        const said = new RegExp(`: call ${name}: its caller is gone; removed its queue\\n`);
        await until('the worker to say it removed the queue', () => (said.test(allLogs()) ? true : undefined));
        await endedEverywhere(name);
        await connectionsClosed(name);
        assert.deepEqual(await keysOf(name), [], 'the workers leave nothing of the call either');
      } finally {
        caller.kill('SIGKILL');
        go(dir);
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('calls that end before every worker has started on them leave nothing behind either', async () => {
      // A call refused at once (another secret) ends within milliseconds, often before some
      // workers have their queue consumer running for it.
      const calls = 50;
      for (let i = 0; i < calls; i++) {
        const refused = call('a call signed with another secret', (signal) =>
          parmap(twice, [i], { backend: { ...backend, secret: 'another secret' }, signal }),
        );
        assert.ok((await rejection(refused, 'the call')) instanceof ParmapRemoteError);
      }
      // Once no worker has a connection to any of their queues, none can write to them again;
      // the check holds for ten polls in a row, so that a consumer still connecting is seen.
      let quiet = 0;
      await until("every connection to the calls' queues to close", async () => {
        quiet = (await queueConnections()).length === 0 ? quiet + 1 : 0;
        return quiet >= 10 ? true : undefined;
      });
      const left = await callKeys();
      const leaking = new Set(left.map((key) => key.split(':')[1]));
      assert.deepEqual(left, [], `${leaking.size} of ${calls} calls left keys in Redis`);
    });
  });

  describe('without a worker or without Redis, a call fails and lets its process end', () => {
    /** Runs a call in a child process; what it threw, once the process has ended by itself. */
    async function failureInChild(backendSource: string): Promise<{ remote: boolean; message: string }> {
      const outcome = await runScenario(
        `try {
           await parmap((x) => x, range(4), { backend: ${backendSource} });
           console.log(JSON.stringify({ remote: false, message: 'the call returned' }));
         } catch (error) {
           console.log(JSON.stringify({ remote: error instanceof parmapModule.ParmapRemoteError, message: error.message }));
         }`,
        { limitMs: CHILD_MS },
      );
      assertClean(outcome);
      return lastJson(outcome) as { remote: boolean; message: string };
    }

    it('no worker serves the prefix: a ParmapRemoteError says how to start one', async () => {
      const { remote, message } = await failureInChild(
        `{ redis: ${JSON.stringify(redis?.url)}, secret: 's', prefix: 'lonely', waitForWorkers: 300 }`,
      );
      assert.equal(remote, true, message);
      assert.match(message, /no parmap worker has served this call for 0 s: start one with `parmap worker --redis /);
      assert.match(message, /--prefix lonely`/);
      assert.deepEqual(await client.keys('lonely:*'), [], 'the call should leave nothing in Redis');
    });

    it('Redis stops answering mid-call (SIGSTOP): a ParmapRemoteError says so, and the call does not hang', async () => {
      // A Redis that is there but answers nothing fails no command: the call had waited for ever.
      const stopped = await startRedis();
      try {
        const call = parmap((x: number) => x, range(4), {
          backend: { redis: stopped.url, secret: 's', prefix: 'stopped', waitForWorkers: 120_000 },
        }).then(
          () => new Error('the call returned'),
          (error: unknown) => error,
        );
        await until('the call to be in Redis', () =>
          stopped.cli('KEYS', 'stopped:*').trim() === '' ? undefined : true,
        );
        stopped.signal('SIGSTOP');
        const error = await within(call, 'the call', 30_000);
        assert.ok(error instanceof ParmapRemoteError, String(error));
        assert.match(error.message, /lost Redis at redis:\/\/127\.0\.0\.1:\d+: it stopped answering/);
      } finally {
        await stopped.stop();
      }
    });

    it('Redis stopped before the call (it accepts connections, answers nothing): the call fails, and an abort ends it', async () => {
      // Setting the call up waited for Redis's first answers for ever, its abort included.
      const stopped = await startRedis();
      try {
        stopped.signal('SIGSTOP');
        const backend = { redis: stopped.url, secret: 's', prefix: 'stuck', waitForWorkers: 120_000 };
        const failed = await within(
          parmap((x: number) => x, range(4), { backend }).then(
            () => new Error('the call returned'),
            (error: unknown) => error,
          ),
          'the call',
          30_000,
        );
        assert.ok(failed instanceof ParmapRemoteError, String(failed));
        assert.match(failed.message, /redis:\/\/127\.0\.0\.1:\d+/);
        const controller = new AbortController();
        const aborting = parmap((x: number) => x, range(4), { backend, signal: controller.signal }).then(
          () => new Error('the call returned'),
          (error: unknown) => error,
        );
        controller.abort();
        const aborted = await within(aborting, 'the aborted call', 8_000);
        assert.ok(aborted instanceof AbortError, String(aborted));
      } finally {
        await stopped.stop();
      }
    });

    it('Redis is not listening: a ParmapRemoteError says it cannot be reached', async () => {
      const { remote, message } = await failureInChild(`{ redis: 'redis://127.0.0.1:1', secret: 's' }`);
      assert.equal(remote, true, message);
      assert.match(message, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
    });
  });

  describe('workers that come and go', () => {
    it('a call keeps every thread of the workers busy, however many cores this host has', async () => {
      // More threads than the read-ahead of a local call on this host (two chunks per core),
      // on one worker under a prefix of its own: each of them should get an item.
      const threads = Math.min(2 * availableParallelism() + 1, 9);
      const dir = temporaryDir();
      const wide = await startWorker(redis?.url as string, [
        '-n',
        String(threads),
        '--lock-ms',
        '1000',
        '--prefix',
        'wide',
      ]);
      try {
        const running = call('the call', (signal) =>
          parmap(probe, range(threads + 4), {
            backend: { ...backend, prefix: 'wide' },
            chunksize: 1,
            args: [dir, threads + 4],
            signal,
          }),
        );
        await until(
          `${threads} items to run at once on ${threads} threads`,
          () => (readdirSync(dir).length >= threads ? true : undefined),
          5_000,
        ).catch((error: unknown) => {
          throw new Error(`${(error as Error).message}; started: ${readdirSync(dir).length}`);
        });
        go(dir);
        assert.deepEqual(await running, range(threads + 4).map(twice));
        assert.deepEqual(await callKeys('wide'), []);
      } finally {
        go(dir);
        await stopWorker(wide);
        rmSync(dir, { recursive: true, force: true });
      }
    });

    // These two run under a prefix of their own, so that the worker that leaves is, at first,
    // the only one: it takes the call's first chunks, whatever the other workers do.
    const FLEET = [...WORKER_ARGS, '--prefix', 'fleet'];

    it('a worker killed with SIGKILL mid-run: its chunks run elsewhere, every result exactly once', async () => {
      const dir = temporaryDir();
      const url = redis?.url as string;
      const doomed = await startWorker(url, FLEET);
      const pid = doomed.child.pid as number;
      let survivor: WorkerProcess | undefined;
      try {
        // Items run at once, except on the doomed worker, which holds those it takes.
        const results: number[] = [];
        const loop = call('the loop', async (signal) => {
          const options = {
            backend: { ...backend, prefix: 'fleet' },
            chunksize: 1,
            ordered: false,
            args: [dir, 0, -1, pid],
            signal,
          };
          for await (const result of parmap(probe, range(40), options)) results.push(result);
        });
        await until('the doomed worker to take a chunk', () => (startedIn(dir).has(pid) ? true : undefined));
        survivor = await startWorker(url, FLEET);
        assert.equal(await doomed.stop('SIGKILL'), 'SIGKILL');
        const lost = startedIn(dir).get(pid) ?? [];
        await loop;
        assert.equal(results.length, 40, `every result once: ${JSON.stringify(results)}`);
        assert.deepEqual([...results].sort(numeric), range(40).map(twice));
        const rerun = startedIn(dir).get(survivor.child.pid as number) ?? [];
        for (const x of lost) assert.ok(rerun.includes(x), `item ${x}, which the killed worker had started, ran again`);
        assert.deepEqual(await callKeys('fleet'), []);
        await within(
          survivor.waitFor(/: call c[0-9a-f]{16} fn [0-9a-f]{12}: [1-9]\d* chunks?\n/),
          'the surviving worker to log the end of the call',
        );
      } finally {
        await doomed.stop('SIGKILL');
        if (survivor !== undefined) await stopWorker(survivor);
        go(dir);
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('a worker stopped with SIGTERM finishes its running chunks, exits 0, and the call completes', async () => {
      const dir = temporaryDir();
      const url = redis?.url as string;
      const leaving = await startWorker(url, FLEET);
      const pid = leaving.child.pid as number;
      let staying: WorkerProcess | undefined;
      try {
        // Items run at once, except on the leaving worker, which holds those it takes until go.
        const running = call('the call', (signal) =>
          parmap(probe, range(40), {
            backend: { ...backend, prefix: 'fleet' },
            chunksize: 1,
            args: [dir, 0, -1, pid],
            signal,
          }),
        );
        await until('the leaving worker to take a chunk', () => (startedIn(dir).has(pid) ? true : undefined));
        staying = await startWorker(url, FLEET);
        const exited = leaving.stop('SIGTERM');
        await until('the worker to say it is stopping', () =>
          /: stopping: finishing [1-9]\d* running chunks?\n/.test(leaving.log()) ? true : undefined,
        );
        assert.equal(leaving.child.exitCode, null, 'it waits for its chunks before exiting');
        go(dir);
        assert.equal(await within(exited, 'the stopping worker'), 0, leaving.log());
        assert.match(leaving.log(), /: call c[0-9a-f]{16} fn [0-9a-f]{12}: [1-9]\d* chunks?\n[^\n]*: stopped\n$/);
        assert.deepEqual(await running, range(40).map(twice));
        assert.deepEqual(await callKeys('fleet'), []);
      } finally {
        await leaving.stop('SIGKILL');
        if (staying !== undefined) await stopWorker(staying);
        go(dir);
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
