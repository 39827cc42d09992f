/**
 * Chunks queued on a thread's own port behind the chunk it runs (short chunks on threads only),
 * taken back when they wait behind a slow one, and lost with a thread that dies. Real workers
 * throughout; gates are SharedArrayBuffers, never sleeps. Anything that could hang or leave a
 * worker alive runs in a Node process of its own, which must end by itself.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createPool, ParmapTaskError, parmap } from '../dist/index.js';
import { WorkerHost } from '../dist/parmap/executors/worker-host.js';
import { WorkerpoolExecutor } from '../dist/parmap/executors/workerpool.js';

const range = (count: number) => Array.from({ length: count }, (_, i) => i);

/** How many chunks were queued on threads' ports, and how many were taken back, in this process. */
const counts = { queued: 0, takenBack: 0 };
const queueOn = WorkerHost.prototype.queueOn;
WorkerHost.prototype.queueOn = function (this: WorkerHost, ...args: Parameters<typeof queueOn>) {
  counts.queued++;
  return queueOn.apply(this, args);
};
const takenBack = WorkerpoolExecutor.prototype.takenBack;
WorkerpoolExecutor.prototype.takenBack = function (this: WorkerpoolExecutor, ...args: Parameters<typeof takenBack>) {
  counts.takenBack++;
  return takenBack.apply(this, args);
};
function resetCounts(): void {
  counts.queued = 0;
  counts.takenBack = 0;
}

/** Runs counted: every item ran exactly once. */
function assertOnce(runs: Int32Array, what: string): void {
  const wrong = [...runs.entries()].filter(([, times]) => times !== 1);
  assert.deepEqual(wrong, [], `${what}: [item, times run] for items not run exactly once`);
}

const entry = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const hostModule = fileURLToPath(new URL('../dist/parmap/executors/worker-host.js', import.meta.url));
const LIMIT_MS = 20_000;

interface Outcome {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

/**
 * Runs an ES module body in a fresh Node process, killed past the limit. It has parmap's exports,
 * `range`, `queued()` (chunks queued on threads' ports so far) and `lostQueued()` (queued chunks
 * lost with their thread).
 */
function scenario(body: string): Promise<Outcome> {
  const script = `import * as parmapModule from ${JSON.stringify(entry)};
import { WorkerHost } from ${JSON.stringify(hostModule)};
const { parmap, createPool, ParmapError, ParmapTaskError, ParmapWorkerError, ParmapTimeoutError, AbortError } = parmapModule;
const range = (count) => Array.from({ length: count }, (_, i) => i);
let queuedCount = 0;
let lostCount = 0;
const queueOn = WorkerHost.prototype.queueOn;
WorkerHost.prototype.queueOn = function (...args) { queuedCount++; return queueOn.apply(this, args); };
const loseQueued = WorkerHost.prototype.loseQueued;
WorkerHost.prototype.loseQueued = function (worker) {
  for (const chunk of this.queued.values()) if (chunk.worker === worker) lostCount++;
  return loseQueued.call(this, worker);
};
const queued = () => queuedCount;
const lostQueued = () => lostCount;
${body}`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, LIMIT_MS);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: stdout.trim(), stderr: stderr.trim(), timedOut });
    });
  });
}

/** The last line of stdout as JSON, once the process has ended by itself with status 0. */
async function report<T = Record<string, unknown>>(body: string): Promise<T> {
  const outcome = await scenario(body);
  if (outcome.timedOut || outcome.status !== 0) {
    throw new Error(
      `the scenario ${outcome.timedOut ? 'hung and was killed' : `exited with ${outcome.status}`}\n` +
        `stdout: ${outcome.stdout.slice(-2000)}\nstderr: ${outcome.stderr.slice(-2000)}`,
    );
  }
  const lines = outcome.stdout.split('\n');
  return JSON.parse(lines[lines.length - 1] as string) as T;
}

describe('queueing: results', () => {
  it('short chunks are queued behind running ones; every item runs once, results as Array.map', async () => {
    const cases = [
      [1, true],
      [1, false],
      [3, true],
      ['auto', false],
    ] as const;
    for (const [chunksize, ordered] of cases) {
      resetCounts();
      const count = 1500;
      const runs = new Int32Array(new SharedArrayBuffer(4 * count));
      const results = await parmap(
        (x: number, times: Int32Array) => {
          Atomics.add(times, x, 1);
          return { x, square: x * x, label: `item ${x}` };
        },
        range(count),
        { n: 2, chunksize, ordered, args: [runs] },
      );
      const what = `chunksize ${chunksize}, ordered ${ordered}`;
      const sorted = ordered ? results : [...results].sort((a, b) => a.x - b.x);
      assert.deepEqual(
        sorted,
        range(count).map((x) => ({ x, square: x * x, label: `item ${x}` })),
        what,
      );
      assertOnce(runs, what);
      if (chunksize === 1) assert.ok(counts.queued > 0, `${what}: chunks were queued on threads`);
    }
  });

  it('process workers never queue a chunk on a port', async () => {
    resetCounts();
    const results = await parmap((x: number) => x * 2, range(300), { n: 2, chunksize: 1, workerType: 'process' });
    assert.deepEqual(
      results,
      range(300).map((x) => x * 2),
    );
    assert.equal(counts.queued, 0);
  });

  it('n: 1 runs in this thread and queues nothing', async () => {
    resetCounts();
    const results = await parmap((x: number) => x - 1, range(500), { n: 1, chunksize: 1 });
    assert.deepEqual(
      results,
      range(500).map((x) => x - 1),
    );
    assert.equal(counts.queued, 0);
  });

  it('onError: return: failures in queued chunks take their own items’ places', async () => {
    for (const chunksize of [1, 4, 'auto'] as const) {
      resetCounts();
      const results = await parmap(
        (x: number) => {
          if (x % 7 === 3) throw new RangeError(`bad ${x}`);
          return x * 10;
        },
        range(700),
        { n: 2, chunksize, onError: 'return' },
      );
      assert.equal(results.length, 700);
      for (const [i, value] of results.entries()) {
        if (i % 7 === 3) {
          assert.ok(value instanceof ParmapTaskError, `item ${i} (chunksize ${chunksize})`);
          assert.equal(value.index, i);
          assert.equal((value.cause as Error).message, `bad ${i}`);
        } else assert.equal(value, i * 10, `item ${i} (chunksize ${chunksize})`);
      }
      if (chunksize === 1) assert.ok(counts.queued > 0, 'chunks were queued on threads');
    }
  });

  it('huge string items and results go through queued chunks intact', async () => {
    resetCounts();
    const items = range(24).map((i) => String.fromCharCode(65 + i).repeat(1_000_000 + i));
    const results = await parmap((s: string) => `${s.length}:${s[s.length - 1]}:${s.slice(0, 3)}`, items, {
      n: 2,
      ordered: false,
    });
    assert.deepEqual([...results].sort(), items.map((s) => `${s.length}:${s[s.length - 1]}:${s.slice(0, 3)}`).sort());
  });
});

/**
 * One item (the blocker) waits for a gate that the caller opens only once it has seen every
 * result outside the blocker's chunk; the items after it first wait until it has started, so the
 * blocker's thread is known to be busy while short chunks are queued. With `ordered: false`,
 * a chunk queued behind the blocker must be taken back and run elsewhere, or the caller never
 * sees the results that open the gate.
 */
async function blockedRun(options: {
  readonly chunksize: number | 'auto';
  readonly blocker: number;
  readonly count: number;
  /** The blocker waits in `Atomics.wait` (its thread reads no message meanwhile), or awaits. */
  readonly sync: boolean;
}): Promise<void> {
  const { chunksize, blocker, count, sync } = options;
  // [0]: the gate, opened by the caller; [1]: the blocker has started.
  const gate = new Int32Array(new SharedArrayBuffer(8));
  const runs = new Int32Array(new SharedArrayBuffer(4 * count));
  // Buffers and typed arrays: they travel encoded, their bytes moved to the thread they are sent to.
  const items = range(count).map((i) => (i % 2 === 0 ? Buffer.from([i & 255, i >> 8, 7]) : new Uint16Array([i, 7])));
  const mates = chunksize === 'auto' ? 1 : chunksize;
  const seen: (Buffer | Uint16Array)[] = [];
  for await (const value of parmap(
    async (item: Buffer | Uint16Array, flags: Int32Array, times: Int32Array, blocking: number, waitSync: boolean) => {
      const i = Buffer.isBuffer(item) ? (item[0] as number) + (item[1] as number) * 256 : (item[0] as number);
      Atomics.add(times, i, 1);
      if (i === blocking) {
        Atomics.store(flags, 1, 1);
        Atomics.notify(flags, 1);
        const woken = waitSync ? Atomics.wait(flags, 0, 0, 1_500) : await Atomics.waitAsync(flags, 0, 0, 5_000).value;
        if (woken !== 'ok') throw new Error(`the blocker's gate was not opened (${woken})`);
      } else if (i > blocking && Atomics.load(flags, 1) === 0) await Atomics.waitAsync(flags, 1, 0, 5_000).value;
      if (Buffer.isBuffer(item)) return Buffer.concat([item, Buffer.from([item.length])]);
      return new Uint16Array([item[0] as number, item[1] as number, item instanceof Uint16Array ? 2 : 0]);
    },
    items,
    { n: 2, chunksize, ordered: false, args: [gate, runs, blocker, sync] },
  )) {
    seen.push(value);
    if (seen.length === count - mates) {
      // Every result outside the blocker's chunk is in: open the gate once the blocker runs.
      await Atomics.waitAsync(gate, 1, 0, 5_000).value;
      Atomics.store(gate, 0, 1);
      Atomics.notify(gate, 0);
    }
  }
  const indexOf = (value: Buffer | Uint16Array) =>
    Buffer.isBuffer(value) ? (value[0] as number) + (value[1] as number) * 256 : (value[0] as number);
  assert.ok(
    seen.slice(-mates).some((value) => indexOf(value) === blocker),
    'the blocker comes with the last chunk',
  );
  const sorted = [...seen].sort((a, b) => indexOf(a) - indexOf(b));
  assert.equal(sorted.length, count);
  for (const [i, value] of sorted.entries()) {
    if (i % 2 === 0) assert.deepEqual(value, Buffer.from([i & 255, i >> 8, 7, 3]), `item ${i}`);
    else assert.deepEqual(value, new Uint16Array([i, 7, 2]), `item ${i}`);
  }
  assertOnce(runs, `chunksize ${chunksize}`);
}

describe('queueing: taking back a chunk that waits behind a slow one', () => {
  for (const [chunksize, blocker] of [
    [1, 0],
    [1, 150],
    [4, 152],
    ['auto', 0],
  ] as const) {
    it(`ordered: false gets a chunk queued behind an awaiting item from elsewhere, with Buffers and typed arrays (chunksize ${chunksize}, blocker ${blocker})`, async () => {
      resetCounts();
      await blockedRun({ chunksize, blocker, count: 300, sync: false });
      assert.ok(counts.takenBack > 0, 'a chunk queued behind the blocker was taken back');
    });
  }

  for (const chunksize of [1, 'auto'] as const) {
    it(`ordered: false gets a chunk queued behind an item blocked in Atomics.wait from elsewhere (chunksize ${chunksize})`, {
      timeout: 60_000,
    }, async () => {
      await blockedRun({ chunksize, blocker: 0, count: 300, sync: true });
    });
  }
});

describe('queueing: pools', () => {
  it('three concurrent maps on one pool each get exactly their own results', async () => {
    const pool = createPool({ n: 2 });
    try {
      resetCounts();
      const [a, b, c] = await Promise.all([
        pool.map((x: number) => x * 2, range(4000), { chunksize: 1 }),
        pool.map((x: number) => `b${x}`, range(3000), { ordered: false }),
        pool.map(
          (x: number) => {
            if (x % 100 === 99) throw new Error(`c${x}`);
            return -x;
          },
          range(2000),
          { chunksize: 3, onError: 'return' },
        ),
      ]);
      assert.deepEqual(
        a,
        range(4000).map((x) => x * 2),
      );
      assert.deepEqual(
        [...b].sort(),
        range(3000)
          .map((x) => `b${x}`)
          .sort(),
      );
      for (const [i, value] of c.entries()) {
        if (i % 100 === 99) assert.ok(value instanceof ParmapTaskError && value.index === i, `c item ${i}`);
        else assert.equal(value, -i);
      }
      assert.ok(counts.queued > 0, 'chunks were queued on threads');
    } finally {
      await pool.close();
    }
  });

  it('a call that breaks while another runs on the same pool leaves the other’s items untouched', async () => {
    const pool = createPool({ n: 2 });
    try {
      for (let round = 0; round < 4; round++) {
        const runs = new Int32Array(new SharedArrayBuffer(4 * 300));
        let bRunning = false;
        const endless = function* () {
          for (let i = 0; ; i++) yield i;
        };
        const a = (async () => {
          let seen = 0;
          for await (const value of pool.map(
            (x: number) => {
              const end = performance.now() + 0.2;
              while (performance.now() < end);
              return x * 2;
            },
            endless(),
            { chunksize: 20 },
          )) {
            assert.equal(value, seen * 2);
            seen++;
            // Breaks while the other call is half-way.
            if (bRunning && runs.reduce((sum, times) => sum + times, 0) > 60 + round * 40) break;
          }
        })();
        bRunning = true;
        const b = await pool.map(
          (x: number, times: Int32Array) => {
            Atomics.add(times, x, 1);
            const end = performance.now() + 0.5;
            while (performance.now() < end);
            return x + 1;
          },
          range(300),
          { chunksize: 1, args: [runs] },
        );
        await a;
        assert.deepEqual(
          b,
          range(300).map((x) => x + 1),
        );
        assertOnce(runs, `round ${round}`);
      }
    } finally {
      await pool.close();
    }
  });

  it('a second call on a pool finishes, exactly right, while an endless first call keeps its chunks queued', async () => {
    const pool = createPool({ n: 2 });
    try {
      let stop = false;
      let seenA = 0;
      const endless = function* () {
        for (let i = 0; !stop; i++) yield i;
      };
      const a = (async () => {
        for await (const value of pool.map(
          (x: number) => {
            const end = performance.now() + 0.02;
            while (performance.now() < end);
            return x * 2;
          },
          endless(),
          { chunksize: 50 },
        )) {
          assert.equal(value, seenA * 2);
          seenA++;
        }
      })();
      // The first call is under way, its short chunks queued on both threads, before the others start.
      while (seenA < 5_000) await new Promise((resolve) => setImmediate(resolve));
      resetCounts();
      const runs = new Int32Array(new SharedArrayBuffer(4 * 600));
      // A deadline far beyond what the calls need (about 0.1 s each here), so a starved call fails
      // rather than hangs.
      const signal = AbortSignal.timeout(10_000);
      const [b, c] = await Promise.all([
        pool.map(
          (x: number, times: Int32Array) => {
            Atomics.add(times, x, 1);
            return x + 1;
          },
          range(600),
          { chunksize: 1, args: [runs], signal },
        ),
        pool.map((x: number) => `c${x}`, range(2000), { ordered: false, signal }),
      ]).finally(() => {
        stop = true;
      });
      await a;
      assert.deepEqual(
        b,
        range(600).map((x) => x + 1),
      );
      assertOnce(runs, 'second call');
      assert.deepEqual(
        [...c].sort(),
        range(2000)
          .map((x) => `c${x}`)
          .sort(),
      );
      assert.ok(counts.queued > 0, 'chunks were queued on threads meanwhile');
    } finally {
      await pool.close();
    }
  });
});
