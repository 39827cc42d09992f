/**
 * `npm run bench`: parmap against an honest hand-written reference and its peers, on the same data
 * in the same rounds. Every output is checked against the expected one; contenders take turns in
 * an order that rotates each round; figures are medians. Rows with a target end in a summary.
 * Nothing here is asserted: timings belong here, not in the tests.
 *
 * `--quick` runs every measurement once, to check that the benchmark itself works.
 * `--only=remote,pool` runs only the sections named (the names are in SECTIONS below).
 */
import { availableParallelism, cpus } from 'node:os';
import { asyncItems } from './async-items.js';
import { coldStart } from './cold-start.js';
import { cpuBound, loopsPerMs, scaling } from './cpu-bound.js';
import { largeArgument } from './large-argument.js';
import { quick } from './measure.js';
import { memory } from './memory.js';
import { processTimeout } from './process-timeout.js';
import { remoteWorkers } from './remote.js';
import { printSummary } from './report.js';
import { reusablePool } from './reusable-pool.js';
import { trivialWork } from './throughput.js';

const started = performance.now();
const calibration = loopsPerMs();
const cpu = cpus()[0]?.model ?? 'unknown CPU';
const mode = quick ? ' (--quick: one round each, figures are not comparable)' : '';
console.log(`parmap benchmark: ${cpu}, ${availableParallelism()} cores, Node ${process.version}${mode}`);
if (globalThis.gc === undefined) console.log('  (run with --expose-gc, so that garbage is collected between runs)');

/** Every section, in the order they run, by the name `--only` knows them by. */
const SECTIONS: readonly (readonly [string, () => Promise<void>])[] = [
  ['trivial', trivialWork],
  ['async', asyncItems],
  ['cold-start', coldStart],
  ['large-argument', largeArgument],
  ['memory', memory],
  ['cpu-bound', () => cpuBound(calibration)],
  ['scaling', () => scaling(calibration)],
  ['pool', reusablePool],
  ['remote', () => remoteWorkers(calibration)],
  ['process-timeout', processTimeout],
];

const only = process.argv
  .find((arg) => arg.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',')
  .filter((name) => name !== '');
const unknown = only?.filter((name) => !SECTIONS.some(([known]) => known === name)) ?? [];
if (unknown.length > 0) {
  console.error(`Unknown section ${unknown.join(', ')} in --only; known: ${SECTIONS.map(([name]) => name).join(', ')}`);
  process.exit(2);
}
if (only !== undefined) console.log(`  (--only: ${only.join(', ')})`);
for (const [name, section] of SECTIONS) {
  if (only === undefined || only.includes(name)) await section();
}
printSummary();
console.log(`\nwhole run: ${((performance.now() - started) / 1000).toFixed(0)} s`);
