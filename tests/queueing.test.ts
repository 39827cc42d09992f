/**
 * Chunks queued on a thread's own port behind the chunk it runs (short chunks on threads only),
 * taken back when they wait behind a slow one, and lost with a thread that dies. Real workers
 * throughout; gates are SharedArrayBuffers, never sleeps. Anything that could hang or leave a
 * worker alive runs in a Node process of its own, which must end by itself.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createPool, ParmapTaskError, parmap } from '../dist/index.js';
import { WorkerHost } from '../dist/parmap/executors/worker-host.js';
import { WorkerpoolExecutor } from '../dist/parmap/executors/workerpool.js';
import { assertClean, lastJson, type Outcome, runNode } from './fixtures/child-scenario.js';

const range = (count: number) => Array.from({ length: count }, (_, i) => i);

/** How many chunks were queued on threads' ports, and how many were taken back, in this process. */
/** `Atomics.waitAsync` (Node 16+), which the ES2023 library types leave out. */
type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
  timeout?: number,
) => { readonly value: Promise<'ok' | 'timed-out'> | 'not-equal' | 'timed-out' };

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
  return runNode(['--input-type=module', '-e', script], { limitMs: LIMIT_MS });
}

/** The last line of stdout as JSON, once the process has ended by itself with status 0. */
async function report<T = Record<string, unknown>>(body: string): Promise<T> {
  const outcome = await scenario(body);
  assertClean(outcome);
  return lastJson(outcome) as T;
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
        const woken = waitSync
          ? Atomics.wait(flags, 0, 0, 1_500)
          : await (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync(flags, 0, 0, 5_000).value;
        if (woken !== 'ok') throw new Error(`the blocker's gate was not opened (${woken})`);
      } else if (i > blocking && Atomics.load(flags, 1) === 0)
        await (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync(flags, 1, 0, 5_000).value;
      if (Buffer.isBuffer(item)) return Buffer.concat([item, Buffer.from([item.length])]);
      return new Uint16Array([item[0] as number, item[1] as number, item instanceof Uint16Array ? 2 : 0]);
    },
    items,
    { n: 2, chunksize, ordered: false, args: [gate, runs, blocker, sync] },
  )) {
    seen.push(value);
    if (seen.length === count - mates) {
      // Every result outside the blocker's chunk is in: open the gate once the blocker runs.
      await (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync(gate, 1, 0, 5_000).value;
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
      resetCounts();
      await blockedRun({ chunksize, blocker: 0, count: 300, sync: true });
      assert.ok(counts.takenBack > 0, 'a chunk queued behind the blocker was taken back');
    });
  }
});

describe('queueing: pools', () => {
  it("calls waiting for a worker of a shared pool are told when another call's item is stopped for its timeout", async () => {
    // Three calls on 2 workers: two each have an item that hangs until its timeout stops the worker;
    // the third waits its turn. A stopped chunk freed its worker without telling the waiting calls.
    const outcome = await report(`
      const fn = (x) => { if (x === HANG) { if (ASYNC) return new Promise(() => {}); for (;;); } return x; };
      const pool = createPool({ n: 2 });
      const show = (p) => p.then((r) => r.map((v) => (typeof v === 'number' ? v : v.name + ' ' + v.index)), (e) => e.name + ' ' + e.index);
      const [a, b, c] = await Promise.all([
        show(pool.map(fn, range(10), { scope: { HANG: 5, ASYNC: true }, timeout: 300, retries: 1, onError: 'return' })),
        show(pool.map(fn, range(17), { scope: { HANG: -1, ASYNC: false }, concurrency: 8, chunksize: 1 })),
        show(pool.map(fn, range(17), { scope: { HANG: 11, ASYNC: false }, timeout: 300, retries: 1 })),
      ]);
      await pool.close();
      console.log(JSON.stringify({ a, b, c }));
    `);
    assert.deepEqual(outcome, {
      a: range(10).map((x) => (x === 5 ? 'ParmapTimeoutError 5' : x)),
      b: range(17),
      c: 'ParmapTimeoutError 11',
    });
  });

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

describe('queueing: threads that end with chunks queued on them', () => {
  it('a thread that exits: the error names the item, and the chunks queued on it run again', async () => {
    // Item 300 exits once the caller has seen every result before it: the replies of the chunks its
    // thread ran before are then in (see the test below on the chunk port's last replies).
    const outcome = await report(`
      const fn = (x, gate, times, once) => {
        Atomics.add(times, x, 1);
        if (x === 300 && !(once && Atomics.load(times, x) > 1)) {
          Atomics.wait(gate, 0, 0, 2_000);
          process.exit(7);
        }
        return x * 2;
      };
      const run = async (chunksize, ordered, onError, retries) => {
        const gate = new Int32Array(new SharedArrayBuffer(4));
        const times = new Int32Array(new SharedArrayBuffer(4 * 600));
        const got = new Map();
        let before = 0;
        let error;
        try {
          for await (const value of parmap(fn, range(600), { n: 2, chunksize, ordered, onError, retries, args: [gate, times, retries > 0] })) {
            const index = typeof value === 'number' ? value / 2 : value.index;
            got.set(index, typeof value === 'number' ? value : { name: value.name, index: value.index, exitCode: value.exitCode });
            if (index < 300 && ++before === 300) { Atomics.store(gate, 0, 1); Atomics.notify(gate, 0); }
          }
        } catch (e) {
          error = { name: e.name, index: e.index, exitCode: e.exitCode };
        }
        const expected = (i) => (i === 300 && retries === 0 ? { name: 'ParmapWorkerError', index: 300, exitCode: 7 } : i * 2);
        const checked = error === undefined ? range(600) : range(300);
        const wrong = checked.filter((i) => JSON.stringify(got.get(i)) !== JSON.stringify(expected(i)));
        // Every item once (the one that exited and was retried: twice); after a thrown error, at most once.
        const runs = [...times].flatMap((count, i) => {
          const ok = i === 300 && retries > 0 ? count === 2 : count === 1 || (error !== undefined && i > 300 && count === 0);
          return ok ? [] : [[i, count]];
        });
        return { error, wrong, runs };
      };
      const out = {};
      for (const [chunksize, ordered, onError, retries] of [
        [1, true, 'throw', 0], [1, false, 'throw', 0], [5, true, 'throw', 0],
        [1, true, 'return', 0], [5, false, 'return', 0], [1, false, 'throw', 1],
      ]) out[[chunksize, ordered, onError, retries].join(' ')] = await run(chunksize, ordered, onError, retries);
      out.queued = queued() > 0;
      out.lost = lostQueued() > 0;
      console.log(JSON.stringify(out));
    `);
    const exited = { error: { name: 'ParmapWorkerError', index: 300, exitCode: 7 }, wrong: [], runs: [] };
    const returned = { wrong: [], runs: [] };
    assert.deepEqual(outcome, {
      '1 true throw 0': exited,
      '1 false throw 0': exited,
      '5 true throw 0': exited,
      '1 true return 0': returned,
      '5 false return 0': returned,
      '1 false throw 1': returned,
      queued: true,
      lost: true,
    });
  });

  it('a queued chunk that finished just before its thread exited is not blamed, nor run again', async () => {
    // The caller blocks its own thread while a thread ends a chunk and exits in the next one, so
    // both the reply and the exit are waiting when it looks again. Each round: the caller arms
    // the gate and waits; the first item that ends its chunk (x % 4 === 3) takes the round; the
    // next item its thread starts, first of its chunk, records itself and exits.
    const outcome = await report(`
        const C = 4;
        // [0]: 0 idle, 1 armed, 2 a chunk's last item took the round, 3 its thread is exiting; [1]: culprit.
        const gate = new Int32Array(new SharedArrayBuffer(8));
        const runs = new Int32Array(new SharedArrayBuffer(4 * 4000));
        const fn = (x, g, times, c) => {
          Atomics.add(times, x, 1);
          if (globalThis.takesRound && x % c === 0) {
            globalThis.takesRound = false;
            if (Atomics.compareExchange(g, 0, 2, 3) === 2) { Atomics.store(g, 1, x); Atomics.notify(g, 1); process.exit(7); }
          }
          if (x % c === c - 1 && Atomics.compareExchange(g, 0, 1, 2) === 1) { globalThis.takesRound = true; Atomics.notify(g, 0); }
          const end = performance.now() + 0.3;
          while (performance.now() < end);
          return x;
        };
        const culprits = [];
        const results = [];
        let seen = 0;
        let armedAt = 0;
        let wronglyBlamed = false;
        for await (const value of parmap(fn, range(4000), { n: 2, chunksize: C, ordered: false, onError: 'return', args: [gate, runs, C] })) {
          results.push(value);
          seen++;
          // One item blamed that did not exit is enough.
          if (value instanceof Error && !culprits.includes(value.index)) wronglyBlamed = true;
          if (!wronglyBlamed && culprits.length < 24 && seen - armedAt > 100) {
            armedAt = seen;
            Atomics.store(gate, 1, -1);
            Atomics.store(gate, 0, 1);
            Atomics.wait(gate, 0, 1, 50);
            Atomics.wait(gate, 1, -1, 50);
            // The round ends here unless an item has begun to exit (nothing else could take it).
            if (Atomics.compareExchange(gate, 0, 1, 0) === 1 || Atomics.compareExchange(gate, 0, 2, 0) === 2) continue;
            Atomics.wait(gate, 1, -1, 1_000);
            culprits.push(Atomics.load(gate, 1));
            // Until the thread has exited (a thread ends within a few milliseconds).
            const end = performance.now() + 20;
            while (performance.now() < end);
            Atomics.store(gate, 0, 0);
          }
        }
        const blamed = results.filter((value) => value instanceof Error).map((error) => error.index).sort((a, b) => a - b);
        const notOnce = [...runs].flatMap((times, i) => (times === 1 ? [] : [i]));
        console.log(JSON.stringify({ rounds: wronglyBlamed ? 'stopped' : culprits.length, blamed, culprits: culprits.sort((a, b) => a - b), notOnce }));
      `);
    assert.ok(outcome.rounds === 'stopped' || (outcome.rounds as number) >= 12, `only ${outcome.rounds} rounds`);
    assert.deepEqual(outcome.blamed, outcome.culprits, 'exactly the items that exited are blamed');
    assert.deepEqual(outcome.notOnce, [], 'items run more than once');
  });

  it('a call that ends because a thread exited while running a queued chunk leaves no timer behind', async () => {
    const outcome = await report(`
        const fn = (x, gate) => {
          if (x === 300) { Atomics.wait(gate, 0, 0, 2_000); process.exit(7) }
          return x;
        };
        const lingering = [];
        for (let round = 0; round < 6 && lingering.length === 0; round++) {
          const gate = new Int32Array(new SharedArrayBuffer(4));
          let before = 0;
          let error;
          try {
            for await (const value of parmap(fn, range(600), { n: 2, chunksize: 1, ordered: false, args: [gate] })) {
              if (value < 300 && ++before === 300) { Atomics.store(gate, 0, 1); Atomics.notify(gate, 0); }
            }
          } catch (e) {
            error = e;
          }
          if (error?.index !== 300) throw new Error('unexpected outcome: ' + error);
          // The call is over: its workers end within milliseconds, and no timer should stay. (Immediates,
          // not timers, to wait: they are not what is counted.)
          const end = performance.now() + 600;
          let timers;
          do {
            await new Promise((resolve) => setImmediate(resolve));
            timers = process.getActiveResourcesInfo().filter((type) => type === 'Timeout').length;
          } while (timers > 0 && performance.now() < end);
          if (timers > 0) lingering.push(round);
        }
        console.log(JSON.stringify({ lingering, queued: queued() > 0 }));
        // Measured: the process need not wait for what lingers.
        process.exit(0);
      `);
    assert.deepEqual(outcome, { lingering: [], queued: true });
  });

  it('a timer that throws while its item awaits: the error names that item, queued chunks run again', async () => {
    const outcome = await report(`
      const fn = async (x, times) => {
        Atomics.add(times, x, 1);
        if (x === 120) setTimeout(() => { throw new Error('late boom') }, 1);
        await new Promise((resolve) => setTimeout(resolve, 2));
        return x;
      };
      const out = {};
      for (const chunksize of [1, 3]) {
        const runs = new Int32Array(new SharedArrayBuffer(4 * 200));
        const error = await parmap(fn, range(200), { n: 2, chunksize, concurrency: 1, args: [runs] }).catch((e) => e);
        out['throw ' + chunksize] = { name: error.name, index: error.index, cause: error.cause?.message };
      }
      const runs = new Int32Array(new SharedArrayBuffer(4 * 200));
      const returned = await parmap(fn, range(200), { n: 2, chunksize: 1, concurrency: 1, onError: 'return', args: [runs] });
      out.wrong = returned.flatMap((v, i) => (i === 120 ? v?.name === 'ParmapWorkerError' && v.index === 120 : v === i) ? [] : [i]);
      out.notOnce = [...runs].flatMap((times, i) => (times === 1 ? [] : [i]));
      out.queued = queued() > 0;
      console.log(JSON.stringify(out));
    `);
    const boom = { name: 'ParmapWorkerError', index: 120, cause: 'late boom' };
    assert.deepEqual(outcome, { 'throw 1': boom, 'throw 3': boom, wrong: [], notOnce: [], queued: true });
  });

  it('a thread out of memory (maxMemory) while chunks are queued: only its item fails', async () => {
    const outcome = await report(`
      const runs = new Int32Array(new SharedArrayBuffer(4 * 400));
      const returned = await parmap((x, times) => {
        Atomics.add(times, x, 1);
        if (x === 250) { const hog = []; for (;;) hog.push(new Array(100_000).fill(x)) }
        return x;
      }, range(400), { n: 2, chunksize: 1, onError: 'return', maxMemory: 64, args: [runs] });
      const failed = returned.flatMap((v, i) => (v === i ? [] : [{ index: v.index, name: v.name, outOfMemory: v.outOfMemory }]));
      const notOnce = [...runs].flatMap((times, i) => (times === 1 ? [] : [i]));
      console.log(JSON.stringify({ failed, notOnce, queued: queued() > 0 }));
    `);
    assert.deepEqual(outcome, {
      failed: [{ index: 250, name: 'ParmapWorkerError', outOfMemory: true }],
      notOnce: [],
      queued: true,
    });
  });

  it('timeout stops a running item while a chunk is queued behind it; the queued chunk runs elsewhere', async () => {
    const outcome = await report(`
      // The blocker waits on a gate nobody opens (in Atomics.wait, or awaiting): only the timeout ends it.
      const gate = new Int32Array(new SharedArrayBuffer(4));
      const out = {};
      for (const sync of [true, false]) {
        const runs = new Int32Array(new SharedArrayBuffer(4 * 300));
        const started = performance.now();
        const returned = await parmap(async (x, g, times, waitSync) => {
          Atomics.add(times, x, 1);
          if (x === 150) {
            if (waitSync) Atomics.wait(g, 0, 0, 12_000);
            else await Atomics.waitAsync(g, 0, 0, 12_000).value;
          }
          return x;
        }, range(300), { n: 2, chunksize: 1, timeout: 300, onError: 'return', args: [gate, runs, sync] });
        out[sync ? 'sync' : 'async'] = {
          failed: returned.flatMap((v, i) => (v === i ? [] : [{ index: v.index, name: v.name }])),
          notOnce: [...runs].flatMap((times, i) => (times === 1 ? [] : [i])),
          // Far less than the blocker's own wait: the call did not wait for it.
          quick: performance.now() - started < 8_000,
        };
      }
      const error = await parmap((x, g) => { if (x === 150) Atomics.wait(g, 0, 0, 12_000); return x }, range(300),
        { n: 2, chunksize: 1, timeout: 300, args: [gate] }).catch((e) => e);
      out.thrown = { name: error.name, index: error.index };
      out.queued = queued() > 0;
      console.log(JSON.stringify(out));
    `);
    const timedOut = { failed: [{ index: 150, name: 'ParmapTimeoutError' }], notOnce: [], quick: true };
    assert.deepEqual(outcome, {
      sync: timedOut,
      async: timedOut,
      thrown: { name: 'ParmapTimeoutError', index: 150 },
      queued: true,
    });
  });
});

describe('queueing: a single busy worker', () => {
  it('a chunk queued behind an item that times out on the only thread runs once the thread is replaced', async () => {
    // With no other thread free, the queued chunk must not be taken back: handed to workerpool
    // then, it waited for an exec that never came, and the call hung.
    const outcome = await report(`
      const pool = createPool({ n: 1 });
      const runs = [];
      try {
        for (let round = 0; round < 4; round++) {
          const returned = await pool.map((x) => { if (x === 4) for (;;); return x * 2; }, range(10),
            { timeout: 300, chunksize: 1, onError: 'return', signal: AbortSignal.timeout(15_000) });
          runs.push(returned.map((v) => (typeof v === 'number' ? v : v.name)));
        }
      } finally {
        await pool.close();
      }
      console.log(JSON.stringify({ runs, queued: queued() > 0 }));
    `);
    const expected = range(10).map((x) => (x === 4 ? 'ParmapTimeoutError' : x * 2));
    assert.deepEqual(outcome, { runs: [expected, expected, expected, expected], queued: true });
  });
});

describe('queueing: pipelines', () => {
  it('steps share the threads, each queuing only behind its own chunks; results and errors name the right step and item', async () => {
    const outcome = await report(`
      const out = {};
      for (const ordered of [true, false]) {
        const results = await parmap.pipeline(range(3000), { n: 2, ordered, buffer: 400 })
          .map((x) => x * 3, { chunksize: 1 })
          .filter((x) => x % 2 === 0)
          .flatMap((x) => [x, -x], { chunksize: 7 })
          .map((x) => x + 1)
          .collect();
        const expected = range(3000).map((x) => x * 3).filter((x) => x % 2 === 0).flatMap((x) => [x, -x]).map((x) => x + 1);
        const sort = (values) => [...values].sort((a, b) => a - b);
        out[ordered ? 'ordered' : 'unordered'] =
          JSON.stringify(ordered ? results : sort(results)) === JSON.stringify(ordered ? expected : sort(expected));
      }
      const error = await parmap.pipeline(range(3000), { n: 2 })
        .map((x) => x + 1, { chunksize: 1 })
        .map((x) => { if (x === 1500) process.exit(9); return x }, { chunksize: 1, label: 'second' })
        .collect()
        .catch((e) => e);
      out.error = { name: error.name, index: error.index, exitCode: error.exitCode, stage: error.stage };
      out.queued = queued() > 0;
      console.log(JSON.stringify(out));
    `);
    assert.deepEqual(outcome, {
      ordered: true,
      unordered: true,
      error: { name: 'ParmapWorkerError', index: 1499, exitCode: 9, stage: 'second' },
      queued: true,
    });
  });
});

describe('queueing: calls that end early while chunks are queued', () => {
  it('abort, break and a dropped iterator end the call and every worker', async () => {
    const outcome = await report(`
      const endless = function* () { for (let i = 0; ; i++) yield i };
      const out = {};
      for (const chunksize of [1, 'auto']) {
        const controller = new AbortController();
        let seen = 0;
        try {
          for await (const value of parmap((x) => x * 2, endless(), { n: 2, chunksize, signal: controller.signal })) {
            if (value !== seen * 2) throw new Error('wrong result ' + value);
            if (++seen === 3000) controller.abort();
          }
          out['abort ' + chunksize] = 'no error';
        } catch (e) {
          out['abort ' + chunksize] = e.name;
        }
        seen = 0;
        for await (const value of parmap((x) => x + 1, endless(), { n: 2, chunksize })) {
          if (value !== seen + 1) throw new Error('wrong result ' + value);
          if (++seen === 3000) break;
        }
        out['break ' + chunksize] = seen;
      }
      // Dropped half-way, never closed: the process must still end by itself.
      const iterator = parmap((x) => x, endless(), { n: 2, chunksize: 1 })[Symbol.asyncIterator]();
      for (let i = 0; i < 500; i++) if ((await iterator.next()).value !== i) throw new Error('wrong result');
      out.queued = queued() > 0;
      console.log(JSON.stringify(out));
    `);
    assert.deepEqual(outcome, {
      'abort 1': 'AbortError',
      'break 1': 3000,
      'abort auto': 'AbortError',
      'break auto': 3000,
      queued: true,
    });
  });

  it('context and teardown: a graceful stop with chunks queued releases each context exactly once', async () => {
    const outcome = await report(`
      const { existsSync, readFileSync, rmSync } = await import('node:fs');
      const file = (await import('node:path')).join((await import('node:os')).tmpdir(), 'parmap-queued-teardown-' + process.pid);
      const context = () => {
        const id = require('node:worker_threads').threadId;
        require('node:fs').appendFileSync(file, 'open ' + id + '\\n');
        return { id, released: false };
      };
      const teardown = (value) => {
        require('node:fs').appendFileSync(file, (value.released ? 'again ' : 'bye ') + value.id + '\\n');
        value.released = true;
      };
      const fn = (x, value) => {
        if (value.released) require('node:fs').appendFileSync(file, 'late ' + x + '\\n');
        if (x === -1) throw new Error('boom');
        return x * 2;
      };
      const endless = function* (failAt) { for (let i = 0; ; i++) yield i === failAt ? -1 : i };
      const lines = () => {
        const text = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
        rmSync(file, { force: true });
        return text === '' ? [] : text.split('\\n');
      };
      const summary = (ending, all) => {
        const opens = all.filter((l) => l.startsWith('open ')).map((l) => l.slice(5)).sort();
        const byes = all.filter((l) => l.startsWith('bye ')).map((l) => l.slice(4)).sort();
        const ok = opens.length > 0 && JSON.stringify(opens) === JSON.stringify(byes) && new Set(opens).size === opens.length;
        return ok && all.every((l) => l.startsWith('open ') || l.startsWith('bye ')) ? 'each context released once' : ending + ' ' + JSON.stringify(all);
      };
      const options = { n: 2, chunksize: 1, context, teardown, scope: { file } };
      const out = {};
      for (const ending of ['break', 'abort', 'throw', 'ok']) {
        const controller = new AbortController();
        let seen = 0;
        let how;
        try {
          if (ending === 'ok') {
            const results = await parmap(fn, range(3000), options);
            how = results.every((v, i) => v === i * 2) ? 'done' : 'wrong results';
          } else {
            for await (const value of parmap(fn, endless(ending === 'throw' ? 2500 : -2), { ...options, signal: controller.signal })) {
              if (value !== seen * 2) throw new Error('wrong result ' + value);
              if (++seen === 2000 && ending === 'break') break;
              if (seen === 2000 && ending === 'abort') controller.abort();
            }
            how = 'ended';
          }
        } catch (e) {
          how = e.name;
        }
        out[ending] = how + ': ' + summary(ending, lines());
      }
      // A pool keeps its contexts for every call, and releases them once, when it closes.
      const pool = createPool({ n: 2 });
      for (let call = 0; call < 3; call++) {
        let seen = 0;
        for await (const _ of pool.map(fn, endless(-2), { chunksize: 1, context, teardown, scope: { file } })) if (++seen === 1500) break;
      }
      const beforeClose = lines().filter((l) => !l.startsWith('open ')).length;
      await pool.close();
      out.pool = 'released before close: ' + beforeClose;
      out.queued = queued() > 0;
      rmSync(file, { force: true });
      console.log(JSON.stringify(out));
    `);
    assert.deepEqual(outcome, {
      break: 'ended: each context released once',
      abort: 'AbortError: each context released once',
      throw: 'ParmapTaskError: each context released once',
      ok: 'done: each context released once',
      pool: 'released before close: 0',
      queued: true,
    });
  });
});
