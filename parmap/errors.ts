/**
 * The errors a parmap call can end with, and the plain-data form in which a worker reports what its
 * function threw (a thrown value cannot cross a thread or process boundary with its class intact).
 */
import { serialize } from 'node:v8';

/** Base class of every runtime failure parmap reports. */
export class ParmapError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ParmapError';
  }
}

/** `fn` threw (or returned a rejected promise) for one item. */
export class ParmapTaskError extends ParmapError {
  /** The item's position in the input, counting from 0. */
  readonly index: number;

  constructor(index: number, cause: unknown) {
    super(`parmap: fn failed on item ${index}: ${describeThrown(cause)}${referenceHint(cause)}`, {
      cause,
    });
    this.name = 'ParmapTaskError';
    this.index = index;
  }
}

/** `fn` uses variables from the code around it that a worker cannot see. */
export class ParmapScopeError extends ParmapError {
  /** The variables fn uses but no worker can provide. */
  readonly names: readonly string[];

  constructor(names: readonly string[]) {
    const list = names.map((name) => `\`${name}\``).join(', ');
    const plural = names.length > 1;
    super(
      `parmap: fn uses ${list} from the code around it, and a worker cannot see ${plural ? 'them' : 'it'}. ` +
        `Pass ${plural ? 'them' : 'it'} with the scope option ({ scope: { ${names.join(', ')} } }), ` +
        'define or import it inside fn, or use n: 1 to run fn in this thread.',
    );
    this.name = 'ParmapScopeError';
    this.names = names;
  }
}

/** An item could not be sent to a worker, or a result could not be sent back. */
export class ParmapCloneError extends ParmapError {
  /** The item's position in the input, counting from 0. */
  readonly index: number;
  /** Which way the value was going: the item to a worker, or fn's result back. */
  readonly direction: 'item' | 'result';

  constructor(index: number, direction: 'item' | 'result', cause: unknown) {
    const what =
      direction === 'item'
        ? `item ${index} cannot be sent to a worker`
        : `the result of item ${index} cannot be sent back from its worker`;
    super(
      `parmap: ${what} (${describeThrown(cause)}). Values cross by structured clone: ` +
        'functions, symbols, class prototypes and handles do not survive. Send plain data, or use n: 1.',
      { cause },
    );
    this.name = 'ParmapCloneError';
    this.index = index;
    this.direction = direction;
  }
}

/** How a worker ended, as {@link ParmapWorkerError} tells it. */
export interface WorkerEndingInfo {
  readonly exitCode?: number | undefined;
  readonly signal?: string | undefined;
  readonly outOfMemory?: boolean | undefined;
  /** The heap limit it had (`maxMemory`), in MB. */
  readonly maxMemory?: number | undefined;
  /** An error thrown outside any item's call (from a timer, an unhandled rejection). */
  readonly uncaught?: unknown;
}

/** A worker ended while it held items: it exited, crashed, ran out of memory or was killed. */
export class ParmapWorkerError extends ParmapError {
  /** The input position of the item the worker was running, when known. */
  readonly index: number | undefined;
  /** The input positions of all the items the worker held. */
  readonly indices: readonly number[];
  /** The worker's exit code, when it exited. */
  readonly exitCode: number | undefined;
  /** The signal that ended a process worker, when one did. */
  readonly signal: string | undefined;
  /** Whether it went over its memory limit. */
  readonly outOfMemory: boolean;
  /** How many times the item was tried (1 + retries used). */
  readonly attempts: number;

  constructor(
    indices: readonly number[],
    ending: WorkerEndingInfo,
    details: { readonly index?: number | undefined; readonly attempts?: number; readonly after?: boolean } = {},
  ) {
    const { index, attempts = 1, after = false } = details;
    const what = after
      ? `after running ${describeIndices(indices)}, while idle`
      : index === undefined
        ? `while it held ${describeIndices(indices)}`
        : `while running item ${index}${indices.length > 1 ? ` (it held ${describeIndices(indices)})` : ''}`;
    const tries = attempts > 1 ? `, on each of ${attempts} tries` : '';
    super(`parmap: a worker ${describeEnding(ending)} ${what}${tries}. ${adviceFor(ending)}`, {
      cause: ending.uncaught,
    });
    this.name = 'ParmapWorkerError';
    this.index = index;
    this.indices = indices;
    this.exitCode = ending.exitCode;
    this.signal = ending.signal;
    this.outOfMemory = ending.outOfMemory === true;
    this.attempts = attempts;
  }
}

/** An item ran longer than the `timeout` option allows; its worker was stopped. */
export class ParmapTimeoutError extends ParmapError {
  /** The item's position in the input, counting from 0. */
  readonly index: number;
  /** The limit it ran past, in milliseconds. */
  readonly timeout: number;
  /** How many times the item was tried (1 + retries used). */
  readonly attempts: number;

  constructor(index: number, timeout: number, attempts = 1, inThisThread = false) {
    const consequence = inThisThread
      ? 'with n: 1 it runs in this thread, which cannot stop it: its result is dropped'
      : 'so its worker was stopped';
    super(
      `parmap: item ${index} ran longer than the timeout of ${timeout} ms${attempts > 1 ? ` on each of ${attempts} tries` : ''}, ` +
        `${consequence}. Raise \`timeout\`, or look at why this item is slow.`,
    );
    this.name = 'ParmapTimeoutError';
    this.index = index;
    this.timeout = timeout;
    this.attempts = attempts;
  }
}

function describeEnding(ending: WorkerEndingInfo): string {
  if (ending.outOfMemory) {
    return `ran out of memory${ending.maxMemory === undefined ? '' : ` (maxMemory: ${ending.maxMemory} MB)`}`;
  }
  if (ending.uncaught !== undefined)
    return `died of an error thrown outside fn's call (${describeThrown(ending.uncaught)})`;
  if (ending.signal !== undefined && ending.signal !== 'null') return `was killed by ${ending.signal}`;
  if (ending.exitCode !== undefined) return `exited with code ${ending.exitCode}`;
  return 'ended unexpectedly';
}

function adviceFor(ending: WorkerEndingInfo): string {
  if (ending.outOfMemory) return 'Raise `maxMemory`, or make the item need less memory.';
  if (ending.uncaught !== undefined) {
    return 'A timer or promise that fn started failed after fn returned: await it inside fn, or catch its errors.';
  }
  return (
    'fn must not call process.exit() nor leave errors unhandled in timers or promises (a process ' +
    "worker's own stderr shows its error); `retries` re-runs the items of a worker that died."
  );
}

/** The call was aborted through its `signal`. `cause` is the signal's reason. */
export class AbortError extends ParmapError {
  constructor(reason: unknown) {
    super('parmap: the call was aborted', { cause: reason });
    this.name = 'AbortError';
  }
}

function describeIndices(indices: readonly number[]): string {
  if (indices.length === 1) return `item ${indices[0]}`;
  const first = indices[0];
  const last = indices[indices.length - 1];
  const contiguous = first !== undefined && last !== undefined && last - first === indices.length - 1;
  return contiguous ? `items ${first} to ${last}` : `items ${indices.join(', ')}`;
}

function referenceHint(cause: unknown): string {
  if (!(cause instanceof ReferenceError)) return '';
  const match = /^(\S+) is not defined$/.exec(cause.message);
  if (match === null) return '';
  return ` (if \`${match[1]}\` is defined around fn, pass it with the scope option: { scope: { ${match[1]} } })`;
}

/** A short, never empty, description of any thrown value. */
export function describeThrown(value: unknown): string {
  if (value instanceof Error) {
    const message = value.message === '' ? '(no message)' : value.message;
    return `${value.name}: ${message}`;
  }
  return `a non-Error value was thrown: ${describeValue(value)}`;
}

/** A value as an option error or a thrown-value message shows it: `0` (number). */
export function describeValue(value: unknown): string {
  let shown: string;
  if (typeof value === 'string') shown = JSON.stringify(value);
  else if (typeof value === 'function') shown = `[function ${value.name || 'anonymous'}]`;
  else if (typeof value === 'bigint') shown = `${value}n`;
  else if (typeof value === 'object' && value !== null) {
    try {
      shown = JSON.stringify(value) ?? String(value);
    } catch {
      shown = Object.prototype.toString.call(value);
    }
    if (shown.length > 60) shown = `${shown.slice(0, 57)}...`;
  } else shown = String(value);
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  return `\`${shown}\` (${type})`;
}

/** What a worker reports of a thrown value: plain data that survives structured clone. */
export type ThrownReport =
  | {
      readonly kind: 'error';
      readonly name: string;
      readonly message: string;
      readonly stack: string | undefined;
      readonly properties: Record<string, unknown>;
      readonly cause?: ThrownReport;
    }
  | { readonly kind: 'value'; readonly value: unknown };

/**
 * Turns anything `fn` threw into a report that can be posted. Property values that cannot be cloned
 * (functions, symbols) are replaced by their description, so reporting a failure never fails.
 */
export function reportThrown(thrown: unknown, depth = 0): ThrownReport {
  if (!(thrown instanceof Error)) {
    return { kind: 'value', value: cloneable(thrown) ? thrown : describeValue(thrown) };
  }
  const properties: Record<string, unknown> = {};
  for (const key of Object.keys(thrown)) {
    if (key === 'name' || key === 'message' || key === 'stack' || key === 'cause') continue;
    const value = (thrown as unknown as Record<string, unknown>)[key];
    Object.defineProperty(properties, key, {
      value: cloneable(value) ? value : describeValue(value),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  const cause = 'cause' in thrown && depth < 8 ? reportThrown(thrown.cause, depth + 1) : undefined;
  return {
    kind: 'error',
    name: String(thrown.name),
    message: String(thrown.message),
    stack: typeof thrown.stack === 'string' ? thrown.stack : undefined,
    properties,
    ...(cause === undefined ? {} : { cause }),
  };
}

const BUILT_IN_ERRORS: Record<string, new (message?: string) => Error> = {
  Error,
  TypeError,
  RangeError,
  ReferenceError,
  SyntaxError,
  EvalError,
  URIError,
};

/** Rebuilds a reported thrown value in this thread: same class where it is built in, same fields. */
export function rebuildThrown(report: ThrownReport): unknown {
  if (report.kind === 'value') return report.value;
  const Constructor = BUILT_IN_ERRORS[report.name] ?? Error;
  const error = new Constructor(report.message);
  if (error.name !== report.name) {
    Object.defineProperty(error, 'name', { value: report.name, writable: true, configurable: true });
  }
  if (report.stack !== undefined) {
    Object.defineProperty(error, 'stack', { value: report.stack, writable: true, configurable: true });
  }
  for (const [key, value] of Object.entries(report.properties)) {
    Object.defineProperty(error, key, { value, enumerable: true, writable: true, configurable: true });
  }
  if (report.cause !== undefined) {
    Object.defineProperty(error, 'cause', {
      value: rebuildThrown(report.cause),
      writable: true,
      configurable: true,
    });
  }
  return error;
}

function cloneable(value: unknown): boolean {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol')) {
    return true;
  }
  return cloneProblem(value) === undefined;
}

/** Why structured clone (as workers use it) refuses a value, or `undefined` when it takes it. */
export function cloneProblem(value: unknown): string | undefined {
  try {
    serialize(value);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** The position of the first value structured clone refuses, or -1. */
export function firstUncloneable(values: readonly unknown[]): number {
  return values.findIndex((value) => cloneProblem(value) !== undefined);
}
