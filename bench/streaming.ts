/**
 * Streaming, measured in a process of its own so memory figures start clean: items per second and
 * peak RSS growth over 2,000,000 items from a generator through `for await`. Prints JSON.
 */
import { parmap } from '../dist/index.js';

const count = Number(process.argv[2] ?? 2_000_000);
function* numbers() {
  for (let i = 0; i < count; i++) yield i;
}
// Warm up once, so the growth measured is the stream's, not the first load of the modules.
await parmap((x: number) => x, [1, 2], { n: 2 });
globalThis.gc?.();
const before = process.memoryUsage().rss;
let peak = before;
let seen = 0;
const started = performance.now();
for await (const _ of parmap((x: number) => x * 2, numbers(), { n: 2 })) {
  if (++seen % 10_000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
}
const elapsedMs = performance.now() - started;

// A second pass that collects garbage now and then: what the stream really keeps alive.
globalThis.gc?.();
const liveBefore = process.memoryUsage().heapUsed;
let livePeak = liveBefore;
seen = 0;
for await (const _ of parmap((x: number) => x * 2, numbers(), { n: 2 })) {
  if (++seen % 250_000 === 0 && globalThis.gc !== undefined) {
    globalThis.gc();
    livePeak = Math.max(livePeak, process.memoryUsage().heapUsed);
  }
}
console.log(
  JSON.stringify({
    count: seen,
    elapsedMs,
    rssGrowthMb: (peak - before) / 2 ** 20,
    baselineMb: before / 2 ** 20,
    liveGrowthMb: (livePeak - liveBefore) / 2 ** 20,
  }),
);
