/**
 * Runs chunks on an executor one promise per chunk: what a `parmap worker` does with the chunks
 * it takes from a call's queue. Chunks wait here until the executor has room, and `timeout` is
 * watched here, where the items run (the caller cannot see them start), with the scheduler's own
 * rule (`tasksPastTimeout`): the thread of an item past it is stopped, and the chunk comes back lost
 * with that item named, for the caller's recovery policy to decide.
 */
import { type TimeoutWatch, tasksPastTimeout, timeoutCheckPeriod } from '../scheduler/recovery.js';
import type { ChunkOutcome, Executor, ExecutorListener, WorkerEnding } from './executor.js';

interface Waiting {
  readonly id: number;
  readonly start: number;
  readonly items: readonly unknown[];
  readonly settle: (outcome: ChunkOutcome) => void;
}

interface Running extends Waiting {
  readonly watch: TimeoutWatch;
}

export class ChunkRunner implements ExecutorListener {
  private executor: Executor | undefined;
  private nextId = 0;
  private readonly waiting: Waiting[] = [];
  private readonly running = new Map<number, Running>();
  private watchdog: NodeJS.Timeout | undefined;
  /** Set once the executor can run nothing more: every chunk then gets this. */
  private broken: ChunkOutcome | undefined;

  /**
   * @param timeout the call's `timeout` (ms), if any
   * @param onLateDeath told when a thread dies after its chunk was answered (nobody else can be)
   */
  constructor(
    private readonly timeout: number | undefined,
    private readonly onLateDeath: (ending: WorkerEnding) => void,
  ) {}

  /** Gives the runner its executor (made with this runner as its listener). */
  use(executor: Executor): void {
    this.executor = executor;
  }

  run(start: number, items: readonly unknown[]): Promise<ChunkOutcome> {
    if (this.broken !== undefined) return Promise.resolve(this.broken);
    return new Promise((settle) => {
      this.waiting.push({ id: this.nextId++, start, items, settle });
      this.pump();
    });
  }

  private pump(): void {
    const executor = this.executor;
    if (executor === undefined) return;
    while (this.waiting.length > 0 && this.running.size < executor.capacity) {
      const chunk = this.waiting.shift() as Waiting;
      this.running.set(chunk.id, { ...chunk, watch: { seen: 0, seenAt: [], timedOutAt: undefined } });
      executor.submit({ id: chunk.id, start: chunk.start, items: chunk.items });
      this.watch();
    }
    if (this.waiting.length > 0) executor.want();
  }

  outcome(id: number, outcome: ChunkOutcome): void {
    const chunk = this.running.get(id);
    if (chunk === undefined) return;
    this.running.delete(id);
    const { timedOutAt } = chunk.watch;
    chunk.settle(outcome.kind === 'lost' && timedOutAt !== undefined ? { ...outcome, timedOutAt } : outcome);
    this.pump();
  }

  workerDiedAfter(_id: number, ending: WorkerEnding): void {
    this.onLateDeath(ending);
  }

  capacityChanged(): void {
    this.pump();
  }

  failed(error: Error): void {
    this.end({ kind: 'failed', error });
  }

  /** Settles every chunk here with `outcome`, and any later one too. */
  end(outcome: ChunkOutcome): void {
    this.broken ??= outcome;
    clearInterval(this.watchdog);
    const chunks = [...this.waiting, ...this.running.values()];
    this.waiting.length = 0;
    this.running.clear();
    for (const chunk of chunks) chunk.settle(outcome);
  }

  private watch(): void {
    const { timeout, executor } = this;
    if (timeout === undefined || executor === undefined || this.watchdog !== undefined) return;
    this.watchdog = setInterval(() => {
      const running = [...this.running].map(([id, { items, watch }]) => ({ id, count: items.length, watch }));
      const overdue = tasksPastTimeout(running, (id) => executor.started(id), performance.now(), timeout);
      for (const id of overdue) executor.stop(id);
      if (this.running.size === 0) {
        clearInterval(this.watchdog);
        this.watchdog = undefined;
      }
    }, timeoutCheckPeriod(timeout));
  }
}
