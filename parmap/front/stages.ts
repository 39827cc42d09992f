/**
 * One call of any stage: `parmap` (map), `parmap.filter`, `parmap.flatMap`, and the same on a pool.
 * fn runs in workers the same way for all three; what differs is what the caller gets of its
 * results, which the scheduler applies as they are handed out (`scheduler/delivery.ts`). One
 * place, so every entry point checks and prepares a call the same way.
 */
import type { StageKind } from '../job.js';
import { LazyResult, type ParmapResult } from '../scheduler/result.js';
import { type Placement, prepareRun } from './call.js';
import { callerFile } from './function-code.js';
import { type FunctionFromModule, resolveOptions } from './options.js';

type Callable = ((...args: never[]) => unknown) | FunctionFromModule;

/**
 * Checks and prepares a call; nothing runs until its result is consumed.
 * @param entry the function the caller called: the call's file is the one that called it.
 */
export function startCall(
  stage: StageKind,
  entry: (...args: never[]) => unknown,
  call: StageCallArguments,
  placement: Placement,
): ParmapResult<unknown> {
  return startCallFrom(stage, callerFile(entry), call, placement);
}

export interface StageCallArguments {
  readonly fn: unknown;
  readonly items: unknown;
  readonly options: unknown;
}

/**
 * {@link startCall} for a call whose file is already known (a pipeline's step, made where the
 * chain was written, and started later).
 */
export function startCallFrom(
  stage: StageKind,
  file: string,
  call: StageCallArguments,
  placement: Placement,
): ParmapResult<unknown> {
  const job = resolveOptions(call.fn, call.items, call.options, stage);
  const fn = call.fn as Callable;
  const items = call.items as Iterable<unknown> | AsyncIterable<unknown>;
  const run = prepareRun(fn, items, job, file, placement);
  // How many results filter and flatMap give is known only at the end.
  return new LazyResult(run, stage === 'map' ? job.total : undefined);
}
