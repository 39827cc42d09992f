/**
 * Turns a call's set-up into something a worker can run: fn compiled (once per worker for a given
 * source) or imported from its module, the context value made (once per worker for a given
 * context), and the per-item caller. Anything that goes wrong becomes a {@link SetupFailure} that
 * says what, so the call fails before any item runs.
 */

import { describeThrown, describeValue, reportThrown } from '../errors.js';
import type { CallSetup, FunctionRef, SetupFailure, SourceFunction } from '../protocol.js';
import { createInvoker, isThenable, keepingTruth, NO_CONTEXT } from './invoke.js';
import { coverageCounter, isProvidedName, providedValue } from './prelude.js';
import { importFromCaller } from './resolve.js';

type AnyFunction = (...args: unknown[]) => unknown;

export interface PreparedCall {
  readonly invoke: (item: unknown) => unknown;
  readonly onError: 'throw' | 'return';
  readonly concurrency: number;
}

const compiled = new Map<string, AnyFunction>();

/** Context values made in this worker, by context source: a pool reuses them across calls. */
const contexts = new Map<string, { readonly value: unknown; readonly teardown: AnyFunction | undefined }>();

/** Names free in fn that this worker cannot provide. */
export function missingNames(code: SourceFunction): string[] {
  return code.freeNames.filter((name) => !isProvidedName(name) && !(name in globalThis));
}

/** Compiles (or imports) a function reference. Throws with a message saying which part failed. */
export async function loadFunction(ref: FunctionRef, callerFile: string, role: string): Promise<AnyFunction> {
  if (ref.kind === 'module') return loadModuleFunction(ref.specifier, ref.exportName, callerFile, role);
  const names = Object.keys(ref.scopeData);
  const values = Object.values(ref.scopeData);
  for (const name of ref.freeNames) {
    if (isProvidedName(name)) {
      names.push(name);
      values.push(providedValue(name, callerFile));
    }
  }
  for (const name of ref.coverageCounters) {
    names.push(name);
    values.push(coverageCounter);
  }
  const key = `${names.join(',')}\n${ref.body}`;
  let factory = compiled.get(key);
  if (factory === undefined) {
    factory = new Function(...names, ref.body) as AnyFunction;
    compiled.set(key, factory);
  }
  return factory(...values) as AnyFunction;
}

/** Imports `exportName` of a module and checks it is a function. */
export async function loadModuleFunction(
  specifier: string,
  exportName: string,
  callerFile: string,
  role: string,
): Promise<AnyFunction> {
  let namespace: Record<string, unknown>;
  try {
    namespace = (await importFromCaller(callerFile)(specifier)) as Record<string, unknown>;
  } catch (error) {
    throw new SetupProblem(
      `the module ${JSON.stringify(specifier)} of ${role} could not be imported: ${describeThrown(error)}`,
      error,
    );
  }
  const exported = Object.hasOwn(namespace, exportName);
  const value = exported ? namespace[exportName] : undefined;
  if (typeof value !== 'function') {
    const found = Object.keys(namespace).filter((name) => typeof namespace[name] === 'function');
    const what = exported
      ? `exports \`${exportName}\`, but it is ${describeValue(value)}, not a function`
      : `has no function exported as \`${exportName}\``;
    throw new SetupProblem(
      `the module ${JSON.stringify(specifier)} ${what} (for ${role}); ` +
        `its exported functions: ${found.length === 0 ? 'none' : found.join(', ')}`,
    );
  }
  return value as AnyFunction;
}

/** A set-up step failed; the message says which one. */
export class SetupProblem extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SetupProblem';
  }
}

/** The context function threw: said with what it threw, which the message alone must show. */
export function contextThrew(thrown: unknown): SetupProblem {
  return new SetupProblem(`the context function threw, so no item could run: ${describeThrown(thrown)}`, thrown);
}

/** Prepares a call, or says why it cannot run here. */
export async function prepareCall(setup: CallSetup): Promise<PreparedCall | SetupFailure> {
  const missing = [setup.fn, setup.context, setup.teardown].flatMap((ref) =>
    ref?.kind === 'source' ? missingNames(ref) : [],
  );
  if (missing.length > 0) return { missing: [...new Set(missing)] };
  try {
    const fn = await loadFunction(setup.fn, setup.callerFile, 'fn');
    const context = setup.context === undefined ? NO_CONTEXT : (await contextValue(setup)).value;
    const invoker = createInvoker(fn, setup.shape, context);
    return {
      invoke: setup.keepsTruth === true ? keepingTruth(invoker) : invoker,
      onError: setup.onError,
      concurrency: setup.concurrency,
    };
  } catch (error) {
    if (error instanceof SetupProblem) {
      return { missing: [], problem: error.message, thrown: reportThrown(error.cause) };
    }
    return { missing: [], problem: 'evaluating the scope values or the code of fn threw', thrown: reportThrown(error) };
  }
}

/** Set once the worker is told to stop: a context not yet begun is not made, only to be released. */
let stopped = false;

export function stopMakingContexts(): void {
  stopped = true;
}

/**
 * The context value, boxed: an async function's result is read for a `then`, which would run a
 * getter of the value's (or trip on a revoked Proxy) outside the context's own checks.
 */
async function contextValue(setup: CallSetup): Promise<{ readonly value: unknown }> {
  const ref = setup.context as FunctionRef;
  const key = JSON.stringify([ref, setup.teardown ?? null]);
  const made = contexts.get(key);
  if (made !== undefined) return made;
  const make = await loadFunction(ref, setup.callerFile, 'context');
  const teardown =
    setup.teardown === undefined ? undefined : await loadFunction(setup.teardown, setup.callerFile, 'teardown');
  if (stopped) throw new SetupProblem('the worker was stopped before it made the context');
  let value: unknown;
  try {
    value = make();
    if (isThenable(value)) value = await value;
  } catch (error) {
    throw contextThrew(error);
  }
  const context = { value, teardown };
  contexts.set(key, context);
  return context;
}

/**
 * Releases every context value this worker made: the `teardown` option, else the value's own
 * `Symbol.asyncDispose`, `Symbol.dispose` or `close()`. Bounded by `limitMs`; errors are reported
 * on stderr, since the call they belonged to may already have ended.
 */
export async function releaseContexts(limitMs: number): Promise<void> {
  const releases = [...contexts.values()].map(async ({ value, teardown }) => {
    try {
      await release(value, teardown);
    } catch (error) {
      process.stderr.write(`parmap: releasing a worker's context failed: ${describeThrown(error)}\n`);
    }
  });
  contexts.clear();
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, limitMs);
  });
  await Promise.race([Promise.all(releases), limit]);
  clearTimeout(timer);
}

/** Releases one context value. */
export async function release(value: unknown, teardown: AnyFunction | undefined): Promise<void> {
  if (teardown !== undefined) {
    await teardown(value);
    return;
  }
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return;
  const holder = value as Record<PropertyKey, unknown>;
  const asyncDispose = Symbol.asyncDispose === undefined ? undefined : holder[Symbol.asyncDispose];
  const dispose = Symbol.dispose === undefined ? undefined : holder[Symbol.dispose];
  if (typeof asyncDispose === 'function') await asyncDispose.call(value);
  else if (typeof dispose === 'function') dispose.call(value);
  else if (typeof holder.close === 'function') await (holder.close as AnyFunction).call(value);
}
