/**
 * Where the caller made a call, so that an error from a worker points at the caller's own code.
 * Errors are made on the main side when a worker's answer comes in, so their own stacks hold only
 * parmap's frames. The caller gets instead what a local `items.map(fn)` would have shown: fn's
 * frames, as the worker saw them, then the frames that led to the call.
 */
import { fileURLToPath } from 'node:url';
import { isInstance, ParmapError } from '../errors.js';

/** parmap's own files (the built package), whose frames say nothing to the caller. */
const OWN_FILES = fileURLToPath(new URL('../../', import.meta.url));

const withCallSite = new WeakSet<object>();

export class CallSite {
  private readonly captured: { stack?: string } = {};

  /** @param skip the function the caller called: it and the frames above it are left out. */
  constructor(skip: abstract new (...args: never[]) => unknown) {
    // Cheap: V8 formats the frames only if `stack` is ever read, on a failure.
    Error.captureStackTrace(this.captured, skip);
  }

  /** Gives a parmap error, once, the stack described above; other values are left alone. */
  attach(error: unknown): void {
    if (!isInstance(error, ParmapError) || withCallSite.has(error)) return;
    withCallSite.add(error);
    const callerFrames = callerFramesOf(this.captured.stack);
    if (callerFrames.length === 0) return;
    const fnFrames = callerFramesOf(stackOf(error.cause));
    const stack = [`${error.name}: ${error.message}`, ...fnFrames, ...callerFrames].join('\n');
    Object.defineProperty(error, 'stack', { value: stack, writable: true, configurable: true });
  }
}

/**
 * The stack of what fn or a context threw, if it can be read: a revoked Proxy throws at
 * `instanceof`, an Error whose message or name getter throws throws when its stack is formatted,
 * and either had replaced the call's own error with that of the getter.
 */
function stackOf(thrown: unknown): string | undefined {
  try {
    return thrown instanceof Error && typeof thrown.stack === 'string' ? thrown.stack : undefined;
  } catch {
    return undefined;
  }
}

/** The frames of a stack that belong to the caller's code (or to fn), not to parmap or Node. */
function callerFramesOf(stack: string | undefined): string[] {
  if (stack === undefined) return [];
  return stack
    .split('\n')
    .filter((line) => /^\s+at /.test(line) && !line.includes(OWN_FILES) && !line.includes('node:internal/'));
}
