/**
 * The fault matrix: each way a worker or an item can go wrong, on thread and process workers,
 * ordered and unordered. Every scenario runs in its own Node process, which must end by itself:
 * a hang fails the test instead of the run.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const LIMIT_MS = 30_000;

interface Outcome {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

/** Runs a scenario script in a fresh Node process, killing it if it outlives the limit. */
function runScenario(body: string): Promise<Outcome> {
  const script = `import * as parmapModule from ${JSON.stringify(entry)};
const { parmap } = parmapModule;
const range = (count) => Array.from({ length: count }, (_, i) => i);
const describeError = (e) => JSON.stringify({
  name: e.name, index: e.index, indices: e.indices, exitCode: e.exitCode, signal: e.signal,
  outOfMemory: e.outOfMemory, whileIdle: e.whileIdle, direction: e.direction, cause: e.cause instanceof Error ? e.cause.message : e.cause === null ? 'null' : typeof e.cause === 'bigint' ? String(e.cause) : e.cause,
  big: typeof e.cause?.big === 'bigint' ? String(e.cause.big) : undefined, message: e.message,
});
${body}`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data) => {
      stdout += data;
    });
    child.stderr.on('data', (data) => {
      stderr += data;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), LIMIT_MS);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, stdout: stdout.trim(), stderr, timedOut: signal === 'SIGKILL' });
    });
  });
}

/** A scenario that runs a failing call and prints the error it ends with. */
const failing = (fn: string, options: string) =>
  `try { await parmap(${fn}, range(40), { n: 2, chunksize: 10, ${options} }); console.log('{"name":"no error"}') }
   catch (e) { console.log(describeError(e)) }`;

interface Fault {
  readonly name: string;
  readonly workers: readonly ('thread' | 'process')[];
  readonly body: (options: string) => string;
  readonly check: (error: Record<string, unknown>, workerType: 'thread' | 'process') => void;
}

const faults: Fault[] = [
  {
    name: 'fn calls process.exit()',
    workers: ['thread', 'process'],
    body: (options) => failing('(x) => { if (x === 5) process.exit(3); return x }', options),
    check: (error) => {
      assert.equal(error.name, 'ParmapWorkerError');
      assert.equal(error.exitCode, 3);
      assert.ok((error.indices as number[]).includes(5));
      assert.equal(error.whileIdle, false);
      assert.match(error.message as string, /exited with code 3/);
    },
  },
  {
    name: 'a timer of fn throws just after the item returned, while the input is still open',
    workers: ['thread', 'process'],
    body: (options) =>
      `async function* open() { yield 'ok'; yield 'boom'; await new Promise(() => {}); }
       try {
         await parmap((x) => { if (x === 'boom') setTimeout(() => { throw new Error('late boom') }); return x }, open(), { n: 2, ${options} });
         console.log('{"name":"no error"}');
       } catch (e) { console.log(describeError(e)) }`,
    check: (error) => {
      // Whether its answer or its end came first, the worker died after its work: never ignored.
      assert.equal(error.name, 'ParmapWorkerError');
      assert.equal(error.whileIdle, true);
      assert.ok((error.indices as number[]).includes(1));
    },
  },
  {
    name: 'a promise fn leaves rejects, with chunks of one item queued behind each other',
    workers: ['thread', 'process'],
    body: (options) =>
      `async function* items() { for (let i = 0; i < 20; i++) yield i; }
       try {
         for await (const r of parmap((x) => { if (x === 10) Promise.reject(new Error('late reject')); return x }, items(), { n: 2, chunksize: 1, ${options} })) {}
         console.log('{"name":"no error"}');
       } catch (e) { console.log(describeError(e)) }`,
    check: (error) => {
      // The chunks queued behind it had not started: they go elsewhere, and the death is still told.
      assert.equal(error.name, 'ParmapWorkerError');
      assert.equal(error.whileIdle, true);
    },
  },
  {
    name: 'a timer inside fn throws, items one at a time',
    workers: ['thread', 'process'],
    body: (options) =>
      failing(
        `async (x) => { if (x === 5) setTimeout(() => { throw new Error('late boom') }, 1); await new Promise((r) => setTimeout(r, 50)); return x }`,
        `concurrency: 1, ${options}`,
      ),
    check: (error, workerType) => {
      assert.equal(error.name, 'ParmapWorkerError');
      assert.ok((error.indices as number[]).includes(5));
      if (workerType === 'thread') {
        assert.equal(error.index, 5);
        assert.equal(error.cause, 'late boom');
      } else assert.equal(error.exitCode, 1);
    },
  },
  {
    // Items 0 to 9 of the chunk run at once: any of them may have set the timer.
    name: 'a timer inside fn throws, items overlapping',
    workers: ['thread', 'process'],
    body: (options) =>
      failing(
        `async (x) => { if (x === 5) setTimeout(() => { throw new Error('late boom') }, 1); await new Promise((r) => setTimeout(r, 50)); return x }`,
        options,
      ),
    check: (error, workerType) => {
      assert.equal(error.name, 'ParmapWorkerError');
      assert.ok((error.indices as number[]).includes(5));
      assert.equal(error.index, undefined, 'several items were running: none is blamed alone');
      if (workerType === 'thread') assert.equal(error.cause, 'late boom');
      else assert.equal(error.exitCode, 1);
    },
  },
  {
    name: 'a promise inside fn rejects unhandled',
    workers: ['thread', 'process'],
    body: (options) =>
      failing(
        `async (x) => { if (x === 5) Promise.reject(new Error('nobody caught me')); await new Promise((r) => setTimeout(r, 50)); return x }`,
        options,
      ),
    check: (error, workerType) => {
      assert.equal(error.name, 'ParmapWorkerError');
      assert.ok((error.indices as number[]).includes(5));
      if (workerType === 'thread') assert.equal(error.cause, 'nobody caught me');
    },
  },
  {
    name: 'fn runs out of memory under maxMemory',
    workers: ['thread', 'process'],
    body: (options) =>
      failing(
        '(x) => { const hog = []; if (x === 5) for (;;) hog.push(new Array(100000).fill(x)); return x }',
        `maxMemory: 64, ${options}`,
      ),
    check: (error) => {
      assert.equal(error.name, 'ParmapWorkerError');
      assert.equal(error.outOfMemory, true);
      assert.ok((error.indices as number[]).includes(5));
      assert.match(error.message as string, /ran out of memory \(maxMemory: 64 MB\)/);
    },
  },
  {
    name: 'the worker process is killed by a signal',
    workers: ['process'],
    body: (options) => failing(`(x) => { if (x === 5) process.kill(process.pid, 'SIGKILL'); return x }`, options),
    check: (error) => {
      assert.equal(error.name, 'ParmapWorkerError');
      assert.equal(error.signal, 'SIGKILL');
      assert.ok((error.indices as number[]).includes(5));
    },
  },
  {
    name: 'an item runs past its timeout in a busy loop',
    workers: ['thread', 'process'],
    body: (options) => failing('(x) => { if (x === 5) for (;;); return x }', `timeout: 300, ${options}`),
    check: (error) => {
      assert.equal(error.name, 'ParmapTimeoutError');
      assert.equal(error.index, 5);
      assert.match(error.message as string, /item 5 ran longer than the timeout of 300 ms/);
    },
  },
  {
    name: 'fn throws null',
    workers: ['thread', 'process'],
    body: (options) => failing('(x) => { if (x === 5) throw null; return x }', options),
    check: (error) => {
      assert.equal(error.name, 'ParmapTaskError');
      assert.equal(error.index, 5);
      assert.equal(error.cause, 'null');
      assert.match(error.message as string, /non-Error value was thrown: `null`/);
    },
  },
  {
    name: 'fn throws an error with BigInt and circular properties',
    workers: ['thread', 'process'],
    body: (options) =>
      failing(
        `(x) => { if (x === 5) { const e = new Error('odd'); e.big = 5n; e.self = e; throw e } return x }`,
        options,
      ),
    check: (error) => {
      assert.equal(error.name, 'ParmapTaskError');
      assert.equal(error.index, 5);
      assert.equal(error.big, '5');
    },
  },
  {
    name: 'an item cannot be sent',
    workers: ['thread', 'process'],
    body: (options) =>
      `try { await parmap((x) => x, range(40).map((x) => (x === 5 ? { call: () => x } : x)), { n: 2, chunksize: 10, ${options} }) }
       catch (e) { console.log(describeError(e)) }`,
    check: (error) => {
      assert.equal(error.name, 'ParmapCloneError');
      assert.equal(error.index, 5);
      assert.equal(error.direction, 'item');
    },
  },
  {
    name: 'a result cannot be sent back',
    workers: ['thread', 'process'],
    body: (options) => failing('(x) => (x === 5 ? Symbol(x) : x)', options),
    check: (error) => {
      assert.equal(error.name, 'ParmapCloneError');
      assert.equal(error.index, 5);
      assert.equal(error.direction, 'result');
    },
  },
  {
    name: 'the signal aborts while workers spin forever',
    workers: ['thread', 'process'],
    body: (options) =>
      `const controller = new AbortController();
       const results = parmap((x) => { if (x >= 1) for (;;); return x }, range(40), { n: 2, chunksize: 1, signal: controller.signal, ${options} });
       setTimeout(() => controller.abort(new Error('enough')), 300);
       try { await results } catch (e) { console.log(describeError(e)) }`,
    check: (error) => {
      assert.equal(error.name, 'AbortError');
      assert.equal(error.cause, 'enough');
    },
  },
  {
    name: 'the caller breaks while a worker spins forever',
    workers: ['thread', 'process'],
    body: (options) =>
      `for await (const x of parmap((x) => { if (x === 3) for (;;); return x }, range(40), { n: 2, chunksize: 1, ${options} })) { if (x === 0) break }
       console.log('{"name":"broke out"}')`,
    check: (error) => assert.equal(error.name, 'broke out'),
  },
  {
    name: "the caller's loop body throws while a worker spins forever",
    workers: ['thread', 'process'],
    body: (options) =>
      `try { for await (const x of parmap((x) => { if (x === 3) for (;;); return x }, range(40), { n: 2, chunksize: 1, ${options} })) throw new Error('consumer') }
       catch (e) { console.log(JSON.stringify({ name: e.message })) }`,
    check: (error) => assert.equal(error.name, 'consumer'),
  },
  {
    name: 'the caller abandons the iterator half-way',
    workers: ['thread', 'process'],
    body: (options) =>
      `const iterator = parmap((x) => x, (function* () { for (let i = 0; ; i++) yield i })(), { n: 2, ${options} })[Symbol.asyncIterator]();
       await iterator.next();
       console.log('{"name":"abandoned"}')`,
    check: (error) => assert.equal(error.name, 'abandoned'),
  },
];

describe('fault matrix: the error names the item, and the process exits by itself', { concurrency: 2 }, () => {
  for (const fault of faults) {
    for (const workerType of fault.workers) {
      for (const ordered of [true, false]) {
        it(`${fault.name} (${workerType}, ${ordered ? 'ordered' : 'unordered'})`, async () => {
          const outcome = await runScenario(fault.body(`workerType: '${workerType}', ordered: ${ordered}`));
          assert.equal(outcome.timedOut, false, `the scenario hung:\n${outcome.stderr}`);
          assert.equal(outcome.status, 0, outcome.stderr);
          const lines = outcome.stdout.split('\n');
          assert.equal(lines.length, 1, outcome.stdout);
          fault.check(JSON.parse(lines[0] as string), workerType);
        });
      }
    }
  }
});

describe('retries', { concurrency: 2 }, () => {
  for (const workerType of ['thread', 'process'] as const) {
    it(`re-runs the items of a worker that died once, and the call succeeds (${workerType})`, async () => {
      const outcome = await runScenario(
        `import { mkdtempSync, rmSync } from 'node:fs';
         import { join } from 'node:path';
         import { tmpdir } from 'node:os';
         const dir = mkdtempSync(join(tmpdir(), 'parmap-retry-'));
         const marker = join(dir, 'died-once');
         const results = await parmap((x, marker) => {
           const fs = require('node:fs');
           if (x === 5 && !fs.existsSync(marker)) { fs.writeFileSync(marker, ''); process.exit(9); }
           return x * 2;
         }, range(40), { n: 2, chunksize: 10, retries: 1, args: [marker], workerType: '${workerType}' }).finally(() =>
           rmSync(dir, { recursive: true, force: true }),
         );
         console.log(JSON.stringify(results));`,
      );
      assert.equal(outcome.timedOut, false, outcome.stderr);
      assert.deepEqual(
        JSON.parse(outcome.stdout),
        Array.from({ length: 40 }, (_, i) => i * 2),
      );
    });

    it(`names the poisonous item after the last try, and spares its neighbours with onError: 'return' (${workerType})`, async () => {
      const outcome = await runScenario(
        `const results = await parmap((x) => { if (x === 5) process.exit(4); return x * 2 }, range(40),
           { n: 2, chunksize: 10, retries: 2, onError: 'return', workerType: '${workerType}' });
         console.log(JSON.stringify(results.map((r) => (r instanceof Error ? { name: r.name, index: r.index, attempts: r.attempts } : r))));`,
      );
      assert.equal(outcome.timedOut, false, outcome.stderr);
      const results = JSON.parse(outcome.stdout);
      assert.deepEqual(results[5], { name: 'ParmapWorkerError', index: 5, attempts: 3 });
      results[5] = 10;
      assert.deepEqual(
        results,
        Array.from({ length: 40 }, (_, i) => i * 2),
      );
    });
  }

  it('without retries, fails naming the item, and says how many tries', async () => {
    const outcome = await runScenario(
      `try { await parmap((x) => { if (x === 5) process.exit(4); return x }, range(40), { n: 2, chunksize: 10, retries: 1 }) }
       catch (e) { console.log(describeError(e)) }`,
    );
    const error = JSON.parse(outcome.stdout);
    assert.equal(error.index, 5);
    assert.match(error.message, /while running item 5, on each of 2 tries/);
  });
});

describe("onError: 'return'", () => {
  it('yields each failing item as its error, in its place, and goes on', async () => {
    const outcome = await runScenario(
      `const results = await parmap((x) => { if (x % 7 === 3) throw new RangeError('bad ' + x); if (x === 20) return () => x; return x },
         range(40), { n: 2, chunksize: 10, timeout: 5000, onError: 'return' });
       console.log(JSON.stringify(results.map((r) => (r instanceof Error ? [r.name, r.index, r.cause?.name] : r))));`,
    );
    const results = JSON.parse(outcome.stdout) as unknown[];
    assert.equal(results.length, 40);
    results.forEach((result, i) => {
      if (i % 7 === 3) assert.deepEqual(result, ['ParmapTaskError', i, 'RangeError']);
      else if (i === 20) assert.deepEqual(result, ['ParmapCloneError', 20, 'Error']);
      else assert.equal(result, i);
    });
  });
});
