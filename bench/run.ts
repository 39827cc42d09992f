/**
 * `npm run bench`: parmap against serial code and its peers, side by side in one run on the same
 * data, as medians over several rounds, with the ratios that matter. Nothing here is asserted:
 * timings belong here, not in the tests.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import workerpool from 'workerpool';
import { createPool, parmap } from '../dist/index.js';

const WORKERS = 2;
const quick = process.argv.includes('--quick');
const rounds = (count: number) => (quick ? 1 : count);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Median wall time of `count` runs of `job`, in ms. */
async function time(count: number, job: () => unknown): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await job();
    times.push(performance.now() - started);
  }
  return median(times);
}

/**
 * Median wall times of several jobs, run in turn within each round, so that a machine whose speed
 * drifts (a shared host) treats the jobs alike.
 */
async function interleaved(count: number, jobs: (() => unknown)[]): Promise<number[]> {
  const times: number[][] = jobs.map(() => []);
  for (let round = 0; round < count; round++) {
    for (const [i, job] of jobs.entries()) {
      const started = performance.now();
      await job();
      times[i]?.push(performance.now() - started);
    }
  }
  return times.map(median);
}

const tableRows: string[][] = [];
function row(...cells: (string | number)[]): void {
  tableRows.push(cells.map(String));
}
function printTable(title: string): void {
  const widths =
    tableRows[0]?.map((_, column) => Math.max(...tableRows.map((cells) => (cells[column] ?? '').length))) ?? [];
  console.log(`\n${title}`);
  for (const cells of tableRows) console.log(`  ${cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ')}`);
  tableRows.length = 0;
}
const ms = (value: number) => `${value.toFixed(1)} ms`;
const perSecond = (items: number, milliseconds: number) =>
  `${Math.round((items / milliseconds) * 1000).toLocaleString('en-US')}/s`;
const ratio = (value: number) => `${value.toFixed(2)}x`;

/** A hand-written pool: `workers` threads, `chunk` items per message, two messages in flight each. */
async function handWrittenPool<T, R>(
  source: string,
  items: readonly T[],
  options: { chunk: number; extra?: unknown; inFlight?: number },
): Promise<R[]> {
  const workers = Array.from(
    { length: WORKERS },
    // No execArgv: like parmap's, these workers skip the loader this script runs under.
    () => new Worker(new URL('./workers/chunked.cjs', import.meta.url), { workerData: { source }, execArgv: [] }),
  );
  const results: R[][] = [];
  let next = 0;
  let chunkId = 0;
  let done = 0;
  await new Promise<void>((resolve, reject) => {
    const send = (worker: Worker) => {
      if (next >= items.length) return;
      worker.postMessage([chunkId++, items.slice(next, next + options.chunk), options.extra]);
      next += options.chunk;
    };
    for (const worker of workers) {
      worker.on('error', reject);
      worker.on('message', ([id, out]: [number, R[]]) => {
        results[id] = out;
        done += out.length;
        if (done >= items.length) resolve();
        else send(worker);
      });
      for (let i = 0; i < (options.inFlight ?? 2); i++) send(worker);
    }
    if (items.length === 0) resolve();
  });
  await Promise.all(workers.map((worker) => worker.terminate()));
  return results.flat();
}

// ---------------------------------------------------------------------------------------------
// Deterministic busy work, calibrated to about 1 ms per call on this machine.

function spin(rounds: number): number {
  let acc = 0;
  for (let i = 0; i < rounds; i++) acc = (acc * 31 + i) % 1000003;
  return acc;
}
function roundsPerMs(): number {
  spin(1e6);
  const started = performance.now();
  spin(2e7);
  return 2e7 / (performance.now() - started);
}

async function trivialWork(): Promise<void> {
  const count = 200_000;
  const items = Array.from({ length: count }, (_, i) => i);
  const perItemCount = quick ? 2_000 : 20_000;
  const perItem = items.slice(0, perItemCount);
  const increment = (x: number) => x + 1;

  const [serial = 0, handWritten = 0, ours = 0] = await interleaved(rounds(11), [
    () => items.map(increment),
    () => handWrittenPool('(x) => x + 1', items, { chunk: 1000 }),
    () => parmap(increment, items, { n: WORKERS }),
  ]);
  const workerpoolTime = await time(rounds(3), async () => {
    const pool = workerpool.pool(new URL('./workers/increment-workerpool.cjs', import.meta.url).pathname, {
      maxWorkers: WORKERS,
      workerThreadOpts: { execArgv: [] },
    });
    await Promise.all(perItem.map((x) => pool.exec('increment', [x])));
    await pool.terminate();
  });
  const piscinaTime = await time(rounds(3), async () => {
    const pool = new Piscina({
      filename: new URL('./workers/increment.mjs', import.meta.url).href,
      minThreads: WORKERS,
      maxThreads: WORKERS,
      execArgv: [],
    });
    await Promise.all(perItem.map((x) => pool.run(x)));
    await pool.destroy();
  });
  const rate = (items: number, milliseconds: number) => items / milliseconds;
  const oursRate = rate(count, ours);
  row('', 'items', 'time', 'items/s', 'parmap is');
  row('Array.map (serial)', count, ms(serial), perSecond(count, serial), ratio(oursRate / rate(count, serial)));
  row(
    'hand-written chunked pool',
    count,
    ms(handWritten),
    perSecond(count, handWritten),
    ratio(oursRate / rate(count, handWritten)),
  );
  row(
    'workerpool, one exec per item',
    perItemCount,
    ms(workerpoolTime),
    perSecond(perItemCount, workerpoolTime),
    ratio(oursRate / rate(perItemCount, workerpoolTime)),
  );
  row(
    'piscina, one run per item',
    perItemCount,
    ms(piscinaTime),
    perSecond(perItemCount, piscinaTime),
    ratio(oursRate / rate(perItemCount, piscinaTime)),
  );
  row('parmap', count, ms(ours), perSecond(count, ours), '');
  printTable(
    '1. Trivial work (x => x + 1), pool start-up included; per-item peers run on fewer items (their rate is per item)',
  );
  console.log(`  parmap / hand-written pool: ${ratio(oursRate / rate(count, handWritten))} (target >= 0.90)`);
  console.log(
    `  parmap / workerpool per item: ${ratio(oursRate / rate(perItemCount, workerpoolTime))} (target >= 100)`,
  );
}

async function cpuBound(calibration: number): Promise<void> {
  row('tasks', 'serial', 'ceiling (halves)', 'parmap', 'ceiling speed-up', 'parmap speed-up', 'parmap / ceiling');
  for (const [count, taskMs] of [
    [2000, 1],
    [200, 10],
  ] as const) {
    const work = Math.round(calibration * taskMs);
    const items = Array.from({ length: count }, () => work);
    const [serial = 0, ceiling = 0, ours = 0] = await interleaved(rounds(3), [
      () => items.map(spin),
      () => handWrittenPool(spin.toString(), items, { chunk: Math.ceil(count / WORKERS), inFlight: 1 }),
      () => parmap(spin, items, { n: WORKERS }),
    ]);
    row(
      `${count} x ${taskMs} ms`,
      ms(serial),
      ms(ceiling),
      ms(ours),
      ratio(serial / ceiling),
      ratio(serial / ours),
      (serial / ours / (serial / ceiling)).toFixed(3),
    );
  }
  printTable('2. CPU-bound work on 2 workers, start-up included (target: parmap / ceiling >= 0.97)');
}

async function startUp(): Promise<void> {
  const [raw = 0, ours = 0] = await interleaved(rounds(21), [
    async () => {
      const workers = Array.from(
        { length: WORKERS },
        () => new Worker('require("node:worker_threads").parentPort.postMessage(0)', { eval: true, execArgv: [] }),
      );
      await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('message', resolve))));
      await Promise.all(workers.map((worker) => worker.terminate()));
    },
    () => parmap((x: number) => x, [1, 2], { n: WORKERS }),
  ]);
  startUpFloor = raw;
  row('2 raw worker_threads: create, first message, terminate', ms(raw));
  row('await parmap(f, [1, 2]) with 2 workers', ms(ours));
  printTable(`3. Start-up (target: parmap / raw <= 1.30; here ${ratio(ours / raw)})`);
}

async function streaming(): Promise<void> {
  const count = quick ? 200_000 : 2_000_000;
  const child = spawnSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', fileURLToPath(new URL('./streaming.ts', import.meta.url)), String(count)],
    { encoding: 'utf8' },
  );
  const { elapsedMs, rssGrowthMb, baselineMb, liveGrowthMb } = JSON.parse(child.stdout) as {
    elapsedMs: number;
    rssGrowthMb: number;
    baselineMb: number;
    liveGrowthMb: number;
  };

  const delayMs = 50;
  async function* slow() {
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      yield i;
    }
  }
  const startUpOnly = await time(rounds(3), () => parmap((x: number) => x, [1, 2], { n: WORKERS }));
  const firstResults: number[] = [];
  for (let round = 0; round < rounds(3); round++) {
    const begun = performance.now();
    for await (const _ of parmap((x: number) => x, slow(), { n: WORKERS })) {
      firstResults.push(performance.now() - begun);
      break;
    }
  }
  row(
    `${count.toLocaleString('en-US')} items from a generator, for await`,
    perSecond(count, elapsedMs),
    `peak RSS growth ${rssGrowthMb.toFixed(1)} MB over ${baselineMb.toFixed(0)} MB (target < 50); live heap growth after GC ${liveGrowthMb.toFixed(1)} MB`,
  );
  row(
    `first result of a source yielding every ${delayMs} ms`,
    ms(median(firstResults)),
    `(start-up ${ms(startUpOnly)} + one item ${delayMs} ms; the whole input takes ${20 * delayMs} ms)`,
  );
  printTable('4. Streaming');
}

let startUpFloor = 1;

async function largeArgument(): Promise<void> {
  const items = Array.from({ length: 4000 }, (_, i) => i);
  const big = Array.from({ length: 1_000_000 }, (_, i) => i);
  const fn = (x: number, table: number[]) => x + (table[x] ?? 0);
  const typed = Float64Array.from(big);
  const [tiny = 0, large = 0, inScope = 0, asTyped = 0] = await interleaved(rounds(7), [
    () => parmap(fn, items, { n: WORKERS, args: [[1, 2, 3]] }),
    () => parmap(fn, items, { n: WORKERS, args: [big] }),
    () => parmap((x: number) => x + (lookup[x] ?? 0), items, { n: WORKERS, scope: { lookup: big } }),
    () => parmap((x: number, table: Float64Array) => x + (table[x] ?? 0), items, { n: WORKERS, args: [typed] }),
  ]);
  // The floor: what cloning the same array into two raw workers costs, with nothing else to do.
  const cloneFloor = await time(rounds(5), async () => {
    const workers = Array.from(
      { length: WORKERS },
      () =>
        new Worker('require("node:worker_threads").parentPort.postMessage(0)', {
          eval: true,
          execArgv: [],
          workerData: big,
        }),
    );
    await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('message', resolve))));
    await Promise.all(workers.map((worker) => worker.terminate()));
  });
  row('4,000 items, tiny args', ms(tiny), '');
  row('4,000 items, a 1,000,000-number array in args', ms(large), `${ratio(large / tiny)} (target <= 1.50)`);
  row('4,000 items, the same array in scope', ms(inScope), ratio(inScope / tiny));
  row('4,000 items, the same numbers as a Float64Array in args', ms(asTyped), ratio(asTyped / tiny));
  row(
    'floor: 2 raw workers started with the array as workerData',
    ms(cloneFloor),
    `${ratio(cloneFloor / startUpFloor)} of their start-up alone`,
  );
  printTable('5. A large fixed argument is sent once per worker');
}

/** How time grows with the number of items and with their size. */
async function scaling(): Promise<void> {
  row('items', 'item', 'serial', 'parmap', 'parmap items/s', 'parmap / serial');
  const work = Math.round(roundsPerMsCached / 100); // about 10 us per item
  for (const count of [1_000, 10_000, 100_000, 300_000]) {
    const items = Array.from({ length: count }, () => work);
    const [serial = 0, ours = 0] = await interleaved(rounds(count > 100_000 ? 1 : 3), [
      () => items.map(spin),
      () => parmap(spin, items, { n: WORKERS }),
    ]);
    row(count, '10 us of work', ms(serial), ms(ours), perSecond(count, ours), ratio(serial / ours));
  }
  for (const size of [10, 100, 1_000, 10_000]) {
    const count = 20_000;
    const items = Array.from({ length: count }, (_, i) => ({ id: i, text: 'x'.repeat(size) }));
    const measure = (item: { id: number; text: string }) => item.text.length + item.id;
    const [serial = 0, ours = 0] = await interleaved(rounds(3), [
      () => items.map(measure),
      () => parmap(measure, items, { n: WORKERS }),
    ]);
    row(count, `object with ${size} B of text`, ms(serial), ms(ours), perSecond(count, ours), ratio(serial / ours));
  }
  printTable('6. How cost grows with the number of items (10 us each) and with item size (trivial work)');
}

/** Many small calls: warm workers of a pool against a pool started per call. */
async function reusablePool(): Promise<void> {
  const calls = quick ? 100 : 1_000;
  const coldCalls = quick ? 20 : 100;
  const fn = (x: number) => x * 2;
  const pool = createPool({ n: WORKERS });
  const warm = await time(1, async () => {
    for (let i = 0; i < calls; i++) {
      const [result] = await pool.map(fn, [i]);
      if (result !== i * 2) throw new Error('pool.map gave a wrong result');
    }
  });
  await pool.close();
  const cold = await time(1, async () => {
    for (let i = 0; i < coldCalls; i++) await parmap(fn, [i], { n: WORKERS });
  });
  row('call', 'calls', 'total', 'per call');
  row('pool.map(f, [x]) on one createPool pool', calls, ms(warm), ms(warm / calls));
  row('parmap(f, [x])', coldCalls, ms(cold), ms(cold / coldCalls));
  row('parmap / pool.map, per call', '', '', ratio(cold / coldCalls / (warm / calls)));
  printTable('7. Many small calls: a reusable pool against a pool per call');
}

/** 200 MB of read-only numbers used by every item: shared memory against a copy per worker. */
async function sharedMemory(): Promise<void> {
  const length = 25_000_000; // 200 MB of float64
  const items = Array.from({ length: 2_000 }, (_, i) => i * 9_999);
  const fn = (x: number, table: Float64Array) => (table[x] ?? 0) + 1;
  const peakDuring = async (job: () => Promise<unknown>): Promise<[number, number]> => {
    let peak = process.memoryUsage().rss;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 5);
    const started = performance.now();
    await job();
    const took = performance.now() - started;
    clearInterval(sampler);
    return [took, Math.max(peak, process.memoryUsage().rss)];
  };
  const shared = new Float64Array(new SharedArrayBuffer(length * 8)).fill(1);
  globalThis.gc?.();
  const before = process.memoryUsage().rss;
  const [sharedMs, sharedPeak] = await peakDuring(() => parmap(fn, items, { n: WORKERS, args: [shared] }));
  globalThis.gc?.();
  const copied = new Float64Array(length).fill(1);
  const beforeCopy = process.memoryUsage().rss;
  const [copiedMs, copiedPeak] = await peakDuring(() => parmap(fn, items, { n: WORKERS, args: [copied] }));
  const mb = (bytes: number) => `${Math.round(bytes / 1e6)} MB`;
  row('200 MB Float64Array in args, 2,000 items', 'time', 'peak RSS growth');
  row('over a SharedArrayBuffer (shared with the workers)', ms(sharedMs), mb(sharedPeak - before));
  row('over an ArrayBuffer (copied to each worker)', ms(copiedMs), mb(copiedPeak - beforeCopy));
  printTable('8. Large read-only data: shared memory against a copy per worker');
}

let roundsPerMsCached = 1;

declare const lookup: number[];

const calibration = roundsPerMs();
roundsPerMsCached = calibration;
console.log(
  `parmap benchmark: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, Node ${process.version}${quick ? ' (quick: one round each)' : ''}`,
);
await trivialWork();
await cpuBound(calibration);
await startUp();
await streaming();
await largeArgument();
await scaling();
await reusablePool();
await sharedMemory();
