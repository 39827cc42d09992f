/**
 * How a call ends, seen from outside: workers die with their parent, dropped iterators let their
 * threads go, blocked workers are stopped, and nothing printed or thrown is lost. Every scenario
 * runs in its own Node process that must end by itself.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { assertClean, LIMIT_MS, lastJson, MODES, PRELUDE, runScenario } from './fixtures/child-scenario.js';

const WORKER_MODES = MODES.filter((mode) => mode.name !== 'n: 1');

/** Whether a process is still running (a zombie waiting to be reaped counts as gone). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The pids of the processes whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(name));
    } catch {
      // The process ended while we looked.
    }
  }
  return children;
}

/** Polls until none of the pids is alive, at most 100 times; returns the ones still alive. */
async function survivors(pids: readonly number[]): Promise<number[]> {
  let alive = pids.filter(isAlive);
  for (let poll = 0; poll < 100 && alive.length > 0; poll++) {
    await delay(100);
    alive = alive.filter(isAlive);
  }
  return alive;
}

describe('process workers do not outlive their parent', { concurrency: 3 }, () => {
  const endings = {
    'the parent is killed with SIGKILL': { signal: 'SIGKILL', exit: '' },
    'the parent receives SIGTERM': { signal: 'SIGTERM', exit: '' },
    'the parent calls process.exit() mid-call': { signal: undefined, exit: 'process.exit(0);' },
  } as const;
  for (const [name, ending] of Object.entries(endings)) {
    it(`busy process workers are gone when ${name}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'parmap-orphans-'));
      // Items 0 and 1 each hold their worker until both have written their pid, so both workers
      // report; every later item spins forever.
      const script = `${PRELUDE}
        const fn = (x, dir) => {
          if (x >= 2) for (;;);
          const fs = require('node:fs');
          fs.writeFileSync(dir + '/' + process.pid, '');
          const end = Date.now() + 20000;
          while (fs.readdirSync(dir).length < 2 && Date.now() < end);
          return process.pid;
        };
        const pids = [];
        for await (const pid of parmap(fn, range(100), { n: 2, workerType: 'process', chunksize: 1, ordered: false, args: [${JSON.stringify(dir)}] })) {
          pids.push(pid);
          if (pids.length === 2) { console.log(JSON.stringify(pids)); ${ending.exit} }
        }`;
      const parent = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const killer = setTimeout(() => parent.kill('SIGKILL'), LIMIT_MS);
      let stderr = '';
      parent.stderr.setEncoding('utf8').on('data', (data: string) => {
        stderr += data;
      });
      const closed = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        parent.on('close', (code, signal) => resolve([code, signal])),
      );
      try {
        const line = await new Promise<string>((resolve, reject) => {
          let stdout = '';
          parent.stdout.setEncoding('utf8').on('data', (data: string) => {
            stdout += data;
            if (stdout.includes('\n')) resolve(stdout.split('\n')[0] as string);
          });
          parent.on('close', () => reject(new Error(`the parent ended before printing its workers: ${stderr}`)));
        });
        const printed = JSON.parse(line) as number[];
        assert.equal(new Set(printed).size, 2, `two workers should report: ${line}`);
        const workers = [...new Set([...printed, ...childrenOf(parent.pid as number)])];
        if (ending.signal) {
          assert.deepEqual(workers.filter(isAlive), workers, 'the workers should be running before the parent ends');
          parent.kill(ending.signal);
        }
        assert.deepEqual(await closed, ending.signal ? [null, ending.signal] : [0, null], stderr);
        assert.deepEqual(await survivors(workers), [], `workers still running after the parent ended: ${stderr}`);
      } finally {
        clearTimeout(killer);
        parent.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

/** A scenario that takes `count` iterators of endless inputs, reads one result from each, drops them, then collects garbage. */
const droppedIterators = (setup: string) =>
  `import { readFileSync } from 'node:fs';
   ${setup}
   const threads = () => Number(/Threads:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
   const endless = function* () { for (let i = 0; ; i++) yield i };
   const baseline = threads();
   const takeOne = async () => (await parmap((x) => x, endless(), { n: 2 })[Symbol.asyncIterator]().next()).value;
   const firsts = [];
   for (let i = 0; i < 5; i++) firsts.push(await takeOne());
   const peak = threads();
   let now = peak;
   for (let poll = 0; poll < 100 && now > baseline + 2; poll++) {
     global.gc();
     await new Promise((resolve) => setTimeout(resolve, 100));
     now = threads();
   }
   console.log(JSON.stringify({ firsts, baseline, peak, now }));`;

interface Threads {
  readonly firsts: number[];
  readonly baseline: number;
  readonly peak: number;
  readonly now: number;
}

describe('dropped iterators', () => {
  it('five iterators dropped half-way let their threads go once collected, and the process exits by itself', async () => {
    // A budget of 10 workers, so the five calls run side by side.
    const outcome = await runScenario(droppedIterators('parmapModule.setWorkerBudget(10);'), {
      nodeArgs: ['--expose-gc'],
    });
    assertClean(outcome);
    const { firsts, baseline, peak, now } = lastJson(outcome) as Threads;
    assert.deepEqual(firsts, [0, 0, 0, 0, 0]);
    assert.ok(peak >= baseline + 10, `the iterators should have started 10 threads: ${outcome.stdout}`);
    assert.ok(now <= baseline + 2, `threads still running after the iterators were collected: ${outcome.stdout}`);
  });

  it('with the default worker budget, each of five dropped iterators still gets its first result, and the process exits by itself', {}, async () => {
    const outcome = await runScenario(droppedIterators(''), { nodeArgs: ['--expose-gc'] });
    assertClean(outcome);
    const { firsts, baseline, now } = lastJson(outcome) as Threads;
    assert.deepEqual(firsts, [0, 0, 0, 0, 0]);
    assert.ok(now <= baseline + 2, `threads still running after the iterators were collected: ${outcome.stdout}`);
  });
});

/** fn bodies that block their worker in native code; `done` is a file the blocker creates when it ends. */
const blockers = {
  'Atomics.wait forever': 'Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);',
  "execSync('sleep 5')": "require('node:child_process').execSync('sleep 5 && touch ' + JSON.stringify(done));",
};

/** A scenario whose item 2 writes `started` then blocks; prints how the call ended, then whether the blocker ended. */
const blockedScenario = (blocker: string, options: string, stopper: string) =>
  `import { existsSync, mkdtempSync, rmSync } from 'node:fs';
   import { join } from 'node:path';
   import { tmpdir } from 'node:os';
   const dir = mkdtempSync(join(tmpdir(), 'parmap-blocked-'));
   const fn = (x, dir) => {
     if (x !== 2) return x;
     const done = dir + '/done';
     require('node:fs').writeFileSync(dir + '/started', '');
     ${blocker}
     return x;
   };
   ${stopper}
   try { await parmap(fn, range(4), { ...${options}, args: [dir] }); console.log('"resolved"') }
   catch (e) { console.log(JSON.stringify({ name: e.name, index: e.index, blockerEnded: existsSync(join(dir, 'done')) })) }
   rmSync(dir, { recursive: true, force: true });`;

const abortOnceStarted = `const controller = new AbortController();
   (async () => {
     for (let poll = 0; poll < 200 && !existsSync(join(dir, 'started')); poll++) await new Promise((resolve) => setTimeout(resolve, 50));
     controller.abort();
   })();`;

describe('a worker blocked in a native call is stopped', { concurrency: 2 }, () => {
  for (const mode of WORKER_MODES) {
    for (const [name, blocker] of Object.entries(blockers)) {
      it(`timeout rejects with ParmapTimeoutError while the worker is in ${name}, and the process exits (${mode.name})`, async () => {
        const outcome = await runScenario(blockedScenario(blocker, `{ ...${mode.options}, timeout: 300 }`, ''));
        assertClean(outcome);
        assert.deepEqual(lastJson(outcome), { name: 'ParmapTimeoutError', index: 2, blockerEnded: false });
      });

      it(`signal rejects with AbortError while the worker is in ${name}, and the process exits (${mode.name})`, async () => {
        const outcome = await runScenario(
          blockedScenario(blocker, `{ ...${mode.options}, signal: controller.signal }`, abortOnceStarted),
        );
        assertClean(outcome);
        const { name: error, blockerEnded } = lastJson(outcome) as Record<string, unknown>;
        assert.deepEqual({ error, blockerEnded }, { error: 'AbortError', blockerEnded: false });
      });
    }
  }
});

describe('n: 1 and long timeouts', { concurrency: 3 }, () => {
  it('n: 1 honours signal while awaiting an async fn that never settles', async () => {
    const outcome = await runScenario(
      `const controller = new AbortController();
       const fn = async () => { setImmediate(() => controller.abort()); await new Promise(() => {}) };
       try { await parmap(fn, [1, 2], { n: 1, signal: controller.signal }); console.log('"resolved"') }
       catch (e) { console.log(JSON.stringify(e instanceof AbortError ? 'AbortError' : String(e))) }`,
    );
    assertClean(outcome);
    assert.equal(lastJson(outcome), 'AbortError');
  });

  for (const mode of MODES) {
    for (const timeout of ['2 ** 31', '2 ** 40']) {
      it(`a timeout of ${timeout} ms does not time out at once (${mode.name})`, async () => {
        const outcome = await runScenario(
          `const busy = (x) => { const end = Date.now() + 50; while (Date.now() < end); return x };
           const waits = async (x) => { await new Promise((resolve) => setTimeout(resolve, 50)); return x };
           const run = (fn) => parmap(fn, range(3), { ...${mode.options}, timeout: ${timeout} }).then(String, (e) => e.name);
           console.log(JSON.stringify([await run(busy), await run(waits)]));`,
        );
        assertClean(outcome);
        assert.deepEqual(lastJson(outcome), ['0,1,2', '0,1,2']);
        assert.doesNotMatch(outcome.stderr, /TimeoutOverflowWarning/);
      });
    }
  }
});

describe('a progress callback that throws', { concurrency: 3 }, () => {
  for (const mode of MODES) {
    it(`while fn fails: the call rejects into the caller's catch, with no unhandled rejection (${mode.name})`, async () => {
      const outcome = await runScenario(
        `const fn = (x) => { if (x === 3) throw new Error('fn failed'); return x };
         try { await parmap(fn, range(20), { ...${mode.options}, progress: () => { throw new Error('progress failed') } }); console.log('"resolved"') }
         catch (e) { console.log(JSON.stringify('caught: ' + (e?.cause?.message ?? e?.message))) }`,
        { nodeArgs: ['--unhandled-rejections=strict'] },
      );
      assertClean(outcome);
      assert.match(lastJson(outcome) as string, /^caught: (fn|progress) failed$/);
    });
  }
});

describe("fn's console.log reaches the caller's stdout", { concurrency: 3 }, () => {
  for (const mode of MODES) {
    it(`all 2,000 lines printed by fn show when the call ends normally (${mode.name})`, async () => {
      const outcome = await runScenario(
        `await parmap((x) => { console.log('line ' + x); return x }, range(2000), ${mode.options});`,
      );
      assertClean(outcome);
      const printed = new Set(outcome.stdout.split('\n').filter((line) => /^line \d+$/.test(line)));
      const missing = Array.from({ length: 2000 }, (_, i) => `line ${i}`).filter((line) => !printed.has(line));
      assert.deepEqual(missing.slice(0, 20), [], `${missing.length} lines missing`);
    });

    it(`when item 50 throws, the line of every item that ran shows (${mode.name})`, async () => {
      const outcome = await runScenario(
        `import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
         import { join } from 'node:path';
         import { tmpdir } from 'node:os';
         const dir = mkdtempSync(join(tmpdir(), 'parmap-lines-'));
         const fn = (x, record) => {
           console.log('item ' + x);
           process.getBuiltinModule('node:fs').appendFileSync(record, x + '\\n');
           if (x === 50) throw new Error('boom');
           return x;
         };
         try { await parmap(fn, range(200), { ...${mode.options}, args: [join(dir, 'ran')] }) } catch (e) { console.log('rejected ' + e.index) }
         console.log('ran ' + JSON.stringify(readFileSync(join(dir, 'ran'), 'utf8').trim().split('\\n').map(Number)));
         rmSync(dir, { recursive: true });`,
      );
      assertClean(outcome);
      const lines = outcome.stdout.split('\n');
      assert.ok(lines.includes('rejected 50'), outcome.stdout.slice(-500));
      const ran = JSON.parse((lines.find((line) => line.startsWith('ran ')) as string).slice(4)) as number[];
      assert.ok(ran.includes(50));
      const missing = ran.filter((x) => !lines.includes(`item ${x}`));
      assert.deepEqual(missing, [], `items that ran but whose line is missing (of ${ran.length} that ran)`);
    });
  }
});
