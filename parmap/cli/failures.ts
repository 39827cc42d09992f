/**
 * How the command tells a failed line: the library's errors turned into a name and a message
 * about one line, without the item indices (counted from 0) that the library's messages use.
 */
import {
  ParmapCloneError,
  type ParmapError,
  ParmapTaskError,
  ParmapTimeoutError,
  ParmapWorkerError,
  ThrownValueDescription,
} from '../../index.js';

/** A failed line as it is reported: an error class's name and a message. */
export interface Failure {
  readonly name: string;
  readonly message: string;
  /** What to do about it, shown on stderr only (not in `--on-error return` lines). */
  readonly hint?: string;
}

/** What one item's failure was: what the function threw, or what happened to its worker. */
export function failureOf(error: ParmapError): Failure {
  if (error instanceof ParmapTaskError) return thrownFailure(error.cause);
  if (error instanceof ParmapTimeoutError) {
    return {
      name: error.name,
      message: `ran longer than the timeout of ${error.timeout} ms${tries(error.attempts)}, so its worker was stopped`,
    };
  }
  if (error instanceof ParmapWorkerError) {
    const cause = error.cause === undefined ? '' : ` (${thrownText(error.cause)})`;
    return {
      name: error.name,
      message: `its worker ${workerEnding(error)}${cause}${tries(error.attempts)}`,
      hint: error.outOfMemory
        ? 'the function needs less memory per line, or fewer workers'
        : 'the function must not call process.exit() nor leave errors unhandled; --retries re-runs the lines of a worker that died',
    };
  }
  if (error instanceof ParmapCloneError) {
    return {
      name: error.name,
      message: `its result cannot be sent back from the worker (${thrownText(error.cause)}): return plain data`,
    };
  }
  return { name: error.name, message: withoutPrefix(error.message) };
}

/**
 * A result that JSON cannot hold (a BigInt, a circular object), as the failure of its line: one
 * line that says what to return instead, as a result that cannot be sent back from a worker is
 * told. V8's own words do not do: the circular one takes three lines to draw the circle.
 */
export function unwritableResult(error: unknown): Failure {
  const message = describeError(error);
  const [why, remedy] = /BigInt/.test(message)
    ? ['it holds a BigInt', 'return it as a string (String(n)) or as a number (Number(n))']
    : /circular/i.test(message)
      ? ['it refers to itself', 'return plain data without cycles']
      : [firstLine(message), 'return plain data'];
  return { name: 'TypeError', message: `the result cannot be written as JSON (${why}): ${remedy}` };
}

/** The first line of a message, marked as cut when there was more: stderr gets one line per failure. */
function firstLine(message: string): string {
  const [first = ''] = message.split(/\r\n|[\n\r\u2028\u2029]/, 1);
  return first.length < message.length ? `${first.trimEnd()} ...` : first;
}

/** A `--json` line that is not JSON, as the failure of its line. */
export function invalidJson(message: string): Failure {
  return { name: 'SyntaxError', message: `not JSON: ${message}` };
}

/**
 * A failure as stderr tells it: `line 3: TypeError: three`, with its hint in parentheses, or
 * `line 3 skipped: TypeError: three` for `--on-error skip`. `line` may instead say where in words
 * (`after line 7, while idle`), for a failure no single line is known to have caused.
 */
export function failureText(line: number | string | undefined, failure: Failure, skipped = false): string {
  const hint = !skipped && failure.hint !== undefined ? ` (${failure.hint})` : '';
  const where = line === undefined ? 'a line' : typeof line === 'string' ? line : `line ${line}`;
  return `${where}${skipped ? ' skipped' : ''}: ${failure.name}: ${failure.message}${hint}`;
}

/**
 * Where a worker that died was, in lines, when no one line was running: `after line 7, while
 * idle` (a timer or promise of an earlier line failed), or `while it held lines 3 to 5`.
 */
export function workerPlace(error: ParmapWorkerError, lineOf: (index: number) => number): string | undefined {
  const lines = error.indices.map(lineOf);
  if (lines.length === 0) return undefined;
  const first = lines[0] as number;
  const last = lines[lines.length - 1] as number;
  const contiguous = last - first === lines.length - 1;
  const named =
    lines.length === 1 ? `line ${first}` : contiguous ? `lines ${first} to ${last}` : `lines ${lines.join(', ')}`;
  return error.whileIdle ? `after ${named}, while idle` : `while its worker held ${named}`;
}

/** The `--on-error return` line of a failure: one line of JSON. */
export function failureLine(line: number | undefined, failure: Failure): string {
  return JSON.stringify({ error: { line: line ?? null, name: failure.name, message: failure.message } });
}

/**
 * The library's messages start with `parmap: ` (or `parmap `, or `parmap (stage 'name'): ` when
 * fn has a name), which the command's own prefix repeats; a command runs one stage.
 */
export function withoutPrefix(message: string): string {
  return message.replace(/^parmap(?: \(stage '.*?'\))?:?\s+/, '');
}

/** An error's message without the library's prefix, or a thrown value in words. */
export function describeError(error: unknown): string {
  return error instanceof Error ? withoutPrefix(error.message) : shown(error);
}

/** What the function threw, as a name and a message (a thrown non-Error value said as such). */
function thrownFailure(thrown: unknown): Failure {
  if (!(thrown instanceof Error)) return { name: 'Error', message: thrownText(thrown) };
  const missing = thrown instanceof ReferenceError ? /^(\S+) is not defined$/.exec(thrown.message) : null;
  return {
    name: thrown.name,
    message: thrown.message,
    ...(missing === null
      ? {}
      : { hint: `if it is a value from outside the function, give it with --scope ${missing[1]}=<json>` }),
  };
}

/** What was thrown, in words: `TypeError: three`, or the value for one that is not an Error. */
export function thrownText(thrown: unknown): string {
  try {
    if (thrown instanceof Error) return `${thrown.name}: ${thrown.message}`;
    if (thrown instanceof ThrownValueDescription) return `a non-Error value was thrown: ${thrown.description}`;
    return `a non-Error value was thrown: ${shown(thrown)}`;
  } catch {
    // An error whose name or message is a getter that throws.
    return 'an error that cannot be shown';
  }
}

function shown(value: unknown): string {
  try {
    return typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value));
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function workerEnding(error: ParmapWorkerError): string {
  if (error.outOfMemory) return 'ran out of memory';
  if (error.signal !== undefined) return `was killed by ${error.signal}`;
  if (error.exitCode !== undefined) return `exited with code ${error.exitCode}`;
  return 'ended';
}

function tries(attempts: number): string {
  return attempts > 1 ? ` on each of ${attempts} tries` : '';
}
