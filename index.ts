export {
  AbortError,
  ParmapCloneError,
  ParmapError,
  ParmapScopeError,
  ParmapTaskError,
  ParmapWorkerError,
} from './parmap/errors.js';
export type { ParmapOptions, ProgressInfo } from './parmap/options.js';
export { parmap, type SpreadOptions } from './parmap/parmap.js';
export type { ParmapResult } from './parmap/result.js';
