/**
 * The function given as text on the command line, compiled in this thread: a syntax error is a
 * usage error that shows where it is, and what compiles is a real function whose source text
 * travels to the workers as any other.
 */
import { Script } from 'node:vm';
import { quote, UsageError } from './arguments.js';
import { thrownText } from './failures.js';

/** The name compiled code carries in V8's messages; the function text follows `(` on line 1. */
const SCRIPT_NAME = 'parmap-command-line-function';

/** What ends a line for V8. */
const LINE_BREAK = /\r\n|[\n\r\u2028\u2029]/;

/**
 * Compiles and evaluates `text` as one expression that must give a function.
 * @throws UsageError when it does not parse (showing the line, column and a caret), when
 *   evaluating it throws, or when it gives something else than a function.
 */
export function functionFromText(text: string): (...args: never[]) => unknown {
  let script: Script;
  try {
    // On a line of its own, the closing parenthesis is not swallowed by a trailing `// comment`.
    script = new Script(`(${text}\n)`, { filename: SCRIPT_NAME });
  } catch (error) {
    throw new UsageError(describeSyntaxError(text, error));
  }
  let value: unknown;
  try {
    value = script.runInThisContext();
  } catch (error) {
    throw evaluationFailed(text, error);
  }
  if (isThenable(value)) {
    // `import("fs")` and the like: what it settles to is never used, and a rejection must not end
    // the command as an unhandled error.
    try {
      value.then(undefined, () => undefined);
    } catch {
      // A thenable of its own whose then() throws: nothing was started to wait for.
    }
  }
  if (typeof value !== 'function') {
    throw new UsageError(
      `${shortQuote(text)} is not a function (it is ${describeType(value)}): write one, as in 'line => line.length'`,
    );
  }
  return value as (...args: never[]) => unknown;
}

/**
 * {@link functionFromText}, and then one turn of the event loop: what evaluating the text left to
 * fail a moment later (`(Promise.reject(error), x => x)`, a throwing `queueMicrotask`) is a usage
 * error too, not a crash. The function comes wrapped: as the value of a promise, one with a
 * `then` of its own would be called in its place.
 */
export async function functionFromTextSettled(text: string): Promise<{ readonly fn: (...args: never[]) => unknown }> {
  const { value, late } = await settledEvaluation(`the function ${shortQuote(text)}`, async () => ({
    fn: functionFromText(text),
  }));
  if (late.length > 0) throw evaluationFailed(text, late[0]);
  return value;
}

/**
 * Runs `evaluate` (the function text, a `--module` import), then waits one turn of the event loop
 * more, and gives what it made with the errors it left to fail later (a promise rejected and not
 * awaited, a throwing timer of 0 ms), which belong to the function's source, not to any line.
 * Until then `main.ts` leaves such errors to this (see {@link loadingTheFunction}). What
 * `evaluate` throws is thrown. What it gives is awaited, so a function comes wrapped in an object:
 * awaited as it is, a `then` of its own would be called.
 */
export async function settledEvaluation<T extends object>(
  /** What is evaluated, as the command line gave it: named if the process ends meanwhile. */
  what: string,
  evaluate: () => Promise<T>,
): Promise<{ readonly value: T; readonly late: readonly unknown[] }> {
  const late: unknown[] = [];
  const collect = (reason: unknown): void => {
    late.push(reason);
  };
  process.on('unhandledRejection', collect);
  process.on('uncaughtException', collect);
  loading.push(what);
  try {
    const value = await evaluate();
    // Node reports the promises left rejected once the current callback's microtasks are done.
    await new Promise((resolve) => setImmediate(resolve));
    return { value, late };
  } finally {
    loading.splice(loading.indexOf(what), 1);
    process.off('unhandledRejection', collect);
    process.off('uncaughtException', collect);
  }
}

const loading: string[] = [];

/** Whether an error now is the function source's, which {@link settledEvaluation} reports. */
export function loadingTheFunction(): boolean {
  return loading.length > 0;
}

/** What is being evaluated now, if anything: `--module './score.mjs'`, or the function's text. */
export function functionLoading(): string | undefined {
  return loading[0];
}

function evaluationFailed(text: string, error: unknown): UsageError {
  return new UsageError(`the function ${shortQuote(text)} fails when it is evaluated: ${thrownText(error)}`);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  try {
    return typeof (value as { then?: unknown }).then === 'function';
  } catch {
    // A proxy or getter that throws: not something to wait for.
    return false;
  }
}

/** Where in the function text a syntax error is: 1-based line and column. */
export interface TextPosition {
  readonly line: number;
  readonly column: number;
  /** At the end of the text: V8 names a token of what was added around it (its closing `)`). */
  readonly atEnd?: boolean;
}

/**
 * The message for a function that does not parse: V8's SyntaxError, then the line it is on with a
 * caret under the place. Node puts that place at the head of a compile error's stack
 * (`name:line`, the source line, a caret line); when it is missing, only the message is shown.
 */
export function describeSyntaxError(text: string, error: unknown): string {
  const position = syntaxErrorPosition(text, error);
  const head =
    position?.atEnd === true
      ? 'the function does not parse: it ends in the middle of an expression'
      : `the function does not parse: ${thrownText(error)}`;
  if (position === undefined) return head;
  const sourceLine = text.split(LINE_BREAK)[position.line - 1] ?? '';
  // Tabs stay tabs so that the caret lines up with the text above it.
  const indent = sourceLine.slice(0, position.column - 1).replace(/[^\t]/g, ' ');
  return `${head} (line ${position.line}, column ${position.column})\n  ${sourceLine}\n  ${indent}^`;
}

/** The place V8 reports for a compile error of {@link functionFromText}'s script, in `text`'s terms. */
export function syntaxErrorPosition(text: string, error: unknown): TextPosition | undefined {
  const stack = error instanceof Error && typeof error.stack === 'string' ? error.stack : '';
  // The caret line copies the tabs of the source line, so its indent is the column.
  const match = new RegExp(`^${SCRIPT_NAME}:(\\d+)\\n(.*)\\n([ \\t]*)\\^`).exec(stack);
  if (match === null) return undefined;
  const lines = text.split(LINE_BREAK);
  const line = Number(match[1]);
  const caret = match[3]?.length ?? 0;
  // Past the text: the error is at its end (the text stops in the middle of something).
  if (line > lines.length) return { line: lines.length, column: (lines.at(-1)?.length ?? 0) + 1, atEnd: true };
  // Line 1 starts with the `(` added around the text.
  const column = line === 1 ? Math.max(caret - 1, 0) : caret;
  return { line, column: column + 1 };
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (isThenable(value)) return 'a promise';
  if (typeof value === 'object') return 'an object';
  return `${typeof value === 'undefined' ? '' : `the ${typeof value} `}${String(value)}`.trim();
}

function shortQuote(text: string): string {
  return quote(text.length > 60 ? `${text.slice(0, 57)}...` : text);
}
