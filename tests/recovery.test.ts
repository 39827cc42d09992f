/**
 * The rules for a lost chunk (a worker ended while it held some items), as pure functions: no
 * worker is involved. Positions are places within the chunk; a task's tries are what it has been
 * charged so far.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkTimeout,
  culpritOf,
  MAX_DEFERRALS,
  planLoss,
  type TaskTries,
  type TimeoutWatch,
} from '../dist/parmap/scheduler/recovery.js';

const fresh = (positions: number[]): TaskTries => ({ positions, attempts: 0, deferrals: 0 });
const notStarted = { started: 0, timedOutAt: undefined };
const unknown = { started: undefined, timedOutAt: undefined };
/** Item `at` (a place within the task) was running when the worker ended. */
const runningAt = (at: number) => ({ started: at + 1, timedOutAt: undefined });

describe('planLoss: a task whose worker ended before starting it', () => {
  it('is sent again as it was, without blame, while deferrals remain', () => {
    let task = fresh([0, 1, 2]);
    for (let deferral = 1; deferral <= MAX_DEFERRALS; deferral++) {
      const plan = planLoss(task, notStarted, 0);
      assert.deepEqual(plan, { kind: 'retry', tasks: [{ positions: [0, 1, 2], attempts: 0, deferrals: deferral }] });
      task = plan.tasks[0] as TaskTries;
    }
  });

  it('blames the set-up, not an item, once MAX_DEFERRALS deferrals are used up, whatever retries allow', () => {
    // An item that never ran had been named: a context that exits its worker read as item 0's fault.
    const blamed = { kind: 'blame', at: undefined, attempts: MAX_DEFERRALS + 1, tasks: [], beforeStart: true };
    for (const retries of [0, 3]) {
      const single = { positions: [4], attempts: 0, deferrals: MAX_DEFERRALS };
      assert.deepEqual(planLoss(single, notStarted, retries), blamed);
      const several = { positions: [0, 1], attempts: 0, deferrals: MAX_DEFERRALS };
      assert.deepEqual(planLoss(several, notStarted, retries), blamed);
    }
  });

  it('keeps its charged attempts while deferred', () => {
    const task = { positions: [7], attempts: 2, deferrals: 0 };
    assert.deepEqual(planLoss(task, notStarted, 5), {
      kind: 'retry',
      tasks: [{ positions: [7], attempts: 2, deferrals: 1 }],
    });
  });
});

describe('planLoss: the running item is known', () => {
  it('retries the culprit alone and re-runs the items before and after it untouched', () => {
    const plan = planLoss(fresh([10, 11, 12, 13]), runningAt(1), 2);
    assert.deepEqual(plan, {
      kind: 'retry',
      tasks: [
        { positions: [11], attempts: 1, deferrals: 0 },
        { positions: [10], attempts: 0, deferrals: 0 },
        { positions: [12, 13], attempts: 0, deferrals: 0 },
      ],
    });
  });

  it('leaves out an empty side when the culprit is first or last', () => {
    assert.deepEqual(planLoss(fresh([0, 1, 2]), runningAt(0), 1), {
      kind: 'retry',
      tasks: [
        { positions: [0], attempts: 1, deferrals: 0 },
        { positions: [1, 2], attempts: 0, deferrals: 0 },
      ],
    });
    assert.deepEqual(planLoss(fresh([0, 1, 2]), runningAt(2), 1), {
      kind: 'retry',
      tasks: [
        { positions: [2], attempts: 1, deferrals: 0 },
        { positions: [0, 1], attempts: 0, deferrals: 0 },
      ],
    });
  });

  it('blames the culprit with every try counted once retries are used up, and re-runs the others', () => {
    assert.deepEqual(planLoss(fresh([5, 6, 7]), runningAt(1), 0), {
      kind: 'blame',
      at: 1,
      attempts: 1,
      tasks: [
        { positions: [5], attempts: 0, deferrals: 0 },
        { positions: [7], attempts: 0, deferrals: 0 },
      ],
    });
    const retriedTwice = { positions: [6], attempts: 2, deferrals: 0 };
    assert.deepEqual(planLoss(retriedTwice, runningAt(0), 2), { kind: 'blame', at: 0, attempts: 3, tasks: [] });
  });

  it('retries a single item while attempts stay within retries', () => {
    const once = { positions: [3], attempts: 1, deferrals: 0 };
    assert.deepEqual(planLoss(once, unknown, 2), {
      kind: 'retry',
      tasks: [{ positions: [3], attempts: 2, deferrals: 0 }],
    });
  });
});

describe('planLoss: the running item is not known', () => {
  it('with retries 0, blames every item at once', () => {
    assert.deepEqual(planLoss(fresh([0, 1, 2]), unknown, 0), { kind: 'blame', at: undefined, attempts: 1, tasks: [] });
  });

  it('with retries, splits into single-item tasks without charging anyone', () => {
    assert.deepEqual(planLoss(fresh([2, 3, 4]), unknown, 1), {
      kind: 'retry',
      tasks: [
        { positions: [2], attempts: 0, deferrals: 0 },
        { positions: [3], attempts: 0, deferrals: 0 },
        { positions: [4], attempts: 0, deferrals: 0 },
      ],
    });
  });
});

describe('planLoss: a timeout', () => {
  it('names the timed-out item as the culprit even when `started` says otherwise', () => {
    const plan = planLoss(fresh([0, 1, 2, 3]), { started: 4, timedOutAt: 1 }, 0);
    assert.equal(plan.kind, 'blame');
    assert.equal(plan.kind === 'blame' && plan.at, 1);
  });

  it('is never taken for a worker that ended before starting', () => {
    const plan = planLoss(fresh([0, 1]), { started: 0, timedOutAt: 0 }, 0);
    assert.deepEqual(plan, {
      kind: 'blame',
      at: 0,
      attempts: 1,
      tasks: [{ positions: [1], attempts: 0, deferrals: 0 }],
    });
  });
});

describe('culpritOf', () => {
  it('prefers the timed-out item to what `started` says', () => {
    assert.equal(culpritOf(5, { started: 4, timedOutAt: 1 }), 1);
    assert.equal(culpritOf(5, { started: undefined, timedOutAt: 3 }), 3);
  });

  it('is the only item of a single-item task', () => {
    assert.equal(culpritOf(1, unknown), 0);
    assert.equal(culpritOf(1, notStarted), 0);
  });

  it('is the last item started, within the task', () => {
    assert.equal(culpritOf(4, { started: 1, timedOutAt: undefined }), 0);
    assert.equal(culpritOf(4, { started: 3, timedOutAt: undefined }), 2);
    assert.equal(culpritOf(4, { started: 9, timedOutAt: undefined }), 3);
  });

  it('is unknown for several items when nothing started or the count is unknown', () => {
    assert.equal(culpritOf(3, unknown), undefined);
    assert.equal(culpritOf(3, notStarted), undefined);
  });

  it('is unknown while several items overlap, and the running one once only one runs', () => {
    assert.equal(culpritOf(8, { started: 5, oldest: 2, timedOutAt: undefined }), undefined);
    assert.equal(culpritOf(8, { started: 5, oldest: 4, timedOutAt: undefined }), 4);
    assert.equal(culpritOf(8, { started: 5, oldest: 2, timedOutAt: 2 }), 2);
  });
});

describe('checkTimeout', () => {
  const watch = (): TimeoutWatch => ({ seen: 0, seenAt: [], timedOutAt: undefined });
  /** `started` items started one at a time: the last of them is running. */
  const inTurn = (started: number) => ({ started, oldest: started - 1 });

  it('flags the running item once its start is older than the timeout, and only once', () => {
    const state = watch();
    assert.equal(checkTimeout(state, inTurn(2), 10, 100), undefined); // item 1 starts at 10
    assert.equal(checkTimeout(state, inTurn(2), 110, 100), undefined); // exactly the timeout: not past it
    assert.equal(checkTimeout(state, inTurn(2), 111, 100), 1);
    assert.equal(state.timedOutAt, 1);
    assert.equal(checkTimeout(state, inTurn(2), 500, 100), undefined);
    assert.equal(checkTimeout(state, inTurn(3), 1000, 100), undefined);
  });

  it('never flags a task whose first item has not started', () => {
    const state = watch();
    assert.equal(checkTimeout(state, inTurn(0), 10_000, 100), undefined);
    assert.equal(checkTimeout(state, inTurn(0), 1_000_000, 100), undefined);
    assert.equal(state.timedOutAt, undefined);
  });

  it('blames an overlapping item whose synchronous call has run past the timeout, not the older ones it holds up', () => {
    const state = watch();
    // Items 9 to 70 started together; 70's call of fn has not returned, so 9's settled promise
    // cannot deliver: 9 only seems to hang.
    assert.equal(checkTimeout(state, { started: 71, oldest: 9, blocking: 70 }, 0, 100), undefined);
    assert.equal(checkTimeout(state, { started: 71, oldest: 9, blocking: 70 }, 101, 100), 70);
  });

  it('does not blame a synchronous call that began just now: an older item hanging is still the one', () => {
    const state = watch();
    assert.equal(checkTimeout(state, { started: 5, oldest: 2 }, 0, 100), undefined);
    assert.equal(checkTimeout(state, { started: 6, oldest: 2, blocking: 5 }, 90, 100), undefined);
    assert.equal(checkTimeout(state, { started: 6, oldest: 2, blocking: 5 }, 101, 100), 2);
  });

  it('restarts the clock whenever another item starts', () => {
    const state = watch();
    assert.equal(checkTimeout(state, inTurn(1), 0, 100), undefined);
    assert.equal(checkTimeout(state, inTurn(2), 90, 100), undefined);
    assert.equal(checkTimeout(state, inTurn(3), 180, 100), undefined);
    assert.equal(checkTimeout(state, inTurn(3), 250, 100), undefined);
    assert.equal(checkTimeout(state, inTurn(3), 281, 100), 2);
  });

  it('with overlapping items, times the oldest one still running from its own start', () => {
    const state = watch();
    assert.equal(checkTimeout(state, { started: 3, oldest: 0 }, 0, 100), undefined); // items 0-2 start
    assert.equal(checkTimeout(state, { started: 5, oldest: 1 }, 60, 100), undefined); // 0 ends, 3-4 start
    // Item 1 has been the oldest only since 60, but it started at 0: past the timeout at 101.
    assert.equal(checkTimeout(state, { started: 5, oldest: 1 }, 101, 100), 1);
  });

  it('with overlapping items, never flags once none is running', () => {
    const state = watch();
    assert.equal(checkTimeout(state, { started: 2, oldest: 0 }, 0, 100), undefined);
    assert.equal(checkTimeout(state, { started: 2, oldest: 2 }, 1000, 100), undefined);
    assert.equal(state.timedOutAt, undefined);
  });

  it('does nothing when the executor cannot tell what started', () => {
    const state = watch();
    assert.equal(checkTimeout(state, inTurn(1), 0, 100), undefined);
    assert.equal(checkTimeout(state, undefined, 1000, 100), undefined);
    assert.equal(state.timedOutAt, undefined);
  });
});
