/**
 * The scheduler's run loop, driven by a fake executor: the test decides when each chunk's outcome
 * arrives and what it is, so ordering, recovery and failure rules are checked without a worker.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AbortError, ParmapTaskError, ParmapWorkerError } from '../dist/parmap/errors.js';
import type {
  ChunkOutcome,
  ChunkTask,
  Executor,
  ExecutorListener,
  ItemsStarted,
  WorkerEnding,
} from '../dist/parmap/executors/executor.js';
import { resolveOptions } from '../dist/parmap/front/options.js';
import { takeInput } from '../dist/parmap/scheduler/input.js';
import { MAX_DEFERRALS } from '../dist/parmap/scheduler/recovery.js';
import { LazyResult } from '../dist/parmap/scheduler/result.js';
import { CallRun } from '../dist/parmap/scheduler/run.js';

/** What the fake "runs": results are easy to tell from their items. */
const f = (x: unknown) => (x as number) * 10;

/** An executor that runs nothing: it records chunks and the test tells their outcomes. */
class FakeExecutor implements Executor {
  capacity: number;
  readonly stoppable = false;
  readonly submitted: ChunkTask[] = [];
  readonly pending = new Map<number, ChunkTask>();
  closeCalls = 0;
  /** Calls to want() made while capacity was 0. */
  wantsAtZero = 0;
  private listener: ExecutorListener | undefined;
  private submitWaiters: (() => void)[] = [];
  private wantWaiters: (() => void)[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  attach(listener: ExecutorListener): this {
    this.listener = listener;
    return this;
  }

  get told(): ExecutorListener {
    assert.ok(this.listener, 'the run has not made its executor yet');
    return this.listener;
  }

  want(): void {
    if (this.capacity === 0) this.wantsAtZero++;
    for (const wake of this.wantWaiters.splice(0)) wake();
  }

  submit(task: ChunkTask): void {
    this.submitted.push(task);
    this.pending.set(task.id, task);
    for (const wake of this.submitWaiters.splice(0)) wake();
  }

  started(): ItemsStarted | undefined {
    return undefined;
  }

  stop(): void {}

  hold(): void {}

  close(): Promise<void> {
    this.closeCalls++;
    return Promise.resolve();
  }

  /** Resolves at the next submit. */
  nextSubmission(): Promise<void> {
    return new Promise((resolve) => this.submitWaiters.push(resolve));
  }

  /** Resolves once `count` chunks have been submitted in all; returns them. */
  async submissions(count: number): Promise<ChunkTask[]> {
    while (this.submitted.length < count) await this.nextSubmission();
    return this.submitted.slice(0, count);
  }

  /** Resolves once want() has been called with capacity 0. */
  async wanted(): Promise<void> {
    while (this.wantsAtZero === 0) await new Promise<void>((resolve) => this.wantWaiters.push(resolve));
  }

  tell(id: number, outcome: ChunkOutcome): void {
    assert.ok(this.pending.delete(id), `chunk ${id} is not pending`);
    this.told.outcome(id, outcome);
  }

  complete(id: number): void {
    const task = this.pending.get(id) as ChunkTask;
    this.tell(id, { kind: 'done', values: task.items.map(f), ms: 1 });
  }

  /** The worker ended after `started` items had started, one at a time (`undefined`: not known). */
  lose(id: number, started: number | undefined, ending: WorkerEnding = { exitCode: 1 }): void {
    this.tell(id, {
      kind: 'lost',
      ending,
      started: started === undefined ? undefined : { started, oldest: started - 1 },
    });
  }

  /** fn threw for item `at`; the chunk sends the results before it along. */
  throwAt(id: number, at: number, thrown: unknown = new Error('boom')): void {
    const task = this.pending.get(id) as ChunkTask;
    this.tell(id, { kind: 'threw', at, thrown, before: Array.from(task.items.slice(0, at)).map(f) });
  }

  /** Completes chunks in submission order as they come, until `until` settles. */
  async completeAll(until: Promise<unknown>): Promise<void> {
    let over = false;
    void until.then(
      () => {
        over = true;
      },
      () => {
        over = true;
      },
    );
    for (;;) {
      const next = this.pending.keys().next();
      if (!next.done) {
        this.complete(next.value);
        continue;
      }
      await Promise.race([this.nextSubmission(), until.then(noop, noop)]);
      if (over) return;
    }
  }
}

const noop = () => {};

function call(items: Iterable<unknown> | AsyncIterable<unknown>, options: object, capacity = 8) {
  const fake = new FakeExecutor(capacity);
  const job = resolveOptions((x: unknown) => x, items, options);
  const result = new LazyResult<unknown>(
    (streaming: boolean) => new CallRun(takeInput(items), job, (listener) => fake.attach(listener), streaming),
    job.total,
  );
  return { fake, result };
}

type Settled = { values: unknown[]; error: unknown; failed: boolean };

/** Awaits a result, never rejecting. */
function settle(result: PromiseLike<unknown[]>): Promise<Settled> {
  return Promise.resolve(result).then(
    (values) => ({ values, error: undefined, failed: false }),
    (error: unknown) => ({ values: [], error, failed: true }),
  );
}

/** Reads a result with `for await`, keeping what came before an error. */
async function stream(result: AsyncIterable<unknown>): Promise<Settled> {
  const values: unknown[] = [];
  try {
    for await (const value of result) values.push(value);
  } catch (error) {
    return { values, error, failed: true };
  }
  return { values, error: undefined, failed: false };
}

const range = (count: number) => Array.from({ length: count }, (_, i) => i);

describe('run: order of results', () => {
  it('gives results in input order when ordered, even when chunks finish in reverse', { timeout: 5000 }, async () => {
    const { fake, result } = call(range(6), { chunksize: 2 });
    const settled = settle(result);
    const chunks = await fake.submissions(3);
    for (const chunk of [...chunks].reverse()) fake.complete(chunk.id);
    assert.deepEqual(await settled, { values: [0, 10, 20, 30, 40, 50], error: undefined, failed: false });
  });

  it('streams results in input order with for await, even when chunks finish in reverse', {
    timeout: 5000,
  }, async () => {
    const { fake, result } = call(range(6), { chunksize: 2 });
    const streamed = stream(result);
    const chunks = await fake.submissions(3);
    for (const chunk of [...chunks].reverse()) fake.complete(chunk.id);
    assert.deepEqual((await streamed).values, [0, 10, 20, 30, 40, 50]);
  });

  it('gives results in completion order with ordered: false', { timeout: 5000 }, async () => {
    const { fake, result } = call(range(6), { chunksize: 2, ordered: false });
    const settled = settle(result);
    const [first, second, third] = (await fake.submissions(3)) as [ChunkTask, ChunkTask, ChunkTask];
    fake.complete(third.id);
    fake.complete(first.id);
    fake.complete(second.id);
    assert.deepEqual((await settled).values, [40, 50, 0, 10, 20, 30]);
  });

  it('gives every item exactly once, whatever the chunk sizes, completion order and lost chunks', {
    timeout: 60_000,
  }, async () => {
    const step = fc.record({
      pick: fc.nat(),
      // A lost chunk, with how many of its items had started (undefined: not known).
      loss: fc.option(fc.option(fc.nat({ max: 6 }), { nil: undefined }), { nil: null, freq: 3 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 40 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        fc.array(step, { maxLength: 80 }),
        async (xs, chunksize, capacity, ordered, script) => {
          // At most MAX_LOSSES losses, each charging at most one try: no item runs out of retries.
          const MAX_LOSSES = 10;
          const { fake, result } = call(xs, { chunksize, ordered, retries: MAX_LOSSES }, capacity);
          const settled = settle(result);
          let over = false;
          void settled.then(() => {
            over = true;
          });
          let losses = 0;
          for (let at = 0; !over; at++) {
            const ids = [...fake.pending.keys()];
            if (ids.length === 0) {
              await Promise.race([fake.nextSubmission(), settled]);
              continue;
            }
            const { pick = 0, loss = null } = script[at] ?? {};
            const id = ids[pick % ids.length] as number;
            const task = fake.pending.get(id) as ChunkTask;
            assert.equal(task.items[0], xs[task.start], 'a chunk starts at its first item');
            if (loss !== null && losses < MAX_LOSSES) {
              losses++;
              fake.lose(id, loss);
            } else {
              fake.complete(id);
            }
            if (at % 3 === 0) await Promise.resolve();
          }
          const { values, error } = await settled;
          assert.equal(error, undefined);
          const expected = xs.map(f);
          if (ordered) assert.deepEqual(values, expected);
          else assert.deepEqual([...values].sort(byNumber), [...expected].sort(byNumber));
        },
      ),
      { seed: 1_234_567, numRuns: 300 },
    );
  });
});

const byNumber = (a: unknown, b: unknown) => (a as number) - (b as number);

describe('run: onError return, property', () => {
  it("with onError: 'return', gives each item its result or its own error, exactly once", {
    timeout: 60_000,
  }, async () => {
    const event = fc.oneof(
      { arbitrary: fc.constant({ kind: 'complete' as const }), weight: 4 },
      { arbitrary: fc.record({ kind: fc.constant('throw' as const), at: fc.nat() }), weight: 1 },
      {
        arbitrary: fc.record({
          kind: fc.constant('lose' as const),
          started: fc.option(fc.nat({ max: 6 }), { nil: undefined }),
        }),
        weight: 1,
      },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 30 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        fc.array(fc.record({ pick: fc.nat(), event }), { maxLength: 80 }),
        async (count, chunksize, capacity, ordered, script) => {
          const MAX_LOSSES = 10;
          // Items are their own input index, so the fake can name any item it holds.
          const xs = range(count);
          const { fake, result } = call(xs, { chunksize, ordered, retries: MAX_LOSSES, onError: 'return' }, capacity);
          const settled = settle(result);
          let over = false;
          void settled.then(() => {
            over = true;
          });
          const threw = new Set<number>();
          let losses = 0;
          for (let at = 0; !over; at++) {
            const ids = [...fake.pending.keys()];
            if (ids.length === 0) {
              await Promise.race([fake.nextSubmission(), settled]);
              continue;
            }
            const { pick = 0, event = { kind: 'complete' } } = script[at] ?? {};
            const id = ids[pick % ids.length] as number;
            const task = fake.pending.get(id) as ChunkTask;
            if (event.kind === 'throw') {
              const place = event.at % task.items.length;
              threw.add(task.items[place] as number);
              fake.throwAt(id, place);
            } else if (event.kind === 'lose' && losses < MAX_LOSSES) {
              losses++;
              fake.lose(id, event.started);
            } else {
              fake.complete(id);
            }
            if (at % 3 === 0) await Promise.resolve();
          }
          const { values, error } = await settled;
          assert.equal(error, undefined);
          assert.equal(values.length, count);
          const indexOf = (value: unknown) => (value instanceof ParmapTaskError ? value.index : (value as number) / 10);
          const indices = values.map(indexOf);
          if (ordered) assert.deepEqual(indices, xs);
          else assert.deepEqual([...indices].sort(byNumber), xs);
          for (const value of values) {
            const index = indexOf(value);
            assert.equal(value instanceof ParmapTaskError, threw.has(index), `item ${index}`);
          }
        },
      ),
      { seed: 7_654_321, numRuns: 300 },
    );
  });
});

describe('run: lost chunks', () => {
  it('sends a chunk whose worker never started it again, as it was, without blame', { timeout: 5000 }, async () => {
    const { fake, result } = call([1, 2, 3], { chunksize: 3 }, 1);
    const settled = settle(result);
    for (let loss = 0; loss < MAX_DEFERRALS; loss++) {
      const chunk = (await fake.submissions(loss + 1))[loss] as ChunkTask;
      fake.lose(chunk.id, 0);
    }
    const [first, ...again] = await fake.submissions(MAX_DEFERRALS + 1);
    for (const chunk of again) assert.deepEqual([chunk.start, chunk.items], [first?.start, first?.items]);
    fake.complete((again.at(-1) as ChunkTask).id);
    assert.deepEqual((await settled).values, [10, 20, 30]);
  });

  it('fails with a ParmapWorkerError once a never-started chunk has been deferred too often', {
    timeout: 5000,
  }, async () => {
    const { fake, result } = call([7], {}, 1);
    const settled = settle(result);
    for (let loss = 0; loss <= MAX_DEFERRALS; loss++) {
      const chunk = (await fake.submissions(loss + 1))[loss] as ChunkTask;
      fake.lose(chunk.id, 0);
    }
    const { error } = await settled;
    assert.ok(error instanceof ParmapWorkerError);
    // No item ran: the error names none, and says the set-up ends the workers.
    assert.equal(error.index, undefined);
    assert.deepEqual(error.indices, [0]);
    assert.match(error.message, /before starting any item .*on each of 4 tries/);
    assert.equal(fake.submitted.length, MAX_DEFERRALS + 1);
  });

  it('with retries: 1, re-runs the items of a lost chunk and gives every result', { timeout: 5000 }, async () => {
    const { fake, result } = call([1, 2, 3], { chunksize: 3, retries: 1 }, 1);
    const settled = settle(result);
    const [chunk] = (await fake.submissions(1)) as [ChunkTask];
    fake.lose(chunk.id, undefined);
    // The running item is not known: each item runs again alone.
    await fake.completeAll(settled);
    assert.deepEqual(
      fake.submitted.slice(1).map((task) => [task.start, task.items]),
      [
        [0, [1]],
        [1, [2]],
        [2, [3]],
      ],
    );
    assert.deepEqual((await settled).values, [10, 20, 30]);
  });

  it('with retries: 1, retries the item that was running alone and the others untouched', {
    timeout: 5000,
  }, async () => {
    const { fake, result } = call([1, 2, 3], { chunksize: 3, retries: 1 }, 3);
    const settled = settle(result);
    const [chunk] = (await fake.submissions(1)) as [ChunkTask];
    fake.lose(chunk.id, 2);
    const again = await fake.submissions(4);
    assert.deepEqual(
      again.slice(1).map((task) => [task.start, task.items]),
      [
        [1, [2]],
        [0, [1]],
        [2, [3]],
      ],
    );
    await fake.completeAll(settled);
    assert.deepEqual((await settled).values, [10, 20, 30]);
  });

  it('with retries: 0, fails with a ParmapWorkerError naming the item that was running', {
    timeout: 5000,
  }, async () => {
    const { fake, result } = call(range(6), { chunksize: 3 }, 2);
    const settled = settle(result);
    const [first, second] = (await fake.submissions(2)) as [ChunkTask, ChunkTask];
    fake.complete(first.id);
    fake.lose(second.id, 2);
    const { error } = await settled;
    assert.ok(error instanceof ParmapWorkerError);
    assert.equal(error.index, 4);
    assert.deepEqual(error.indices, [3, 4, 5]);
  });

  it("with onError: 'return', puts the worker's error in the lost item's place and re-runs the others", {
    timeout: 5000,
  }, async () => {
    const { fake, result } = call([1, 2, 3], { chunksize: 3, onError: 'return' }, 2);
    const settled = settle(result);
    const [chunk] = (await fake.submissions(1)) as [ChunkTask];
    fake.lose(chunk.id, 2);
    await fake.completeAll(settled);
    const { values } = await settled;
    assert.deepEqual([values[0], values[2]], [10, 30]);
    assert.ok(values[1] instanceof ParmapWorkerError);
    assert.equal(values[1].index, 1);
    assert.equal(values[1].attempts, 1);
  });

  it("with onError: 'return' and the lost item unknown, gives every item of the chunk the worker's error", {
    timeout: 5000,
  }, async () => {
    const { fake, result } = call(range(4), { chunksize: 2, onError: 'return' }, 2);
    const settled = settle(result);
    const [first, second] = (await fake.submissions(2)) as [ChunkTask, ChunkTask];
    fake.lose(first.id, undefined);
    fake.complete(second.id);
    const { values } = await settled;
    assert.deepEqual(values.slice(2), [20, 30]);
    for (const value of values.slice(0, 2)) {
      assert.ok(value instanceof ParmapWorkerError);
      assert.equal(value.index, undefined);
      assert.deepEqual(value.indices, [0, 1]);
    }
  });

  it('in an ordered stream, yields the items before a lost item before the error', {
    timeout: 5000,
  }, async () => {
    const { fake, result } = call([1, 2, 3], { chunksize: 3 }, 1);
    const streamed = stream(result);
    const [chunk] = (await fake.submissions(1)) as [ChunkTask];
    fake.lose(chunk.id, 2); // item 1 was running; item 0 had finished, its result died with the worker
    // Item 0 should be sent again, alone, and its result yielded before the error.
    await Promise.race([fake.submissions(2), streamed]);
    assert.equal(fake.submitted.length, 2, 'item 0 was not sent again');
    assert.deepEqual((fake.submitted[1] as ChunkTask).items, [1]);
    fake.complete((fake.submitted[1] as ChunkTask).id);
    const { values, error } = await streamed;
    assert.deepEqual(values, [10]);
    assert.ok(error instanceof ParmapWorkerError);
  });

  it('in an ordered stream with retries, yields the items before a lost item though its retry dies first', {
    timeout: 5000,
  }, async () => {
    // Lost once, the chunk is split: item 1 (running) alone, items 0 and 2 as others. When item 1
    // dies again before item 0's new result is in, item 0 is still owed, and its place must wait.
    const { fake, result } = call([1, 2, 3], { chunksize: 3, retries: 1 }, 3);
    const streamed = stream(result);
    const [chunk] = (await fake.submissions(1)) as [ChunkTask];
    fake.lose(chunk.id, 2);
    const [, alone, first] = (await fake.submissions(3)) as [ChunkTask, ChunkTask, ChunkTask];
    assert.deepEqual([alone.items, first.items], [[2], [1]]);
    fake.lose(alone.id, 1);
    // The caller reads on meanwhile: item 0's place must hold the stream until it is filled.
    await Promise.race([streamed, new Promise((resolve) => setImmediate(resolve))]);
    if (fake.pending.has(first.id)) fake.complete(first.id);
    const { values, error } = await streamed;
    assert.deepEqual(values, [10]);
    assert.ok(error instanceof ParmapWorkerError);
    assert.equal(error.index, 1);
  });
});

describe('run: failing items', () => {
  it('fails with a ParmapTaskError naming the input index of the item', { timeout: 5000 }, async () => {
    const { fake, result } = call(range(9), { chunksize: 3 }, 3);
    const settled = settle(result);
    const [first, second, third] = (await fake.submissions(3)) as [ChunkTask, ChunkTask, ChunkTask];
    const cause = new Error('bad item');
    fake.throwAt(second.id, 1, cause);
    fake.complete(first.id);
    fake.complete(third.id);
    const { error } = await settled;
    assert.ok(error instanceof ParmapTaskError);
    assert.equal(error.index, 4);
    assert.equal(error.cause, cause);
  });

  it('names the input index of an item of a chunk that was split after a loss', { timeout: 5000 }, async () => {
    const { fake, result } = call(range(6), { chunksize: 3, retries: 1 }, 4);
    const settled = settle(result);
    const [first, second] = (await fake.submissions(2)) as [ChunkTask, ChunkTask];
    fake.complete(first.id);
    fake.lose(second.id, 2); // item 4 was running: [4], [3] and [5] run again
    const after = (await fake.submissions(5)).find((task) => task.start === 5) as ChunkTask;
    fake.throwAt(after.id, 0);
    const { error } = await settled;
    assert.ok(error instanceof ParmapTaskError);
    assert.equal(error.index, 5);
  });

  it('in an ordered stream, yields earlier results before the error, even when the failure arrives first', {
    timeout: 5000,
  }, async () => {
    const { fake, result } = call(range(9), { chunksize: 3 }, 3);
    const streamed = stream(result);
    const [first, second, third] = (await fake.submissions(3)) as [ChunkTask, ChunkTask, ChunkTask];
    fake.throwAt(second.id, 1);
    fake.complete(third.id);
    fake.complete(first.id);
    const { values, error } = await streamed;
    assert.deepEqual(values, [0, 10, 20, 30]);
    assert.ok(error instanceof ParmapTaskError);
    assert.equal(error.index, 4);
  });

  it("with onError: 'return', puts the error in its item's place and goes on", { timeout: 5000 }, async () => {
    const { fake, result } = call(range(6), { chunksize: 3, onError: 'return' }, 2);
    const settled = settle(result);
    const [first, second] = (await fake.submissions(2)) as [ChunkTask, ChunkTask];
    const cause = new Error('bad item');
    fake.tell(first.id, { kind: 'done', values: [0, undefined, 20], ms: 1, localFailures: [{ at: 1, thrown: cause }] });
    fake.complete(second.id);
    const { values, failed } = await settled;
    assert.equal(failed, false);
    assert.ok(values[1] instanceof ParmapTaskError);
    assert.equal(values[1].index, 1);
    assert.equal(values[1].cause, cause);
    assert.deepEqual([values[0], ...values.slice(2)], [0, 20, 30, 40, 50]);
  });

  it("with onError: 'return', a chunk that stopped at a failing item runs its other items again", {
    timeout: 5000,
  }, async () => {
    const { fake, result } = call(range(3), { chunksize: 3, onError: 'return' }, 1);
    const settled = settle(result);
    const [chunk] = (await fake.submissions(1)) as [ChunkTask];
    fake.throwAt(chunk.id, 1);
    await fake.completeAll(settled);
    // Sent again as runs of consecutive items, each with its own start.
    assert.deepEqual(
      fake.submitted.slice(1).map((task) => [task.start, task.items]),
      [
        [0, [0]],
        [2, [2]],
      ],
    );
    const { values } = await settled;
    assert.ok(values[1] instanceof ParmapTaskError);
    assert.equal(values[1].index, 1);
    assert.deepEqual([values[0], values[2]], [0, 20]);
  });
});

describe('run: ending a call early', () => {
  it('rejects with AbortError at once when the signal aborts, and closes the executor', { timeout: 5000 }, async () => {
    const controller = new AbortController();
    const { fake, result } = call(range(6), { chunksize: 2, signal: controller.signal }, 2);
    const settled = settle(result);
    await fake.submissions(2);
    controller.abort(new Error('enough'));
    const { error } = await settled;
    assert.ok(error instanceof AbortError);
    assert.equal((error.cause as Error).message, 'enough');
    assert.ok(fake.closeCalls >= 1);
    assert.equal(fake.pending.size, 2, 'no outcome was needed');
  });

  it('closes the executor when a for await loop breaks', { timeout: 5000 }, async () => {
    const { fake, result } = call(range(6), { chunksize: 2 }, 1);
    const seen: unknown[] = [];
    const reading = (async () => {
      for await (const value of result) {
        seen.push(value);
        break;
      }
    })();
    const [chunk] = (await fake.submissions(1)) as [ChunkTask];
    fake.complete(chunk.id);
    await reading;
    assert.deepEqual(seen, [0]);
    assert.equal(fake.closeCalls, 1);
  });

  it('fails clearly when the input iterator returns a non-object, after the earlier results', {
    timeout: 5000,
  }, async () => {
    const items = {
      [Symbol.iterator]() {
        let i = 0;
        return { next: () => (i < 4 ? { value: i++, done: false } : 42) };
      },
    };
    const { fake, result } = call(items as Iterable<unknown>, { chunksize: 2 }, 4);
    const streamed = stream(result);
    await fake.completeAll(streamed);
    const { values, error } = await streamed;
    assert.deepEqual(values, [0, 10, 20, 30]);
    assert.ok(error instanceof TypeError);
    assert.match(error.message, /iterator returned `42` \(number\) from next\(\) for item 4/);
  });

  it('fails with what the input iterator threw, after the earlier results', { timeout: 5000 }, async () => {
    const broken = new Error('source broke');
    const items = (function* () {
      yield* [0, 1, 2];
      throw broken;
    })();
    const { fake, result } = call(items, { chunksize: 3 }, 4);
    const streamed = stream(result);
    await fake.completeAll(streamed);
    const { values, error } = await streamed;
    assert.deepEqual(values, [0, 10, 20]);
    assert.equal(error, broken);
  });

  it('runs the items a sync input gave before it threw mid-chunk, as an async input does', {
    timeout: 5000,
  }, async () => {
    const broken = new Error('source broke');
    const items = (function* () {
      yield* [0, 1, 2];
      throw broken;
    })();
    const { fake, result } = call(items, { chunksize: 2 }, 4);
    const streamed = stream(result);
    await fake.completeAll(streamed);
    const { values, error } = await streamed;
    assert.equal(error, broken);
    assert.deepEqual(values, [0, 10, 20]);
  });

  it('fails with what an async input threw, after the items read before it', { timeout: 5000 }, async () => {
    const broken = new Error('source broke');
    const items = (async function* () {
      yield* [0, 1, 2];
      throw broken;
    })();
    const { fake, result } = call(items, { chunksize: 2 }, 4);
    const streamed = stream(result);
    await fake.completeAll(streamed);
    const { values, error } = await streamed;
    assert.deepEqual(values, [0, 10, 20]);
    assert.equal(error, broken);
  });

  it('fails clearly when an async input returns a non-object from next()', { timeout: 5000 }, async () => {
    const items = {
      [Symbol.asyncIterator]() {
        let i = 0;
        return { next: async () => (i < 2 ? { value: i++, done: false } : null) };
      },
    };
    const { fake, result } = call(items as AsyncIterable<unknown>, { chunksize: 2 }, 4);
    const streamed = stream(result);
    await fake.completeAll(streamed);
    const { values, error } = await streamed;
    assert.deepEqual(values, [0, 10]);
    assert.ok(error instanceof TypeError);
    assert.match(error.message, /iterator returned `null`/);
  });
});

describe('run: what the executor reports', () => {
  it('fails the call when a worker dies after running a chunk', { timeout: 5000 }, async () => {
    const { fake, result } = call(range(4), { chunksize: 2 }, 2);
    const settled = settle(result);
    const [first] = (await fake.submissions(2)) as [ChunkTask, ChunkTask];
    fake.complete(first.id);
    fake.told.workerDiedAfter(first.id, { uncaught: new Error('timer failed') });
    const { error } = await settled;
    assert.ok(error instanceof ParmapWorkerError);
    assert.deepEqual(error.indices, [0, 1]);
    assert.match(error.message, /while idle/);
    assert.equal(error.whileIdle, true);
    assert.ok(fake.closeCalls >= 1);
  });

  it('a stream still gets the results before the chunk of a worker that died after it', { timeout: 5000 }, async () => {
    const { fake, result } = call(range(6), { chunksize: 2 }, 3);
    const streamed = stream(result);
    const [first, second, third] = (await fake.submissions(3)) as [ChunkTask, ChunkTask, ChunkTask];
    fake.complete(third.id);
    fake.complete(second.id);
    // The worker that ran the second chunk dies of something it left behind; the first is still out.
    fake.told.workerDiedAfter(second.id, { uncaught: new Error('timer failed') });
    fake.complete(first.id);
    const { values, error } = await streamed;
    assert.deepEqual(values, [0, 10]);
    assert.ok(error instanceof ParmapWorkerError);
    assert.deepEqual(error.indices, [2, 3]);
    assert.equal(error.whileIdle, true);
  });

  it('fails the call with the error of an executor that can run nothing more', { timeout: 5000 }, async () => {
    const { fake, result } = call(range(4), { chunksize: 2 }, 2);
    const settled = settle(result);
    await fake.submissions(2);
    const closedUnder = new Error('the pool was closed');
    fake.told.failed(closedUnder);
    assert.equal((await settled).error, closedUnder);
    assert.ok(fake.closeCalls >= 1);
  });

  it("fails the call with a 'failed' outcome's error", { timeout: 5000 }, async () => {
    const { fake, result } = call(range(4), { chunksize: 2 }, 2);
    const settled = settle(result);
    const [first] = (await fake.submissions(2)) as [ChunkTask, ChunkTask];
    const setup = new Error('context threw');
    fake.tell(first.id, { kind: 'failed', error: setup });
    assert.equal((await settled).error, setup);
  });

  it('only ever submits consecutive items, starting at `start`', {
    timeout: 5000,
  }, async () => {
    const { fake, result } = call(range(3), { chunksize: 3, onError: 'return' }, 1);
    const settled = settle(result);
    const [chunk] = (await fake.submissions(1)) as [ChunkTask];
    fake.throwAt(chunk.id, 1);
    await fake.completeAll(settled);
    for (const task of fake.submitted) {
      assert.deepEqual(task.items, range(3).slice(task.start, task.start + task.items.length), `task ${task.id}`);
    }
  });
});

describe('run: capacity', () => {
  it('asks for workers while capacity is 0, and starts once capacity grows', { timeout: 5000 }, async () => {
    const { fake, result } = call(range(4), { chunksize: 2 }, 0);
    const settled = settle(result);
    await fake.wanted();
    assert.equal(fake.submitted.length, 0);
    fake.capacity = 2;
    fake.told.capacityChanged();
    assert.equal(fake.submitted.length, 2);
    await fake.completeAll(settled);
    assert.deepEqual((await settled).values, [0, 10, 20, 30]);
  });

  it('never has more chunks running than the capacity', { timeout: 5000 }, async () => {
    const { fake, result } = call(range(20), { chunksize: 1 }, 3);
    const settled = settle(result);
    await fake.submissions(3);
    let peak = 0;
    for (let i = 0; fake.pending.size > 0 || fake.submitted.length < 20; i++) {
      peak = Math.max(peak, fake.pending.size);
      const next = fake.pending.keys().next();
      if (next.done) await Promise.race([fake.nextSubmission(), settled]);
      else fake.complete(next.value);
      if (i % 2 === 0) await Promise.resolve();
    }
    assert.equal(peak, 3);
    assert.deepEqual((await settled).values, range(20).map(f));
  });
});
