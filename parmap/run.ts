/**
 * What the two ways of running a call (on workers, or in this thread with `n: 1`) share: the
 * interface the result object consumes, and how a call's ending is shown.
 */
import { AbortError } from './errors.js';
import type { Ending, ProgressTracker } from './progress.js';

/** A call in progress, as the result object consumes it. */
export interface ChunkRun<R> {
  /** The next results (in input order when ordered), or `undefined` once every item is out. */
  nextChunk(): Promise<R[] | undefined>;
  /** Ends the call and releases everything it holds. Safe to call at any time, more than once. */
  close(): Promise<void>;
}

export type Input = Iterable<unknown> | AsyncIterable<unknown>;

/** Ends the progress display with how the call ended. A failing final callback fails a success only. */
export function finishProgress(
  progress: ProgressTracker | undefined,
  completed: boolean,
  failure: { error: unknown } | undefined,
): void {
  const ending: Ending =
    failure === undefined
      ? completed
        ? 'done'
        : 'stopped'
      : failure.error instanceof AbortError
        ? 'aborted'
        : 'failed';
  try {
    progress?.finish(ending);
  } catch (error) {
    if (ending === 'done') throw error;
  }
}
