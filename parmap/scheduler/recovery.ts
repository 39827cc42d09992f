/**
 * What a lost chunk means: a worker ended (it crashed, was killed, ran out of memory, or was
 * stopped for a timeout) while it held some items. Pure functions of the task and what is known
 * of the loss, so every rule is unit-tested without a worker:
 *
 * - a task whose worker ended before starting it is sent again, without blame, a few times; past
 *   them, the call's set-up is blamed, not an item;
 * - when the item that was running is known, only it is blamed: it is retried alone while
 *   `retries` allows, else it fails; the items before and after it run again untouched;
 * - when it is not known (a process worker, no timeout), with `retries` each item is re-run alone
 *   without being charged, so the next loss names its item exactly; without `retries` every
 *   held item fails at once, named together.
 */

/** Positions are places within the task's chunk; `attempts` counts tries charged so far. */
export interface TaskTries {
  readonly positions: readonly number[];
  readonly attempts: number;
  /** Times it went to a worker that ended before starting it. */
  readonly deferrals: number;
}

export interface LossFacts {
  /** Items of the task that had started (`undefined`: not known). */
  readonly started: number | undefined;
  /**
   * The place of the oldest item still running, when items overlap (`concurrency`): any item from
   * there to `started - 1` may have ended the worker. Default: `started - 1`.
   */
  readonly oldest?: number | undefined;
  /** The place (within the task) of an item that ran past its timeout, if that caused the loss. */
  readonly timedOutAt: number | undefined;
}

export type LossPlan =
  /** Run these tasks again (ahead of new chunks). */
  | { readonly kind: 'retry'; readonly tasks: readonly TaskTries[] }
  /**
   * Item `at` (a place within the task; `undefined`: not known, every item) failed after
   * `attempts` tries; the `tasks` run again.
   */
  | {
      readonly kind: 'blame';
      readonly at: number | undefined;
      readonly attempts: number;
      readonly tasks: readonly TaskTries[];
      /** Its workers ended each time before starting any item: no item is to blame, the set-up is. */
      readonly beforeStart?: boolean;
    };

/** Deaths before a task starts that are not counted against it; past them, they count. */
export const MAX_DEFERRALS = 3;

export function planLoss(task: TaskTries, facts: LossFacts, retries: number): LossPlan {
  const { positions } = task;
  if (facts.started === 0 && facts.timedOutAt === undefined) {
    if (task.deferrals < MAX_DEFERRALS) return { kind: 'retry', tasks: [{ ...task, deferrals: task.deferrals + 1 }] };
    // Ended before any item, time after time (its context exits, or runs out of memory): naming
    // an item that never ran would send the reader to the wrong code.
    return { kind: 'blame', at: undefined, attempts: task.deferrals + 1, tasks: [], beforeStart: true };
  }
  const culprit = culpritOf(positions.length, facts);
  const attempts = task.attempts + 1;
  if (culprit === undefined) {
    if (retries === 0) return { kind: 'blame', at: undefined, attempts, tasks: [] };
    // Alone, each item's next loss names it; nobody is charged for not knowing.
    return {
      kind: 'retry',
      tasks: positions.map((position) => ({ positions: [position], attempts: task.attempts, deferrals: 0 })),
    };
  }
  const untouched = [positions.slice(0, culprit), positions.slice(culprit + 1)]
    .filter((part) => part.length > 0)
    .map((part) => ({ positions: part, attempts: task.attempts, deferrals: 0 }));
  if (attempts > retries) return { kind: 'blame', at: culprit, attempts, tasks: untouched };
  const again = { positions: [positions[culprit] as number], attempts, deferrals: 0 };
  return { kind: 'retry', tasks: [again, ...untouched] };
}

/** The place of the item that was running, when it can be told. */
export function culpritOf(count: number, facts: LossFacts): number | undefined {
  if (facts.timedOutAt !== undefined) return facts.timedOutAt;
  if (count === 1) return 0;
  if (facts.started === undefined || facts.started === 0) return undefined;
  const last = Math.min(facts.started, count) - 1;
  // Several items were running at once: any of them may have ended the worker.
  return (facts.oldest ?? last) >= last ? last : undefined;
}

/** How far a running task's items have got: see `ItemsStarted` of the executor interface. */
export interface StartedItems {
  readonly started: number;
  readonly oldest: number;
  readonly blocking?: number | undefined;
}

/** A running task as the timeout watch sees it. */
export interface TimeoutWatch {
  /** Items started, as last seen. */
  seen: number;
  /** When each item that may still be running was first seen started (ms), by place. */
  readonly seenAt: number[];
  /** Set once the task's running item is found past the timeout. */
  timedOutAt: number | undefined;
}

/**
 * Updates a watch with how far the items have got now; returns the place of the item to stop for
 * running past `timeout`: an overlapping item whose synchronous call has run that long (while it
 * runs, no other item's promise can settle, so older items only seem to hang), else the oldest
 * item still running, when its start was seen more than `timeout` ago.
 */
export function checkTimeout(
  watch: TimeoutWatch,
  progress: StartedItems | undefined,
  now: number,
  timeout: number,
): number | undefined {
  if (progress === undefined || watch.timedOutAt !== undefined) return undefined;
  const { started, oldest } = progress;
  // Items that finished before they were ever seen need no start time.
  for (let place = Math.max(watch.seen, oldest); place < started; place++) watch.seenAt[place] = now;
  watch.seen = Math.max(watch.seen, started);
  const { blocking } = progress;
  const blockedSince = blocking === undefined ? undefined : watch.seenAt[blocking];
  if (blocking !== undefined && blockedSince !== undefined && now - blockedSince > timeout) {
    watch.timedOutAt = blocking;
    return blocking;
  }
  if (oldest < 0 || oldest >= started) return undefined;
  const since = watch.seenAt[oldest];
  if (since === undefined || now - since <= timeout) return undefined;
  watch.timedOutAt = oldest;
  return oldest;
}

/** How often running tasks are checked against `timeout` (ms): often enough to stop an item soon after. */
export function timeoutCheckPeriod(timeout: number): number {
  return Math.min(250, Math.max(5, timeout / 8));
}

/** A running task as {@link tasksPastTimeout} reads it. */
export interface WatchedTask {
  readonly id: number;
  /** How many items the task has. */
  readonly count: number;
  readonly watch: TimeoutWatch;
}

/**
 * The running tasks whose worker must be stopped now, for an item past `timeout`. `startedOf`
 * says how far a task's items have got, as its executor can tell.
 */
export function tasksPastTimeout(
  tasks: Iterable<WatchedTask>,
  startedOf: (id: number) => StartedItems | undefined,
  now: number,
  timeout: number,
): number[] {
  const overdue: number[] = [];
  for (const { id, count, watch } of tasks) {
    const started = startedOf(id);
    // Past the last item, the worker is sending results back: no item is running.
    if (started !== undefined && started.started > count) continue;
    if (checkTimeout(watch, started, now, timeout) !== undefined) overdue.push(id);
  }
  return overdue;
}
