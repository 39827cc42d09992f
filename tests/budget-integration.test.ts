/**
 * The process-wide worker budget, seen from outside: many calls at once share the budget's workers
 * (counted as the process's threads), a budget of 1 still runs concurrent calls, and calls nested
 * in or chained to other calls take turns instead of deadlocking. Each scenario runs in a process
 * of its own that must end by itself.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fixture, lastJson, runModule, runNode } from './fixtures/integration-child.js';

describe('worker budget: many calls share a few workers', () => {
  it('50 concurrent calls never run more threads than the budget allows, and all are correct', {
    skip: existsSync('/proc/self/status') ? false : 'needs /proc/self/status (Linux)',
  }, async () => {
    const report = lastJson<{ baseline: number; peak: number; samples: number; budget: number; correct: boolean }>(
      await runNode([fixture('thread-count-scenario.mjs')]),
    );
    assert.equal(report.correct, true);
    assert.equal(report.samples, 500, 'one sample per result');
    // One thread per worker the budget grants. The allowance covers workers lent back between
    // calls (see Lease.onPressure): such a worker's thread either stays idle for a moment in case
    // its call gets workers again (at most one such thread per budget slot in the whole process),
    // or is told to stop and exits a moment later, while the call it was lent to may already have
    // started its own. Without the budget, 50 calls would start 100.
    const allowance = 2 * report.budget;
    assert.ok(
      report.peak <= report.baseline + report.budget + allowance,
      `${report.peak} threads at the peak; baseline ${report.baseline}, budget ${report.budget}`,
    );
  });

  it('setWorkerBudget(1): two concurrent calls both complete with correct results', async () => {
    const outcome = await runModule(`
      setWorkerBudget(1);
      const [a, b] = await Promise.all([parmap((x) => x + 1, range(200)), parmap((x) => x * 2, range(200), { workerType: 'process' })]);
      console.log(JSON.stringify([a.join() === range(200).map((x) => x + 1).join(), b.join() === range(200).map((x) => x * 2).join()]));
    `);
    assert.deepEqual(lastJson(outcome), [true, true]);
  });

  it('setWorkerBudget refuses a budget that is not a positive integer', async () => {
    const { setWorkerBudget } = await import('../dist/index.js');
    for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => setWorkerBudget(bad), RangeError);
  });
});

describe('worker budget: no deadlock when calls wait on each other', () => {
  for (const budget of ['default', 1] as const) {
    const setBudget = budget === 'default' ? '' : `setWorkerBudget(${budget});`;

    it(`a call inside the loop body of another call's for await completes (budget ${budget})`, async () => {
      const outcome = await runModule(`
        ${setBudget}
        const out = [];
        for await (const x of parmap((x) => x * 2, range(20))) out.push(...(await parmap((y) => y + 1, [x])));
        console.log(JSON.stringify(out.join() === range(20).map((x) => x * 2 + 1).join()));
      `);
      assert.equal(lastJson(outcome), true);
    });

    it(`a chain parmap(g, parmap(f, xs)) completes (budget ${budget})`, async () => {
      const outcome = await runModule(`
        ${setBudget}
        const values = await parmap((y) => y + 1, parmap((x) => x * 2, range(1000)));
        console.log(JSON.stringify(values.join() === range(1000).map((x) => x * 2 + 1).join()));
      `);
      assert.equal(lastJson(outcome), true);
    });

    it(`a call over a fresh pool's results, and over an async generator awaiting calls, complete (budget ${budget})`, async () => {
      // Each waits for another call's workers before it has anything to send: holding workers
      // it cannot use yet would leave the other call waiting for ever.
      const outcome = await runModule(`
        ${setBudget}
        const pool = createPool({ n: 2 });
        const overPool = await parmap((y) => y + 1, pool.map((x) => x * 2, [1, 2, 3]));
        await pool.close();
        async function* awaited() { for (const x of [1, 2, 3]) yield (await parmap((y) => y * 4, [x]))[0]; }
        const overGenerator = await parmap((y) => y + 16, awaited());
        console.log(JSON.stringify([overPool, overGenerator]));
      `);
      assert.deepEqual(lastJson(outcome), [
        [3, 5, 7],
        [20, 24, 28],
      ]);
    });
  }
});

describe('worker budget: a pool call with nothing to send does not hold up the calls behind it', () => {
  // A call asks for a worker when it has room to send but none is free, and waits in its pool's
  // line. An array's end is found only when there is room for the next chunk, so a call can ask
  // with nothing left to send; offered a worker, it sent nothing and stayed first in line, its
  // results unread, and the call being read behind it never got the free worker.

  it('offered a free worker when another call finishes a chunk', async () => {
    // One worker: `second` asks while `first`'s only chunk runs; when that chunk is done, `first`
    // asks too (to find its end), behind `second`, and is offered the worker when `second`'s first
    // chunk is done.
    const outcome = await runModule(`
      const pool = createPool({ n: 1 });
      const first = pool.map((x) => x + 1, [0])[Symbol.asyncIterator]();
      const second = pool.map((x) => x * 2, range(3), { chunksize: 1 })[Symbol.asyncIterator]();
      const firstResult = first.next();
      const secondResults = [];
      for (let step = await second.next(); !step.done; step = await second.next()) secondResults.push(step.value);
      console.log(JSON.stringify([(await firstResult).value, secondResults]));
      await pool.close();
    `);
    assert.deepEqual(lastJson(outcome), [1, [0, 2, 4]]);
  });

  it('offered the worker its pool gets back after lending it', async () => {
    // A budget of 1: the pool lends its worker to `other`, whose fn holds it until both pool
    // calls wait in line, `first` (all its chunks sent) ahead of `second`; `other` then ends
    // and the pool gets the worker back.
    const outcome = await runModule(`
      setWorkerBudget(1);
      const pool = createPool({ n: 1 });
      const first = pool.map((x) => x, range(3), { chunksize: 1 })[Symbol.asyncIterator]();
      const second = pool.map((x) => x * 2, range(3), { chunksize: 1 })[Symbol.asyncIterator]();
      // [0]: other may return; [1]: other's fn runs.
      const signals = new Int32Array(new SharedArrayBuffer(8));
      const firstResults = [(await first.next()).value];
      const other = parmap((x, signals) => {
        Atomics.store(signals, 1, 1);
        Atomics.notify(signals, 1);
        Atomics.wait(signals, 0, 0);
        return x + 10;
      }, [0], { args: [signals] }).then((values) => values);
      const running = Atomics.waitAsync(signals, 1, 0);
      if (running.async) await running.value;
      firstResults.push((await first.next()).value);
      const secondStep = second.next();
      Atomics.store(signals, 0, 1);
      Atomics.notify(signals, 0);
      const otherResults = await other;
      const secondResults = [];
      for (let step = await secondStep; !step.done; step = await second.next()) secondResults.push(step.value);
      console.log(JSON.stringify([firstResults, otherResults, secondResults]));
      await pool.close();
    `);
    assert.deepEqual(lastJson(outcome), [[0, 1], [10], [0, 2, 4]]);
  });
});

describe('SharedArrayBuffer: shared with thread workers, not copied', () => {
  it('fn writes into a Float64Array over a SharedArrayBuffer passed in args; the caller sees it', async () => {
    const outcome = await runModule(`
      const shared = new Float64Array(new SharedArrayBuffer(8 * 100));
      const returned = await parmap((i, out) => { out[i] = i * 1.5; return out.buffer instanceof SharedArrayBuffer }, range(100), { n: 2, args: [shared] });
      console.log(JSON.stringify({ shared: returned.every(Boolean), seen: Array.from(shared).every((value, i) => value === i * 1.5) }));
    `);
    assert.deepEqual(lastJson(outcome), { shared: true, seen: true });
  });

  it('the same through scope', async () => {
    const outcome = await runModule(`
      const shared = new Float64Array(new SharedArrayBuffer(8 * 100));
      await parmap((i) => { out[i] = i + 0.25 }, range(100), { n: 2, scope: { out: shared } });
      console.log(JSON.stringify(Array.from(shared).every((value, i) => value === i + 0.25)));
    `);
    assert.equal(lastJson(outcome), true, 'the writes fn made through a scope value did not reach the caller');
  });
});
