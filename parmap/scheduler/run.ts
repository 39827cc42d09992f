/**
 * A call from start to finish, driving one executor: input → feeder → executor → (reorder) →
 * caller, handed over a chunk of results at a time. It owns the policy: what a failing item, a
 * lost chunk, a timeout mean (see recovery.ts for the rules), and in which order results and the
 * first error reach the caller. `close()` is the single way out: it stops the feeder, closes the
 * input, closes the executor, removes the abort listener and ends the progress display.
 */
import {
  AbortError,
  isTimeoutError,
  nameStage,
  ParmapCloneError,
  ParmapTaskError,
  ParmapWorkerError,
  rebuildThrown,
} from '../errors.js';
import type { ChunkOutcome, Executor, ExecutorListener, ItemsStarted, WorkerEnding } from '../executors/executor.js';
import { IdMap } from '../id-map.js';
import type { Job } from '../job.js';
import { NumberBuffers, unpacked } from '../transfer.js';
import { ChunkSizer, chunkByteLimit } from './chunking.js';
import { type ChunkResults, Delivery, type Failure, fill, fillPlaces } from './delivery.js';
import { type Chunk, Feeder } from './feeder.js';
import type { TakenInput } from './input.js';
import { itemErrorOf, lossError } from './item-errors.js';
import { ProgressTracker } from './progress.js';
import { planLoss, type TaskTries, type TimeoutWatch, tasksPastTimeout, timeoutCheckPeriod } from './recovery.js';
import { type ChunkRun, finishProgress } from './result.js';

/** Work for the executor: some items of a chunk, with the tries they have had. */
interface Task extends TaskTries {
  readonly id: number;
  readonly results: ChunkResults;
  /** Every item of the chunk, in order: the reply's array can be taken as it is. */
  readonly whole: boolean;
}

interface RunningTask {
  readonly task: Task;
  readonly watch: TimeoutWatch;
}

/** Chunks fed beyond those running, per chunk the executor can run, so workers never wait. */
const WAITING_PER_SLOT = 1;

/** How many finished tasks are remembered, to name items when a worker dies after them. */
const RECENT_TASKS = 64;

export type ExecutorFactory = (listener: ExecutorListener) => Executor;

export class CallRun<R> implements ChunkRun<R> {
  private executor: Executor | undefined;
  private feeder: Feeder | undefined;
  private readonly sizer: ChunkSizer;
  private readonly delivery: Delivery<R>;
  /**
   * Where chunks of numbers are kept packed while on their way, when the executor packs them
   * anyway (see {@link NumberBuffers}): their items, and, for a caller reading results one by
   * one from a map, their results until the caller comes back for more.
   */
  private numbers: NumberBuffers | undefined;
  /** Results last handed out, which the caller may still be reading. */
  private handedOut: ArrayLike<R> | undefined;
  private progress: ProgressTracker | undefined;
  /** Chunks fed and not yet taken by the caller. */
  private unconsumed = 0;
  /**
   * Input items fed and not yet taken by the caller, for `buffer`. Those last handed out count
   * until the caller comes back for more: it holds them until then.
   */
  private unconsumedItems = 0;
  /**
   * The bytes of the chunks fed and not yet taken by the caller, items and results, for
   * `maxBytesInFlight`: each chunk counted by what its items are known to take until its worker
   * answers, then by what its items and results took (see `ChunkResults.bytes`).
   */
  private unconsumedBytes = 0;
  /** The input items and bytes of the results last handed out, which the caller may still hold. */
  private heldByCaller: { readonly inputs: number; readonly bytes: number } = { inputs: 0, bytes: 0 };
  private readonly retryQueue: Task[] = [];
  /** An {@link IdMap}: a `Map` would keep every chunk's items and results alive (see id-map.ts). */
  private readonly running = new IdMap<RunningTask>();
  /** Where recently finished tasks were in the input (not the tasks: they hold items and results). */
  private readonly recent = new Map<number, TaskPlaces>();
  private nextTaskId = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private inputEnded = false;
  /** Every result has been handed to the caller. */
  private completed = false;
  private closed = false;
  private started: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly onAbort = (): void =>
    this.fail({ error: new AbortError(this.job.signal?.reason), sequence: undefined });

  constructor(
    private readonly input: TakenInput,
    private readonly job: Job,
    private readonly createExecutor: ExecutorFactory,
    /**
     * The caller reads results one by one: an ordered stream then yields every result before a
     * failing item first. Awaiting the array, the first failure ends the call at once.
     */
    private readonly streaming = true,
  ) {
    const chunksInFlight = job.n * (1 + WAITING_PER_SLOT);
    this.sizer = new ChunkSizer(job.chunksize, job.n, job.total, {
      maxBytes: chunkByteLimit(job.maxBytesInFlight, chunksInFlight),
      concurrency: job.concurrency,
    });
    this.delivery = new Delivery(job.ordered, streaming, job.stage);
  }

  private get failure(): Failure | undefined {
    return this.delivery.failure;
  }

  private get failed(): boolean {
    return this.delivery.over;
  }

  private async start(): Promise<void> {
    const { signal } = this.job;
    if (signal?.aborted) throw this.own(new AbortError(signal.reason));
    signal?.addEventListener('abort', this.onAbort, { once: true });
    this.progress = await ProgressTracker.start(this.job);
    if (this.progress !== undefined)
      this.progress.onAsyncFailure = (error) => this.fail({ error, sequence: undefined });
    if (this.closed || this.failure !== undefined) return;
    // Whatever goes wrong in taking in an outcome fails this call; it never escapes into the
    // executor's own event handlers, where it would crash the process or be lost.
    const guard =
      <A extends unknown[]>(handle: (...args: A) => void) =>
      (...args: A) => {
        try {
          handle(...args);
        } catch (error) {
          this.fail({ error, sequence: undefined });
        }
      };
    this.executor = this.createExecutor({
      outcome: guard((id: number, outcome: ChunkOutcome) => this.onOutcome(id, outcome)),
      workerDiedAfter: guard((id: number, ending: WorkerEnding) => this.onLateDeath(id, ending)),
      capacityChanged: () => this.pump(),
      failed: (error) => this.fail({ error, sequence: undefined }),
    });
    // Room for every chunk that can be on its way at once, items and results.
    if (this.executor.packsNumbers) this.numbers = new NumberBuffers(4 * (this.job.n + 1));
    // Chunks are cut to fit in what `buffer` leaves.
    const sizes = {
      next: (handedOut: number) => Math.min(this.sizer.next(handedOut), this.bufferRoom()),
      byteLimit: this.sizer.byteLimit,
    };
    this.feeder = Feeder.for(this.input, sizes, this.job.checkItem, {
      hasRoom: () => this.hasRoom(),
      submit: (chunk) => this.submitChunk(chunk),
      // The input's own error (an earlier stage's, naming its stage) reaches the caller as it is.
      fail: (error, sequence) => this.record({ error, sequence }),
      ended: () => {
        this.inputEnded = true;
        this.notify();
      },
    });
    this.feeder.pump();
  }

  private hasRoom(): boolean {
    const capacity = this.executor?.capacity ?? 0;
    // Per worker, not per slot: an executor that queues chunks behind running ones (threads,
    // short work) has more slots than workers, and must not read further ahead for it.
    const workers = Math.max(Math.min(capacity, this.executor?.workers ?? this.job.n), 1);
    const open =
      this.retryQueue.length === 0 &&
      !this.closed &&
      this.failure === undefined &&
      this.bufferRoom() > 0 &&
      this.unconsumed < workers * (1 + WAITING_PER_SLOT) &&
      this.bytesRoom(workers);
    // Workers are asked for only by a call with something to send: one whose caller has stopped
    // reading holds none, so it cannot take them from calls that are being read.
    if (open && capacity === 0) this.executor?.want();
    return open && this.running.size < capacity;
  }

  /**
   * Whether the bytes on their way leave room for one more item. A chunk holds at least one item
   * however large, so chunks of large items are counted in bytes too, and stop at
   * `maxBytesInFlight`; each worker still gets one, so that large items run in parallel.
   */
  private bytesRoom(workers: number): boolean {
    if (this.unconsumed < workers) return true;
    return this.unconsumedBytes + (this.sizer.bytesPerItem() ?? 0) <= this.job.maxBytesInFlight;
  }

  /** How many more input items `buffer` lets the run feed now. */
  private bufferRoom(): number {
    const { buffer } = this.job;
    return buffer === undefined ? Number.POSITIVE_INFINITY : buffer - this.unconsumedItems;
  }

  async nextChunk(): Promise<ArrayLike<R> | undefined> {
    // The caller is back: it is done with what it was given last.
    this.taken(this.heldByCaller);
    this.heldByCaller = { inputs: 0, bytes: 0 };
    this.numbers?.release(this.handedOut);
    this.handedOut = undefined;
    this.executor?.hold(true);
    try {
      return await this.waitForChunk();
    } finally {
      this.executor?.hold(false);
    }
  }

  private async waitForChunk(): Promise<ArrayLike<R> | undefined> {
    this.started ??= this.start();
    try {
      await this.started;
    } catch (error) {
      this.delivery.failNow(error);
      throw error;
    }
    this.executor?.hold(true);
    for (;;) {
      if (this.closed && !this.failed) return undefined;
      const next = this.delivery.next();
      if (next?.kind === 'error') throw next.error;
      if (next !== undefined) {
        if (next.counted) {
          this.unconsumed--;
          this.pump();
        }
        // A chunk that filter kept nothing of is not handed out: the caller waits for the next.
        if (next.values.length > 0) {
          this.heldByCaller = next;
          this.handedOut = next.values;
          return next.values;
        }
        this.taken(next);
        continue;
      }
      if (this.failure === undefined && this.inputEnded && this.unconsumed === 0) {
        this.completed = true;
        return undefined;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /**
   * The caller is done with results that stand for `inputs` input items and `bytes` bytes:
   * `buffer` and `maxBytesInFlight` have room for them again.
   */
  private taken({ inputs, bytes }: { readonly inputs: number; readonly bytes: number }): void {
    if (inputs === 0) return;
    this.unconsumedItems -= inputs;
    this.unconsumedBytes -= bytes;
    this.pump();
  }

  /** Keeps the executor busy: tasks to run again first, then new chunks from the feeder. */
  private pump(): void {
    const executor = this.executor;
    if (executor === undefined || this.closed || this.failed) return;
    if (this.retryQueue.length > 0 && executor.capacity === 0) executor.want();
    while (this.retryQueue.length > 0 && this.running.size < executor.capacity) {
      const task = this.retryQueue.shift() as Task;
      // After a failure, only what comes before it in input order still matters.
      const last = task.positions[task.positions.length - 1] ?? 0;
      if (this.delivery.stillOwed(task.results.chunk.sequence, last)) this.startTask(task);
    }
    this.feeder?.pump();
  }

  private submitChunk(given: Chunk): void {
    const packed = this.numbers?.pack(given.items);
    const chunk = packed === undefined ? given : { ...given, items: packed };
    this.unconsumed++;
    this.unconsumedItems += chunk.items.length;
    // Items of a kind whose size is not told before encoding count as the average so far.
    const bytes = Math.max(chunk.bytes, chunk.items.length * (this.sizer.bytesPerItem() ?? 0));
    this.unconsumedBytes += bytes;
    const results: ChunkResults = { chunk, values: [], remaining: chunk.items.length, failures: 0, bytes };
    const positions = placesOf(chunk.items.length);
    this.startTask({ id: 0, results, positions, attempts: 0, deferrals: 0, whole: true });
  }

  private startTask(template: Task): void {
    const task: Task = { ...template, id: this.nextTaskId++ };
    const executor = this.executor as Executor;
    const { chunk } = task.results;
    const items = task.whole ? chunk.items : itemsAt(chunk.items, task.positions);
    const start = chunk.start + (task.positions[0] ?? 0);
    this.running.set(task.id, { task, watch: { seen: 0, seenAt: [], timedOutAt: undefined } });
    if (this.job.timeout !== undefined && executor.stoppable) this.watch();
    executor.submit({ id: task.id, start, items });
  }

  private onOutcome(id: number, outcome: ChunkOutcome): void {
    const running = this.running.get(id);
    if (running === undefined || this.closed || this.failed) return;
    this.running.delete(id);
    const { task } = running;
    this.remember(task);
    switch (outcome.kind) {
      case 'done':
        this.accept(task, outcome);
        break;
      case 'lost':
        this.recover(task, outcome.ending, outcome.started, outcome.timedOutAt ?? running.watch.timedOutAt);
        break;
      case 'failed':
        this.fail({ error: outcome.error, sequence: undefined });
        return;
      default:
        this.itemFailed(
          task,
          outcome.at,
          itemErrorOf(outcome, (at) => this.indexOf(task, at)),
          true,
          outcome.kind === 'threw' ? outcome.before : undefined,
        );
    }
    // A failure may be waiting for exactly these results.
    if (this.failure !== undefined) this.notify();
    this.pump();
  }

  private accept(task: Task, reply: Extract<ChunkOutcome, { kind: 'done' }>): void {
    const { results } = task;
    if (task.whole) {
      results.values = this.keep(reply);
      if (task.attempts === 0) this.sizer.record(reply.values.length, reply.ms, reply.bytes, reply.awaited);
      if (reply.bytes !== undefined) this.recount(results, reply.bytes);
    } else {
      fillPlaces(results, task.positions, reply.values, task.positions.length);
    }
    for (const failure of reply.failures ?? []) {
      const index = this.indexOf(task, failure.at);
      const error =
        failure.thrown !== undefined
          ? itemErrorOf({ kind: 'threw', at: failure.at, thrown: rebuildThrown(failure.thrown) }, () => index)
          : new ParmapCloneError(index, 'result', new Error(failure.uncloneable));
      this.placeError(task, failure.at, error);
    }
    for (const failure of reply.localFailures ?? []) {
      // The in-thread run's own timeout is already the item's error.
      const { thrown } = failure;
      const error = isTimeoutError(thrown) ? thrown : new ParmapTaskError(this.indexOf(task, failure.at), thrown);
      this.placeError(task, failure.at, error);
    }
    this.completeItems(results, reply.values.length);
  }

  /** A chunk's bytes in flight, now known exactly: those of its items and results as they crossed. */
  private recount(results: ChunkResults, bytes: number): void {
    this.unconsumedBytes += bytes - results.bytes;
    results.bytes = bytes;
  }

  /**
   * A whole chunk's results as they are kept until the caller takes them: numbers stay packed for
   * a caller reading a map's results one by one, in a buffer of the call's own; otherwise, and
   * when places will be written to (failures), as an array.
   */
  private keep(reply: Extract<ChunkOutcome, { kind: 'done' }>): unknown[] | Float64Array {
    const { values } = reply;
    if (!(values instanceof Float64Array)) return values as unknown[];
    const failures = (reply.failures?.length ?? 0) + (reply.localFailures?.length ?? 0);
    const packed = this.numbers !== undefined && this.streaming && this.job.stage === 'map' && failures === 0;
    return packed ? (this.numbers as NumberBuffers).copy(values) : unpacked(values);
  }

  /**
   * Item `at` of the task failed. With `onError: 'return'` its error takes its place; otherwise
   * the call fails, after the items before it (when ordered) and, if `rest`, the other items of
   * the task run again.
   */
  private itemFailed(task: Task, at: number, error: unknown, rest: boolean, before?: readonly unknown[]): void {
    if (this.job.onError === 'return') {
      this.placeError(task, at, error);
      this.completeItems(task.results, 1);
      if (rest) this.requeueExcept(task, at);
      return;
    }
    // The items before it that ran count as done: a progress that failed had left them out (it
    // said 2 done when 17 results had been handed out before the error).
    this.count(before?.length ?? 0, 1);
    // An ordered stream yields the results before the failing item first: those this task ran
    // came with the failure; others of the chunk are in place already or still on their way.
    const { results } = task;
    if (!this.job.ordered && before !== undefined && before.length > 0) {
      // Unordered, what finished before the failure is simply handed out before it.
      const items = itemsAt(results.chunk.items, task.positions.slice(0, before.length));
      this.delivery.early(items, before);
      this.unconsumed++;
    } else if (before !== undefined && before.length > 0) {
      fillPlaces(results, task.positions, before, before.length);
    }
    if (!task.whole) results.filled ??= new Set();
    this.fail({ error, sequence: results.chunk.sequence, within: { results, position: task.positions[at] as number } });
  }

  /** The task's other items run again, as runs of consecutive items (what an executor takes). */
  private requeueExcept(task: Task, at: number): void {
    for (const run of [task.positions.slice(0, at), task.positions.slice(at + 1)]) {
      if (run.length > 0) this.retryQueue.push({ ...task, positions: run, whole: false, deferrals: 0 });
    }
  }

  private placeError(task: Task, at: number, error: unknown): void {
    const position = task.positions[at] as number;
    fill(task.results, position, this.own(error));
    task.results.failed ??= new Set();
    task.results.failed.add(position);
    task.results.failures++;
  }

  /** A worker ended while it held the task: see recovery.ts. */
  private recover(
    task: Task,
    ending: WorkerEnding,
    started: ItemsStarted | undefined,
    timedOutAt: number | undefined,
  ): void {
    const facts = { started: started?.started, oldest: started?.oldest, timedOutAt };
    const plan = planLoss(task, facts, this.job.retries);
    const again = (tries: TaskTries): Task => {
      // Split: from now on its places come back apart, and a failure must know which have.
      task.results.filled ??= new Set();
      return { ...task, ...tries, whole: false };
    };
    if (plan.kind === 'retry') {
      this.retryQueue.push(...plan.tasks.map(again));
      return;
    }
    const indices = task.positions.map((_, at) => this.indexOf(task, at));
    const error = lossError(ending, {
      indices,
      index: plan.at === undefined ? undefined : this.indexOf(task, plan.at),
      attempts: plan.attempts,
      timeout: timedOutAt === undefined ? undefined : this.job.timeout,
      maxMemory: this.job.maxMemory,
      beforeStart: plan.beforeStart,
    });
    if (this.job.onError === 'throw') {
      this.count(0, 1);
      // The items before the lost one died with the worker: an ordered stream still owes them.
      const { results } = task;
      if (this.job.ordered && plan.at !== undefined && plan.at > 0) {
        results.filled ??= new Set();
        this.retryQueue.push(
          again({ positions: task.positions.slice(0, plan.at), attempts: task.attempts, deferrals: 0 }),
        );
      }
      const sequence = results.chunk.sequence;
      this.fail(
        plan.at === undefined
          ? { error, sequence }
          : { error, sequence, within: { results, position: task.positions[plan.at] as number } },
      );
      return;
    }
    const blamed = plan.at === undefined ? task.positions.map((_, at) => at) : [plan.at];
    const { items } = task.results.chunk;
    // A hole of a sparse input held no item to fail: it stays a hole.
    for (const at of blamed) if ((task.positions[at] as number) in items) this.placeError(task, at, error);
    this.completeItems(task.results, blamed.length);
    this.retryQueue.push(...plan.tasks.map(again));
  }

  /** A worker died on its own after running a task: something fn left running failed. */
  private onLateDeath(id: number, ending: WorkerEnding): void {
    const places = this.recent.get(id) ?? this.running.get(id)?.task;
    if (places === undefined || this.closed || this.failed) return;
    const indices = indicesOf(places);
    // The failure is that chunk's: a stream still hands out the results of every chunk before it.
    this.fail({
      error: new ParmapWorkerError(indices, { ...ending, maxMemory: this.job.maxMemory }, { after: true }),
      sequence: 'sequence' in places ? places.sequence : places.results.chunk.sequence,
    });
  }

  private remember(task: Task): void {
    const { chunk } = task.results;
    this.recent.set(task.id, { start: chunk.start, sequence: chunk.sequence, positions: task.positions });
    if (this.recent.size > RECENT_TASKS) this.recent.delete(this.recent.keys().next().value as number);
  }

  /** Counts `count` more items of a chunk as finished; a finished chunk goes to the caller. */
  private completeItems(results: ChunkResults, count: number): void {
    results.remaining -= count;
    if (results.remaining > 0) return;
    // Filled place by place (a split chunk), its results end at the last place written: holes
    // after it (of a sparse input) were left out of the call's results.
    const { values, chunk } = results;
    if (Array.isArray(values) && values.length < chunk.items.length) values.length = chunk.items.length;
    this.delivery.finished(results);
    this.count(results.chunk.items.length, results.failures);
    // Its items were kept to be sent again should a worker be lost: not any more.
    this.numbers?.release(results.chunk.items);
    this.notify();
  }

  /** Counts finished items. A progress callback that throws fails the call, like any failure. */
  private count(done: number, failures: number): void {
    try {
      this.progress?.add(done, failures);
    } catch (error) {
      this.fail({ error, sequence: undefined });
    }
  }

  /** The input index of item `at` of a task. */
  private indexOf(task: Task, at: number): number {
    return task.results.chunk.start + (task.positions[at] as number);
  }

  /** Checks running tasks against `timeout`, and stops the worker of an item past it. */
  private watch(): void {
    if (this.watchdog !== undefined) return;
    const timeout = this.job.timeout as number;
    this.watchdog = setInterval(() => {
      const executor = this.executor as Executor;
      const running = [...this.running].map(([id, { task, watch }]) => ({ id, count: task.positions.length, watch }));
      const overdue = tasksPastTimeout(running, (id) => executor.started(id), performance.now(), timeout);
      for (const id of overdue) executor.stop(id);
      if (this.running.size === 0) {
        clearInterval(this.watchdog);
        this.watchdog = undefined;
      }
    }, timeoutCheckPeriod(timeout)).unref();
  }

  /** This call's own error names its stage: it is the one whose item failed. */
  private own<E>(error: E): E {
    nameStage(error, this.job.stageName);
    return error;
  }

  /** A failure of this call's own (not its input's): its error names the stage. */
  private fail(given: Failure): void {
    this.own(given.error);
    this.record(given);
  }

  /** Records a failure (see delivery.ts for which one wins) and stops feeding. */
  private record(given: Failure): void {
    if (this.closed || !this.delivery.fail(given)) return;
    const failure = this.failure as Failure;
    void this.feeder?.close();
    // Nothing more is owed to the caller: stop the workers now.
    if (failure.sequence === undefined || !this.job.ordered) void this.executor?.close();
    this.notify();
    this.pump();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.notify();
    clearInterval(this.watchdog);
    this.job.signal?.removeEventListener('abort', this.onAbort);
    // An earlier stage (a parmap result as input) stops its workers along with this call's.
    const inputClosed = this.feeder?.close();
    // A start still loading sees `closed` and makes no executor.
    await this.started?.catch(() => undefined);
    await Promise.all([this.executor?.close(), inputClosed]);
    finishProgress(this.progress, this.completed, this.failure);
  }
}

/** Where a task's items are: its chunk's first input index, and their places in the chunk. */
interface TaskPlaces {
  readonly start: number;
  /** The chunk's place in input order. */
  readonly sequence: number;
  readonly positions: readonly number[];
}

function indicesOf(places: TaskPlaces | Task): number[] {
  const start = 'start' in places ? places.start : places.results.chunk.start;
  return places.positions.map((position) => start + position);
}

/** `[0, 1, ..., count - 1]`, shared between chunks of the same size: never changed, only sliced. */
const places = new Map<number, readonly number[]>();
/** The items at some places of a chunk; a hole (of a sparse input) stays a hole, not `undefined`. */
function itemsAt(items: ArrayLike<unknown>, positions: readonly number[]): unknown[] {
  const picked = new Array<unknown>(positions.length);
  for (let at = 0; at < positions.length; at++) {
    const position = positions[at] as number;
    if (position in items) picked[at] = items[position];
  }
  return picked;
}

function placesOf(count: number): readonly number[] {
  let found = places.get(count);
  if (found === undefined) {
    found = Object.freeze(Array.from({ length: count }, (_, place) => place));
    if (places.size > 64) places.clear();
    places.set(count, found);
  }
  return found;
}
