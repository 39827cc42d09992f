/**
 * Every way a call can end must leave nothing alive: each scenario runs in its own Node process,
 * which must exit by itself well before the time limit; a hang fails the test instead of the run.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const LIMIT_MS = 30_000;

function runScenario(body: string): { status: number | null; stdout: string; stderr: string; timedOut: boolean } {
  const script = `import { parmap, AbortError, ParmapTaskError } from ${JSON.stringify(entry)};\n${body}`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: LIMIT_MS,
    killSignal: 'SIGKILL',
  });
  return {
    status: child.status,
    stdout: child.stdout.trim(),
    stderr: child.stderr.trim(),
    timedOut: child.error !== undefined || child.signal === 'SIGKILL',
  };
}

const scenarios: [string, string, string][] = [
  ['all results read', `console.log((await parmap((x) => x * 2, [1, 2, 3], { n: 2 })).join(','));`, '2,4,6'],
  [
    'break out of for await',
    `let seen = 0;
     for await (const v of parmap((x) => x, (function* () { for (let i = 0; ; i++) yield i })(), { n: 2 })) { if (++seen === 1000) break; }
     console.log(seen);`,
    '1000',
  ],
  [
    'an error thrown by fn',
    `try { await parmap((x) => { if (x === 5) throw new Error('boom'); return x }, Array.from({ length: 100 }, (_, i) => i), { n: 2 }) }
     catch (e) { console.log(e instanceof ParmapTaskError, e.index) }`,
    'true 5',
  ],
  [
    'an abort while workers are busy',
    `const controller = new AbortController();
     const busy = (x) => { const end = Date.now() + 50; while (Date.now() < end); return x };
     setTimeout(() => controller.abort(), 100);
     try { await parmap(busy, Array.from({ length: 1000 }, (_, i) => i), { n: 2, chunksize: 1, signal: controller.signal }) }
     catch (e) { console.log(e instanceof AbortError) }`,
    'true',
  ],
  [
    'an exception in the loop body',
    `try { for await (const v of parmap((x) => x, [1, 2, 3], { n: 2 })) throw new Error('consumer failed') }
     catch (e) { console.log(e.message) }`,
    'consumer failed',
  ],
  [
    'an error with process workers',
    `try { await parmap((x) => { throw new RangeError('bad ' + x) }, [1, 2], { n: 2, workerType: 'process' }) }
     catch (e) { console.log(e.cause.name, e.cause.message.startsWith('bad')) }`,
    'RangeError true',
  ],
  [
    'a worker that calls process.exit',
    `try { await parmap((x) => { if (x === 3) process.exit(7); return x }, [1, 2, 3, 4], { n: 2, chunksize: 1 }) }
     catch (e) { console.log(e.name, e.exitCode, e.indices.join(',')) }`,
    'ParmapWorkerError 7 2',
  ],
];

const progressScenarios: [string, string, RegExp][] = [
  [
    'progress shown, all results read',
    `await parmap((x) => x, [1, 2, 3], { n: 2, progress: true });`,
    /^✔ parmap {2}3\/3 {2}100%.*total 0:\d\d$/,
  ],
  [
    'progress shown, break',
    `for await (const v of parmap((x) => x, (function* () { for (let i = 0; ; i++) yield i })(), { n: 2, progress: 'walk' })) if (v === 50) break;`,
    /^■ walk {2}[\d,]+ .* stopped$/,
  ],
  [
    'progress shown, fn throws',
    `await parmap((x) => { throw new Error('no') }, [1, 2], { n: 2, progress: true }).catch(() => {});`,
    /^✖ parmap {2}\d\/2 .* failed$/,
  ],
];

describe('clean-up: the process exits by itself however the call ends', () => {
  for (const [name, body, finalLine] of progressScenarios) {
    it(name, () => {
      const result = runScenario(body);
      assert.equal(result.timedOut, false, `the scenario hung: ${result.stderr}`);
      assert.equal(result.status, 0);
      assert.match(result.stderr, finalLine);
    });
  }

  for (const [name, body, expected] of scenarios) {
    it(name, () => {
      const result = runScenario(body);
      assert.equal(result.timedOut, false, `the scenario hung: ${result.stderr}`);
      assert.equal(result.stderr, '', result.stderr);
      assert.equal(result.status, 0);
      assert.equal(result.stdout, expected);
    });
  }
});

/**
 * Counts the workers Node announces (threads and child processes alike) and resolves `allEnded`
 * once every one announced so far has exited.
 */
const watchWorkers = `
  import { subscribe } from 'node:diagnostics_channel';
  const workers = { started: 0, exited: 0, exits: [] };
  const watch = (worker) => {
    workers.started++;
    workers.exits.push(new Promise((resolve) => worker.once('exit', () => resolve(workers.exited++))));
  };
  subscribe('worker_threads', ({ worker }) => watch(worker));
  subscribe('child_process', ({ process }) => watch(process));
  const allEnded = () => Promise.all(workers.exits);
`;

describe('clean-up: a worker that died while idle', () => {
  for (const workerType of ['thread', 'process'] as const) {
    it(`holds nothing once the call has failed: no timer is left to keep the program alive (${workerType})`, () => {
      // workerpool waits for an exit such a worker has already made, on a 2.5 s timer, unless it
      // has found the worker dead first.
      const result = runScenario(`${watchWorkers}
      async function* open() { yield 'ok'; yield 'boom'; await new Promise(() => {}); }
      const lateError = (x) => { if (x === 'boom') setTimeout(() => { throw new Error('late') }, 50); return x };
      try { await parmap(lateError, open(), { n: 2, workerType: '${workerType}' }) } catch (error) { console.log(error.name, error.whileIdle) }
      await allEnded();
      const workersLeft = () => process.getActiveResourcesInfo().some((name) => name === 'ProcessWrap' || name === 'Worker');
      while (workersLeft()) await new Promise((resolve) => setImmediate(resolve));
      console.log(process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length);`);
      assert.equal(result.timedOut, false, `the scenario hung: ${result.stderr}`);
      assert.equal(result.stdout, 'ParmapWorkerError true\n0');
    });
  }
});
