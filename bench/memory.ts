/**
 * Memory: streaming from a lazy input (each measured in a child process of its own, see
 * streaming.ts), how soon a stream gives its first result, and large read-only data shared with
 * the workers against a copy per worker.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parmap } from 'parmap';
import { count, interleave, mb, median, ms, perSecond, quick, rounds, WORKERS, WrongOutputError } from './measure.js';
import { addToSummary, Table } from './report.js';

const STREAMING_CHILD = fileURLToPath(new URL('./streaming.ts', import.meta.url));

interface StreamFigures {
  readonly elapsedMs: number;
  readonly rssGrowthMb: number;
  readonly baselineMb: number;
  readonly liveGrowthMb?: number;
}

/** Runs streaming.ts in a fresh process; its wrong output, or its failure, names the row. */
function streamInChild(row: string, args: readonly string[]): StreamFigures {
  const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', STREAMING_CHILD, ...args], {
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new WrongOutputError(row, 'parmap', child.stderr.trim() || `status ${child.status}`);
  return JSON.parse(child.stdout) as StreamFigures;
}

/** Each run moves 1.2 GB through the workers and back, so there are only 3. */
function runsNote(runs: readonly StreamFigures[]): string {
  const peaks = runs.map((run) => run.rssGrowthMb.toFixed(0)).join(', ');
  return runs.length === 1 ? 'one run' : `median of ${runs.length} runs (${peaks} MB), only 3: each moves 1.2 GB`;
}

function memoryTarget(row: string, peakGrowthMb: number, limitMb: number): string {
  const met = peakGrowthMb < limitMb;
  addToSummary({ row, parmap: mb(peakGrowthMb), reference: '', ratio: '', target: `< ${limitMb} MB`, met });
  return `${row}: peak RSS growth ${mb(peakGrowthMb)} (target < ${limitMb} MB: ${met ? 'met' : 'NOT met'})`;
}

async function streaming(): Promise<void> {
  const numberCount = quick ? 200_000 : 2_000_000;
  const numbersRow = `stream of ${count(numberCount)} numbers`;
  const numbers = streamInChild(numbersRow, ['numbers', String(numberCount)]);

  const stringCount = quick ? 600 : 6_000;
  const stringBytes = 200 * 1024;
  const stringsRow = `stream of ${count(stringCount)} strings of 200 KB`;
  const stringRuns = Array.from({ length: rounds(3) }, () =>
    streamInChild(stringsRow, ['strings', String(stringCount), String(stringBytes)]),
  );
  const stringPeak = median(stringRuns.map((run) => run.rssGrowthMb));
  const stringTime = median(stringRuns.map((run) => run.elapsedMs));

  const firstResult = await firstResultLatency();
  const table = new Table('8. Streaming through for await, 2 workers, each stream in a fresh process');
  table.add('', 'rate', 'peak RSS growth', 'notes');
  table.add(
    `${count(numberCount)} numbers from a generator (x => x * 2)`,
    perSecond(numberCount, numbers.elapsedMs),
    mb(numbers.rssGrowthMb),
    `over ${mb(numbers.baselineMb)}; live heap growth after GC ${mb(numbers.liveGrowthMb ?? 0)}; one run`,
  );
  table.add(
    `${count(stringCount)} strings of 200 KB from a generator (s => s)`,
    perSecond(stringCount, stringTime),
    mb(stringPeak),
    `over ${mb(median(stringRuns.map((run) => run.baselineMb)))}; ${runsNote(stringRuns)}`,
  );
  table.add(
    `first result of a source yielding every ${firstResult.delayMs} ms`,
    ms(firstResult.first),
    '',
    `start-up alone ${ms(firstResult.startUp)}; the source's first item comes after ${firstResult.delayMs} ms`,
  );
  table.print();
  console.log(`  ${memoryTarget(numbersRow, numbers.rssGrowthMb, 50)}`);
  console.log(`  ${memoryTarget(stringsRow, stringPeak, 100)}`);
}

/** How long a stream from a slow source takes to give its first result, against start-up alone. */
async function firstResultLatency(): Promise<{ delayMs: number; first: number; startUp: number }> {
  const delayMs = 50;
  async function* slowSource() {
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      yield i;
    }
  }
  const measured = await interleave(
    'first result of a slow source',
    [
      {
        name: 'first result',
        run: async () => {
          for await (const result of parmap((x: number) => x + 1, slowSource(), { n: WORKERS })) return [result];
          return [];
        },
      },
      { name: 'start-up alone', run: () => parmap((x: number) => x + 1, [0], { n: WORKERS }) },
    ],
    rounds(5),
    (output) => (Array.isArray(output) && output.length === 1 && output[0] === 1 ? undefined : `got ${String(output)}`),
  );
  const [first = 0, startUp = 0] = measured.medians;
  return { delayMs, first, startUp };
}

/** 200 MB of read-only numbers used by every item: shared memory against a copy per worker. */
async function sharedMemory(): Promise<void> {
  const length = 25_000_000; // 200 MB of float64
  const items = Array.from({ length: 2_000 }, (_, i) => i * 9_999);
  const readPlusOne = (x: number, table: Float64Array) => (table[x] as number) + 1;
  const expected = items.map(() => 2);
  const table = new Table('9. Large read-only data (200 MB Float64Array in args, 2,000 items, 2 workers)');
  table.add('', 'time', 'peak RSS growth');
  for (const [name, data] of [
    ['over a SharedArrayBuffer (shared with the workers)', new Float64Array(new SharedArrayBuffer(length * 8))],
    ['over an ArrayBuffer (copied to each worker)', new Float64Array(length)],
  ] as const) {
    data.fill(1);
    const [took, peakGrowth, output] = await withPeakRss(() =>
      parmap(readPlusOne, items, { n: WORKERS, args: [data] }),
    );
    const wrong = output.findIndex((value, i) => value !== expected[i]);
    if (output.length !== items.length || wrong !== -1) {
      throw new WrongOutputError('large read-only data', `parmap ${name}`, `at index ${wrong}, got ${output[wrong]}`);
    }
    table.add(name, ms(took), mb(peakGrowth));
  }
  table.print('one run each: each moves or maps 200 MB per worker');
}

/** A job's time and the peak RSS growth while it ran, sampled every 5 ms. */
async function withPeakRss<T>(job: () => Promise<T>): Promise<[number, number, T]> {
  globalThis.gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 5);
  const started = performance.now();
  const output = await job();
  const took = performance.now() - started;
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage.rss());
  return [took, (peak - before) / 2 ** 20, output];
}

export async function memory(): Promise<void> {
  await streaming();
  await sharedMemory();
}
