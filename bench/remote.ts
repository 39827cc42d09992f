/**
 * Remote workers (`backend: { redis }`): the 2,000 x 1 ms CPU-bound job of section 10 run on 1, 2
 * and 4 `parmap worker -n 1` processes of this host, through a redis-server of this host, next to
 * the same job on this process's own threads (parmap's defaults); then what one chunk costs through
 * Redis, from 2,000 trivial items sent one per chunk.
 *
 * Redis and the workers start once per setting, outside the timing, and each setting's first call
 * (which loads the Redis client in this process) is not timed. After each remote call, the next run
 * waits until every worker has logged the end of the call, so a worker still stopping its threads
 * never runs into the next contender's time; the chunk counts come from those log lines.
 */
import { availableParallelism } from 'node:os';
import { parmap } from 'parmap';
import { hasRedisServer, startRedis, startWorker, type WorkerProcess } from '../tests/fixtures/redis-server.js';
import { spin } from './cpu-bound.js';
import {
  count,
  median,
  ms,
  type OutputCheck,
  rounds,
  roundsNote,
  sameArrayAs,
  timeOnce,
  WrongOutputError,
} from './measure.js';
import { Table } from './report.js';

const SECRET = 'benchmark secret';
const WORKER_COUNTS = [1, 2, 4] as const;
const TASKS = 2_000;
const TRIVIAL_ITEMS = 2_000;
/** The longest a worker may take to log the end of a call before the benchmark goes on without it. */
const SETTLE_MS = 10_000;

/** What a worker logs for each call it served, once the call has ended. */
const CALL_SERVED = /: call c[0-9a-f]{16} fn [0-9a-f]{12}: (\d+) chunks?/g;

const increment = (x: number) => x + 1;

interface Timings {
  readonly local: number[];
  readonly remote: number[];
  /** Chunks the workers ran, per remote run (all workers together). */
  readonly chunks: number[];
}

interface Setting {
  readonly workers: number;
  readonly cpu: Timings;
  readonly trivial: Timings;
  /** A call of one trivial item: what a call costs before its chunks. */
  readonly single: Timings;
}

export async function remoteWorkers(calibration: number): Promise<void> {
  const cores = availableParallelism();
  const cpuTitle = `13. Remote workers (backend: { redis }): ${count(TASKS)} x 1 ms CPU-bound on parmap worker -n 1 processes of this host, against local threads`;
  const chunkTitle = `14. Remote workers: the cost of one chunk (${count(TRIVIAL_ITEMS)} trivial items, chunksize 1)`;
  if (!hasRedisServer()) {
    for (const title of [cpuTitle, chunkTitle]) {
      console.log(`\n${title}`);
      console.log('  skipped: redis-server is not installed (the workers need a Redis; apt-get install redis-server)');
    }
    return;
  }
  const tasks = Array.from({ length: TASKS }, () => Math.round(calibration));
  // The serial run gives the expected output and the scale of the speed-ups; it is not compared.
  const [serial, expected] = await timeOnce(() => tasks.map(spin));
  const trivialItems = Array.from({ length: TRIVIAL_ITEMS }, (_, i) => i);
  const settings: Setting[] = [];
  for (const workers of WORKER_COUNTS) settings.push(await measureSetting(workers, tasks, expected, trivialItems));

  const roundCount = settings[0]?.cpu.local.length ?? 0;
  const over = WORKER_COUNTS.filter((count) => count > cores);
  const machine =
    `this host has ${cores} cores, shared by this process, redis-server and the workers` +
    (over.length === 0 ? '' : `: ${over.join(', ')} workers of 1 thread oversubscribe them`);
  const cpu = new Table(cpuTitle);
  cpu.add(
    'remote setting',
    'local threads',
    'remote',
    'remote / local',
    'local speed-up',
    'remote speed-up',
    'chunks',
    '(remote - local) / chunks',
  );
  for (const { workers, cpu: timings } of settings) {
    const local = median(timings.local);
    const remote = median(timings.remote);
    const chunks = median(timings.chunks);
    cpu.add(
      describeSetting(workers, cores),
      ms(local),
      ms(remote),
      `${(remote / local).toFixed(2)}x`,
      `${(serial / local).toFixed(2)}x`,
      `${(serial / remote).toFixed(2)}x`,
      Number.isNaN(chunks) ? 'n/a' : chunks,
      workers < cores || Number.isNaN(chunks)
        ? `n/a (${workers} thread, local ${cores})`
        : ms((remote - local) / chunks),
    );
  }
  cpu.print(
    `Array.map on one core (one run): ${ms(serial)}; local: parmap(spin, tasks), ${cores} threads (its default)`,
    `remote: the same call with backend: { redis }; ${roundsNote(roundCount)}`,
    'redis-server and the workers start once per setting, outside the timing; one untimed call first',
    'chunks: as the workers logged them (median over rounds); chunksize is auto on both sides',
    '(remote - local) / chunks includes what a remote call pays once, before its chunks (section 14)',
    machine,
  );

  const chunk = new Table(chunkTitle);
  chunk.add(
    'remote setting',
    'one item: local',
    'remote',
    `${count(TRIVIAL_ITEMS)} chunks: local`,
    'remote',
    'per chunk: local',
    'remote',
    'remote - local',
  );
  for (const { workers, trivial, single } of settings) {
    const [local, remote] = [median(trivial.local), median(trivial.remote)];
    const [localOne, remoteOne] = [median(single.local), median(single.remote)];
    const localPerChunk = (local - localOne) / (TRIVIAL_ITEMS - 1);
    const remotePerChunk = (remote - remoteOne) / (TRIVIAL_ITEMS - 1);
    chunk.add(
      describeSetting(workers, cores),
      ms(localOne),
      ms(remoteOne),
      ms(local),
      ms(remote),
      perChunk(localPerChunk),
      perChunk(remotePerChunk),
      perChunk(remotePerChunk - localPerChunk),
    );
  }
  chunk.print(
    `x => x + 1 over one item, and over ${count(TRIVIAL_ITEMS)} items one per chunk; ${roundsNote(roundCount)}`,
    `per chunk: (time for ${count(TRIVIAL_ITEMS)} - time for one item) / ${count(TRIVIAL_ITEMS - 1)}, so a call's start-up is left out`,
    'remote keeps 2 chunks in flight per worker thread: what shows is the round trip of a chunk through Redis',
    machine,
  );
}

function describeSetting(workers: number, cores: number): string {
  const setting = `${workers} worker${workers === 1 ? '' : 's'} x 1 thread`;
  return workers > cores ? `${setting} (oversubscribed)` : setting;
}

function perChunk(value: number): string {
  return `${value.toFixed(3)} ms`;
}

/** Starts redis-server and `workers` workers, measures both rows on them, and stops them. */
async function measureSetting(
  workers: number,
  tasks: readonly number[],
  expected: readonly number[],
  trivialItems: readonly number[],
): Promise<Setting> {
  const redis = await startRedis();
  const started: WorkerProcess[] = [];
  try {
    for (let i = 0; i < workers; i++) {
      started.push(await startWorker(redis.url, ['-n', '1'], { PARMAP_SECRET: SECRET }));
    }
    const backend = { redis: redis.url, secret: SECRET };
    // Untimed: loads the Redis client and BullMQ in this process, and checks the workers answer.
    const before = served(started);
    await parmap(increment, [1, 2, 3], { backend });
    await settle(started, before);
    const cpu = await alternate(
      `remote CPU-bound, ${workers} workers`,
      started,
      () => parmap(spin, tasks),
      () => parmap(spin, tasks, { backend }),
      sameArrayAs(expected),
      rounds(5),
    );
    const trivial = await alternate(
      `remote chunk cost, ${workers} workers`,
      started,
      () => parmap(increment, trivialItems, { chunksize: 1 }),
      () => parmap(increment, trivialItems, { chunksize: 1, backend }),
      sameArrayAs(trivialItems.map(increment)),
      rounds(5),
    );
    const single = await alternate(
      `remote one-item call, ${workers} workers`,
      started,
      () => parmap(increment, [1]),
      () => parmap(increment, [1], { backend }),
      sameArrayAs([2]),
      rounds(5),
    );
    return { workers, cpu, trivial, single };
  } catch (error) {
    // What the workers saw is the first thing to read when a remote run fails.
    for (const { child, log } of started) {
      const ended = child.exitCode ?? child.signalCode;
      process.stderr.write(`${log()}${ended === null ? '' : `worker ${child.pid} had exited (${ended})\n`}`);
    }
    throw error;
  } finally {
    await Promise.all(started.map((worker) => worker.stop()));
    await redis.stop();
  }
}

/**
 * Runs the local and the remote contender once per round, which goes first alternating, checks
 * every output, and waits after each remote run until the workers have logged its end.
 */
async function alternate(
  row: string,
  workers: readonly WorkerProcess[],
  local: () => Promise<unknown>,
  remote: () => Promise<unknown>,
  check: OutputCheck,
  roundCount: number,
): Promise<Timings> {
  const timings: Timings = { local: [], remote: [], chunks: [] };
  for (let round = 0; round < roundCount; round++) {
    for (const which of round % 2 === 0 ? (['local', 'remote'] as const) : (['remote', 'local'] as const)) {
      const before = served(workers);
      const [took, output] = await timeOnce(which === 'local' ? local : remote);
      const problem = check(output);
      if (problem !== undefined) throw new WrongOutputError(row, which, problem);
      timings[which].push(took);
      if (which === 'remote') {
        const chunks = await settle(workers, before);
        if (chunks !== undefined) timings.chunks.push(chunks);
      }
    }
  }
  return timings;
}

/** The chunk counts each worker has logged so far, one per call it served. */
function served(workers: readonly WorkerProcess[]): number[][] {
  return workers.map((worker) => [...worker.log().matchAll(CALL_SERVED)].map((match) => Number(match[1])));
}

/**
 * Waits until every worker has logged one more call than `before`, and returns the chunks they
 * ran for it, all together; `undefined` if one has not logged it within {@link SETTLE_MS}.
 */
async function settle(
  workers: readonly WorkerProcess[],
  before: readonly (readonly number[])[],
): Promise<number | undefined> {
  const deadline = performance.now() + SETTLE_MS;
  for (;;) {
    const now = served(workers);
    if (now.every((lines, at) => lines.length > (before[at]?.length ?? 0))) {
      return now.reduce((sum, lines) => sum + (lines.at(-1) ?? 0), 0);
    }
    if (performance.now() > deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
