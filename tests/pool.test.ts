/**
 * `createPool()`: warm workers shared by many `pool.map` calls. Everything that starts workers runs
 * in a process of its own, which must end by itself: a hang fails one test, not the run.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPool, ParmapError } from '../dist/index.js';
import { lastJson, runModule } from './fixtures/integration-child.js';

const workerTypes = ['thread', 'process'] as const;

/** A scenario with `pool` (2 workers of the given type) and `me()` (a worker's id, inside fn). */
function withPool(workerType: 'thread' | 'process', body: string) {
  return runModule(`
    const pool = createPool({ n: 2, workerType: '${workerType}' });
    ${body}
  `);
}

/** fn's source for "which worker am I": thread id and pid, as fn sees them. */
const WHO = `require('node:worker_threads').threadId + ':' + process.pid`;

describe('createPool: calls and their options', () => {
  it('refuses n, workerType and maxMemory in map with a TypeError naming the option', async () => {
    const pool = createPool({ n: 2 });
    for (const key of ['n', 'workerType', 'maxMemory']) {
      assert.throws(() => pool.map((x: number) => x, [1], { [key]: undefined } as never), {
        name: 'TypeError',
        message: new RegExp(`\`${key}\` belongs to the pool`),
      });
    }
    await pool.close();
  });

  it('a closed pool refuses new calls with a clear error', async () => {
    const pool = createPool({ n: 2 });
    assert.equal(pool.closed, false);
    await pool.close();
    await pool.close(); // safe more than once
    assert.equal(pool.closed, true);
    assert.throws(
      () => pool.map((x: number) => x, [1]),
      (error: unknown) => {
        assert.ok(error instanceof ParmapError);
        assert.match(error.message, /this pool is closed/);
        return true;
      },
    );
  });

  it('Symbol.asyncDispose closes the pool', async () => {
    const pool = createPool({ n: 1 });
    await pool[Symbol.asyncDispose]();
    assert.equal(pool.closed, true);
    assert.throws(() => pool.map((x: number) => x, [1]), /this pool is closed/);
  });

  for (const workerType of workerTypes) {
    it(`${workerType}: map gives what parmap gives (args, kwargs, star, scope), and the process exits`, async () => {
      const outcome = await withPool(
        workerType,
        `
        const options = { star: true, args: [100], kwargs: { k: 1 }, scope: { offset: 5 } };
        const fn = (a, b, c, kw) => a + b + c + kw.k + offset;
        const items = range(50).map((i) => [i, i]);
        const viaPool = await pool.map(fn, items, options);
        const viaParmap = await parmap(fn, items, { ...options, n: 2, workerType: '${workerType}' });
        const streamed = [];
        for await (const value of pool.map((x) => x * 2, range(30), { ordered: false })) streamed.push(value);
        await pool.close();
        console.log(JSON.stringify({ same: JSON.stringify(viaPool) === JSON.stringify(viaParmap), first: viaPool.slice(0, 3),
          streamed: streamed.sort((a, b) => a - b).join() === range(30).map((x) => x * 2).join() }));
      `,
      );
      assert.deepEqual(lastJson(outcome), { same: true, first: [106, 108, 110], streamed: true });
    });

    it(`${workerType}: a map running when the pool closes fails with a clear error`, async () => {
      // fn connects to this server and then waits for ever: the connection says it is running.
      const outcome = await withPool(
        workerType,
        `
        const net = await import('node:net');
        let settle;
        const closed = new Promise((resolve) => { settle = resolve });
        const server = net.createServer((socket) => { socket.on('error', () => {}); settle(pool.close()) }).listen(0, '127.0.0.1');
        await new Promise((resolve) => server.once('listening', resolve));
        const port = server.address().port;
        const running = pool.map(async (x) => { require('node:net').connect(port, '127.0.0.1').on('error', () => {}); await new Promise(() => {}) }, [1, 2], { scope: { port } });
        const error = await running.then(() => undefined, (e) => e);
        await closed;
        server.close();
        console.log(JSON.stringify({ parmapError: error instanceof ParmapError, message: error?.message, closed: pool.closed }));
      `,
      );
      assert.deepEqual(lastJson(outcome), {
        parmapError: true,
        message: 'parmap: the pool was closed while this call was running',
        closed: true,
      });
    });

    it(`${workerType}: a call that throws, or loses a worker, leaves the pool working`, async () => {
      const outcome = await withPool(
        workerType,
        `
        const after = [];
        const next = async () => after.push((await pool.map((x) => x * 3, range(10))).join() === range(10).map((x) => x * 3).join());
        const thrown = await pool.map((x) => { if (x === 7) throw new Error('boom'); return x }, range(20)).catch((e) => e);
        await next();
        const died = await pool.map((x) => { if (x === 3) process.exit(3); return x }, range(10), { chunksize: 1 }).catch((e) => e);
        await next();
        await next();
        await pool.close();
        console.log(JSON.stringify({ thrown: [thrown.name, thrown.index], died: [died.name, died.exitCode], after }));
      `,
      );
      assert.deepEqual(lastJson(outcome), {
        thrown: ['ParmapTaskError', 7],
        died: ['ParmapWorkerError', 3],
        after: [true, true, true],
      });
    });

    it(`${workerType}: calls that time out leave no worker behind: the pool keeps at most n alive`, async () => {
      // Each timeout stops one worker and moves the pool's work to fresh ones; the other old
      // worker, whose chunk the failing call gave up, was kept alive for ever, one more per call.
      const outcome = await withPool(
        workerType,
        `
        const { subscribe } = await import('node:diagnostics_channel');
        const live = { started: 0, exited: 0, onExit: () => {} };
        const count = (worker) => {
          live.started++;
          worker.once('exit', () => { live.exited++; live.onExit() });
        };
        subscribe('worker_threads', ({ worker }) => count(worker));
        subscribe('child_process', ({ process }) => count(process));
        const spinOnFive = (x) => { if (x === 5) for (;;); const end = Date.now() + 4; while (Date.now() < end); return x };
        const names = [];
        // With a context, the call's other chunks are let go gracefully, among them chunks queued
        // behind the one a thread runs: those, never answered, kept their old pool for ever too.
        for (const options of [{}, { context: () => 0, ordered: false }]) {
          for (let call = 0; call < 3; call++) {
            names.push(await pool.map(spinOnFive, range(80), { timeout: 150, chunksize: 2, ...options }).catch((e) => e.name));
          }
        }
        const after = (await pool.map((x) => x + 1, range(10))).join();
        // Stopped workers take a moment to exit; leaked ones never do, and the scenario then hangs.
        while (live.started - live.exited > 2) await new Promise((resolve) => (live.onExit = resolve));
        await pool.close();
        console.log(JSON.stringify({ names, after, started: live.started > 2 }));
      `,
      );
      assert.deepEqual(lastJson(outcome), {
        names: Array(6).fill('ParmapTimeoutError'),
        after: '1,2,3,4,5,6,7,8,9,10',
        started: true,
      });
    });

    it(`${workerType}: six streams of one pool read in turn, a result from each, all come out whole`, async () => {
      // A zip of calls on one pool: a call whose input had ended stayed first in the line of calls
      // waiting for a worker, and kept the free worker from the call being read (4 to 5 runs of 5 hung).
      const outcome = await withPool(
        workerType,
        `
        const streams = range(6).map((s) =>
          pool.map((x, s) => x + s * 1000, range(30), { args: [s] })[Symbol.asyncIterator](),
        );
        const rows = [];
        for (let i = 0; i < 30; i++) {
          const row = [];
          for (const stream of streams) row.push((await stream.next()).value);
          rows.push(row);
        }
        const ends = await Promise.all(streams.map((stream) => stream.next()));
        await pool.close();
        console.log(JSON.stringify({ whole: rows.every((row, i) => row.every((v, s) => v === i + s * 1000)), ended: ends.every((end) => end.done) }));
      `,
      );
      assert.deepEqual(lastJson(outcome), { whole: true, ended: true });
    });

    it(`${workerType}: a call with a context aborted while its items never end leaves the pool working`, async () => {
      // With a context, a call that ends lets its workers finish their current item; one that
      // never ends had kept its worker for ever, and the next call waited for it for ever.
      const outcome = await withPool(
        workerType,
        `
        const controller = new AbortController();
        const spin = (x) => { if (x < 2) for (;;); return x };
        const started = pool.map(spin, range(4), { chunksize: 1, context: () => 0, signal: controller.signal });
        setTimeout(() => controller.abort(), 200);
        const aborted = await started.catch((e) => e.name);
        const next = (await pool.map((x) => x + 1, range(4))).join();
        await pool.close();
        console.log(JSON.stringify({ aborted, next }));
      `,
      );
      assert.deepEqual(lastJson(outcome), { aborted: 'AbortError', next: '1,2,3,4' });
    });

    it(`${workerType}: calls left early (break, abort, an item's error) keep the pool's workers warm`, async () => {
      // A call that ended stopped the workers still running its chunks: the pool started a new
      // worker for most such calls, and lost what a warm worker had (about 35 ms per thread).
      // Now they finish their current item and stay.
      const outcome = await withPool(
        workerType,
        `
        const { subscribe } = await import('node:diagnostics_channel');
        let started = 0;
        subscribe('worker_threads', () => started++);
        subscribe('child_process', () => started++);
        const busy = (x) => { const end = Date.now() + 3; while (Date.now() < end); if (x === -1) throw new Error('bad item'); return x };
        const items = range(200);
        await pool.map(busy, range(4), { chunksize: 1 });
        const warm = started;
        const ends = [];
        for (let round = 0; round < 3; round++) {
          for await (const _ of pool.map(busy, items, { chunksize: 1 })) break;
          const controller = new AbortController();
          try {
            for await (const _ of pool.map(busy, items, { chunksize: 1, signal: controller.signal })) controller.abort();
          } catch (e) { ends.push(e.name) }
          ends.push(await pool.map(busy, [1, -1, ...items], { chunksize: 1 }).catch((e) => e.name));
        }
        const after = (await pool.map((x) => x + 1, range(10))).join();
        await pool.close();
        console.log(JSON.stringify({ warm, startedSince: started - warm, ends, after }));
      `,
      );
      assert.deepEqual(lastJson(outcome), {
        warm: 2,
        startedSince: 0,
        ends: Array(3).fill(['AbortError', 'ParmapTaskError']).flat(),
        after: '1,2,3,4,5,6,7,8,9,10',
      });
    });

    it(`${workerType}: a call aborted as its pool starts leaves the pool working`, async () => {
      // Aborted while its chunk waited for the pool to start, the chunk was kept as given up, and
      // counted busy for ever: the next call never got a worker (at 2 or 3 ticks in, every time).
      const outcome = await withPool(
        workerType,
        `
        await pool.close();
        const nexts = [];
        for (let ticks = 0; ticks < 8; ticks++) {
          const fresh = createPool({ n: 1, workerType: '${workerType}' });
          const controller = new AbortController();
          const first = fresh.map((x) => x + 1, [1, 2, 3], { signal: controller.signal }).catch((e) => e.name);
          for (let tick = 0; tick < ticks; tick++) await Promise.resolve();
          controller.abort();
          await first;
          nexts.push((await fresh.map((x) => x * 2, [1, 2, 3])).join());
          await fresh.close();
        }
        console.log(JSON.stringify(nexts));
      `,
      );
      assert.deepEqual(lastJson(outcome), Array(8).fill('2,4,6'));
    });

    it(`${workerType}: a call aborted while its items never end leaves the pool working`, async () => {
      // Its workers are let finish their current item; one still on it after the grace is stopped.
      const outcome = await withPool(
        workerType,
        `
        const controller = new AbortController();
        const spin = (x) => { if (x < 2) for (;;); return x };
        const started = pool.map(spin, range(4), { chunksize: 1, signal: controller.signal });
        setTimeout(() => controller.abort(), 200);
        const aborted = await started.catch((e) => e.name);
        const next = (await pool.map((x) => x + 1, range(4))).join();
        await pool.close();
        console.log(JSON.stringify({ aborted, next }));
      `,
      );
      assert.deepEqual(lastJson(outcome), { aborted: 'AbortError', next: '1,2,3,4' });
    });

    // Intermittent with threads (about one run in ten here): the aborted call's threads are
    // stopped but not yet gone, workerpool hands the next call's chunks to them, they are lost
    // ("Workerpool Worker terminated Unexpectedly") and the next call never settles; nothing holds
    // the event loop, so the process exits with code 13 (unsettled top-level await). Five rounds
    // per run make it show more often.
    it(`${workerType}: an aborted call leaves the pool working`, {}, async () => {
      const outcome = await withPool(
        workerType,
        `
        const rounds = [];
        for (let round = 0; round < 5; round++) {
          const controller = new AbortController();
          let aborted;
          try {
            // Aborted as the first result arrives, while the endless input keeps the workers busy.
            for await (const _ of pool.map((x) => x, (function* () { for (let i = 0; ; i++) yield i })(), { signal: controller.signal })) controller.abort();
          } catch (e) { aborted = e }
          const values = await pool.map((x) => x * 3, range(10));
          rounds.push([aborted?.name, values.join() === range(10).map((x) => x * 3).join()]);
        }
        await pool.close();
        console.log(JSON.stringify(rounds));
      `,
      );
      assert.deepEqual(lastJson(outcome), Array(5).fill(['AbortError', true]));
    });

    it(`${workerType}: 200 sequential one-item maps on warm workers give the right values`, async () => {
      const outcome = await withPool(
        workerType,
        `
        const wrong = [];
        const workers = new Set();
        for (let i = 0; i < 200; i++) {
          const [[value, who]] = await pool.map((x) => [x * 2, ${WHO}], [i]);
          if (value !== i * 2) wrong.push(i);
          workers.add(who);
        }
        await pool.close();
        console.log(JSON.stringify({ wrong, workers: workers.size }));
      `,
      );
      const { wrong, workers } = lastJson<{ wrong: number[]; workers: number }>(outcome);
      assert.deepEqual(wrong, []);
      assert.ok(workers >= 1 && workers <= 2, `${workers} workers served 200 calls of a 2-worker pool`);
    });

    it(`${workerType}: maps with the same fn and context reuse the same workers and their state`, async () => {
      // Each worker counts on its globalThis the items it ran and the contexts it made: counts that
      // go on from one map to the next show the second map ran on the first map's workers.
      const outcome = await withPool(
        workerType,
        `
        const context = () => (globalThis.contextsMade = (globalThis.contextsMade ?? 0) + 1);
        const fn = (x, contextsMade) => [${WHO}, (globalThis.itemsRun = (globalThis.itemsRun ?? 0) + 1), contextsMade];
        const first = await pool.map(fn, range(30), { chunksize: 1, context });
        const second = await pool.map(fn, range(30), { chunksize: 1, context });
        await pool.close();
        const counts = {};
        for (const [who, itemsRun] of [...first, ...second]) (counts[who] ??= []).push(itemsRun);
        console.log(JSON.stringify({
          workers: Object.keys(counts).length,
          secondOnFirstWorkers: second.every(([who]) => first.some(([w]) => w === who)),
          countsContinue: Object.values(counts).every((runs) => runs.sort((a, b) => a - b).every((run, i) => run === i + 1)),
          contextsMade: [...new Set([...first, ...second].map(([, , made]) => made))],
        }));
      `,
      );
      const report = lastJson<{ workers: number; secondOnFirstWorkers: boolean }>(outcome);
      assert.ok(report.workers >= 1 && report.workers <= 2, JSON.stringify(report));
      assert.deepEqual(report, {
        workers: report.workers,
        secondOnFirstWorkers: true,
        countsContinue: true,
        contextsMade: [1],
      });
    });

    it(`${workerType}: concurrent maps on one pool all complete with correct results`, async () => {
      const outcome = await withPool(
        workerType,
        `
        await pool.map((x) => x, [1, 2]); // warm
        const calls = range(4).map((k) => pool.map((x, k) => x * 100 + k, range(50), { args: [k] }));
        const results = await Promise.all(calls);
        await pool.close();
        console.log(JSON.stringify(results.map((values, k) => values.every((value, i) => value === i * 100 + k))));
      `,
      );
      assert.deepEqual(lastJson(outcome), [true, true, true, true]);
    });
  }

  it('a pool with a context opens one socket per worker across maps and releases them at close', async () => {
    const outcome = await runModule(`
      const { startCounter } = await import(${JSON.stringify(new URL('./fixtures/connection-counter.mjs', import.meta.url).href)});
      const counter = await startCounter();
      const { port } = counter;
      const context = async () => {
        const socket = require('node:net').connect(port, '127.0.0.1');
        await require('node:events').once(socket, 'connect');
        socket.write('open ' + require('node:worker_threads').threadId + '\\n');
        return socket;
      };
      const teardown = (socket) => new Promise((resolve) => socket.end('bye\\n', resolve));
      const pool = createPool({ n: 2 });
      const fn = (x, socket) => { socket.write('item ' + x + '\\n'); return x };
      let correct = true;
      for (let round = 0; round < 3; round++) {
        const values = await pool.map(fn, range(20), { chunksize: 1, context, teardown, scope: { port } });
        correct &&= values.join() === range(20).join();
      }
      await pool.close();
      const allClosed = await counter.allClosed();
      counter.close();
      console.log(JSON.stringify({ correct, allClosed, connections: counter.summary() }));
    `);
    const report = lastJson<{
      correct: boolean;
      allClosed: boolean;
      connections: { opener: string; items: number; bye: boolean }[];
    }>(outcome);
    assert.equal(report.correct, true);
    assert.equal(report.allClosed, true);
    assert.ok(report.connections.length >= 1 && report.connections.length <= 2, JSON.stringify(report));
    assert.equal(new Set(report.connections.map(({ opener }) => opener)).size, report.connections.length);
    assert.equal(
      report.connections.reduce((sum, { items }) => sum + items, 0),
      60,
    );
    assert.ok(
      report.connections.every(({ bye }) => bye),
      JSON.stringify(report),
    );
  });
});
