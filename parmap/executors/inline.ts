/**
 * The executor of `n: 1`: the call runs in this thread with no worker, so closures work, values
 * are not copied, and stack traces are whole. Same call rules, errors, `onError`, context and
 * progress as on workers. `timeout` can only stop waiting for an async item (a busy loop in this
 * thread cannot be interrupted, so a sync item is judged when it returns); `retries` and
 * `maxMemory` have no worker to act on.
 */
import {
  cloneProblem,
  describeThrown,
  isInstance,
  isTimeoutError,
  ParmapError,
  ParmapSetupError,
  ParmapTimeoutError,
} from '../errors.js';
import { CANCELLED, type CallShape, type FunctionRef, MARK_CLAIM, MARK_STARTED, newChunkMarks } from '../protocol.js';
import { unpacked } from '../transfer.js';
import { runItems } from '../worker/chunk.js';
import { createInvoker, isThenable, keepingTruth, NO_CONTEXT } from '../worker/invoke.js';
import { contextThrew, loadFunction, release, SetupProblem } from '../worker/prepare.js';
import { type ChunkTask, type Executor, type ExecutorListener, type ItemsStarted, itemsStartedOf } from './executor.js';

type AnyFunction = (...args: unknown[]) => unknown;

/**
 * The results structured clone refuses, as a worker would find them. Primitives other than symbols
 * always cross, so only objects, functions and symbols are tried.
 */
function refusedResults(values: readonly unknown[]): { readonly at: number; readonly uncloneable: string }[] {
  const refused: { at: number; uncloneable: string }[] = [];
  for (const [at, value] of values.entries()) {
    const type = typeof value;
    if (type !== 'object' && type !== 'function' && type !== 'symbol') continue;
    const problem = value === null ? undefined : cloneProblem(value);
    if (problem !== undefined) refused.push({ at, uncloneable: problem });
  }
  return refused;
}

/** The longest delay a Node timer takes; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface InlineCall {
  /** The function itself, or (with `scope`, or from a module) as a worker would get it. */
  readonly fn: AnyFunction | FunctionRef;
  readonly context: AnyFunction | FunctionRef | undefined;
  readonly teardown: AnyFunction | FunctionRef | undefined;
  readonly callerFile: string;
  readonly shape: CallShape;
  readonly onError: 'throw' | 'return';
  readonly timeout: number | undefined;
  readonly concurrency: number;
  /**
   * Run as a worker would (fn rebuilt from its text): a result a worker could not send back
   * fails as it would there, with a `ParmapCloneError`, rather than being handed over as it is.
   */
  readonly resultsMustCross?: boolean;
  /** `parmap.filter`: only each result's truth is kept (see `CallSetup.keepsTruth`). */
  readonly keepsTruth?: boolean;
}

/** The chunk running now, and its marks: how far its items have got. */
interface RunningChunk {
  readonly id: number;
  readonly marks: Int32Array;
}

export class InlineExecutor implements Executor {
  readonly capacity = 1;
  readonly stoppable = false;
  private running: RunningChunk | undefined;
  private prepared: Promise<(item: unknown) => unknown> | undefined;
  private context: { readonly value: unknown; readonly teardown: AnyFunction | undefined } | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly call: InlineCall,
    private readonly listener: ExecutorListener,
  ) {}

  submit(task: ChunkTask): void {
    const running: RunningChunk = { id: task.id, marks: newChunkMarks(false) };
    this.running = running;
    void this.run(task, running);
  }

  private async run(task: ChunkTask, running: RunningChunk): Promise<void> {
    // Timers and I/O get a turn between chunks, so an abort from a timer can stop a sync fn.
    await new Promise((resolve) => setImmediate(resolve));
    if (this.closed) return;
    let invoke: (item: unknown) => unknown;
    try {
      this.prepared ??= this.prepare();
      invoke = await this.prepared;
    } catch (error) {
      if (!this.closed) this.listener.outcome(task.id, { kind: 'failed', error: setupFailure(error) });
      return;
    }
    const { marks } = running;
    if (this.closed) marks[MARK_CLAIM] = CANCELLED;
    const outcome = await runItems(unpacked(task.items), {
      invoke: this.timed(invoke, task.start, marks),
      onError: this.call.onError,
      marks,
      concurrency: this.call.concurrency,
    });
    if (this.running === running) this.running = undefined;
    if (this.closed) return;
    if (outcome.kind === 'threw') {
      const final = isTimeoutError(outcome.thrown);
      this.listener.outcome(task.id, {
        kind: 'threw',
        at: outcome.at,
        thrown: outcome.thrown,
        final,
        before: outcome.before,
      });
      return;
    }
    const refused = this.call.resultsMustCross ? refusedResults(outcome.values) : [];
    const [first] = refused;
    if (first !== undefined && this.call.onError === 'throw') {
      this.listener.outcome(task.id, { kind: 'uncloneable', at: first.at, message: first.uncloneable });
      return;
    }
    for (const { at } of refused) outcome.values[at] = undefined;
    this.listener.outcome(task.id, {
      kind: 'done',
      values: outcome.values,
      ms: outcome.ms,
      awaited: outcome.awaited,
      localFailures: outcome.failures,
      ...(refused.length > 0 ? { failures: refused } : {}),
    });
  }

  private async prepare(): Promise<(item: unknown) => unknown> {
    const { call } = this;
    const fn = await this.resolve(call.fn, 'fn');
    let context: unknown = NO_CONTEXT;
    if (call.context !== undefined) {
      const make = await this.resolve(call.context, 'context');
      const teardown = call.teardown === undefined ? undefined : await this.resolve(call.teardown, 'teardown');
      try {
        context = make();
        if (isThenable(context)) context = await context;
      } catch (error) {
        throw contextThrew(error);
      }
      this.context = { value: context, teardown };
    }
    const invoke = createInvoker(fn, call.shape, context);
    return call.keepsTruth === true ? keepingTruth(invoke) : invoke;
  }

  private resolve(ref: AnyFunction | FunctionRef, role: string): Promise<AnyFunction> | AnyFunction {
    if (typeof ref === 'function') return ref;
    return loadFunction(ref, this.call.callerFile, role);
  }

  /** fn, failing an item that runs past `timeout` (an async one is no longer waited for). */
  private timed(invoke: (item: unknown) => unknown, start: number, marks: Int32Array): (item: unknown) => unknown {
    const { timeout } = this.call;
    if (timeout === undefined) return invoke;
    return (item) => {
      const index = start + (marks[MARK_STARTED] as number) - 1;
      const startedAt = performance.now();
      const value = invoke(item);
      if (performance.now() - startedAt > timeout) throw new ParmapTimeoutError(index, timeout, 1, true);
      const left = timeout - (performance.now() - startedAt);
      if (!isThenable(value) || left > MAX_TIMER_MS) return value;
      // The abandoned item may still settle later; its outcome is no longer anyone's concern.
      Promise.resolve(value).catch(() => undefined);
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ParmapTimeoutError(index, timeout, 1, true)), left);
      });
      return Promise.race([value, expired]).finally(() => clearTimeout(timer));
    };
  }

  started(id: number): ItemsStarted | undefined {
    const { running } = this;
    return running?.id === id ? itemsStartedOf(running.marks) : undefined;
  }

  stop(): void {}

  want(): void {}

  hold(): void {}

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    // The chunk running now stops after its current item.
    if (this.running !== undefined) this.running.marks[MARK_CLAIM] = CANCELLED;
    await this.prepared?.catch(() => undefined);
    const context = this.context;
    this.context = undefined;
    if (context === undefined) return;
    try {
      await release(context.value, context.teardown);
    } catch (error) {
      // As on workers: the call's results stand, and the failure is told, not thrown.
      process.stderr.write(`parmap: releasing the context failed: ${describeThrown(error)}\n`);
    }
  }
}

function setupFailure(error: unknown): Error {
  if (error instanceof SetupProblem) {
    return new ParmapSetupError(`parmap: the call could not be prepared: ${error.message}`, { cause: error.cause });
  }
  return isInstance(error, Error)
    ? error
    : new ParmapError(`parmap: the call could not be prepared: ${describeThrown(error)}`, { cause: error });
}
