export {
  AbortError,
  ParmapCloneError,
  ParmapError,
  ParmapScopeError,
  ParmapTaskError,
  ParmapTimeoutError,
  ParmapWorkerError,
} from './parmap/errors.js';
export type { ParmapOptions, ProgressDisplayOptions, ProgressInfo } from './parmap/options.js';
export { parmap, type SpreadOptions } from './parmap/parmap.js';
export type { ParmapResult } from './parmap/result.js';
