/**
 * The error an item's failure becomes, from what the executor said. One place, so a failure reads
 * the same whether its item ran on a thread, a process or this thread.
 */
import { ParmapCloneError, ParmapTaskError, ParmapTimeoutError, ParmapWorkerError } from '../errors.js';
import type { ChunkOutcome, WorkerEnding } from '../executors/executor.js';

type ItemOutcome = Extract<ChunkOutcome, { kind: 'threw' | 'uncloneable' | 'unsendable' }>;

/** `indexOf` turns a place within the chunk into an input index. */
export function itemErrorOf(outcome: ItemOutcome, indexOf: (at: number) => number): unknown {
  switch (outcome.kind) {
    case 'threw':
      return outcome.final === true ? outcome.thrown : new ParmapTaskError(indexOf(outcome.at), outcome.thrown);
    case 'uncloneable':
      return new ParmapCloneError(indexOf(Math.max(0, outcome.at)), 'result', new Error(outcome.message));
    case 'unsendable':
      return new ParmapCloneError(indexOf(outcome.at), 'item', outcome.cause);
  }
}

export interface LossDetails {
  /** Every item the worker held. */
  readonly indices: readonly number[];
  /** The item it was running, when known. */
  readonly index: number | undefined;
  readonly attempts: number;
  /** Set when the worker was stopped because the item ran past this limit (ms). */
  readonly timeout: number | undefined;
  readonly maxMemory: number | undefined;
  /** Its workers ended before starting any item, `attempts` times. */
  readonly beforeStart?: boolean | undefined;
}

/** The error for items whose worker ended while it held them. */
export function lossError(ending: WorkerEnding, details: LossDetails): Error {
  const { indices, index, attempts, timeout, maxMemory, beforeStart } = details;
  if (timeout !== undefined && index !== undefined) return new ParmapTimeoutError(index, timeout, attempts);
  return new ParmapWorkerError(indices, { ...ending, maxMemory }, { index, attempts, beforeStart });
}
