/**
 * The errors a parmap call can end with, and the plain-data form in which a worker reports what its
 * function threw (a thrown value cannot cross a thread or process boundary with its class intact).
 */
import { types } from 'node:util';
import { deserialize, serialize } from 'node:v8';

/**
 * The options of {@link ParmapError}. Declared here rather than taken from lib es2022's
 * `ErrorOptions`, so that the published declarations compile in projects whose `lib` is older.
 */
export interface ParmapErrorOptions {
  readonly cause?: unknown;
}

/**
 * How each error's message reads with its stage named, for the errors whose message names items:
 * the stage goes right after them (`item 3 of stage 'parse'`).
 */
const messageInStage = new WeakMap<ParmapError, (stage: string) => string>();

/** Base class of every runtime failure parmap reports. */
export class ParmapError extends Error {
  /**
   * What caused it, when something did. Declared (not set) here, as lib es2022 declares it on
   * `Error`, so that projects whose `lib` is older see it too.
   */
  declare cause?: unknown;
  /**
   * The stage of a pipeline (chained calls) whose call failed: that call's progress label, else
   * its fn's name; the message says it too. Absent when the call has neither.
   */
  declare readonly stage?: string;

  constructor(message: string, options?: ParmapErrorOptions) {
    super(message, options);
    this.name = 'ParmapError';
  }
}

/** `fn` threw (or returned a rejected promise) for one item. */
export class ParmapTaskError extends ParmapError {
  /** The item's position in the input, counting from 0. */
  readonly index: number;

  constructor(index: number, cause: unknown) {
    const thrown = `${describeThrown(cause)}${referenceHint(cause)}`;
    const message = (stage: string) => `parmap: fn failed on item ${index}${stage}: ${thrown}`;
    super(message(''), { cause });
    this.name = 'ParmapTaskError';
    this.index = index;
    messageInStage.set(this, (stage) => message(ofStage(stage)));
  }
}

/** `fn` uses variables from the code around it that a worker cannot see. */
export class ParmapScopeError extends ParmapError {
  /** The variables fn uses but no worker can provide. */
  readonly names: readonly string[];

  /**
   * @param advice What to do about it, in place of the default advice to pass the names in `scope`:
   *   for callers that know that advice cannot work, as for a name that is imported.
   */
  constructor(names: readonly string[], advice?: string) {
    const list = names.map((name) => `\`${name}\``).join(', ');
    const them = names.length > 1 ? 'them' : 'it';
    super(
      `parmap: fn uses ${list} from the code around it, and a worker cannot see ${them}. ` +
        (advice ?? scopeAdvice(names, them)),
    );
    this.name = 'ParmapScopeError';
    this.names = names;
  }
}

function scopeAdvice(names: readonly string[], them: string): string {
  return (
    `Pass ${them} with the scope option ({ scope: { ${names.join(', ')} } }), ` +
    'define or import it inside fn, or use n: 1 without `scope` to run fn in this thread as it is.'
  );
}

/**
 * The call could not be prepared, so no item ran: the module of fn or of the context could not be
 * imported (a missing file inside it, a syntax error, top-level code that threw) or has no
 * function by the export's name, the context function threw, or evaluating fn's code or its
 * scope threw. `cause` is what was thrown, rebuilt as for {@link ParmapTaskError}, when something
 * was (a missing export throws nothing). On workers of this machine and with `n: 1`; with
 * `backend`, the remote workers' failure is a `ParmapRemoteError`.
 */
export class ParmapSetupError extends ParmapError {
  constructor(message: string, options?: ParmapErrorOptions) {
    super(message, options);
    this.name = 'ParmapSetupError';
  }
}

/** An item could not be sent to a worker, or a result could not be sent back. */
export class ParmapCloneError extends ParmapError {
  /** The item's position in the input, counting from 0. */
  readonly index: number;
  /** Which way the value was going: the item to a worker, or fn's result back. */
  readonly direction: 'item' | 'result';

  constructor(index: number, direction: 'item' | 'result', cause: unknown) {
    const problem = describeThrown(cause);
    const message = (stage: string) =>
      `parmap: ${
        direction === 'item'
          ? `item ${index}${stage} cannot be sent to a worker`
          : `the result of item ${index}${stage} cannot be sent back from its worker`
      } (${problem}). Values cross by structured clone: ` +
      'functions, symbols, class prototypes and handles do not survive. Send plain data, or use n: 1 without `scope`.';
    super(message(''), { cause });
    this.name = 'ParmapCloneError';
    this.index = index;
    this.direction = direction;
    messageInStage.set(this, (stage) => message(ofStage(stage)));
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
  /**
   * Whether the worker was idle when it died, after running `indices`: a timer or promise that
   * `fn` started failed after `fn` returned, so those items are not to blame for certain.
   */
  readonly whileIdle: boolean;

  constructor(
    indices: readonly number[],
    ending: WorkerEndingInfo,
    details: {
      readonly index?: number | undefined;
      readonly attempts?: number;
      readonly after?: boolean;
      /** It ended before starting any item, `attempts` times: the call's set-up ends it. */
      readonly beforeStart?: boolean | undefined;
    } = {},
  ) {
    const { index, attempts = 1, after = false, beforeStart = false } = details;
    const what = (stage: string) =>
      after
        ? `after running ${describeIndices(indices)}${stage}, while idle`
        : beforeStart
          ? `before starting any item${stage} (it held ${describeIndices(indices)})`
          : index === undefined
            ? `while it held ${describeIndices(indices)}${stage}`
            : `while running item ${index}${stage}${indices.length > 1 ? ` (it held ${describeIndices(indices)})` : ''}`;
    const tries = attempts > 1 ? `, on each of ${attempts} tries` : '';
    const ended = describeEnding(ending);
    const advice = beforeStart
      ? "What ends it is the call's set-up, not an item: the context function, or code that runs as fn is loaded (its module, or its scope values)."
      : adviceFor(ending);
    const message = (stage: string) => `parmap: a worker ${ended} ${what(stage)}${tries}. ${advice}`;
    super(message(''), { cause: ending.uncaught });
    messageInStage.set(this, (stage) => message(ofStage(stage)));
    this.name = 'ParmapWorkerError';
    this.index = index;
    this.indices = indices;
    this.exitCode = ending.exitCode;
    this.signal = ending.signal;
    this.outOfMemory = ending.outOfMemory === true;
    this.attempts = attempts;
    this.whileIdle = after;
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
    const message = (stage: string) =>
      `parmap: item ${index}${stage} ran longer than the timeout of ${timeout} ms${attempts > 1 ? ` on each of ${attempts} tries` : ''}, ` +
      `${consequence}. Raise \`timeout\`, or look at why this item is slow.`;
    super(message(''));
    this.name = 'ParmapTimeoutError';
    this.index = index;
    this.timeout = timeout;
    this.attempts = attempts;
    messageInStage.set(this, (stage) => message(ofStage(stage)));
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

/**
 * Remote workers (`backend: { redis }`) could not run the call: Redis cannot be reached, no
 * worker serves the call within `waitForWorkers`, or a worker refused its chunks (a secret that
 * differs). The message says which, and what to do.
 */
export class ParmapRemoteError extends ParmapError {
  constructor(message: string, options?: ParmapErrorOptions) {
    super(`parmap: ${message}`, options);
    this.name = 'ParmapRemoteError';
  }
}

/**
 * A `groupByKey` or `reduceByKey` step of a pipeline could not take its input: an item is not a
 * `[key, value]` pair (`index` says which), or groupByKey would hold more values than its limit
 * (`limit` says how many it may).
 */
export class ParmapGroupError extends ParmapError {
  /** The position, in the step's input, of the item that is not a pair. */
  readonly index: number | undefined;
  /** The most values the step may hold, when that is what it ran into. */
  readonly limit: number | undefined;

  constructor(detail: string, where: { readonly index?: number; readonly limit?: number }) {
    super(`parmap: ${detail}`);
    this.name = 'ParmapGroupError';
    this.index = where.index;
    this.limit = where.limit;
  }
}

/** How a message names the stage after an item: ` of stage 'parse'`. */
function ofStage(stage: string): string {
  return ` of stage '${stage}'`;
}

/**
 * Names the stage of a pipeline that a call's own error happened in: sets its `stage` and says it
 * in its message (`item 3 of stage 'parse'`; errors that name no item say `parmap (stage
 * 'parse'): ...`). An error that already has a stage keeps it: one passed on from an earlier stage
 * is never renamed by the stage that read it. Other values are left alone.
 */
export function nameStage(error: unknown, stage: string | undefined): void {
  if (stage === undefined || !attempt(() => error instanceof ParmapError, false)) return;
  const named = error as ParmapError;
  if (named.stage !== undefined) return;
  const before = named.message;
  const message =
    messageInStage.get(named)?.(stage) ?? before.replace(/^parmap: /, () => `parmap (stage '${stage}'): `);
  Object.defineProperty(named, 'stage', { value: stage, enumerable: true, writable: true, configurable: true });
  named.message = message;
  // A stack read before now was formatted with the old message at its head.
  const header = `${named.name}: ${before}`;
  const { stack } = named;
  if (message !== before && typeof stack === 'string' && stack.startsWith(header)) {
    named.stack = `${named.name}: ${message}${stack.slice(header.length)}`;
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
  if (!attempt(() => cause instanceof ReferenceError, false)) return '';
  const match = /^(\S+) is not defined$/.exec(attempt(() => String((cause as Error).message), ''));
  if (match === null) return '';
  return ` (if \`${match[1]}\` is defined around fn, pass it with the scope option: { scope: { ${match[1]} } })`;
}

/**
 * What a worker's thrown non-Error value becomes when structured clone cannot copy it (a function, a
 * symbol, an object holding one): the value stayed in its worker, so this tells what it was.
 */
export class ThrownValueDescription {
  /** What was thrown, as in `a function (anonymous)` or `Symbol(x)`. */
  readonly description: string;

  constructor(description: string) {
    this.description = description;
  }

  toString(): string {
    return this.description;
  }
}

/** A short, never empty, description of any thrown value. It never throws, whatever the value does. */
export function describeThrown(value: unknown): string {
  if (attempt(() => value instanceof ThrownValueDescription, false)) {
    return `a non-Error value was thrown: ${(value as ThrownValueDescription).description}`;
  }
  if (isError(value)) {
    const message = attempt(() => String(value.message), '(its message could not be read)');
    return `${attempt(() => String(value.name), 'Error')}: ${message === '' ? '(no message)' : shortened(message)}`;
  }
  return `a non-Error value was thrown: ${describeValue(value)}`;
}

/** The most of a thrown error's message that parmap's own message repeats; `cause` has it all. */
const MESSAGE_SHOWN = 2_000;

function shortened(message: string): string {
  if (message.length <= MESSAGE_SHOWN) return message;
  return `${message.slice(0, MESSAGE_SHOWN)}… (${message.length - MESSAGE_SHOWN} characters more, in \`cause\`)`;
}

/** A value as an option error or a thrown-value message shows it: `0` (number). */
export function describeValue(value: unknown): string {
  const type = value === null ? 'null' : attempt(() => Array.isArray(value), false) ? 'array' : typeof value;
  return `\`${shownValue(value)}\` (${type})`;
}

function shownValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return `[function ${functionName(value) || 'anonymous'}]`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value !== 'object' || value === null) return String(value);
  // Getters, toJSON and proxy traps run here, and any of them may throw.
  const shown =
    attempt(() => builtInShown(value), undefined) ??
    attempt(() => JSON.stringify(value) ?? String(value), undefined) ??
    attempt(() => Object.prototype.toString.call(value), '[object]');
  return shown.length > 60 ? `${shown.slice(0, 57)}...` : shown;
}

/** Built-in objects JSON shows wrongly (a Map as `{}`, a Date as a string), as their kind and size. */
function builtInShown(value: object): string | undefined {
  if (types.isProxy(value)) return undefined;
  if (types.isMap(value)) return `Map(${(value as Map<unknown, unknown>).size})`;
  if (types.isSet(value)) return `Set(${(value as Set<unknown>).size})`;
  if (types.isDate(value))
    return `Date(${Number.isNaN((value as Date).getTime()) ? 'invalid' : (value as Date).toISOString()})`;
  if (ArrayBuffer.isView(value)) {
    const kind = Buffer.isBuffer(value) ? 'Buffer' : Object.prototype.toString.call(value).slice(8, -1);
    return `${kind}(${value.byteLength} bytes)`;
  }
  return undefined;
}

function functionName(fn: unknown): string {
  // A class can define a static `name` getter, which may throw or return anything.
  const name = attempt(() => (fn as { readonly name?: unknown }).name, undefined);
  return typeof name === 'string' ? name : '';
}

/** What a worker reports of a thrown value: plain data that survives structured clone. */
export type ThrownReport =
  | {
      readonly kind: 'error';
      /** The built-in class it is an instance of (as a subclass or a DOMException), when there is one. */
      readonly builtIn?: string;
      readonly name: string;
      readonly message: string;
      readonly stack: string | undefined;
      readonly properties: Record<string, unknown>;
      readonly cause?: ThrownReport;
      /** An AggregateError's errors. */
      readonly errors?: readonly ThrownReport[];
    }
  | { readonly kind: 'value'; readonly value: unknown }
  /** A thrown value structured clone cannot copy, told in words. */
  | { readonly kind: 'described'; readonly description: string };

type ErrorReport = Extract<ThrownReport, { kind: 'error' }>;

/** How many causes (or AggregateError errors) deep a report goes; deeper ones are only described. */
const MAX_DEPTH = 8;

/**
 * Turns anything `fn` threw into a report that can be posted. Whatever cannot be copied (functions,
 * symbols, proxies, getters that throw) is replaced by its description, so reporting never fails.
 */
export function reportThrown(thrown: unknown, depth = 0): ThrownReport {
  return reportWithin(thrown, depth, new Set());
}

/** `enclosing` holds the errors that this one is a cause or an element of, to cut cycles. */
function reportWithin(thrown: unknown, depth: number, enclosing: Set<unknown>): ThrownReport {
  try {
    if (!isError(thrown)) return reportValue(thrown);
    if (enclosing.has(thrown)) return described('a circular reference back to an error that encloses it');
    if (depth > MAX_DEPTH) return described(`an error nested more than ${MAX_DEPTH} levels deep, left out`);
    enclosing.add(thrown);
    try {
      return reportError(thrown, depth, enclosing);
    } finally {
      enclosing.delete(thrown);
    }
  } catch (problem) {
    // The reading above is defensive throughout; this is the net for what it did not foresee.
    return described(`a value that could not be reported (${describeProblem(problem)})`);
  }
}

function reportValue(thrown: unknown): ThrownReport {
  if (typeof thrown === 'symbol' || typeof thrown === 'function') return described(describeUncopyable(thrown));
  if (typeof thrown !== 'object' || thrown === null) return { kind: 'value', value: thrown };
  const copy = copyOf(thrown);
  return copy === undefined ? described(describeUncopyable(thrown)) : { kind: 'value', value: copy.value };
}

function reportError(error: Error, depth: number, enclosing: Set<unknown>): ErrorReport {
  const builtIn = builtInClassOf(error);
  const name = attempt(() => String(error.name), 'Error');
  const stack = attempt(() => error.stack, undefined);
  const errors =
    builtIn === 'AggregateError' || name === 'AggregateError' ? reportErrors(error, depth, enclosing) : undefined;
  const cause = reportCause(error, depth, enclosing);
  return {
    kind: 'error',
    ...(builtIn === undefined ? {} : { builtIn }),
    name,
    message: fieldText(() => error.message, 'its message'),
    stack: typeof stack === 'string' ? stack : undefined,
    properties: reportProperties(error, errors !== undefined),
    ...(cause === undefined ? {} : { cause }),
    ...(errors === undefined ? {} : { errors }),
  };
}

function reportCause(error: Error, depth: number, enclosing: Set<unknown>): ThrownReport | undefined {
  if (!attempt(() => 'cause' in error, false)) return undefined;
  const cause = readField(error, 'cause');
  return 'failed' in cause ? described(cause.failed) : reportWithin(cause.value, depth + 1, enclosing);
}

function reportErrors(error: Error, depth: number, enclosing: Set<unknown>): readonly ThrownReport[] | undefined {
  return attempt(() => {
    const errors: unknown = (error as Partial<AggregateError>).errors;
    return Array.isArray(errors) ? errors.map((each) => reportWithin(each, depth + 1, enclosing)) : undefined;
  }, undefined);
}

/** Name, message, stack and cause have their own fields; so do an AggregateError's errors. */
const SET_APART = new Set(['name', 'message', 'stack', 'cause']);

function reportProperties(error: Error, hasErrors: boolean): Record<string, unknown> {
  const values = new Map<string, unknown>();
  for (const key of attempt(() => Object.keys(error), [])) {
    if (SET_APART.has(key) || (hasErrors && key === 'errors')) continue;
    const field = readField(error, key);
    values.set(key, 'failed' in field ? field.failed : field.value);
  }
  // Copied together, values that share objects still share them; fromEntries defines a `__proto__`
  // key as data. When one value stops the copy, each is copied alone and the culprit described.
  const together = copyOf(Object.fromEntries(values));
  return together === undefined ? copyEach(values) : (together.value as Record<string, unknown>);
}

function copyEach(values: ReadonlyMap<string, unknown>): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (const [key, value] of values) {
    const copy = copyOf(value);
    define(properties, key, copy === undefined ? describeUncopyable(value) : copy.value, true);
  }
  return properties;
}

/** Reads a property of a thrown value, whose getters and proxy traps may throw. */
function readField(object: object, key: string): { readonly value: unknown } | { readonly failed: string } {
  try {
    return { value: (object as Record<string, unknown>)[key] };
  } catch (problem) {
    return { failed: `(reading \`${key}\` threw ${describeProblem(problem)})` };
  }
}

function fieldText(read: () => unknown, what: string): string {
  try {
    return String(read());
  } catch (problem) {
    return `(reading ${what} threw ${describeProblem(problem)})`;
  }
}

/** What a getter or trap threw while a thrown value was read. */
function describeProblem(problem: unknown): string {
  return attempt(() => (isError(problem) ? describeThrown(problem) : describeValue(problem)), 'something');
}

/**
 * A copy made the way values travel to and from workers (v8 serialization, which advanced IPC also
 * uses), or undefined when that refuses the value. What it gives back is plain data to any clone.
 */
function copyOf(value: unknown): { readonly value: unknown } | undefined {
  try {
    return { value: deserialize(serialize(value)) };
  } catch {
    return undefined;
  }
}

function described(description: string): ThrownReport {
  return { kind: 'described', description };
}

/** Words for a value structured clone cannot copy, without the quoting of {@link describeValue}. */
function describeUncopyable(value: unknown): string {
  if (typeof value === 'symbol') return String(value);
  if (types.isProxy(value)) {
    const readable = attempt(() => JSON.stringify(value) !== undefined, false);
    return readable ? `a Proxy showing \`${shownValue(value)}\`` : 'a Proxy';
  }
  if (typeof value === 'function') return `a function ${functionName(value) || '(anonymous)'}`;
  if (typeof value !== 'object' || value === null) return shownValue(value);
  const prototype = attempt(() => Object.getPrototypeOf(value) as { constructor?: unknown } | null, null);
  const className = functionName(attempt(() => prototype?.constructor, undefined));
  const of = className === '' || className === 'Object' ? '' : ` (a ${className})`;
  return `an object that cannot be copied${of}: \`${shownValue(value)}\``;
}

/** Built-in error classes, most specific first, that a rebuilt error can be an instance of again. */
const BUILT_IN_CLASSES: readonly (readonly [string, abstract new (...args: never[]) => Error])[] = [
  ['DOMException', DOMException],
  ['AggregateError', AggregateError],
  ['TypeError', TypeError],
  ['RangeError', RangeError],
  ['ReferenceError', ReferenceError],
  ['SyntaxError', SyntaxError],
  ['EvalError', EvalError],
  ['URIError', URIError],
];

function builtInClassOf(error: Error): string | undefined {
  return BUILT_IN_CLASSES.find(([, Class]) => attempt(() => error instanceof Class, false))?.[0];
}

type Rebuilder = (message: string, report: ErrorReport, depth: number) => Error;

const plainError: Rebuilder = (message) => new Error(message);

/** Keyed by a name from a worker: a Map, so that names like `toString` or `__proto__` find nothing. */
const REBUILDERS = new Map<string, Rebuilder>([
  ['Error', plainError],
  ['TypeError', (message) => new TypeError(message)],
  ['RangeError', (message) => new RangeError(message)],
  ['ReferenceError', (message) => new ReferenceError(message)],
  ['SyntaxError', (message) => new SyntaxError(message)],
  ['EvalError', (message) => new EvalError(message)],
  ['URIError', (message) => new URIError(message)],
  ['DOMException', (message, report) => new DOMException(message, report.name)],
  [
    'AggregateError',
    (message, report, depth) =>
      new AggregateError(
        (report.errors ?? []).map((each) => rebuildWithin(each, depth + 1)),
        message,
      ),
  ],
]);

/** Rebuilds a reported thrown value in this thread: same class where it is built in, same fields. */
export function rebuildThrown(report: ThrownReport): unknown {
  return rebuildWithin(report, 0);
}

function rebuildWithin(report: ThrownReport, depth: number): unknown {
  if (report.kind === 'value') return report.value;
  if (report.kind === 'described') return new ThrownValueDescription(report.description);
  // A report is bounded when it is made, but one that arrives could be built by other code.
  if (depth > MAX_DEPTH) return new ThrownValueDescription('an error nested too deep, left out');
  const rebuild = REBUILDERS.get(report.builtIn ?? report.name) ?? plainError;
  const error = rebuild(report.message, report, depth);
  if (error.name !== report.name) define(error, 'name', report.name, false);
  if (report.stack !== undefined) define(error, 'stack', report.stack, false);
  for (const [key, value] of Object.entries(report.properties)) define(error, key, value, true);
  if (report.cause !== undefined) define(error, 'cause', rebuildWithin(report.cause, depth + 1), false);
  return error;
}

/** Defines rather than assigns, so that a key such as `__proto__` is data and never a prototype. */
function define(target: object, key: string, value: unknown, enumerable: boolean): void {
  try {
    Object.defineProperty(target, key, { value, enumerable, writable: true, configurable: true });
  } catch {
    // A property the new object will not let go of (none today) keeps its own value.
  }
}

/**
 * `value instanceof type`, false where asking throws: a revoked Proxy throws at `instanceof`, and
 * any value a caller's code throws or an input's iterator rejects with reaches parmap's checks.
 */
export function isInstance<T>(value: unknown, type: abstract new (...args: never[]) => T): value is T {
  return attempt(() => value instanceof type, false);
}

function isError(value: unknown): value is Error {
  return attempt(() => value instanceof Error, false) || types.isNativeError(value);
}

/** `read()`, or `fallback` when it throws: thrown values can carry getters and proxy traps that do. */
function attempt<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback;
  }
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

/**
 * `value instanceof ParmapTimeoutError`, for any value fn may have thrown: `instanceof` runs a
 * Proxy's `getPrototypeOf` trap, which may throw (a revoked Proxy does).
 */
export function isTimeoutError(value: unknown): value is ParmapTimeoutError {
  try {
    return value instanceof ParmapTimeoutError;
  } catch {
    return false;
  }
}
