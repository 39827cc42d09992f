// The types name Node's own (worker options, timers, Symbol.asyncDispose): kept in the published
// declarations, since TypeScript from version 7 loads no @types package by itself.
/// <reference types="node" preserve="true" />
export type { ParmapErrorOptions } from './parmap/errors.js';
export {
  AbortError,
  ParmapCloneError,
  ParmapError,
  ParmapGroupError,
  ParmapRemoteError,
  ParmapScopeError,
  ParmapSetupError,
  ParmapTaskError,
  ParmapTimeoutError,
  ParmapWorkerError,
  ThrownValueDescription,
} from './parmap/errors.js';
export { setWorkerBudget } from './parmap/executors/budget.js';
export { createPool, type MapOptions, type ParmapPool, type PoolOptions } from './parmap/front/create-pool.js';
export type {
  FunctionFromModule,
  ParmapOptions,
  ProgressDisplayOptions,
  ProgressInfo,
} from './parmap/front/options.js';
export { type Parmap, parmap, type SpreadOptions } from './parmap/front/parmap.js';
export type {
  GroupOptions,
  PairSource,
  Pipeline,
  PipelineOptions,
  PipelineProgress,
  ReduceOptions,
  StepOptions,
  StepProgress,
} from './parmap/front/pipeline.js';
export type { ParmapResult } from './parmap/scheduler/result.js';
