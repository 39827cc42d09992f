/**
 * `parmap.pipeline(items)`: a chain of steps (map, filter, flatMap on workers; groupByKey and
 * reduceByKey in this thread), as pyParade's `dataset.map(f).group_by_key().map(g).collect()`.
 * Each worker step is one parmap call whose input is the previous step's result, so items stream
 * through with bounded room between steps. All worker steps share one set of workers made for the
 * run (chained calls with their own workers would take turns through the worker budget and
 * restart threads), stopped when the run ends, however it ends. One board shows every step.
 */
import { availableParallelism } from 'node:os';
import { AbortError, describeValue } from '../errors.js';
import { WorkerHost } from '../executors/worker-host.js';
import type { StageKind } from '../job.js';
import { KeyGroups, KeyReducer } from '../scheduler/grouping.js';
import { endingOf, KeyedStepIterator } from '../scheduler/keyed-step.js';
import { type BoardOutput, BoardRow, type Ending, PipelineBoard, type ProgressStream } from '../scheduler/progress.js';
import { LazyResult, type ParmapResult } from '../scheduler/result.js';
import type { Placement } from './call.js';
import type { StepCall } from './call-types.js';
import type { MapOptions } from './create-pool.js';
import { callerFile } from './function-code.js';
import { isPlainObject, type ProgressInfo, resolveOptions } from './options.js';
import { startCallFrom } from './stages.js';

/** One step's figures, as a pipeline's progress callback receives them. */
export interface StepProgress extends ProgressInfo {
  /** The step's label, or `'step 3, map'` (its position and kind) when it has none. */
  readonly label: string;
  /**
   * What waits in front of the step: items read from its input and not yet finished (waiting to
   * be sent, or running); for groupByKey the values it holds, for reduceByKey the keys.
   */
  readonly buffered: number | undefined;
  /** The bound on `buffered`: the step's `buffer` option, or groupByKey's `maxItems`. */
  readonly buffer: number | undefined;
}

/** What a pipeline's progress callback receives: every step's figures at once. */
export interface PipelineProgress {
  /** One entry per step, in chain order. */
  readonly steps: readonly StepProgress[];
}

/** Options of {@link pipeline}. They apply to every step unless a step sets its own. Every one is optional. */
export interface PipelineOptions {
  /**
   * Workers shared by all the worker steps. Default: `os.availableParallelism()`. `1` runs every
   * step in this thread, as `parmap`'s `n: 1` does (for debugging).
   */
  readonly n?: number;
  /** `'thread'` or `'process'`. Default: `'thread'`. */
  readonly workerType?: 'thread' | 'process';
  /** Heap limit per worker, in MB. Default: none. */
  readonly maxMemory?: number;
  /**
   * `true` shows one board on stderr with a row per step (label, buffer fill, done / total, %,
   * rate, ETA), redrawn in place on a terminal; elsewhere (a pipe, CI) one summary line per step
   * when the run ends. `{ stream }` draws there instead. A function receives every step's
   * figures in one {@link PipelineProgress}, at most ten times a second and once at the end.
   * Default: `false`.
   */
  readonly progress?: boolean | { readonly stream: ProgressStream } | ((progress: PipelineProgress) => unknown);
  /** Aborting it stops every step and rejects with an `AbortError`. Default: none. */
  readonly signal?: AbortSignal;
  /** The most values a `groupByKey` step holds (its `maxItems` overrides it). Default: 1,000,000. */
  readonly groupLimit?: number;
  /** As parmap's `buffer`, for every worker step. Default: none (a few chunks per worker). */
  readonly buffer?: number;
  /** As parmap's `ordered`. Default: `true`. */
  readonly ordered?: boolean;
  /** As parmap's `chunksize`. Default: `'auto'`. */
  readonly chunksize?: number | 'auto';
  /** As parmap's `concurrency`. Default: `32`. */
  readonly concurrency?: number;
  /** As parmap's `maxBytesInFlight`. Default: 32 MiB. */
  readonly maxBytesInFlight?: number;
  /** As parmap's `retries`. Default: `0`. */
  readonly retries?: number;
  /** As parmap's `timeout`, in milliseconds. Default: none. */
  readonly timeout?: number;
}

/** Options of one map, filter or flatMap step: those of `pool.map`, less `progress`, plus a label. */
export type StepOptions = Omit<MapOptions, 'progress'> & {
  /** The step's name on the board and in its errors. Default: `'step N, kind'` (`'step 3, map'`). */
  readonly label?: string;
};

/** Options of a `groupByKey` step. */
export interface GroupOptions {
  /** The step's name on the board and in its errors. Default: `'step N, groupByKey'`. */
  readonly label?: string;
  /**
   * The most values it holds: it must see all its input before it yields, so one value more fails
   * with a `ParmapGroupError` rather than exhausting memory. Default: the chain's `groupLimit`
   * (1,000,000).
   */
  readonly maxItems?: number;
}

/** Options of a `reduceByKey` step. */
export interface ReduceOptions<K, Acc> {
  /** The step's name on the board and in its errors. Default: `'step N, reduceByKey'`. */
  readonly label?: string;
  /** Makes a key's first accumulator. Default: none (a key's first value is its accumulator). */
  readonly initial?: (key: K) => Acc;
}

/** A chain whose items are `[key, value]` pairs: what groupByKey and reduceByKey read. */
export interface PairSource<K, V> {
  [Symbol.asyncIterator](): AsyncIterator<readonly [K, V]>;
}

/**
 * A chain of steps over items of type `T`; see {@link pipeline}. Each method gives a new chain
 * (the one it is called on is unchanged); nothing runs until `collect()` or `for await`, and each
 * of those runs the chain anew, reading the items again.
 */
export interface Pipeline<T> extends AsyncIterable<T> {
  /** Runs `fn` on every item on the workers, like `parmap(fn, items, options)`. */
  readonly map: StepCall<T, 'map'>;
  /** Keeps the items for which `fn` is truthy, like `parmap.filter`. */
  readonly filter: StepCall<T, 'filter'>;
  /** Spreads each of `fn`'s results, like `parmap.flatMap`. */
  readonly flatMap: StepCall<T, 'flatMap'>;
  /**
   * `[key, value]` pairs to `[key, values[]]`, keys compared as `Map` keys, in the order each key
   * first appeared; runs in this thread. It must see all its input before it yields, so it holds
   * every value: at most `maxItems` (default 1,000,000), failing with a `ParmapGroupError` that
   * names the step and the limit beyond it. An item that is not a pair fails naming its index.
   */
  groupByKey<K, V>(this: PairSource<K, V>, options?: GroupOptions): Pipeline<[K, V[]]>;
  /**
   * `[key, value]` pairs to `[key, acc]`, folding each value in as it arrives with
   * `fn(acc, value)` in this thread (it may return a promise), so it holds one accumulator per
   * key. A key's first value is its first accumulator, or `initial(key)` makes one. Keys come in
   * the order each first appeared, once the input has ended.
   */
  reduceByKey<K, V>(
    this: PairSource<K, V>,
    fn: (acc: V, value: V) => V | PromiseLike<V>,
    options?: ReduceOptions<K, V>,
  ): Pipeline<[K, V]>;
  reduceByKey<K, V, Acc>(
    this: PairSource<K, V>,
    fn: (acc: Acc, value: V) => Acc | PromiseLike<Acc>,
    options: ReduceOptions<K, Acc> & { readonly initial: (key: K) => Acc },
  ): Pipeline<[K, Acc]>;
  /** Runs the chain and settles with the last step's results, or the first error. */
  collect(): Promise<T[]>;
  /** Runs the chain, streaming the last step's results; `break` stops every step. */
  [Symbol.asyncIterator](): AsyncIterableIterator<T>;
}

/** The default most values one groupByKey step holds. */
export const DEFAULT_GROUP_LIMIT = 1_000_000;

type WorkerStep = {
  readonly kind: StageKind;
  readonly fn: unknown;
  readonly options: Record<string, unknown>;
  readonly label: string | undefined;
  readonly callerFile: string;
};
type KeyedStep =
  | { readonly kind: 'groupByKey'; readonly label: string | undefined; readonly maxItems: number | undefined }
  | {
      readonly kind: 'reduceByKey';
      readonly label: string | undefined;
      readonly fn: (acc: unknown, value: unknown) => unknown;
      readonly initial: ((key: unknown) => unknown) | undefined;
    };
type Step = WorkerStep | KeyedStep;

type Items = Iterable<unknown> | AsyncIterable<unknown>;

/** The chain's options, checked, with defaults filled in. */
interface ChainSettings {
  readonly n: number;
  readonly workerType: 'thread' | 'process';
  readonly maxMemory: number | undefined;
  readonly output: BoardOutput;
  readonly signal: AbortSignal | undefined;
  readonly groupLimit: number;
  /** The options every worker step starts from. */
  readonly stepDefaults: Record<string, unknown>;
}

const STEP_DEFAULT_NAMES = ['buffer', 'ordered', 'chunksize', 'concurrency', 'maxBytesInFlight', 'retries', 'timeout'];
const CHAIN_OPTION_NAMES = ['n', 'workerType', 'maxMemory', 'progress', 'signal', 'groupLimit', ...STEP_DEFAULT_NAMES];

/**
 * Starts a chain of steps over `items` (any iterable or async iterable), as pyParade's datasets:
 * `await parmap.pipeline(lines).map(parse).filter(valid).map(toPair).reduceByKey(add).collect()`.
 * Worker steps run on one set of workers made for each run and stopped when it ends (done, error,
 * `break` or abort). Errors name their step (its label, or `'step 3, map'`) and the item's index
 * within that step's input.
 *
 * @throws TypeError or RangeError at once for bad options (and each step's at its own call).
 */
export function pipeline<T>(items: Iterable<T> | AsyncIterable<T>, options?: PipelineOptions): Pipeline<T> {
  if (!isIterable(items)) {
    throw new TypeError(`Expected \`items\` to be an Iterable or AsyncIterable, got ${describeValue(items)}`);
  }
  return chainOf(items, checkChainOptions(options), []) as Pipeline<T>;
}

function chainOf(source: Items, settings: ChainSettings, steps: readonly Step[]): Pipeline<unknown> {
  const next = (step: Step) => chainOf(source, settings, [...steps, step]);
  const workerStep = (kind: StageKind) =>
    function step(fn: unknown, options?: unknown): Pipeline<unknown> {
      return next(checkWorkerStep(kind, fn, options, settings, callerFile(step)));
    };
  return {
    map: workerStep('map'),
    filter: workerStep('filter'),
    flatMap: workerStep('flatMap'),
    groupByKey(options?: GroupOptions) {
      const { label, maxItems } = checkKeyedOptions('groupByKey', options, ['label', 'maxItems']);
      if (maxItems !== undefined) checkCount('maxItems', maxItems);
      return next({ kind: 'groupByKey', label: label as string | undefined, maxItems: maxItems as number | undefined });
    },
    reduceByKey(fn: unknown, options?: ReduceOptions<unknown, unknown>) {
      if (typeof fn !== 'function') {
        throw new TypeError(
          `Expected reduceByKey's \`fn\` to be a function (acc, value) => acc, got ${describeValue(fn)}`,
        );
      }
      const { label, initial } = checkKeyedOptions('reduceByKey', options, ['label', 'initial']);
      if (initial !== undefined && typeof initial !== 'function') {
        throw new TypeError(`Expected \`initial\` to be a function (key) => acc, got ${describeValue(initial)}`);
      }
      return next({
        kind: 'reduceByKey',
        label: label as string | undefined,
        fn: fn as KeyedStepFn,
        initial: initial as KeyedInitial,
      });
    },
    collect: () => collectRun(new PipelineRun(source, settings, steps)),
    [Symbol.asyncIterator]: () => iterateRun(new PipelineRun(source, settings, steps)),
  } as unknown as Pipeline<unknown>;
}

type KeyedStepFn = (acc: unknown, value: unknown) => unknown;
type KeyedInitial = ((key: unknown) => unknown) | undefined;

// ---------------------------------------------------------------------------------------------
// Checks, at each call, before anything runs

function checkChainOptions(options: unknown): ChainSettings {
  if (options === undefined) options = {};
  if (!isPlainObject(options)) {
    throw new TypeError(`Expected the options of parmap.pipeline to be a plain object, got ${describeValue(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!CHAIN_OPTION_NAMES.includes(key)) {
      throw new TypeError(
        `Unknown option \`${key}\` of parmap.pipeline. Known: ${CHAIN_OPTION_NAMES.join(', ')} (the others go to each step)`,
      );
    }
  }
  const given = options as PipelineOptions;
  const stepDefaults = Object.fromEntries(
    STEP_DEFAULT_NAMES.filter((key) => key in given).map((key) => [key, (given as Record<string, unknown>)[key]]),
  );
  // parmap's own checks, on a call that never runs.
  const checked = resolveOptions(() => undefined, [], {
    n: given.n,
    workerType: given.workerType,
    maxMemory: given.maxMemory,
    signal: given.signal,
    ...stepDefaults,
  });
  const groupLimit = given.groupLimit ?? DEFAULT_GROUP_LIMIT;
  checkCount('groupLimit', groupLimit);
  return {
    n: given.n ?? availableParallelism(),
    workerType: checked.workerType,
    maxMemory: checked.maxMemory,
    output: outputOf(given.progress),
    signal: given.signal,
    groupLimit,
    stepDefaults,
  };
}

function outputOf(progress: unknown): BoardOutput {
  if (progress === undefined || progress === false) return { kind: 'none' };
  if (progress === true) return { kind: 'display', stream: process.stderr };
  if (typeof progress === 'function')
    return { kind: 'callback', callback: progress as (p: PipelineProgress) => unknown };
  const stream = isPlainObject(progress) ? (progress.stream as { write?: unknown } | undefined) : undefined;
  if (
    !isPlainObject(progress) ||
    Object.keys(progress).some((key) => key !== 'stream') ||
    typeof stream !== 'object' ||
    stream === null ||
    typeof stream.write !== 'function'
  ) {
    throw new TypeError(
      `Expected the pipeline's \`progress\` to be a boolean, { stream } or a function, got ${describeValue(progress)}`,
    );
  }
  return { kind: 'display', stream: stream as ProgressStream };
}

function checkWorkerStep(
  kind: StageKind,
  fn: unknown,
  options: unknown,
  settings: ChainSettings,
  file: string,
): WorkerStep {
  if (options === undefined) options = {};
  if (!isPlainObject(options)) {
    throw new TypeError(`Expected the options of .${kind}() to be a plain object, got ${describeValue(options)}`);
  }
  const { label, ...rest } = options;
  checkLabel(label);
  if ('backend' in rest) {
    throw new TypeError(
      `\`backend\` does not go with a pipeline, whose steps share threads of this process: chain parmap() calls, each with its backend, instead of .${kind}()`,
    );
  }
  for (const key of ['progress', 'n', 'workerType', 'maxMemory']) {
    if (key in rest) {
      throw new TypeError(
        `\`${key}\` belongs to the chain: set it in parmap.pipeline(items, { ${key} }), not in .${kind}()`,
      );
    }
  }
  // The same checks as the call the step will make, on an input that never runs.
  resolveOptions(fn, [], { ...settings.stepDefaults, ...rest }, kind);
  return { kind, fn, options: rest, label: label as string | undefined, callerFile: file };
}

function checkKeyedOptions(kind: string, options: unknown, known: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (!isPlainObject(options)) {
    throw new TypeError(`Expected the options of .${kind}() to be a plain object, got ${describeValue(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key))
      throw new TypeError(`Unknown option \`${key}\` of .${kind}(). Known: ${known.join(', ')}`);
  }
  checkLabel(options.label);
  return options;
}

function checkLabel(label: unknown): void {
  if (label !== undefined && (typeof label !== 'string' || label === '')) {
    throw new TypeError(`Expected \`label\` to be a non-empty string, got ${describeValue(label)}`);
  }
}

function checkCount(name: string, value: unknown): void {
  if (!Number.isSafeInteger(value) || (value as number) < 1) {
    throw new RangeError(`Expected \`${name}\` to be a positive integer (values), got ${describeValue(value)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// One run of a chain

/** A step's name on the board and in its errors: its label, else its position and kind. */
function stepName(step: Step, position: number): string {
  return step.label ?? `step ${position + 1}, ${step.kind}`;
}

/**
 * Everything one run holds: the steps' results, the shared workers, the board, the abort that
 * stops every step. Made synchronously where the chain is consumed, so the source's iterator is
 * taken at once (inputs such as readline start emitting as soon as they exist).
 */
class PipelineRun {
  /** Aborted when the run ends early: every step still running stops. */
  private readonly controller = new AbortController();
  private readonly host: WorkerHost | undefined;
  private readonly board: PipelineBoard;
  /** Iterators the run reads through (counted inputs, keyed steps' inputs), closed at the end. */
  readonly opened: (Iterator<unknown> | AsyncIterator<unknown>)[] = [];
  /** The last step's result. */
  readonly output: Items;
  /** A progress callback's failure, which the run ends with. */
  private callbackFailure: { readonly error: unknown } | undefined;
  private readonly onAbort = (): void => this.controller.abort(this.settings.signal?.reason);

  constructor(
    source: Items,
    private readonly settings: ChainSettings,
    steps: readonly Step[],
  ) {
    const rows = steps.map((step, i) => new BoardRow(stepName(step, i), this.bufferOf(step)));
    this.board = new PipelineBoard(rows, settings.output);
    this.board.onCallbackFailure = (error) => {
      this.callbackFailure ??= { error };
      this.controller.abort(error);
    };
    const inThread = settings.n === 1;
    if (!inThread && steps.some((step) => step.kind !== 'groupByKey' && step.kind !== 'reduceByKey')) {
      const { n, workerType, maxMemory } = settings;
      this.host = new WorkerHost({ workers: n, workerType, maxMemory });
    }
    let current = source;
    steps.forEach((step, i) => {
      const row = rows[i] as BoardRow;
      const input = this.board.shown ? this.counted(current, row) : current;
      current =
        'callerFile' in step
          ? this.startWorkerStep(step, i, input, row, lengthOf(current))
          : this.startKeyedStep(step, i, input, row, lengthOf(current));
    });
    this.output = current;
  }

  private bufferOf(step: Step): number | undefined {
    if (step.kind === 'groupByKey') return step.maxItems ?? this.settings.groupLimit;
    if (step.kind === 'reduceByKey') return undefined;
    return (step.options.buffer ?? this.settings.stepDefaults.buffer) as number | undefined;
  }

  /** Starts drawing and listens for the caller's abort. */
  async start(): Promise<void> {
    const { signal } = this.settings;
    if (signal?.aborted) this.onAbort();
    else signal?.addEventListener('abort', this.onAbort, { once: true });
    await this.board.show();
  }

  private startWorkerStep(
    step: WorkerStep,
    position: number,
    input: Items,
    row: BoardRow,
    total: number | undefined,
  ): ParmapResult<unknown> {
    const { settings, host } = this;
    const stepSignal = step.options.signal as AbortSignal | undefined;
    const options = {
      ...settings.stepDefaults,
      ...(total === undefined ? {} : { total }),
      ...step.options,
      signal: stepSignal === undefined ? this.controller.signal : AbortSignal.any([this.controller.signal, stepSignal]),
      // The call's progress draws in the step's row, and its errors take the row's label as stage.
      progress: { label: stepName(step, position), stream: row.sink },
      n: host === undefined ? 1 : settings.n,
      workerType: settings.workerType,
      maxMemory: settings.maxMemory,
    };
    const placement: Placement =
      host === undefined ? { kind: 'own' } : { kind: 'pool', host, workerType: settings.workerType };
    return startCallFrom(step.kind, step.callerFile, { fn: step.fn, items: input, options }, placement);
  }

  private startKeyedStep(
    step: KeyedStep,
    position: number,
    input: Items,
    row: BoardRow,
    total: number | undefined,
  ): KeyedStepIterator {
    const fold =
      step.kind === 'groupByKey'
        ? new KeyGroups(step.maxItems ?? this.settings.groupLimit)
        : new KeyReducer(step.fn, step.initial);
    row.held = () => fold.held;
    const iterator = new KeyedStepIterator(input, fold, {
      name: stepName(step, position),
      row,
      total,
      signal: this.controller.signal,
    });
    this.opened.push(iterator.input);
    return iterator;
  }

  /** The input, counting in the step's row the items the step reads from it. */
  private counted(items: Items, row: BoardRow): Items {
    row.taken = 0;
    const opened = this.opened;
    const count = <S extends IteratorResult<unknown>>(step: S): S => {
      if (step.done !== true) (row.taken as number)++;
      return step;
    };
    if (typeof (items as Iterable<unknown>)[Symbol.iterator] === 'function') {
      return {
        [Symbol.iterator]() {
          const iterator = (items as Iterable<unknown>)[Symbol.iterator]();
          opened.push(iterator);
          return {
            next: () => count(iterator.next()),
            return: (value?: unknown) => iterator.return?.(value) ?? { done: true, value },
          };
        },
      };
    }
    return {
      [Symbol.asyncIterator]() {
        const iterator = (items as AsyncIterable<unknown>)[Symbol.asyncIterator]();
        opened.push(iterator);
        return {
          next: () => iterator.next().then(count),
          return: (value?: unknown) => Promise.resolve(iterator.return?.(value) ?? { done: true as const, value }),
        };
      },
    };
  }

  /** The error the run ends with: a callback's own, rather than the abort it caused. */
  failure(error: unknown): unknown {
    return this.callbackFailure?.error ?? error;
  }

  /** Ends the run: every step closed, the workers stopped, the board's last rows drawn. */
  async close(ending: Ending): Promise<void> {
    this.settings.signal?.removeEventListener('abort', this.onAbort);
    if (ending !== 'done') this.controller.abort(new AbortError('the pipeline ended'));
    for (const iterator of this.opened.reverse()) {
      await Promise.resolve(iterator.return?.()).catch(() => undefined);
    }
    try {
      await this.host?.close();
    } finally {
      this.board.finish(ending);
    }
  }
}

async function collectRun(run: PipelineRun): Promise<unknown[]> {
  let ending: Ending = 'failed';
  try {
    await run.start();
    const { output } = run;
    const results = output instanceof LazyResult ? await (output as ParmapResult<unknown>) : await drain(output);
    ending = 'done';
    return results;
  } catch (error) {
    ending = endingOf(error);
    throw run.failure(error);
  } finally {
    await run.close(ending);
  }
}

async function drain(items: Items): Promise<unknown[]> {
  const results: unknown[] = [];
  for await (const value of items) results.push(value);
  return results;
}

async function* iterateRun(run: PipelineRun): AsyncGenerator<unknown, void, undefined> {
  // `break` leaves at a yield: the run was stopped, not failed.
  let ending: Ending = 'stopped';
  try {
    await run.start();
    yield* run.output;
    ending = 'done';
  } catch (error) {
    ending = endingOf(error);
    throw run.failure(error);
  } finally {
    await run.close(ending);
  }
}

/** The number of items an input holds, when it says (a parmap result's `total` among them). */
function lengthOf(items: Items): number | undefined {
  const sized = items as { length?: unknown; size?: unknown; total?: unknown };
  if (typeof items === 'string') return undefined;
  for (const count of [sized.length, sized.size, items instanceof LazyResult ? sized.total : undefined]) {
    if (Number.isSafeInteger(count)) return count as number;
  }
  return undefined;
}

function isIterable(value: unknown): value is Items {
  const candidate = value as { [Symbol.iterator]?: unknown; [Symbol.asyncIterator]?: unknown } | null | undefined;
  return (
    candidate !== null &&
    candidate !== undefined &&
    (typeof candidate[Symbol.iterator] === 'function' || typeof candidate[Symbol.asyncIterator] === 'function')
  );
}
