/**
 * Progress: counts finished items (once per chunk, never per item) and shows them. On a terminal
 * an ora spinner line updates in place, about ten times a second; several calls at once (chained
 * stages) share one block of lines. Elsewhere (a pipe, a log file, CI) a plain line is printed at
 * growing intervals, so a long run stays a short log. A callback receives the counts instead.
 *
 * A pipeline's steps share one {@link PipelineBoard}: each step's call draws into its own row
 * (through a stand-in stream that names the row), and the board shows every row at once.
 */
import type { ProgressInfo } from '../front/options.js';
import type { PipelineProgress, StepProgress } from '../front/pipeline.js';
import type { Job } from '../job.js';
import { isThenable } from '../worker/invoke.js';

/** How a call ended, for the final progress line. */
export type Ending = 'done' | 'failed' | 'aborted' | 'stopped' | 'interrupted';

/** A stream the display can write to: a terminal or anything else. */
export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean | undefined;
  readonly columns?: number | undefined;
}

const REDRAW_MS = 100;
/** Plain lines: the first after this long, then at doubling intervals up to the cap. */
const FIRST_PLAIN_LINE_MS = 5_000;
const PLAIN_LINE_CAP_MS = 30_000;

export class ProgressTracker {
  private done = 0;
  private failed = 0;
  private total: number | undefined;
  private readonly startedAt = performance.now();
  private lastReport = Number.NEGATIVE_INFINITY;
  private ended = false;

  private display: StageDisplay | undefined;

  private constructor(
    total: number | undefined,
    private readonly callback: ((progress: ProgressInfo) => void) | undefined,
  ) {
    this.total = total;
  }

  /**
   * Starts the progress the `progress` option asks for, or returns `undefined` when it asks for
   * none. Loads ora only when a terminal will show a spinner.
   */
  static async start(options: Pick<Job, 'progress' | 'total'>): Promise<ProgressTracker | undefined> {
    const { progress, total } = options;
    if (progress === false) return undefined;
    if (typeof progress === 'function') return new ProgressTracker(total, progress);
    const label = typeof progress === 'string' ? progress : progress === true ? 'parmap' : (progress.label ?? 'parmap');
    const stream = (typeof progress === 'object' ? progress.stream : undefined) ?? process.stderr;
    if (isLiveTerminal(stream)) oraModule ??= await import('ora');
    const tracker = new ProgressTracker(total, undefined);
    tracker.display = boardFor(stream).add(label, () => tracker.snapshot());
    return tracker;
  }

  /** Records `count` more finished items, `failures` of them failed. Cheap: once per chunk. */
  add(count: number, failures = 0): void {
    this.done += count;
    this.failed += failures;
    if (this.callback === undefined) return;
    const now = performance.now();
    if (now - this.lastReport < REDRAW_MS) return;
    this.lastReport = now;
    this.report(this.snapshot());
  }

  /** The last report: on success `done === total`. Stops the display. Safe to call twice. */
  finish(ending: Ending): void {
    if (this.ended) return;
    this.ended = true;
    if (ending === 'done') this.total = this.done;
    try {
      if (this.callback !== undefined) this.report(this.snapshot());
    } finally {
      this.display?.finish(ending);
    }
  }

  /**
   * Where an async callback's rejection goes: the call fails with it, as with a callback that
   * throws, rather than leaving an unhandled rejection to end the process.
   */
  onAsyncFailure: (error: unknown) => void = () => {};

  private report(progress: ProgressInfo): void {
    const returned = (this.callback as (progress: ProgressInfo) => unknown)(progress);
    if (isThenable(returned)) Promise.resolve(returned).catch((error: unknown) => this.onAsyncFailure(error));
  }

  snapshot(): ProgressInfo {
    const elapsed = (performance.now() - this.startedAt) / 1000;
    const rate = elapsed > 0 ? this.done / elapsed : 0;
    const total = this.total !== undefined && this.done > this.total ? this.done : this.total;
    const eta = total !== undefined && rate > 0 ? Math.max(0, (total - this.done) / rate) : undefined;
    return { done: this.done, total, failed: this.failed, rate, elapsed, eta };
  }
}

/** One call's line in a board. */
interface StageDisplay {
  finish(ending: Ending): void;
}

interface Stage {
  readonly label: string;
  readonly read: () => ProgressInfo;
  readonly options: StageOptions;
}

interface StageOptions {
  /** Off a terminal, a line now and then while it runs (a pipeline's rows print only at the end). Default: true. */
  readonly periodic?: boolean;
}

/** Whether the stream is a terminal that can redraw a line in place. */
export function isLiveTerminal(stream: ProgressStream): boolean {
  const terminal = stream as ProgressStream & { cursorTo?: unknown; moveCursor?: unknown; clearLine?: unknown };
  return (
    stream.isTTY === true &&
    // ora floods a terminal that reports zero columns with clear-line codes; treat it as plain.
    (stream.columns ?? 0) > 0 &&
    typeof terminal.cursorTo === 'function' &&
    typeof terminal.moveCursor === 'function' &&
    typeof terminal.clearLine === 'function' &&
    !process.env.CI
  );
}

const boards = new Map<ProgressStream, Board>();

/** What a call's progress draws on: a stream's board, or one row of a pipeline's board. */
interface BoardLike {
  add(label: string, read: () => ProgressInfo, options?: StageOptions): StageDisplay;
}

function boardFor(stream: ProgressStream): BoardLike {
  const row = rowsBySink.get(stream);
  if (row !== undefined) return row;
  let board = boards.get(stream);
  if (board === undefined) {
    board = isLiveTerminal(stream) ? new LiveBoard(stream) : new PlainBoard(stream);
    boards.set(stream, board);
  }
  return board;
}

abstract class Board implements BoardLike {
  protected readonly stages = new Set<Stage>();

  constructor(protected readonly stream: ProgressStream) {}

  add(label: string, read: () => ProgressInfo, options: StageOptions = {}): StageDisplay {
    const stage: Stage = { label, read, options };
    this.stages.add(stage);
    this.started(stage);
    return {
      finish: (ending) => {
        if (!this.stages.delete(stage)) return;
        this.finished(stage, ending);
        if (this.stages.size === 0) boards.delete(this.stream);
      },
    };
  }

  protected abstract started(stage: Stage): void;
  protected abstract finished(stage: Stage, ending: Ending): void;
}

type Spinner = import('ora').Ora;
let oraModule: typeof import('ora') | undefined;

/** All live stages on one terminal: one ora spinner whose text holds a line per stage. */
class LiveBoard extends Board {
  private spinner: Spinner | undefined;
  private timer: NodeJS.Timeout | undefined;
  /**
   * Ctrl-C (or a kill) while the spinner runs: leave a last line per stage with the counts so far
   * and a visible cursor, then let the signal do what it would have done.
   */
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    const spinner = this.spinner;
    this.stopListening();
    if (spinner !== undefined) {
      clearInterval(this.timer);
      this.spinner = undefined;
      const lines = [...this.stages].map((stage) => formatLine(stage.label, stage.read(), 'interrupted'));
      spinner.stopAndPersist({ symbol: SYMBOLS.interrupted, text: lines.join(`\n${SYMBOLS.interrupted} `) });
      this.stream.write(SHOW_CURSOR);
    }
    // Someone else handles the signal: their choice. Otherwise it ends the process, as it would
    // have (ora's own cursor restorer, also listening, then lets it through).
    const others = process.listeners(signal).filter((listener) => !this.spinnerListeners.has(listener));
    if (others.length === 0) process.kill(process.pid, signal);
  };
  /** Signal listeners the spinner added (to restore the cursor): not anyone's choice to stay alive. */
  private readonly spinnerListeners = new Set<NodeJS.SignalsListener>();

  protected started(): void {
    if (this.spinner === undefined) {
      const spinner = (oraModule as typeof import('ora')).default({
        stream: this.stream as NodeJS.WritableStream,
        isEnabled: true,
        discardStdin: false,
        interval: REDRAW_MS,
        text: this.text(),
      });
      // ora's redraw timer would keep the process alive, but a caller that abandons a result
      // half-way must not be kept waiting for ever: catch the timer start() makes, and unref it.
      const realSetInterval = globalThis.setInterval;
      let redraw: NodeJS.Timeout | undefined;
      globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
        redraw = realSetInterval(...args);
        return redraw;
      }) as typeof setInterval;
      const before = new Set(INTERRUPTS.flatMap((signal) => process.listeners(signal)));
      try {
        spinner.start();
      } finally {
        globalThis.setInterval = realSetInterval;
      }
      for (const signal of INTERRUPTS) {
        for (const listener of process.listeners(signal)) {
          if (!before.has(listener)) this.spinnerListeners.add(listener);
        }
      }
      redraw?.unref();
      this.spinner = spinner;
      for (const signal of INTERRUPTS) process.once(signal, this.onSignal);
      this.timer = setInterval(() => this.refresh(), REDRAW_MS).unref();
    }
    this.refresh();
  }

  protected finished(stage: Stage, ending: Ending): void {
    const spinner = this.spinner;
    const line = `${formatLine(stage.label, stage.read(), ending)}`;
    if (spinner === undefined || this.stages.size > 0) {
      // With the spinner stopped by an interrupt the program chose to survive, lines go plainly.
      // ora clears its lines, lets this through, and draws the remaining stages below it.
      this.stream.write(`${SYMBOLS[ending]} ${line}\n`);
      this.refresh();
      return;
    }
    clearInterval(this.timer);
    spinner.stopAndPersist({ symbol: SYMBOLS[ending], text: line });
    this.spinner = undefined;
    this.stopListening();
  }

  private stopListening(): void {
    for (const signal of INTERRUPTS) process.removeListener(signal, this.onSignal);
  }

  private refresh(): void {
    if (this.spinner !== undefined) this.spinner.text = this.text();
  }

  private text(): string {
    return [...this.stages]
      .map((stage, i) => `${i === 0 ? '' : '  '}${formatLine(stage.label, stage.read())}`)
      .join('\n');
  }
}

/** Stages on a pipe or log: a line now and then, and a final line. No cursor codes. */
class PlainBoard extends Board {
  private readonly timers = new Map<Stage, NodeJS.Timeout>();

  protected started(stage: Stage): void {
    if (stage.options.periodic !== false) this.schedule(stage, FIRST_PLAIN_LINE_MS);
  }

  private schedule(stage: Stage, delay: number): void {
    const timer = setTimeout(() => {
      this.stream.write(`${formatLine(stage.label, stage.read())}\n`);
      this.schedule(stage, Math.min(delay * 2, PLAIN_LINE_CAP_MS));
    }, delay).unref();
    this.timers.set(stage, timer);
  }

  protected finished(stage: Stage, ending: Ending): void {
    clearTimeout(this.timers.get(stage));
    this.timers.delete(stage);
    this.stream.write(`${SYMBOLS[ending]} ${formatLine(stage.label, stage.read(), ending)}\n`);
  }
}

const SYMBOLS: Record<Ending, string> = { done: '✔', failed: '✖', aborted: '✖', stopped: '■', interrupted: '■' };

/** The signals of a user who stops the program. */
const INTERRUPTS = ['SIGINT', 'SIGTERM'] as const;
const SHOW_CURSOR = '\u001b[?25h';

/**
 * A label as it is safe to print: control characters (escape sequences among them) and the
 * characters that reorder text are shown as escapes instead of acting on the terminal.
 */
export function printableLabel(label: string): string {
  return label.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
    /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** A pipeline step's figures without its label: what one row of its board draws. */
type StepFigures = Omit<StepProgress, 'label'>;

/**
 * One progress line: `parmap  61,440/100,000  61%  12,030 it/s  elapsed 0:05  ETA 0:03`. With an
 * ending, the summary: counts, rate, total time, and how it ended when not done.
 */
export function formatLine(label: string, progress: ProgressInfo | StepFigures, ending?: Ending): string {
  const { done, total, failed, rate, elapsed, eta } = progress;
  const parts = [printableLabel(label)];
  if ('buffered' in progress && progress.buffered !== undefined && ending === undefined) {
    parts.push(`buf ${count(progress.buffered)}${progress.buffer === undefined ? '' : `/${count(progress.buffer)}`}`);
  }
  if (total === undefined) parts.push(count(done));
  else {
    parts.push(`${count(done)}/${count(total)}`);
    parts.push(`${total === 0 ? 100 : Math.floor((done / total) * 100)}%`);
  }
  if (failed > 0) parts.push(`${count(failed)} failed`);
  parts.push(`${rate >= 100 || rate === 0 ? count(Math.round(rate)) : rate.toFixed(1)} it/s`);
  if (ending === undefined) {
    parts.push(`elapsed ${clock(elapsed)}`);
    if (eta !== undefined && done < (total ?? 0)) parts.push(`ETA ${clock(eta)}`);
  } else {
    parts.push(`${ending === 'done' ? 'total' : 'after'} ${clock(elapsed)}`);
    if (ending !== 'done') parts.push(ending);
  }
  return parts.join('  ');
}

function count(value: number): string {
  return value.toLocaleString('en-US');
}

/** Seconds as `m:ss`, or `h:mm:ss` from an hour on. */
export function clock(seconds: number): string {
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** A stand-in stream for each row of a pipeline's board: a step's call given it draws in that row. */
const rowsBySink = new WeakMap<ProgressStream, BoardRow>();

/** What a pipeline's `progress` option asks for. */
export type BoardOutput =
  | { readonly kind: 'none' }
  | { readonly kind: 'callback'; readonly callback: (progress: PipelineProgress) => unknown }
  | { readonly kind: 'display'; readonly stream: ProgressStream };

/**
 * One step's row: its call's counts (from the call's own tracker, attached when the call starts),
 * and what waits in front of it: items read from its input and not yet finished (counted by the
 * pipeline as it hands them over), or the values a keyed step holds.
 */
export class BoardRow implements BoardLike {
  /** Items the step has read from its input, when the pipeline counts them. */
  taken: number | undefined;
  /** What a keyed step holds now (values or keys), read in place of `taken - done`. */
  held: (() => number) | undefined;
  /** How the step's call ended, once it has. */
  ending: Ending | undefined;
  /** The stream to pass as the step's `progress.stream`. */
  readonly sink: { write(text: string): unknown } = { write: () => true };
  private read: (() => ProgressInfo) | undefined;
  private final: ProgressInfo | undefined;

  constructor(
    readonly label: string,
    /** The bound on what waits: the step's `buffer`, or groupByKey's limit. */
    readonly buffer: number | undefined,
  ) {
    rowsBySink.set(this.sink, this);
  }

  add(_label: string, read: () => ProgressInfo): StageDisplay {
    this.read = read;
    return {
      finish: (ending) => {
        // The tracker's clock runs on after its call: keep the figures it ended with.
        this.final ??= read();
        this.ending ??= ending;
      },
    };
  }

  /** The step's figures now (zeros before its call starts). */
  figures(): StepProgress {
    const info = this.final ?? this.read?.() ?? NOT_STARTED;
    const buffered = this.held?.() ?? (this.taken === undefined ? undefined : Math.max(0, this.taken - info.done));
    return { label: this.label, ...info, buffered, buffer: this.buffer };
  }
}

const NOT_STARTED: ProgressInfo = { done: 0, total: undefined, failed: 0, rate: 0, elapsed: 0, eta: undefined };

/**
 * A pipeline's board: one row per step, all shown at once. On a terminal they join the stream's
 * live block (redrawn in place with any other call's lines) until the pipeline ends; elsewhere
 * nothing prints while it runs, then one summary line per step. A callback receives every row's
 * figures in one object instead, at most ten times a second and once at the end.
 */
export class PipelineBoard {
  private readonly displays: StageDisplay[] = [];
  private timer: NodeJS.Timeout | undefined;
  private ended = false;
  /** Where a callback's failure goes: the pipeline fails with it. */
  onCallbackFailure: (error: unknown) => void = () => {};

  constructor(
    readonly rows: readonly BoardRow[],
    private readonly output: BoardOutput,
  ) {}

  /** Whether anything shows the rows (so the pipeline counts what waits between steps). */
  get shown(): boolean {
    return this.output.kind !== 'none';
  }

  /** Starts drawing. Loads ora only when a terminal will show the rows. */
  async show(): Promise<void> {
    const { output } = this;
    if (output.kind === 'callback') {
      this.timer = setInterval(() => this.report(), REDRAW_MS).unref();
      return;
    }
    if (output.kind !== 'display') return;
    if (isLiveTerminal(output.stream)) oraModule ??= await import('ora');
    if (this.ended) return;
    const board = boardFor(output.stream);
    const width = Math.max(...this.rows.map((row) => printableLabel(row.label).length));
    for (const row of this.rows) {
      const label = row.label + ' '.repeat(width - printableLabel(row.label).length);
      this.displays.push(board.add(label, () => row.figures(), { periodic: false }));
    }
  }

  /** The last report: each row ends as its call did (else as the pipeline did). Safe to call twice. */
  finish(ending: Ending): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.timer);
    try {
      if (this.output.kind === 'callback') this.report();
    } finally {
      this.displays.forEach((display, i) => {
        display.finish(this.rows[i]?.ending ?? ending);
      });
    }
  }

  private report(): void {
    const { output } = this;
    if (output.kind !== 'callback') return;
    try {
      const returned = output.callback({ steps: this.rows.map((row) => row.figures()) });
      if (isThenable(returned)) Promise.resolve(returned).catch((error: unknown) => this.onCallbackFailure(error));
    } catch (error) {
      if (this.ended) throw error;
      this.onCallbackFailure(error);
    }
  }
}
