/**
 * The process-wide worker budget, on its own: leases, grants, waiting and lending back. Each test
 * uses a fresh budget, so nothing here touches the one parmap calls share.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Lease, setWorkerBudget, WorkerBudget, workerBudget } from '../dist/parmap/executors/budget.js';

function budgetOf(size: number): WorkerBudget {
  const budget = new WorkerBudget();
  budget.setSize(size);
  return budget;
}

/** Leases `wanted` workers, counting the grants it is told of. */
function lease(budget: WorkerBudget, wanted: number): Lease & { grants: number } {
  const counter = { grants: 0 };
  const taken = budget.lease(wanted, () => {
    counter.grants++;
  });
  return Object.assign(taken, {
    get grants() {
      return counter.grants;
    },
  });
}

describe('worker budget', () => {
  it('grants a lease what is free, up to what it wants', () => {
    const budget = budgetOf(4);
    const a = lease(budget, 3);
    assert.equal(a.granted, 3);
    assert.equal(a.grants, 1);
    const b = lease(budget, 3);
    assert.equal(b.granted, 1);
    const c = lease(budget, 2);
    assert.equal(c.granted, 0);
    assert.equal(c.grants, 0);
  });

  it('makes a lease that finds none wait, and grants waiters in the order they asked', () => {
    const budget = budgetOf(1);
    const a = lease(budget, 1);
    const b = lease(budget, 1);
    const c = lease(budget, 1);
    assert.deepEqual([a.granted, b.granted, c.granted], [1, 0, 0]);
    a.release();
    assert.deepEqual([a.granted, b.granted, c.granted], [0, 1, 0]);
    b.release();
    assert.deepEqual([b.granted, c.granted], [0, 1]);
  });

  it('gives a starved lease one worker before others get extras', () => {
    const budget = budgetOf(3);
    const a = lease(budget, 1);
    const b = lease(budget, 3); // gets 2, wants one more
    const c = lease(budget, 2); // gets none
    assert.deepEqual([a.granted, b.granted, c.granted], [1, 2, 0]);
    a.release();
    assert.deepEqual([b.granted, c.granted], [2, 1]);
  });

  it('hands out extras in order once every lease has one', () => {
    const budget = budgetOf(2);
    const a = lease(budget, 2);
    const b = lease(budget, 2);
    const c = lease(budget, 2);
    assert.deepEqual([a.granted, b.granted, c.granted], [2, 0, 0]);
    a.release();
    assert.deepEqual([b.granted, c.granted], [1, 1]);
    c.release();
    assert.equal(b.granted, 2);
  });

  it('tells holders of pressure when a lease starves, and not otherwise', () => {
    const budget = budgetOf(2);
    const a = lease(budget, 1);
    let pressured = 0;
    a.onPressure = () => {
      pressured++;
    };
    lease(budget, 1);
    assert.equal(pressured, 0);
    lease(budget, 1);
    assert.equal(pressured, 1);
    assert.equal(budget.hasStarvedLease, true);
  });

  it('lets a holder lend its workers back from onPressure, so the starved lease starts', () => {
    const budget = budgetOf(1);
    const a = lease(budget, 1);
    a.onPressure = () => a.release();
    const b = lease(budget, 1);
    assert.equal(a.granted, 0);
    assert.equal(b.granted, 1);
    assert.equal(budget.hasStarvedLease, false);
  });

  it('resolves ready() once a worker is granted', { timeout: 5000 }, async () => {
    const budget = budgetOf(1);
    const a = lease(budget, 1);
    await a.ready();
    const b = lease(budget, 1);
    let ready = false;
    const waiting = b.ready().then(() => {
      ready = true;
    });
    await Promise.resolve();
    assert.equal(ready, false);
    a.release();
    await waiting;
    assert.equal(b.granted, 1);
  });

  it('grants more when the size grows', () => {
    const budget = budgetOf(1);
    const a = lease(budget, 3);
    assert.equal(a.granted, 1);
    budget.setSize(3);
    assert.equal(a.granted, 3);
  });

  it('never grants more than its size in total, nor a lease more than it wants', () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('lease' as const), wanted: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ kind: fc.constant('release' as const), which: fc.nat() }),
      fc.record({ kind: fc.constant('lendOnPressure' as const), which: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(step, { maxLength: 40 }), (size, steps) => {
        const budget = budgetOf(size);
        const live: Lease[] = [];
        const check = () => {
          const total = live.reduce((sum, held) => sum + held.granted, 0);
          assert.ok(total <= size, `granted ${total} of ${size}`);
          for (const held of live) assert.ok(held.granted <= held.wanted, `granted ${held.granted} of ${held.wanted}`);
          // Nothing free is left idle while some lease wants more.
          if (total < size) for (const held of live) assert.equal(held.granted, held.wanted);
          assert.equal(
            budget.hasStarvedLease,
            live.some((held) => held.granted === 0),
          );
        };
        for (const action of steps) {
          if (action.kind === 'lease') {
            live.push(budget.lease(action.wanted, () => {}));
          } else if (live.length > 0) {
            const held = live[action.which % live.length] as Lease;
            if (action.kind === 'release') {
              live.splice(live.indexOf(held), 1);
              held.release();
            } else {
              held.onPressure = () => {
                if (live.includes(held)) {
                  live.splice(live.indexOf(held), 1);
                  held.release();
                }
              };
            }
          }
          check();
        }
      }),
      { seed: 20240601, numRuns: 300 },
    );
  });
});

describe('setWorkerBudget', () => {
  it('rejects sizes that are not positive integers with a RangeError', () => {
    for (const size of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      assert.throws(() => setWorkerBudget(size), RangeError, String(size));
    }
    assert.throws(() => setWorkerBudget('2' as unknown as number), RangeError);
  });

  it('sets the shared budget', () => {
    const before = workerBudget.size;
    try {
      setWorkerBudget(3);
      assert.equal(workerBudget.size, 3);
    } finally {
      setWorkerBudget(before);
    }
  });
});
