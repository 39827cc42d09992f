/**
 * Streaming, measured in a process of its own so that memory figures start clean. Prints one JSON
 * line; a wrong result ends the process with status 1 and says which.
 *
 * - `numbers <count>`: numbers from a generator through `for await` (x => x * 2): items per second,
 *   peak RSS growth, and the live heap growth of a second pass that collects garbage now and then.
 * - `strings <count> <bytes>`: distinct strings of `bytes` from a generator, returned as they are
 *   (s => s): peak RSS growth, sampled at every result.
 */
import { parmap } from 'parmap';

const [mode = 'numbers', countText, bytesText] = process.argv.slice(2);
const itemCount = Number(countText ?? 2_000_000);
const MB = 2 ** 20;

function fail(problem: string): never {
  console.error(problem);
  process.exit(1);
}

function* numbers() {
  for (let i = 0; i < itemCount; i++) yield i;
}

async function streamNumbers(): Promise<object> {
  // Warm up once, so the growth measured is the stream's, not the first load of the modules.
  await parmap((x: number) => x, [1, 2], { n: 2 });
  globalThis.gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  let seen = 0;
  const started = performance.now();
  for await (const result of parmap((x: number) => x * 2, numbers(), { n: 2 })) {
    if (result !== seen * 2) fail(`at index ${seen}, expected ${seen * 2}, got ${result}`);
    if (++seen % 10_000 === 0) peak = Math.max(peak, process.memoryUsage.rss());
  }
  const elapsedMs = performance.now() - started;
  if (seen !== itemCount) fail(`expected ${itemCount} results, got ${seen}`);

  // A second pass that collects garbage now and then: what the stream really keeps alive.
  globalThis.gc?.();
  const liveBefore = process.memoryUsage().heapUsed;
  let livePeak = liveBefore;
  seen = 0;
  for await (const result of parmap((x: number) => x * 2, numbers(), { n: 2 })) {
    if (result !== seen * 2) fail(`second pass, at index ${seen}, expected ${seen * 2}, got ${result}`);
    if (++seen % 250_000 === 0 && globalThis.gc !== undefined) {
      globalThis.gc();
      livePeak = Math.max(livePeak, process.memoryUsage().heapUsed);
    }
  }
  return {
    elapsedMs,
    rssGrowthMb: (peak - before) / MB,
    baselineMb: before / MB,
    liveGrowthMb: (livePeak - liveBefore) / MB,
  };
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

async function streamStrings(): Promise<object> {
  const bytes = Number(bytesText ?? 200 * 1024);
  const strings = stringMaker(bytes);
  function* lazyStrings() {
    for (let i = 0; i < itemCount; i++) yield strings.make(i);
  }
  await parmap((s: string) => s, [strings.make(0), strings.make(1)], { n: 2 });
  globalThis.gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  let seen = 0;
  const started = performance.now();
  for await (const result of parmap((s: string) => s, lazyStrings(), { n: 2 })) {
    if (!strings.isRight(seen, result)) fail(`at index ${seen}, the string came back different`);
    seen++;
    peak = Math.max(peak, process.memoryUsage.rss());
  }
  if (seen !== itemCount) fail(`expected ${itemCount} results, got ${seen}`);
  return { elapsedMs: performance.now() - started, rssGrowthMb: (peak - before) / MB, baselineMb: before / MB };
}

if (mode !== 'numbers' && mode !== 'strings') fail(`unknown mode ${mode}: numbers or strings`);
console.log(JSON.stringify(mode === 'numbers' ? await streamNumbers() : await streamStrings()));
