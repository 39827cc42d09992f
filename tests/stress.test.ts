/**
 * Seeded stress: many random calls across thread, process and in-thread runs, with random throws,
 * worker deaths (a worker that exits, one killed by SIGKILL) and aborts. Every call must either
 * give exactly `xs.map(f)` or fail with the right error class, and afterwards no thread and no
 * child process may be left. It all runs in one child Node process, which must end by itself.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const SCENARIOS = 40;
const SEED = 20261128;

const script = `
import { readFileSync, readdirSync } from 'node:fs';
import * as parmapModule from ${JSON.stringify(entry)};
const { parmap, ParmapTaskError, ParmapWorkerError, AbortError } = parmapModule;

let state = ${SEED};
const random = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = (list) => list[Math.floor(random() * list.length)];
const threads = () => Number(/Threads:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
const children = () =>
  readdirSync('/proc').filter((name) => /^\\d+$/.test(name)).filter((pid) => {
    try { return readFileSync('/proc/' + pid + '/stat', 'utf8').split(') ')[1].split(' ')[1] === String(process.pid); }
    catch { return false; }
  });

const fn = (x, plan) => {
  if (x === plan.at && plan.fault === 'throw') throw new RangeError('planned ' + x);
  if (x === plan.at && plan.fault === 'exit') process.exit(3);
  if (x === plan.at && plan.fault === 'kill') process.kill(process.pid, 'SIGKILL');
  return x * 2;
};

const baseline = threads();
const problems = [];
for (let i = 0; i < ${SCENARIOS}; i++) {
  const size = Math.floor(random() * 60);
  const xs = Array.from({ length: size }, (_, k) => k);
  const mode = pick(['thread', 'thread', 'process', 'inline']);
  // A thread shares the caller's pid: only a process worker can be killed by a signal of its own.
  const faults = { inline: ['none', 'throw', 'abort'], thread: ['none', 'throw', 'exit', 'abort'], process: ['none', 'throw', 'exit', 'kill', 'abort'] };
  const fault = size === 0 ? 'none' : pick(faults[mode]);
  const plan = { fault, at: Math.floor(random() * size) };
  const options = {
    n: mode === 'inline' ? 1 : 2,
    ...(mode === 'process' ? { workerType: 'process' } : {}),
    chunksize: pick(['auto', 1, 3, 7]),
    ordered: random() < 0.7,
    onError: pick(['throw', 'return']),
    retries: pick([0, 1]),
    args: [plan],
  };
  const controller = new AbortController();
  const label = JSON.stringify({ i, size, mode, plan, options: { ...options, args: undefined } });
  const results = [];
  let error;
  try {
    for await (const value of parmap(fn, xs, { ...options, signal: controller.signal })) {
      results.push(value);
      if (fault === 'abort' && results.length === plan.at) controller.abort(new Error('planned abort'));
    }
  } catch (thrown) {
    error = thrown;
  }
  const expected = xs.map((x) => x * 2);
  const abortHit = fault === 'abort' && plan.at < size && plan.at > 0;
  if (abortHit) {
    if (!(error instanceof AbortError)) problems.push(label + ' expected AbortError, got ' + (error?.name ?? 'no error'));
    continue;
  }
  const failing = fault === 'throw' || fault === 'exit' || fault === 'kill';
  const errorClass = fault === 'throw' ? ParmapTaskError : ParmapWorkerError;
  if (!failing) {
    if (error !== undefined) problems.push(label + ' failed: ' + error.message);
    else if (JSON.stringify(options.ordered ? results : [...results].sort((a, b) => a - b)) !== JSON.stringify(expected)) problems.push(label + ' wrong results');
    continue;
  }
  if (options.onError === 'throw') {
    if (!(error instanceof errorClass)) problems.push(label + ' expected ' + errorClass.name + ', got ' + (error?.name ?? 'no error'));
    else if (error.index !== undefined && error.index !== plan.at) problems.push(label + ' named item ' + error.index);
    continue;
  }
  if (error !== undefined) { problems.push(label + ' onError return failed: ' + error.message); continue; }
  if (results.length !== size) { problems.push(label + ' gave ' + results.length + ' results'); continue; }
  const byIndex = options.ordered ? results : undefined;
  const failed = results.filter((value) => value instanceof Error);
  if (!failed.every((value) => value instanceof errorClass)) problems.push(label + ' wrong error class in place');
  if (!failed.some((value) => value.index === plan.at || value.indices?.includes(plan.at))) problems.push(label + ' the failing item has no error');
  if (byIndex && byIndex.some((value, k) => !(value instanceof Error) && value !== k * 2)) problems.push(label + ' a value is out of place');
}

// Everything the calls started must be gone; a stopped worker may take a moment to exit.
let leftThreads = threads() - baseline;
let leftChildren = children().length;
for (let tries = 0; tries < 200 && (leftThreads > 0 || leftChildren > 0); tries++) {
  await new Promise((resolve) => setTimeout(resolve, 25));
  leftThreads = threads() - baseline;
  leftChildren = children().length;
}
console.log(JSON.stringify({ problems, leftThreads, leftChildren }));
`;

describe('stress: random faults across modes', () => {
  it(`gives xs.map(f) or the right error in each of ${SCENARIOS} seeded calls, and leaves nothing running`, () => {
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 120_000,
      killSignal: 'SIGKILL',
    });
    assert.equal(child.signal, null, `the stress run hung or was killed:\n${child.stderr}`);
    assert.equal(child.status, 0, child.stderr);
    const report = JSON.parse(child.stdout.trim().split('\n').pop() as string);
    assert.deepEqual(report.problems, []);
    assert.equal(report.leftThreads, 0, 'threads left running');
    assert.equal(report.leftChildren, 0, 'child processes left running');
  });
});
