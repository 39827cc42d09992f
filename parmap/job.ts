/**
 * A call turned into a plain description, made once by the front (where every check happens) and
 * read by the scheduler and the executors.
 */
import type { RemoteJob } from './front/backend.js';
import type { FunctionFromModule, ProgressDisplayOptions, ProgressInfo } from './front/options.js';
import type { CallShape } from './protocol.js';

/**
 * What a call makes of fn's results, on the main side: `'map'` hands them out, `'filter'` hands
 * out the items whose result is truthy, `'flatMap'` hands out the elements of each result. fn runs
 * the same way in workers for all three.
 */
export type StageKind = 'map' | 'filter' | 'flatMap';

/** A call's options after checking, with defaults filled in: what the scheduler works from. */
export interface Job {
  readonly stage: StageKind;
  /** The name its errors give the call: its progress label, else fn's name; `undefined` for neither. */
  readonly stageName: string | undefined;
  readonly n: number;
  readonly inThisThread: boolean;
  readonly ordered: boolean;
  readonly chunksize: number | 'auto';
  /** Items of one worker in flight at once when fn returns promises. */
  readonly concurrency: number;
  /** Roughly the most bytes of items and results on their way at once. */
  readonly maxBytesInFlight: number;
  /** The most items fed to workers and not yet taken by the caller; `undefined`: a few chunks per worker. */
  readonly buffer: number | undefined;
  readonly shape: CallShape;
  readonly scope: Readonly<Record<string, unknown>> | undefined;
  readonly workerType: 'thread' | 'process';
  readonly total: number | undefined;
  /** The input's own length or size (not the `total` option), when it has one. */
  readonly knownLength: number | undefined;
  readonly progress: boolean | string | ProgressDisplayOptions | ((progress: ProgressInfo) => void);
  readonly signal: AbortSignal | undefined;
  readonly retries: number;
  readonly timeout: number | undefined;
  readonly onError: 'throw' | 'return';
  readonly maxMemory: number | undefined;
  readonly context: (() => unknown) | FunctionFromModule | undefined;
  readonly teardown: ((value: never) => unknown) | FunctionFromModule | undefined;
  /** Where chunks run when not on this process's workers: `parmap worker` processes, through Redis. */
  readonly remote: RemoteJob | undefined;
  /** Throws a TypeError naming the item when it has the wrong shape for `star` / `kwstar`; else none. */
  readonly checkItem: ((item: unknown, index: number) => void) | undefined;
}
