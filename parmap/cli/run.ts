/**
 * The map command: the lines of stdin through `parmap`, one result per line to stdout, with every
 * failure told by its line number. Process-wide concerns (signals, the exit code, errors nobody
 * handled) belong to `main.ts`; this sees only what it is given: the streams, an abort signal, and
 * a tally of the lines done for `main.ts` to tell where the run was.
 */
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { runInThisContext } from 'node:vm';
import {
  type FunctionFromModule,
  ParmapError,
  type ParmapOptions,
  type ParmapResult,
  ParmapScopeError,
  ParmapSetupError,
  ParmapWorkerError,
  parmap,
} from '../../index.js';
import { type MapCommand, type OnErrorMode, UsageError } from './arguments.js';
import {
  describeError,
  type Failure,
  failureLine,
  failureOf,
  failureText,
  invalidJson,
  thrownText,
  unwritableResult,
  withoutPrefix,
  workerPlace,
} from './failures.js';
import { functionFromTextSettled } from './function-text.js';
import { formatResult, LineNumbers, type LineReader, LineWriter, parseJsonLine, readLines } from './lines.js';
import { functionFromModule, moduleReference, moduleSetupProblem } from './module-function.js';

/**
 * Line numbers kept for items already written: a worker that dies after its work is told by the
 * lines it ran, which may be this far back (chunks of up to 8,000 items, the last 64 remembered).
 */
const LINES_KEPT_BEHIND = 2 ** 19;

/** The exit codes of a run; interruptions (130, 143) are decided in `main.ts`. */
export const EXIT = { done: 0, failed: 1, usage: 2 } as const;

/** The streams and surroundings a command runs with. */
export interface CommandIo {
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** Where `--module` paths and the function's `require()` resolve from. */
  readonly cwd: string;
  /** Aborted on Ctrl-C or SIGTERM: stops the workers and ends the run. */
  readonly signal: AbortSignal;
  /** Told of each line whose result came back, for an error that no line's result carries. */
  readonly linesDone: LinesDone;
}

/**
 * How far a run has got, in lines whose result came back: the place `main.ts` gives for an error
 * that belongs to no line's result. With `-n 1` a timer or promise the function left behind fails
 * in this thread, after its line returned; which line started it, nothing records, so the place
 * is the last line known to have run, which need not be the one that left it.
 */
export class LinesDone {
  private count = 0;
  private lastLine: number | undefined;

  /** A result (or a failure) came back; `line` is `undefined` when it does not say (`--unordered`). */
  add(line: number | undefined): void {
    this.count += 1;
    this.lastLine = line;
  }

  /** `after line 7`; `after 3 lines` when the last result did not say its line; `before any line was done`. */
  get place(): string {
    if (this.lastLine !== undefined) return `after line ${this.lastLine}`;
    if (this.count === 0) return 'before any line was done';
    return `after ${this.count} line${this.count === 1 ? '' : 's'}`;
  }
}

type Callable = ((...args: never[]) => unknown) | FunctionFromModule;

/**
 * Runs the map command to its end and returns the exit code.
 * @throws UsageError when the function does not compile, the module cannot be loaded (with
 *   workers, once they have tried: see `module-function.ts`), or parmap refuses the call (as for
 *   a variable the function uses that no `--scope` gives).
 */
export async function runMap(command: MapCommand, io: CommandIo): Promise<number> {
  if (command.redis !== undefined && !process.env.PARMAP_SECRET) {
    throw new UsageError('--redis needs PARMAP_SECRET set to the secret the workers have (see parmap worker --help)');
  }
  const { fn } = await functionOf(command, io.cwd);
  const input = new InputItems(readLines(io.stdin), command.json, command.onError === 'throw');
  if ((io.stdin as { readonly isTTY?: boolean }).isTTY === true) {
    io.stderr.write('parmap: reading lines from the terminal; end them with Ctrl-D\n');
  }
  const results = startParmap(fn, input, optionsOf(command, io), io.cwd);
  const output = new Output(command.onError, command.json, new LineWriter(io.stdout, io.signal), io.stderr);
  /** The workers could not prepare the call from the `--module`: a usage error, told once the output is closed. */
  let unusable: ParmapSetupError | undefined;
  try {
    let position = 0;
    for await (const result of results) {
      const index = position++;
      // Unordered results do not say which item they are; errors do.
      const inOrder = command.ordered ? input.numbers.lineOf(index) : undefined;
      const line = result instanceof ParmapError ? (lineOfError(result, input.numbers) ?? inOrder) : inOrder;
      io.linesDone.add(line);
      await output.failedAll(input.takeProblems(command.ordered ? index : Number.POSITIVE_INFINITY));
      if (result instanceof ParmapError) await output.failed(line, failureOf(result));
      else await output.result(result, line);
      if (command.ordered) input.numbers.forgetBefore(index + 1 - LINES_KEPT_BEHIND);
      // Leaving the loop ends the call: its workers stop and the input is closed.
      if (output.stopped || io.signal.aborted) break;
    }
    await output.failedAll(input.takeProblems(Number.POSITIVE_INFINITY));
  } catch (error) {
    // An abort is not a failure to report: main.ts turns it into 130 or 143.
    if (!io.signal.aborted) {
      if (error instanceof ParmapSetupError && command.function.kind === 'module') unusable = error;
      else output.callFailed(error, input.numbers);
    }
  } finally {
    input.close();
  }
  const code = await output.finish();
  const source = command.function;
  if (unusable !== undefined && source.kind === 'module') throw await moduleSetupProblem(unusable, source, io.cwd);
  return code;
}

/** A line that could not become an item (not JSON), to report in its place. */
interface InputProblem {
  /** How many items came before it: it is reported just before the result of this item. */
  readonly before: number;
  readonly line: number;
  readonly failure: Failure;
}

/** The lines of stdin as parmap's items, numbered, with the lines that cannot be items set aside. */
class InputItems implements AsyncIterable<unknown> {
  readonly numbers = new LineNumbers();
  private readonly problems: InputProblem[] = [];

  constructor(
    private readonly reader: LineReader,
    private readonly json: boolean,
    /** Whether the first problem ends the input (`--on-error throw`): the lines before it still run. */
    private readonly stopAtProblem: boolean,
  ) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<unknown> {
    for await (const line of this.reader.lines) {
      if (!this.json) {
        this.numbers.addItem();
        yield line;
        continue;
      }
      const parsed = parseJsonLine(line);
      if (parsed.kind === 'value') {
        this.numbers.addItem();
        yield parsed.value;
        continue;
      }
      const number = this.numbers.skipLine();
      if (parsed.kind === 'invalid') {
        this.problems.push({ before: this.numbers.itemCount, line: number, failure: invalidJson(parsed.message) });
        if (this.stopAtProblem) return;
      }
    }
  }

  /** The problems to report before the result of item `index` (all of them for `Infinity`). */
  takeProblems(index: number): InputProblem[] {
    let count = 0;
    while (count < this.problems.length && (this.problems[count]?.before ?? 0) <= index) count += 1;
    return this.problems.splice(0, count);
  }

  close(): void {
    this.reader.close();
  }
}

/** Where results and failures go, as `--on-error` says, and the exit code they make. */
class Output {
  /** The failure that ends the run (`--on-error throw`): its line, or where in words. */
  private fatal: { readonly line: number | string | undefined; readonly failure: Failure } | undefined;
  /** A failure of the whole call rather than of one line (the workers could not be started). */
  private broken: unknown;
  private hasBroken = false;
  private skipped = 0;

  constructor(
    private readonly onError: OnErrorMode,
    private readonly json: boolean,
    private readonly writer: LineWriter,
    private readonly stderr: Writable,
  ) {}

  /** Whether nothing more should be written: a line failed for good, or stdout is gone. */
  get stopped(): boolean {
    return this.fatal !== undefined || this.writer.error !== undefined;
  }

  async result(value: unknown, line: number | undefined): Promise<void> {
    let text: string;
    try {
      text = formatResult(value, this.json);
    } catch (error) {
      return this.failed(line, unwritableResult(error));
    }
    await this.writer.write(text);
  }

  /** A failed line: ends the run (throw), becomes a line of output (return), or is reported (skip). */
  async failed(line: number | undefined, failure: Failure): Promise<void> {
    if (this.onError === 'throw') this.fatal ??= { line, failure };
    else if (this.onError === 'return') await this.writer.write(failureLine(line, failure));
    else {
      this.skipped += 1;
      this.report(failureText(line, failure, true));
    }
  }

  async failedAll(problems: readonly InputProblem[]): Promise<void> {
    for (const problem of problems) {
      if (this.stopped) return;
      await this.failed(problem.line, problem.failure);
    }
  }

  /** The call threw: a failed line (`--on-error throw`), or a failure of the whole call. */
  callFailed(error: unknown, numbers: LineNumbers): void {
    const line =
      error instanceof ParmapError
        ? (lineOfError(error, numbers) ??
          (error instanceof ParmapWorkerError ? workerPlace(error, (index) => numbers.lineOf(index)) : undefined))
        : undefined;
    if (line !== undefined) this.fatal ??= { line, failure: failureOf(error as ParmapError) };
    else {
      this.broken = error;
      this.hasBroken = true;
    }
  }

  /** Writes what is left, reports the outcome on stderr, and returns the exit code. */
  async finish(): Promise<number> {
    await this.writer.end();
    const writeError = this.writer.error as NodeJS.ErrnoException | undefined;
    // The reader went away (`| head`): a normal way for a pipeline to end.
    if (writeError?.code === 'EPIPE') return EXIT.done;
    if (writeError !== undefined) {
      this.report(`cannot write the output: ${writeError.message}`);
      return EXIT.failed;
    }
    if (this.hasBroken) {
      this.report(describeError(this.broken));
      return EXIT.failed;
    }
    if (this.fatal !== undefined) {
      this.report(failureText(this.fatal.line, this.fatal.failure));
      return EXIT.failed;
    }
    if (this.skipped > 0) {
      const lines = this.skipped === 1 ? '1 line failed and was' : `${this.skipped} lines failed and were`;
      this.report(`${lines} skipped`);
    }
    return EXIT.done;
  }

  private report(text: string): void {
    this.stderr.write(`parmap: ${text}\n`);
  }
}

/** The line of the item an error is about, when it names one. */
function lineOfError(error: ParmapError, numbers: LineNumbers): number | undefined {
  const index = (error as { readonly index?: unknown }).index;
  return typeof index === 'number' ? numbers.lineOf(index) : undefined;
}

/**
 * The function to map, wrapped: a promise of it would call a `then` it may have. A `--module` is
 * imported here only with `-n 1`, where the run imports it in this thread anyway; workers import
 * it themselves, and its top-level code never runs in this thread (see `module-function.ts`).
 */
async function functionOf(command: MapCommand, cwd: string): Promise<{ readonly fn: Callable }> {
  const source = command.function;
  if (source.kind === 'text') return functionFromTextSettled(source.text);
  return { fn: command.workers === 1 ? await functionFromModule(source, cwd) : moduleReference(source, cwd) };
}

function optionsOf(command: MapCommand, io: CommandIo): ParmapOptions {
  return {
    ...(command.workers === undefined ? {} : { n: command.workers }),
    chunksize: command.chunksize,
    ordered: command.ordered,
    ...(command.progress ? { progress: { stream: io.stderr } } : {}),
    // A function from the command line has nothing around it: with `-n 1` too, it runs as a
    // worker runs it (an explicit scope, even empty, says so), where `require`, `import()` and
    // `__dirname` resolve from the working directory.
    ...(command.scope === undefined && command.function.kind !== 'text' ? {} : { scope: command.scope ?? {} }),
    ...(command.timeout === undefined ? {} : { timeout: command.timeout }),
    retries: command.retries,
    // Skipping is returning, then leaving the error out.
    onError: command.onError === 'throw' ? 'throw' : 'return',
    signal: io.signal,
    ...(command.redis === undefined ? {} : { backend: { redis: command.redis } }),
  };
}

type ParmapCall = (
  call: typeof parmap,
  fn: Callable,
  items: AsyncIterable<unknown>,
  options: ParmapOptions,
) => ParmapResult<unknown>;

/**
 * Calls parmap from code that belongs to a file in the working directory: `require()`, `import()`
 * and `__dirname` inside fn resolve from the file that called parmap, which for a command must be
 * the directory it runs in, not parmap's install folder. The file need not exist.
 * @throws UsageError for a call parmap refuses before it starts.
 */
function startParmap(fn: Callable, items: AsyncIterable<unknown>, options: ParmapOptions, cwd: string) {
  const call = runInThisContext('(parmap, fn, items, options) => parmap(fn, items, options)', {
    filename: join(cwd, '[parmap command line]'),
  }) as ParmapCall;
  try {
    return call(parmap, fn, items, options);
  } catch (error) {
    if (error instanceof ParmapScopeError) {
      const them = error.names.length > 1 ? 'them' : 'it';
      const flags = error.names.map((name) => `--scope ${name}=<json>`).join(' ');
      throw new UsageError(
        `the function uses ${error.names.join(', ')} from outside it, which a worker cannot see: give ${them} with ${flags}, or define ${them} inside the function`,
      );
    }
    if (error instanceof TypeError || error instanceof RangeError) throw new UsageError(withoutPrefix(error.message));
    // What the function text made is no plain function (a proxy whose getters throw): it is the
    // text that is wrong.
    throw new UsageError(`the function cannot be sent to workers: ${thrownText(error)}`);
  }
}
