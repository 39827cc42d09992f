/**
 * Turns a checked call into what runs it: the function's set-up for workers (its source text or
 * module, scope, args, kwargs, context), encoded once, and the executor a run will drive. Shared
 * by `parmap()` and `pool.map()`, so both check and prepare a call the same way.
 */
import { existsSync } from 'node:fs';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ExecutorListener } from '../executors/executor.js';
import { type InlineCall, InlineExecutor } from '../executors/inline.js';
import { type RemoteCall, RemoteExecutor } from '../executors/remote.js';
import { WorkerHost } from '../executors/worker-host.js';
import { WorkerpoolExecutor } from '../executors/workerpool.js';
import type { Job } from '../job.js';
import type { CallSetup, FunctionRef, ModuleFunction } from '../protocol.js';
import { takeInput } from '../scheduler/input.js';
import { CallRun, type ExecutorFactory } from '../scheduler/run.js';
import { encode, toBytes } from '../transfer.js';
import { resolveFromCaller } from '../worker/resolve.js';
import type { RemoteJob } from './backend.js';
import { buildFunctionCode, checkFreeNames, holdsCode } from './function-code.js';
import type { FunctionFromModule } from './options.js';

type AnyFunction = (...args: unknown[]) => unknown;
type Callable = ((...args: never[]) => unknown) | FunctionFromModule;

let setupCount = 0;

/** Where a call's workers come from: a host of its own, or a pool's. */
export type Placement =
  | { readonly kind: 'own' }
  | { readonly kind: 'pool'; readonly host: WorkerHost; readonly workerType: 'thread' | 'process' };

/**
 * Everything done at the call itself, before any await: checks, the input's iterator taken, the
 * function prepared. Returns the run's factory; nothing starts until the result is consumed.
 */
export function prepareRun<R>(
  fn: Callable,
  items: Iterable<unknown> | AsyncIterable<unknown>,
  job: Job,
  callerFile: string,
  placement: Placement,
): (streaming: boolean) => CallRun<R> {
  const createExecutor: ExecutorFactory =
    job.remote !== undefined
      ? remoteExecutor(fn, job, callerFile, job.remote)
      : job.inThisThread && placement.kind === 'own'
        ? inlineExecutor(fn, job, callerFile)
        : workerExecutor(fn, job, callerFile, placement);
  const input = takeInput(items);
  return (streaming) => new CallRun<R>(input, job, createExecutor, streaming);
}

/**
 * `n: 1`: fn runs in this thread as it is, closures and all. With `scope` (even `{}`), it runs as a
 * worker would run it, rebuilt from its text with the scope's names, so a name given only in
 * `scope` means the same here as on workers, a name taken from around fn is refused as a worker
 * would refuse it, and so is a result a worker could not send back.
 */
function inlineExecutor(fn: Callable, job: Job, callerFile: string): ExecutorFactory {
  const rebuild = job.scope !== undefined;
  const local = (ref: Callable | undefined, role: string): AnyFunction | FunctionRef | undefined =>
    ref === undefined
      ? undefined
      : rebuild || typeof ref !== 'function'
        ? functionRef(ref, job, callerFile, role)
        : (ref as AnyFunction);
  const call: InlineCall = {
    fn: local(fn, 'fn') as AnyFunction | FunctionRef,
    context: local(job.context, 'context'),
    teardown: local(job.teardown, 'teardown'),
    callerFile,
    shape: job.shape,
    onError: job.onError,
    timeout: job.timeout,
    concurrency: job.concurrency,
    resultsMustCross: rebuild,
    keepsTruth: job.stage === 'filter',
  };
  return (listener) => new InlineExecutor(call, listener);
}

/** `backend: { redis }`: chunks run on `parmap worker` processes; the set-up travels as bytes. */
function remoteExecutor(fn: Callable, job: Job, callerFile: string, remote: RemoteJob): ExecutorFactory {
  const setup = encodeSetup(callSetup(fn, job, callerFile), job, toBytes);
  const call: RemoteCall = {
    remote,
    setup,
    workerType: job.workerType,
    timeout: job.timeout,
    maxMemory: job.maxMemory,
  };
  return (listener) => new RemoteExecutor(call, listener);
}

function callSetup(fn: Callable, job: Job, callerFile: string): CallSetup {
  return {
    id: `${process.pid}.${++setupCount}`,
    fn: functionRef(fn, job, callerFile, 'fn'),
    context: job.context === undefined ? undefined : functionRef(job.context, job, callerFile, 'context'),
    teardown: job.teardown === undefined ? undefined : functionRef(job.teardown, job, callerFile, 'teardown'),
    callerFile,
    shape: job.shape,
    onError: job.onError,
    concurrency: job.concurrency,
    keepsTruth: job.stage === 'filter',
  };
}

function workerExecutor(fn: Callable, job: Job, callerFile: string, placement: Placement): ExecutorFactory {
  const setup = callSetup(fn, job, callerFile);
  const workerType = placement.kind === 'pool' ? placement.workerType : job.workerType;
  const sharing = workerType === 'thread' ? 'shared' : 'unshared';
  const payload = encodeSetup(setup, job, (value) => encode(value, sharing));
  const known = job.knownLength;
  // No more workers than items, when the number of items is known.
  const workers = known === undefined ? job.n : Math.max(1, Math.min(job.n, known));
  // What a call's executor needs whether it runs on a pool's workers or on workers of its own.
  const common = {
    setupId: setup.id,
    setup: payload,
    maxMemory: job.maxMemory,
    graceful: job.context !== undefined,
    watchesTime: job.timeout !== undefined,
  };
  return (listener: ExecutorListener) => {
    if (placement.kind === 'pool') {
      const options = { ...common, setupWithStart: false, workerType: placement.workerType, ownsHost: false };
      return new WorkerpoolExecutor(placement.host, options, listener);
    }
    const threads = job.workerType === 'thread';
    const host = new WorkerHost({
      workers,
      workerType: job.workerType,
      maxMemory: job.maxMemory,
      threadSetup: threads ? payload : undefined,
    });
    const options = { ...common, setupWithStart: threads, workerType: job.workerType, ownsHost: true };
    return new WorkerpoolExecutor(host, options, listener);
  };
}

/** fn (or context, teardown) as a worker will get it; refuses at once what cannot be sent. */
function functionRef(value: Callable, job: Job, callerFile: string, role: string): FunctionRef {
  if (typeof value !== 'function') return moduleRef(value, callerFile, role);
  const code = buildFunctionCode(value as (...args: never[]) => unknown, job.scope);
  checkFreeNames(code.freeNames, (name) => name in globalThis, callerFile);
  return code;
}

/**
 * `{ module, export }` as a worker will import it. A file that does not exist, or a package the
 * caller cannot resolve, fails here, before any worker starts.
 */
function moduleRef(value: FunctionFromModule, callerFile: string, role: string): ModuleFunction {
  const exportName = value.export ?? 'default';
  const given = value.module instanceof URL ? value.module.href : value.module;
  let specifier: string;
  if (given.startsWith('file:')) specifier = given;
  else if (isAbsolute(given)) specifier = pathToFileURL(given).href;
  else if (given.startsWith('./') || given.startsWith('../'))
    specifier = pathToFileURL(resolvePath(callerFile, '..', given)).href;
  else {
    try {
      resolveFromCaller(given, callerFile);
    } catch (error) {
      throw new TypeError(
        `\`${role}.module\` names the package ${JSON.stringify(given)}, which cannot be found from ${callerFile}: install it, or give a path or a file: URL`,
        { cause: error },
      );
    }
    return { kind: 'module', specifier: given, exportName };
  }
  const path = fileURLToPath(specifier);
  if (!existsSync(path)) {
    throw new TypeError(`\`${role}.module\` is ${JSON.stringify(given)}, but there is no file at ${path}`);
  }
  return { kind: 'module', specifier, exportName };
}

/** Encodes the set-up once; a value that cannot be sent is named by its option. */
function encodeSetup<T>(setup: CallSetup, job: Job, encode: (value: unknown) => T): T {
  const parts: [string, unknown][] = [
    ['args', job.shape.args],
    ['kwargs', job.shape.kwargs],
    ...Object.entries(setup.fn.kind === 'source' ? setup.fn.scopeData : {}).map(([name, value]): [string, unknown] => [
      `scope.${name}`,
      value,
    ]),
  ];
  for (const [name, value] of parts.slice(0, 2)) {
    if (holdsCode(value)) {
      throw new TypeError(
        `\`${name}\` holds a function or a symbol, which cannot be sent to workers: pass functions in \`scope\`, or use n: 1 without \`scope\``,
      );
    }
  }
  try {
    return encode(setup);
  } catch (error) {
    const culprit = parts.find(([, value]) => {
      try {
        encode(value);
        return false;
      } catch {
        return true;
      }
    });
    throw new TypeError(
      `\`${culprit?.[0] ?? 'args'}\` cannot be sent to workers (${error instanceof Error ? error.message : String(error)}). ` +
        'Values cross by structured clone: pass plain data (functions go in scope), or use n: 1 without `scope`.',
      { cause: error },
    );
  }
}
