/**
 * `npm run bench`: parmap against an honest hand-written reference and its peers, on the same data
 * in the same rounds. Every output is checked against the expected one; contenders take turns in
 * an order that rotates each round; figures are medians. Rows with a target end in a summary.
 * Nothing here is asserted: timings belong here, not in the tests.
 *
 * `--quick` runs every measurement once, to check that the benchmark itself works.
 */
import { availableParallelism, cpus } from 'node:os';
import { asyncItems } from './async-items.js';
import { coldStart } from './cold-start.js';
import { cpuBound, loopsPerMs, scaling } from './cpu-bound.js';
import { largeArgument } from './large-argument.js';
import { quick } from './measure.js';
import { memory } from './memory.js';
import { printSummary } from './report.js';
import { reusablePool } from './reusable-pool.js';
import { trivialWork } from './throughput.js';

const started = performance.now();
const calibration = loopsPerMs();
const cpu = cpus()[0]?.model ?? 'unknown CPU';
const mode = quick ? ' (--quick: one round each, figures are not comparable)' : '';
console.log(`parmap benchmark: ${cpu}, ${availableParallelism()} cores, Node ${process.version}${mode}`);
if (globalThis.gc === undefined) console.log('  (run with --expose-gc, so that garbage is collected between runs)');

await trivialWork();
await asyncItems();
await coldStart();
await largeArgument();
await memory();
await cpuBound(calibration);
await scaling(calibration);
await reusablePool();
printSummary();
console.log(`\nwhole run: ${((performance.now() - started) / 1000).toFixed(0)} s`);
