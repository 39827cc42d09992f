/**
 * Streaming, measured in a process of its own so that memory figures start clean. Prints one JSON
 * line; a wrong result ends the process with status 1 and says which.
 *
 * - `numbers <count>`: numbers from a generator through `for await` (x => x * 2): items per second,
 *   peak RSS growth, and the live heap growth of a second pass that collects garbage now and then.
 * - `strings <count> <bytes>`: distinct strings of `bytes` from a generator, returned as they are
 *   (s => s): peak RSS growth, sampled at every result.
 *
 * `numbers-reference` and `strings-reference` measure the same streams, sampled at the same points,
 * through the hand-written reference (streaming-reference.ts) instead of parmap: what two raw
 * workers fed from the same generator cost in memory, whoever writes them.
 */
import { parmap } from 'parmap';
import { handWrittenStream } from './streaming-reference.js';

const [mode = 'numbers', countText, bytesText] = process.argv.slice(2);
const itemCount = Number(countText ?? 2_000_000);
const MB = 2 ** 20;

function fail(problem: string): never {
  console.error(problem);
  process.exit(1);
}

/** What maps a stream: parmap, or the hand-written reference, on 2 workers either way. */
interface Streamer<T> {
  /** A first call on two items, so that the growth measured is the stream's, not the first load of the modules. */
  warmUp(fn: (item: T) => T, items: T[]): Promise<void>;
  map<R>(fn: (item: T) => R, input: Iterable<T>): AsyncIterable<R>;
}

function parmapStreamer<T>(): Streamer<T> {
  return {
    warmUp: async (fn, items) => {
      await parmap(fn, items, { n: 2 });
    },
    map: (fn, input) => parmap(fn, input, { n: 2 }),
  };
}

/**
 * The reference, with chunks a competent hand would choose: 1,000 numbers per message (about the
 * size that amortises a message), and strings bounded by bytes, about 1 MiB of items per message
 * (their results take as much again: parmap's 2 MiB of items and results per chunk). Two chunks in
 * flight per worker, so a worker never waits for the main side.
 */
function referenceStreamer<T>(sizeOf?: (item: T) => number): Streamer<T> {
  const options = {
    workers: 2,
    chunkSize: 1_000,
    chunksInFlightPerWorker: 2,
    ...(sizeOf === undefined ? {} : { chunkBytes: { limit: MB, sizeOf } }),
  };
  const map = <R>(fn: (item: T) => R, input: Iterable<T>) => handWrittenStream<T, R>(String(fn), input, options);
  return {
    warmUp: async (fn, items) => {
      for await (const result of map(fn, items)) void result;
    },
    map,
  };
}

function* numbers() {
  for (let i = 0; i < itemCount; i++) yield i;
}

async function streamNumbers(streamer: Streamer<number>): Promise<object> {
  await streamer.warmUp((x) => x, [1, 2]);
  globalThis.gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  let seen = 0;
  const started = performance.now();
  for await (const result of streamer.map((x) => x * 2, numbers())) {
    if (result !== seen * 2) fail(`at index ${seen}, expected ${seen * 2}, got ${result}`);
    if (++seen % 10_000 === 0) peak = Math.max(peak, process.memoryUsage.rss());
  }
  const elapsedMs = performance.now() - started;
  if (seen !== itemCount) fail(`expected ${itemCount} results, got ${seen}`);
  return {
    elapsedMs,
    rssGrowthMb: (peak - before) / MB,
    baselineMb: before / MB,
    liveGrowthMb: await liveHeapGrowth(streamer),
  };
}

/** A second pass that collects garbage now and then: what the stream really keeps alive. */
async function liveHeapGrowth(streamer: Streamer<number>): Promise<number> {
  globalThis.gc?.();
  const liveBefore = process.memoryUsage().heapUsed;
  let livePeak = liveBefore;
  let seen = 0;
  for await (const result of streamer.map((x) => x * 2, numbers())) {
    if (result !== seen * 2) fail(`second pass, at index ${seen}, expected ${seen * 2}, got ${result}`);
    if (++seen % 250_000 === 0 && globalThis.gc !== undefined) {
      globalThis.gc();
      livePeak = Math.max(livePeak, process.memoryUsage().heapUsed);
    }
  }
  if (seen !== itemCount) fail(`second pass, expected ${itemCount} results, got ${seen}`);
  return (livePeak - liveBefore) / MB;
}

/**
 * Distinct flat strings: one buffer holds the text, its first bytes rewritten with the index for
 * each string, so that each string is fresh memory (as lines read from a file would be) and its
 * content can be checked without building it again.
 */
function stringMaker(bytes: number) {
  const prefixLength = 10;
  const text = Buffer.alloc(bytes, 'abcdefghijklmnopqrstuvwxyz');
  const rest = text.toString('latin1', prefixLength);
  const prefix = (index: number) => `${String(index).padStart(prefixLength - 1, '0')}|`;
  return {
    make(index: number): string {
      text.write(prefix(index), 0, 'latin1');
      return text.toString('latin1');
    },
    isRight(index: number, value: unknown): boolean {
      return (
        typeof value === 'string' &&
        value.length === bytes &&
        value.startsWith(prefix(index)) &&
        value.slice(prefixLength) === rest
      );
    },
  };
}

async function streamStrings(streamer: Streamer<string>): Promise<object> {
  const bytes = Number(bytesText ?? 200 * 1024);
  const strings = stringMaker(bytes);
  function* lazyStrings() {
    for (let i = 0; i < itemCount; i++) yield strings.make(i);
  }
  await streamer.warmUp((s) => s, [strings.make(0), strings.make(1)]);
  globalThis.gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  let seen = 0;
  const started = performance.now();
  for await (const result of streamer.map((s) => s, lazyStrings())) {
    if (!strings.isRight(seen, result)) fail(`at index ${seen}, the string came back different`);
    seen++;
    peak = Math.max(peak, process.memoryUsage.rss());
  }
  if (seen !== itemCount) fail(`expected ${itemCount} results, got ${seen}`);
  return { elapsedMs: performance.now() - started, rssGrowthMb: (peak - before) / MB, baselineMb: before / MB };
}

const MODES: Record<string, () => Promise<object>> = {
  numbers: () => streamNumbers(parmapStreamer()),
  strings: () => streamStrings(parmapStreamer()),
  'numbers-reference': () => streamNumbers(referenceStreamer()),
  // A latin1 string of this benchmark takes one byte per character in a message.
  'strings-reference': () => streamStrings(referenceStreamer((s) => s.length)),
};

const run = MODES[mode] ?? fail(`unknown mode ${mode}: ${Object.keys(MODES).join(', ')}`);
console.log(JSON.stringify(await run()));
