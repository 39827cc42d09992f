/**
 * `parmap worker`: serves remote calls until SIGTERM or Ctrl-C (the abort signal `main.ts` gives),
 * logging on stderr. See {@link WORKER_HELP}.
 */
import { ParmapRemoteError } from '../errors.js';
import { serveCalls } from '../executors/remote-serve.js';
import { type CommandIo, EXIT } from './run.js';
import type { WorkerCommand } from './worker-arguments.js';

export async function runWorker(command: WorkerCommand, io: CommandIo, env: NodeJS.ProcessEnv): Promise<number> {
  const prefix = `parmap worker ${process.pid}:`;
  const secret = env.PARMAP_SECRET;
  if (secret === undefined || secret === '') {
    io.stderr.write(
      `${prefix} PARMAP_SECRET is not set: set it to the secret the callers sign with (the same on every host)\n`,
    );
    return EXIT.usage;
  }
  try {
    await serveCalls({
      connection: command.connection,
      where: command.where,
      secret,
      prefix: command.prefix,
      slots: command.slots,
      lockMs: command.lockMs,
      log: (line) => io.stderr.write(`${prefix} ${line}\n`),
      signal: io.signal,
    });
  } catch (error) {
    if (!(error instanceof ParmapRemoteError)) throw error;
    io.stderr.write(`${prefix} ${error.message.replace(/^parmap: /, '')}\n`);
    return EXIT.failed;
  }
  return EXIT.done;
}
