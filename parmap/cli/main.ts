#!/usr/bin/env node
/**
 * The `parmap` command. This file is the process's side: it reads the command line, dispatches
 * it, turns Ctrl-C and SIGTERM into an abort, and sets the exit code. See `parmap --help`.
 */
import { fstatSync } from 'node:fs';
import { constants } from 'node:os';
import { type Command, parseCommandLine, UsageError } from './arguments.js';
import { thrownText, withoutPrefix } from './failures.js';
import { functionLoading, loadingTheFunction } from './function-text.js';
import { HELP, version } from './help.js';
import { type CommandIo, EXIT, LinesDone, runMap } from './run.js';
import { runWorker } from './worker.js';
import { WORKER_HELP } from './worker-arguments.js';

/** A worker stopped by SIGTERM or Ctrl-C has done what it is for: it exits with 0. */
let serving = false;

/** Runs one command line to its end; returns the exit code. */
async function run(argv: readonly string[], io: CommandIo): Promise<number> {
  try {
    const command: Command = parseCommandLine(argv, process.env);
    switch (command.kind) {
      case 'help':
        io.stdout.write(HELP);
        return EXIT.done;
      case 'version':
        io.stdout.write(`${version()}\n`);
        return EXIT.done;
      case 'map':
        if (stdinIsDirectory()) {
          throw new UsageError('stdin is a directory: give the lines in a file or a pipe, as in parmap fn < lines.txt');
        }
        return await runMap(command, io);
      case 'workerHelp':
        io.stdout.write(WORKER_HELP);
        return EXIT.done;
      case 'worker':
        serving = true;
        return await runWorker(command, io, process.env);
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr.write(`parmap: ${error.message}\nRun ${error.help} for the options and examples.\n`);
    return EXIT.usage;
  }
}

/** Node reads a directory given as stdin as an empty input, without a word. */
function stdinIsDirectory(): boolean {
  try {
    return fstatSync(0).isDirectory();
  } catch {
    return false;
  }
}

/** 128 plus the signal's number, as shells report a command ended by it: 130 for SIGINT. */
function exitCodeOf(signal: unknown): number {
  const number = typeof signal === 'string' ? constants.signals[signal as NodeJS.Signals] : undefined;
  return 128 + (number ?? constants.signals.SIGINT);
}

/** Set once the command has its exit code: an exit before then was not the command's own. */
let finished = false;

/** Ends the process now, with `code` (else `process.exitCode`), as the command's own decision. */
function exitNow(code?: number): never {
  finished = true;
  // Node counts the argument, not its value: `process.exit(undefined)` would exit with 0.
  return code === undefined ? process.exit() : process.exit(code);
}

const stop = new AbortController();
const onSignal = (signal: NodeJS.Signals): void => {
  // A second Ctrl-C does not wait for the workers to stop; nor does any while the function is
  // being loaded (a `--module` whose import never settles): nothing has run that could be stopped.
  if (stop.signal.aborted || loadingTheFunction()) exitNow(exitCodeOf(signal));
  stop.abort(signal);
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

/** Why the run was stopped when an error escaped everything: the exit code is then 1. */
const ESCAPED = Symbol('an error nobody handled');
/** The lines whose results came back: where the run was when an error escaped. */
const linesDone = new LinesDone();
/**
 * An error nobody handled: with `-n 1` the function runs in this thread, where a timer or promise
 * it started and left failing lands here. It belongs to no line's result, so `--on-error` cannot
 * put it in a line's place: the run stops as if interrupted, with exit code 1, and the message
 * says so, in one line, without parmap's stack, with the last line known to have run.
 */
const onEscaped = (error: unknown): void => {
  if (loadingTheFunction()) return;
  // After the first, the run is stopping: one message is enough.
  if (stop.signal.reason === ESCAPED) return;
  process.stderr.write(
    `parmap: ${linesDone.place}: an error nobody handled: ${thrownText(error)}. A timer or promise the function started failed after its line returned, so the error belongs to no line's result and --on-error does not apply: await it inside the function, or catch its errors.\n`,
  );
  if (stop.signal.aborted) exitNow(EXIT.failed);
  stop.abort(ESCAPED);
  // The run may be over already, its exit code set.
  process.exitCode = EXIT.failed;
};
process.on('uncaughtException', onEscaped);
process.on('unhandledRejection', onEscaped);
// Errors of a reader that went away (EPIPE) are noticed where they matter (stdout's by the map
// command's writer), never thrown.
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);

/** Settles once what was written to `stream` so far has been handed to the system, or failed to. */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength === 0 || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => stream.write('', () => resolve()));
}

/**
 * With `-n 1` the function runs in this thread, where `process.exit()` ends the command, and a
 * promise of the function that never settles leaves Node nothing to wait for: either way results
 * are missing, which the exit code must say.
 */
// Node runs out of work ('beforeExit') only when nothing is left to settle what is awaited;
// `process.exit()` ends the process without it.
let ranDry = false;
process.on('beforeExit', () => {
  ranDry = true;
});
process.on('exit', (exitCode) => {
  if (finished || serving) return;
  const loading = functionLoading();
  if (loading !== undefined) {
    const why = ranDry
      ? 'its top-level code awaits a promise that nothing is left to settle'
      : `its top-level code called process.exit(${exitCode})`;
    process.stderr.write(
      `parmap: the process ended while ${loading} was still loading, before any line was read: ${why}\n`,
    );
    process.exitCode = EXIT.failed;
    return;
  }
  process.stderr.write(
    `parmap: the process ended (exit code ${exitCode}) before every line was done: the function called process.exit(), or returned a promise that never settles\n`,
  );
  process.exitCode = EXIT.failed;
});

let code: number;
try {
  code = await run(process.argv.slice(2), {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    cwd: process.cwd(),
    signal: stop.signal,
    linesDone,
  });
} catch (error) {
  // Not a failing line nor a usage mistake: something parmap did not foresee.
  process.stderr.write(
    `parmap: ${error instanceof Error ? (error.stack ?? withoutPrefix(error.message)) : String(error)}\n`,
  );
  code = EXIT.failed;
}
const interrupted = stop.signal.aborted && stop.signal.reason !== ESCAPED;
process.exitCode =
  stop.signal.reason === ESCAPED ? EXIT.failed : interrupted && !serving ? exitCodeOf(stop.signal.reason) : code;
finished = true;
// The workers are stopped; stdin is the one thing left that could keep the process waiting.
process.stdin.destroy();
if (!serving) {
  // A line tool is done once its output is out: a timer or handle the function left behind (with
  // -n 1 it runs in this thread) must not hold the process. What is already due still fails the
  // run, whenever the last line ran: a promise left rejected, a timer of 0 ms (ours, set later with
  // the same delay, fires after it). Interrupted, the command waits for nothing, not even a reader
  // of stdout that stopped reading.
  if (!stop.signal.aborted) {
    const aborted = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve()));
    await Promise.race([new Promise((resolve) => setTimeout(resolve, 0)), aborted]);
    await Promise.race([Promise.all([flushed(process.stdout), flushed(process.stderr)]), aborted]);
  }
  exitNow();
}
// A worker that was stopped ends by itself once its connections close; a last resort, should
// anything else hold the event loop: a command must end.
setTimeout(() => exitNow(), 3000).unref();
