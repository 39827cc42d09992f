#!/usr/bin/env node
/**
 * The `parmap` command. This file is the process's side: it reads the command line, dispatches
 * it, turns Ctrl-C and SIGTERM into an abort, and sets the exit code. See `parmap --help`.
 */
import { constants } from 'node:os';
import { type Command, parseCommandLine, UsageError } from './arguments.js';
import { withoutPrefix } from './failures.js';
import { HELP, version } from './help.js';
import { type CommandIo, EXIT, runMap } from './run.js';
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
    io.stderr.write(`parmap: ${error.message}\nRun parmap --help for the options and examples.\n`);
    return EXIT.usage;
  }
}

/** 128 plus the signal's number, as shells report a command ended by it: 130 for SIGINT. */
function exitCodeOf(signal: unknown): number {
  const number = typeof signal === 'string' ? constants.signals[signal as NodeJS.Signals] : undefined;
  return 128 + (number ?? constants.signals.SIGINT);
}

const stop = new AbortController();
const onSignal = (signal: NodeJS.Signals): void => {
  // A second Ctrl-C does not wait for the workers to stop.
  if (stop.signal.aborted) process.exit(exitCodeOf(signal));
  stop.abort(signal);
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// Errors of a reader that went away (EPIPE) are noticed where they matter, never thrown.
process.stderr.on('error', () => undefined);

let code: number;
try {
  code = await run(process.argv.slice(2), {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    cwd: process.cwd(),
    signal: stop.signal,
  });
} catch (error) {
  // Not a failing line nor a usage mistake: something parmap did not foresee.
  process.stderr.write(
    `parmap: ${error instanceof Error ? (error.stack ?? withoutPrefix(error.message)) : String(error)}\n`,
  );
  code = EXIT.failed;
}
process.exitCode = stop.signal.aborted && !serving ? exitCodeOf(stop.signal.reason) : code;
// The workers are stopped; stdin is the one thing left that could keep the process waiting.
process.stdin.destroy();
// A last resort, should anything else hold the event loop: a command must end.
setTimeout(() => process.exit(), 3000).unref();
