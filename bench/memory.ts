/**
 * Memory: streaming from a lazy input, through parmap and through a hand-written streaming pool
 * under the same conditions (each measured in a child process of its own, see streaming.ts), so
 * that the garbage every stream leaves for V8 is told apart from what parmap itself holds; how soon
 * a stream gives its first result; and large read-only data shared with the workers against a copy
 * per worker.
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

/** One stream's runs through parmap and through the hand-written reference, each in a fresh process. */
interface StreamRuns {
  readonly row: string;
  readonly parmap: readonly StreamFigures[];
  readonly reference: readonly StreamFigures[];
}

/** Runs streaming.ts in a fresh process; its wrong output, or its failure, names the row. */
function streamInChild(row: string, contender: string, args: readonly string[]): StreamFigures {
  const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', STREAMING_CHILD, ...args], {
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new WrongOutputError(row, contender, child.stderr.trim() || `status ${child.status}`);
  return JSON.parse(child.stdout) as StreamFigures;
}

/**
 * A stream through parmap (`mode`) and through the reference (`mode-reference`), taking turns run
 * by run, so that a shared machine's drift falls on both alike.
 */
function streamBoth(row: string, runCount: number, mode: string, args: readonly string[]): StreamRuns {
  const parmapRuns: StreamFigures[] = [];
  const referenceRuns: StreamFigures[] = [];
  for (let run = 0; run < runCount; run++) {
    parmapRuns.push(streamInChild(row, 'parmap', [mode, ...args]));
    referenceRuns.push(streamInChild(row, 'hand-written reference', [`${mode}-reference`, ...args]));
  }
  return { row, parmap: parmapRuns, reference: referenceRuns };
}

const medianOf = (runs: readonly StreamFigures[], figure: (run: StreamFigures) => number) => median(runs.map(figure));
const growth = (run: StreamFigures) => run.rssGrowthMb;
const elapsed = (run: StreamFigures) => run.elapsedMs;

/** Each run of a string stream moves 1.2 GB through the workers and back, so there are only 3. */
function runsNote(stream: StreamRuns): string {
  const peaks = (runs: readonly StreamFigures[]) => runs.map((run) => run.rssGrowthMb.toFixed(0)).join(', ');
  const baseline = `over ${mb(medianOf(stream.parmap, (run) => run.baselineMb))}`;
  if (stream.parmap.length === 1) return `${baseline}; one run`;
  return (
    `${baseline}; median of ${stream.parmap.length} runs (${peaks(stream.parmap)} MB; ` +
    `hand-written ${peaks(stream.reference)} MB), only 3: each moves 1.2 GB`
  );
}

/** A table row: parmap's rate and growth, then the reference's, medians of the runs. */
function streamCells(label: string, items: number, stream: StreamRuns, note: string): string[] {
  return [
    label,
    perSecond(items, medianOf(stream.parmap, elapsed)),
    mb(medianOf(stream.parmap, growth)),
    perSecond(items, medianOf(stream.reference, elapsed)),
    mb(medianOf(stream.reference, growth)),
    note,
  ];
}

function growthRatio(stream: StreamRuns): string {
  const ratio = medianOf(stream.parmap, growth) / medianOf(stream.reference, growth);
  return `${stream.row}: parmap / hand-written peak RSS growth: ${ratio.toFixed(2)}`;
}

function memoryTarget(row: string, peakGrowthMb: number, limitMb: number): string {
  const met = peakGrowthMb < limitMb;
  addToSummary({ row, parmap: mb(peakGrowthMb), reference: '', ratio: '', target: `< ${limitMb} MB`, met });
  return `${row}: peak RSS growth ${mb(peakGrowthMb)} (target < ${limitMb} MB: ${met ? 'met' : 'NOT met'})`;
}

/**
 * Strings of 200 KB and of 2 MB, the same 1.2 GB in all: whether the growth depends on the size of
 * an item (V8 keeps each in its large-object space, which only a full collection frees).
 */
function stringStreams(): { small: StreamRuns; large: StreamRuns; smallCount: number; largeCount: number } {
  const smallCount = quick ? 600 : 6_000;
  const largeCount = smallCount / 10;
  const small = streamBoth(`stream of ${count(smallCount)} strings of 200 KB`, rounds(3), 'strings', [
    String(smallCount),
    String(200 * 1024),
  ]);
  const large = streamBoth(`stream of ${count(largeCount)} strings of 2 MB`, rounds(3), 'strings', [
    String(largeCount),
    String(2 * 1024 * 1024),
  ]);
  return { small, large, smallCount, largeCount };
}

async function streaming(): Promise<void> {
  const numberCount = quick ? 200_000 : 2_000_000;
  const numbers = streamBoth(`stream of ${count(numberCount)} numbers`, 1, 'numbers', [String(numberCount)]);
  const strings = stringStreams();
  const firstResult = await firstResultLatency();

  const table = new Table('8. Streaming through for await, 2 workers, each stream in a fresh process');
  table.add('', 'rate', 'peak RSS growth', 'hand-written rate', 'hand-written growth', 'notes');
  const live = (runs: readonly StreamFigures[]) => mb(runs[0]?.liveGrowthMb ?? 0);
  table.add(
    ...streamCells(
      `${count(numberCount)} numbers from a generator (x => x * 2)`,
      numberCount,
      numbers,
      `${runsNote(numbers)}; live heap growth after GC ${live(numbers.parmap)} (hand-written ${live(numbers.reference)})`,
    ),
  );
  for (const [stream, items, size] of [
    [strings.small, strings.smallCount, '200 KB'],
    [strings.large, strings.largeCount, '2 MB'],
  ] as const) {
    table.add(
      ...streamCells(`${count(items)} strings of ${size} from a generator (s => s)`, items, stream, runsNote(stream)),
    );
  }
  table.add(
    `first result of a source yielding every ${firstResult.delayMs} ms`,
    ms(firstResult.first),
    '',
    '',
    '',
    `start-up alone ${ms(firstResult.startUp)}; the source's first item comes after ${firstResult.delayMs} ms`,
  );
  table.print(
    'hand-written: two raw worker_threads reading the same generator, 1,000 numbers or about 1 MiB of strings',
    'per message, 2 messages in flight per worker, results in input order through an async generator',
  );
  for (const stream of [numbers, strings.small, strings.large]) console.log(`  ${growthRatio(stream)}`);
  console.log(`  ${memoryTarget(numbers.row, medianOf(numbers.parmap, growth), 50)}`);
  console.log(`  ${memoryTarget(strings.small.row, medianOf(strings.small.parmap, growth), 100)}`);
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
