/**
 * One budget of workers for the whole process, shared by every call and pool: 50 calls at once
 * on a 2-core machine start 2 workers between them, not 100. A call asks for the workers it wants
 * when it has work, and gets what is free (at least one before it starts), and more as others
 * finish. A holder with nothing running lends its workers back when another call waits for its
 * first (see {@link Lease.onPressure}), so chained calls, or a call started inside the loop body
 * of another call's `for await`, take turns instead of waiting for ever.
 */
import { availableParallelism } from 'node:os';

export class Lease {
  /** Workers granted now. */
  granted = 0;
  private readonly readyWaiters: (() => void)[] = [];

  constructor(
    private readonly budget: WorkerBudget,
    /** The most workers it will use. */
    readonly wanted: number,
    /** Told whenever `granted` grows. */
    readonly onGrant: () => void,
  ) {}

  /** Told when another lease waits while this one holds workers: lend them back if idle. */
  onPressure: (() => void) | undefined;

  /** Resolves once at least one worker is granted. */
  ready(): Promise<void> {
    if (this.granted > 0) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  /** Returns every granted worker to the budget. The lease may not be used again. */
  release(): void {
    this.budget.release(this);
  }

  /** @internal called by the budget */
  grant(count: number): void {
    this.granted += count;
    for (const resolve of this.readyWaiters.splice(0)) resolve();
    this.onGrant();
  }
}

export class WorkerBudget {
  private limit = availableParallelism();
  private inUse = 0;
  /** Leases that want more than they have, in the order they asked. */
  private readonly wanting: Lease[] = [];
  private readonly holders = new Set<Lease>();

  /** Threads kept idle after their workers were lent back (see {@link keepWarm}). */
  private warm = 0;

  /** The most workers all calls together may have. */
  get size(): number {
    return this.limit;
  }

  /**
   * Whether `threads` idle threads may stay alive after their workers were lent back, in case
   * their host gets workers again soon. No more idle threads than the budget's size are kept, so
   * many calls lending in turn do not pile them up. Each `true` is later undone by {@link cooled}.
   */
  keepWarm(threads: number): boolean {
    if (this.warm + threads > this.limit) return false;
    this.warm += threads;
    return true;
  }

  /** Threads kept warm are in use again, or stopped. */
  cooled(threads: number): void {
    this.warm = Math.max(0, this.warm - threads);
  }

  setSize(workers: number): void {
    this.limit = workers;
    this.assign();
  }

  /** Asks for up to `wanted` workers; they come through `onGrant` (at once when free). */
  lease(wanted: number, onGrant: () => void): Lease {
    const lease = new Lease(this, wanted, onGrant);
    this.wanting.push(lease);
    this.assign();
    return lease;
  }

  /** Whether some lease is waiting for its first worker. */
  get hasStarvedLease(): boolean {
    return this.wanting.some((lease) => lease.granted === 0);
  }

  release(lease: Lease): void {
    const index = this.wanting.indexOf(lease);
    if (index >= 0) this.wanting.splice(index, 1);
    this.holders.delete(lease);
    this.inUse -= lease.granted;
    lease.granted = 0;
    this.assign();
  }

  /** First one worker to each lease that has none, in order; then the rest, in order. */
  private assign(): void {
    const grants = new Map<Lease, number>();
    let free = this.limit - this.inUse;
    for (const lease of this.wanting) {
      if (free <= 0) break;
      if (lease.granted === 0) {
        grants.set(lease, 1);
        free--;
      }
    }
    for (const lease of this.wanting) {
      const room = lease.wanted - lease.granted - (grants.get(lease) ?? 0);
      const extra = Math.min(room, free);
      if (extra > 0) {
        grants.set(lease, (grants.get(lease) ?? 0) + extra);
        free -= extra;
      }
    }
    this.inUse = this.limit - free;
    for (const [lease, count] of grants) {
      this.holders.add(lease);
      if (lease.granted + count >= lease.wanted) this.wanting.splice(this.wanting.indexOf(lease), 1);
    }
    for (const [lease, count] of grants) lease.grant(count);
    if (this.hasStarvedLease) for (const holder of [...this.holders]) holder.onPressure?.();
  }
}

/** The process's budget. */
export const workerBudget = new WorkerBudget();

/**
 * Sets how many workers all parmap calls and pools in this process may run at once. Default:
 * `os.availableParallelism()`. Calls running now keep what they have; new workers follow the new size.
 */
export function setWorkerBudget(workers: number): void {
  if (!Number.isSafeInteger(workers) || workers < 1) {
    throw new RangeError(`Expected the worker budget to be a positive integer, got \`${String(workers)}\``);
  }
  workerBudget.setSize(workers);
}
