/**
 * The public options, their defaults, and the checks that reject a bad call before any worker
 * starts. Every message names the option and quotes the value it got.
 */
import { availableParallelism } from 'node:os';
import { describeValue } from '../errors.js';
import type { Job, StageKind } from '../job.js';
import type { CallShape } from '../protocol.js';
import { checkBackend, type RemoteBackendOptions } from './backend.js';

export type { CallShape };

/** What a progress callback receives: at most ten times a second while running, and once at the end. */
export interface ProgressInfo {
  /** Items finished so far (successes and failures). */
  readonly done: number;
  /** The number of items, when the input or the `total` option tells; otherwise `undefined`. */
  readonly total: number | undefined;
  /** Items whose call failed so far. */
  readonly failed: number;
  /** Items per second since the call started. */
  readonly rate: number;
  /** Seconds since the call started. */
  readonly elapsed: number;
  /** Estimated seconds left, when `total` is known and the rate is not zero. */
  readonly eta: number | undefined;
}

/** Where and under which label the progress display is shown. */
export interface ProgressDisplayOptions {
  /** The name at the start of the line. Default: `'parmap'`. */
  readonly label?: string;
  /**
   * Where to draw. Default: `process.stderr`. A terminal gets a spinner line that updates in place;
   * anything else (or any stream when the `CI` variable is set) gets a plain line now and then.
   */
  readonly stream?: { write(text: string): unknown; readonly isTTY?: boolean; readonly columns?: number };
}

/** Options of {@link parmap}. Every one is optional. */
export interface ParmapOptions {
  /**
   * Number of workers. Default: `os.availableParallelism()`. An explicit `1` runs `fn` in the
   * calling thread with no pool: closures work and stack traces are complete (for debugging).
   */
  readonly n?: number;
  /** `true`: results in input order. `false`: each result as soon as it is ready. Default: `true`. */
  readonly ordered?: boolean;
  /**
   * Items per message to a worker. Default: `'auto'`, which times a first chunk of one item, then
   * sends chunks of 10 ms to 250 ms of work (at most 8,000 items and about 1 MiB of items and
   * results) that shrink as the remaining items run out, so the last chunks end together.
   */
  readonly chunksize?: number | 'auto';
  /**
   * How many items one worker runs at once when `fn` returns promises (I/O-bound work: requests,
   * queries, files), so their waits overlap, as p-map's `concurrency` does in one thread. Results
   * still come in input order and errors still name their item. A sync `fn` runs one item at a
   * time whatever this says. `1` runs async items one after another. Default: `32`.
   */
  readonly concurrency?: number;
  /**
   * Roughly the most bytes of items and results on their way between this thread and the workers
   * at once, and not yet taken by the caller: chunks are cut smaller to stay under it, so a stream
   * of large items runs in bounded memory. Strings and binary data are weighed as they are read;
   * other items count as the average so far until their chunk is sent, then exactly. Each worker
   * still gets one item, however large. Default: 32 MiB (`32 * 2 ** 20`).
   */
  readonly maxBytesInFlight?: number;
  /**
   * The most items that may be fed to workers and not yet taken by the caller (read from the
   * input, running, or finished and waiting); chunks are cut no larger. It bounds the memory
   * between chained stages: a fast stage pauses its workers while a slow one downstream catches
   * up (Pypeline's `maxsize`, parallelpipe's `qsize`). Default: none (a few chunks per worker).
   */
  readonly buffer?: number;
  /** Each item is an array of positional arguments: `fn(...item, ...args)`. Default: `false`. */
  readonly star?: boolean;
  /**
   * Each item is `[arg, kw]` (or `[args, kw]` with `star`): `kw` is merged over `kwargs`, the item's
   * keys winning, and passed as the last argument. Default: `false`.
   */
  readonly kwstar?: boolean;
  /** Fixed positional arguments after the item's own. Default: `[]`. */
  readonly args?: readonly unknown[];
  /** A fixed options object passed as `fn`'s last argument. Default: none (no options argument). */
  readonly kwargs?: Readonly<Record<string, unknown>>;
  /**
   * Named values `fn` uses from the code around it, e.g. `{ factor, helper }`: sent once per worker
   * and visible inside `fn` as local constants. With `n: 1`, giving it (even `{}`) runs `fn` rebuilt
   * from its text as a worker would, rather than as it is. Default: none.
   */
  readonly scope?: Readonly<Record<string, unknown>>;
  /** `'thread'` (worker_threads) or `'process'` (child processes). Default: `'thread'`. */
  readonly workerType?: 'thread' | 'process';
  /** The number of items, when the input has no `length` or `size`. Default: read from the input. */
  readonly total?: number;
  /**
   * `true` shows progress on stderr, a string sets its label, `{ label, stream }` says where; a
   * function receives {@link ProgressInfo} instead, at most ten times a second and once at the end.
   * Default: `false`.
   */
  readonly progress?: boolean | string | ProgressDisplayOptions | ((progress: ProgressInfo) => void);
  /** Aborting it rejects the call with an `AbortError` and tears the pool down. Default: none. */
  readonly signal?: AbortSignal;
  /**
   * How many times to re-run, on a fresh worker and one at a time, the items of a worker that died
   * (or of an item that timed out). Default: `0`.
   */
  readonly retries?: number;
  /**
   * The longest one item may run, in milliseconds. An item that runs longer fails with a
   * `ParmapTimeoutError` and its worker is stopped. Default: none.
   */
  readonly timeout?: number;
  /**
   * `'throw'`: the first failing item fails the call. `'return'`: a failing item yields its error
   * (a `ParmapError`) in its place and the call goes on. Default: `'throw'`.
   */
  readonly onError?: 'throw' | 'return';
  /** Heap limit per worker, in MB: a worker over it fails with a clear out-of-memory error. Default: none. */
  readonly maxMemory?: number;
  /**
   * Makes a value once in each worker, before its first item (a database connection, a parser):
   * `fn` receives it as one more argument, after the item's own arguments and `args`, before the
   * options object. Sent like `fn` (its source text, seeing `scope`), or `{ module, export }`.
   * May be async. Default: none.
   */
  readonly context?: (() => unknown) | FunctionFromModule;
  /**
   * Releases the context value when the worker shuts down (on success, failure, `break` and abort
   * alike, within about 2 s). Default: the value's own `Symbol.asyncDispose`, `Symbol.dispose` or
   * `close()`, when it has one.
   */
  readonly teardown?: ((value: never) => unknown) | FunctionFromModule;
  /**
   * Runs the chunks on `parmap worker` processes, on this host or others, through Redis:
   * `{ redis: 'redis://host:6379' }`. Everything else about the call stays the same. Default: none
   * (workers of this process).
   */
  readonly backend?: RemoteBackendOptions;
}

/**
 * A function exported by a module, for code that cannot travel as text (it uses imports, classes
 * or native addons): each worker imports the module once.
 */
export interface FunctionFromModule {
  /** An absolute path, a `file:` URL (a string or a URL object), or a package name. */
  readonly module: string | URL;
  /** The export's name. Default: `'default'`. */
  readonly export?: string;
}

const OPTION_NAMES = [
  'n',
  'ordered',
  'chunksize',
  'concurrency',
  'maxBytesInFlight',
  'buffer',
  'star',
  'kwstar',
  'args',
  'kwargs',
  'scope',
  'workerType',
  'total',
  'progress',
  'signal',
  'retries',
  'timeout',
  'onError',
  'maxMemory',
  'context',
  'teardown',
  'backend',
] as const;

/** Items in flight per worker for an async fn: enough to overlap waits, few enough to stay gentle. */
export const DEFAULT_CONCURRENCY = 32;
/** A few tens of MB: large items stream in bounded memory, small ones never meet the bound. */
export const DEFAULT_BYTES_IN_FLIGHT = 32 * 2 ** 20;

/**
 * Checks `fn`, `items` and the options; throws a TypeError or RangeError naming the culprit.
 * `stage`: what the call makes of fn's results (`parmap`, `parmap.filter`, `parmap.flatMap`).
 */
export function resolveOptions(fn: unknown, items: unknown, options: unknown, stage: StageKind = 'map'): Job {
  if (typeof fn !== 'function' && !isFunctionFromModule(fn)) {
    throw new TypeError(`Expected \`fn\` to be a function or { module, export }, got ${describeValue(fn)}`);
  }
  if (isFunctionFromModule(fn)) checkFunctionFromModule('fn', fn);
  if (!isIterable(items)) {
    throw new TypeError(
      `Expected \`items\` to be an Iterable or AsyncIterable (an array, Set, generator, stream...), got ${describeValue(items)}`,
    );
  }
  if (options === undefined) options = {};
  if (!isPlainObject(options)) {
    throw new TypeError(`Expected \`options\` to be a plain object, got ${describeValue(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!(OPTION_NAMES as readonly string[]).includes(key)) {
      const near = closestName(key, OPTION_NAMES);
      throw new TypeError(
        `Unknown option \`${key}\`${near === undefined ? '' : `. Did you mean \`${near}\`?`} Known options: ${OPTION_NAMES.join(', ')}`,
      );
    }
  }
  const given = options as ParmapOptions;

  const n = given.n ?? availableParallelism();
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`Expected \`n\` to be a positive integer, got ${describeValue(given.n)}`);
  }
  const chunksize = given.chunksize ?? 'auto';
  if (chunksize !== 'auto' && (!Number.isSafeInteger(chunksize) || chunksize < 1)) {
    throw new RangeError(
      `Expected \`chunksize\` to be a positive integer or 'auto', got ${describeValue(given.chunksize)}`,
    );
  }
  const concurrency = given.concurrency ?? DEFAULT_CONCURRENCY;
  if (concurrency !== Number.POSITIVE_INFINITY && (!Number.isSafeInteger(concurrency) || concurrency < 1)) {
    throw new RangeError(
      `Expected \`concurrency\` to be a positive integer or Infinity, got ${describeValue(given.concurrency)}`,
    );
  }
  const maxBytesInFlight = given.maxBytesInFlight ?? DEFAULT_BYTES_IN_FLIGHT;
  if (!Number.isSafeInteger(maxBytesInFlight) || maxBytesInFlight < 1) {
    throw new RangeError(
      `Expected \`maxBytesInFlight\` to be a positive whole number of bytes, got ${describeValue(given.maxBytesInFlight)}`,
    );
  }
  const buffer = given.buffer;
  if (buffer !== undefined && (!Number.isSafeInteger(buffer) || buffer < 1)) {
    throw new RangeError(`Expected \`buffer\` to be a positive integer (items), got ${describeValue(buffer)}`);
  }
  const ordered = checkBoolean('ordered', given.ordered, true);
  const star = checkBoolean('star', given.star, false);
  const kwstar = checkBoolean('kwstar', given.kwstar, false);
  const args = given.args ?? [];
  if (!Array.isArray(args)) {
    throw new TypeError(`Expected \`args\` to be an array, got ${describeValue(given.args)}`);
  }
  if (given.kwargs !== undefined && !isPlainObject(given.kwargs)) {
    throw new TypeError(`Expected \`kwargs\` to be a plain object, got ${describeValue(given.kwargs)}`);
  }
  if (given.scope !== undefined) checkScope(given.scope);
  const workerType = given.workerType ?? 'thread';
  if (workerType !== 'thread' && workerType !== 'process') {
    throw new TypeError(`Expected \`workerType\` to be 'thread' or 'process', got ${describeValue(given.workerType)}`);
  }
  if (given.total !== undefined && (!Number.isSafeInteger(given.total) || given.total < 0)) {
    throw new RangeError(`Expected \`total\` to be a non-negative integer, got ${describeValue(given.total)}`);
  }
  const progress = given.progress ?? false;
  checkProgress(progress);
  const signal = given.signal;
  if (signal !== undefined && !isAbortSignal(signal)) {
    throw new TypeError(`Expected \`signal\` to be an AbortSignal, got ${describeValue(signal)}`);
  }
  const retries = given.retries ?? 0;
  if (!Number.isSafeInteger(retries) || retries < 0) {
    throw new RangeError(`Expected \`retries\` to be a non-negative integer, got ${describeValue(given.retries)}`);
  }
  const timeout = given.timeout;
  if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout > 0) || !Number.isFinite(timeout))) {
    throw new RangeError(`Expected \`timeout\` to be a positive number of milliseconds, got ${describeValue(timeout)}`);
  }
  const onError = given.onError ?? 'throw';
  if (onError !== 'throw' && onError !== 'return') {
    throw new TypeError(`Expected \`onError\` to be 'throw' or 'return', got ${describeValue(given.onError)}`);
  }
  const maxMemory = given.maxMemory;
  if (maxMemory !== undefined && (!Number.isSafeInteger(maxMemory) || maxMemory < 16)) {
    throw new RangeError(
      `Expected \`maxMemory\` to be a whole number of MB, at least 16, got ${describeValue(maxMemory)}`,
    );
  }
  for (const name of ['context', 'teardown'] as const) {
    const value = given[name];
    if (value === undefined || typeof value === 'function') continue;
    if (!isFunctionFromModule(value)) {
      throw new TypeError(`Expected \`${name}\` to be a function or { module, export }, got ${describeValue(value)}`);
    }
    checkFunctionFromModule(name, value);
  }
  if (given.teardown !== undefined && given.context === undefined) {
    throw new TypeError('`teardown` releases the value of `context`: give `context` too, or leave `teardown` out');
  }
  const remote = given.backend === undefined ? undefined : checkBackend(given.backend);
  if (remote !== undefined && given.n !== undefined) {
    throw new TypeError(
      '`n` and `backend` do not go together: with `backend`, each worker sets how many items it runs at once (`parmap worker -n`)',
    );
  }
  const shape: CallShape = { star, kwstar, args: [...args], kwargs: given.kwargs };
  return {
    stage,
    stageName: stageNameOf(fn, progress),
    n,
    inThisThread: given.n === 1,
    ordered,
    chunksize,
    concurrency,
    maxBytesInFlight,
    buffer,
    shape,
    scope: given.scope,
    workerType,
    total: given.total ?? lengthOf(items),
    knownLength: lengthOf(items),
    progress,
    signal,
    retries,
    timeout,
    onError,
    maxMemory,
    context: given.context,
    teardown: given.teardown,
    remote,
    checkItem: star || kwstar ? (item, index) => checkItemShape(item, index, shape) : undefined,
  };
}

/**
 * The name a call's errors give its stage in a pipeline: its progress label, else fn's name (a
 * module function's export, when named), else none.
 */
function stageNameOf(fn: unknown, progress: Job['progress']): string | undefined {
  const label = typeof progress === 'string' ? progress : isPlainObject(progress) ? progress.label : undefined;
  if (typeof label === 'string' && label !== '') return label;
  if (isFunctionFromModule(fn)) return fn.export;
  let name: unknown;
  try {
    name = (fn as { readonly name?: unknown }).name;
  } catch {
    // A class's static `name` getter may throw; such a function is refused later anyway.
  }
  return typeof name === 'string' && name !== '' ? name : undefined;
}

/** `{ module, export }`: a function a worker imports. */
export function isFunctionFromModule(value: unknown): value is FunctionFromModule {
  return isPlainObject(value) && 'module' in value;
}

function checkFunctionFromModule(name: string, value: FunctionFromModule): void {
  for (const key of Object.keys(value)) {
    if (key !== 'module' && key !== 'export') {
      throw new TypeError(`Unknown key \`${name}.${key}\`: a function from a module is { module, export }`);
    }
  }
  if (typeof value.module !== 'string' && !(value.module instanceof URL)) {
    throw new TypeError(
      `Expected \`${name}.module\` to be a path, a file: URL or a package name, got ${describeValue(value.module)}`,
    );
  }
  if (value.export !== undefined && typeof value.export !== 'string') {
    throw new TypeError(`Expected \`${name}.export\` to be the name of an export, got ${describeValue(value.export)}`);
  }
}

/**
 * Checks one item against `star` / `kwstar`, so a wrong shape fails in this thread naming the item
 * rather than as a confusing error inside `fn`.
 */
export function checkItemShape(item: unknown, index: number, shape: CallShape): void {
  if (shape.kwstar) {
    if (!Array.isArray(item) || item.length !== 2 || !isPlainObject(item[1])) {
      const expected = shape.star ? '[args array, options object]' : '[argument, options object]';
      throw new TypeError(
        `With \`kwstar: true\` each item must be ${expected}; item ${index} is ${describeValue(item)}`,
      );
    }
    if (shape.star && !Array.isArray(item[0])) {
      throw new TypeError(
        `With \`star: true\` and \`kwstar: true\` each item must be [args array, options object]; item ${index} has ${describeValue(item[0])} in place of the args array`,
      );
    }
  } else if (shape.star && !Array.isArray(item)) {
    throw new TypeError(
      `With \`star: true\` each item must be an array of arguments; item ${index} is ${describeValue(item)}`,
    );
  }
}

const RESERVED_WORDS = new Set(
  (
    'break case catch class const continue debugger default delete do else enum export extends false ' +
    'finally for function if import in instanceof new null return super switch this throw true try ' +
    'typeof var void while with yield let static implements interface package private protected ' +
    'public await arguments eval undefined NaN Infinity'
  ).split(' '),
);

/**
 * Whether `name` can be a variable that fn uses: an identifier (Unicode letters too, as in
 * `café`) that is no reserved word, nor a global fn could not shadow by a constant.
 */
export function isVariableName(name: string): boolean {
  return /^[\p{ID_Start}$_][\p{ID_Continue}$\u200C\u200D]*$/u.test(name) && !RESERVED_WORDS.has(name);
}

function checkScope(scope: unknown): void {
  if (!isPlainObject(scope)) {
    throw new TypeError(`Expected \`scope\` to be a plain object of named values, got ${describeValue(scope)}`);
  }
  for (const name of Object.keys(scope)) {
    if (!isVariableName(name)) {
      throw new TypeError(`Expected every \`scope\` key to be a variable name fn can use; \`${name}\` is not one`);
    }
  }
}

function checkProgress(progress: unknown): void {
  if (typeof progress === 'boolean' || typeof progress === 'string' || typeof progress === 'function') return;
  if (!isPlainObject(progress)) {
    throw new TypeError(
      `Expected \`progress\` to be a boolean, a label string, { label, stream } or a function, got ${describeValue(progress)}`,
    );
  }
  for (const key of Object.keys(progress)) {
    if (key !== 'label' && key !== 'stream') {
      throw new TypeError(`Unknown option \`progress.${key}\`. Known: label, stream`);
    }
  }
  if (progress.label !== undefined && typeof progress.label !== 'string') {
    throw new TypeError(`Expected \`progress.label\` to be a string, got ${describeValue(progress.label)}`);
  }
  const stream = progress.stream as { write?: unknown } | undefined;
  if (stream !== undefined && (typeof stream !== 'object' || stream === null || typeof stream.write !== 'function')) {
    throw new TypeError(`Expected \`progress.stream\` to be a writable stream, got ${describeValue(stream)}`);
  }
}

function checkBoolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    throw new TypeError(`Expected \`${name}\` to be a boolean, got ${describeValue(value)}`);
  }
  return value;
}

function isIterable(value: unknown): boolean {
  if (value === null || value === undefined) return false;
  const candidate = value as { [Symbol.iterator]?: unknown; [Symbol.asyncIterator]?: unknown };
  return typeof candidate[Symbol.iterator] === 'function' || typeof candidate[Symbol.asyncIterator] === 'function';
}

/** A literal-like object: its prototype is Object.prototype or null. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function isAbortSignal(value: unknown): value is AbortSignal {
  const candidate = value as Partial<AbortSignal> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.aborted === 'boolean' &&
    typeof candidate.addEventListener === 'function' &&
    typeof candidate.removeEventListener === 'function'
  );
}

/** The number of items an input holds, when it says: `length`, `size`, or a parmap result's `total`. */
function lengthOf(items: unknown): number | undefined {
  const sized = items as { length?: unknown; size?: unknown; total?: unknown; [Symbol.toStringTag]?: unknown };
  if (typeof items === 'string') return undefined;
  if (Number.isSafeInteger(sized.length)) return sized.length as number;
  if (Number.isSafeInteger(sized.size)) return sized.size as number;
  if (sized[Symbol.toStringTag] === 'ParmapResult' && Number.isSafeInteger(sized.total)) return sized.total as number;
  return undefined;
}

/** The known name within edit distance 2 of a misspelt one, or that it begins, if any. */
/** What peers call some options (workerpool's maxWorkers, joblib's n_jobs, the command's --workers). */
const NAMES_ELSEWHERE: Readonly<Record<string, string>> = {
  workers: 'n',
  maxworkers: 'n',
  numworkers: 'n',
  threads: 'n',
  processes: 'n',
  jobs: 'n',
  n_jobs: 'n',
  poolsize: 'n',
  cores: 'n',
};

export function closestName(name: string, known: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  const elsewhere = Object.hasOwn(NAMES_ELSEWHERE, lower) ? NAMES_ELSEWHERE[lower] : undefined;
  if (elsewhere !== undefined && known.includes(elsewhere)) return elsewhere;
  if (lower.length >= 4) {
    const extended = known.find((candidate) => candidate.toLowerCase().startsWith(lower.slice(0, -1)));
    if (extended !== undefined) return extended;
  }
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
