/**
 * Lines in and lines out: stdin read lazily, split into lines, results written with stdout's
 * backpressure respected, and the bookkeeping that turns an item's index back into its line number.
 */
import type { Readable, Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/** The lines of a stream, without their line endings (`\n` or `\r\n`), read as they are asked for. */
export interface LineReader {
  readonly lines: AsyncIterableIterator<string>;
  /** Stops reading; the stream is left to its owner. */
  close(): void;
}

/** A line longer than the longest string V8 can make: said in words, not as `Invalid string length`. */
export class LineTooLongError extends Error {
  constructor() {
    super('a line of the input is longer than the longest string Node can hold (512 MiB)');
    this.name = 'LineTooLongError';
  }
}

/**
 * Reads `input` line by line, reading more of it only when a line is asked for, so read-ahead
 * stays bounded. A line ends at `\n`, and a `\r` just before it belongs to the line ending (CRLF
 * files). A lone `\r` is part of the line, as `wc -l`, `sed` and `grep` take it: Node's readline
 * would end a line there too, which cuts a line that holds a bare carriage return (a progress bar
 * captured from a terminal, an old Mac file, binary junk) in two and numbers every later line
 * wrongly. The last line needs no line ending.
 */
export function readLines(input: Readable): LineReader {
  const reader = new StreamLines(input);
  return { lines: reader, close: () => reader.close() };
}

/**
 * The lines of a stream as an async iterator, written out rather than as an async generator: the
 * lines of a chunk are handed out from an array, each in a promise already settled, which keeps the
 * command as fast as it was with readline (a generator made 2 million short lines a fifth slower).
 */
class StreamLines implements AsyncIterableIterator<string> {
  private readonly decoder = new StringDecoder('utf8');
  /** Whole lines read, handed out from `given` on. */
  private ready: string[] = [];
  private given = 0;
  /** Text read after the last line ending: the start of the next line, in pieces. */
  private pending: string[] = [];
  private done = false;
  private failure: { readonly error: unknown } | undefined;
  /** Ends the wait for more input: the stream has some, ended, failed or closed, or we stopped. */
  private wake: (() => void) | undefined;
  private readonly woken = (): void => {
    const resolve = this.wake;
    this.wake = undefined;
    resolve?.();
  };
  private readonly failed = (error: unknown): void => {
    this.failure ??= { error };
    this.woken();
  };

  constructor(private readonly input: Readable) {
    input.on('readable', this.woken);
    input.on('end', this.woken);
    input.on('close', this.woken);
    input.on('error', this.failed);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<string>> {
    const line = this.ready[this.given];
    if (line !== undefined) {
      this.given += 1;
      return Promise.resolve({ value: line, done: false });
    }
    return this.read();
  }

  return(): Promise<IteratorResult<string>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  /** Stops reading, and ends a wait for more: the stream is left to its owner. */
  close(): void {
    if (this.done) return;
    this.done = true;
    this.ready = [];
    this.input.off('readable', this.woken);
    this.input.off('end', this.woken);
    this.input.off('close', this.woken);
    this.input.off('error', this.failed);
    this.woken();
  }

  /** Reads until there is a line to give, or the input is over. */
  private async read(): Promise<IteratorResult<string>> {
    this.ready = [];
    this.given = 0;
    while (!this.done) {
      const chunk: unknown = this.input.read();
      if (chunk !== null) {
        this.split(typeof chunk === 'string' ? chunk : this.decoder.write(chunk as Buffer));
        const line = this.ready[0];
        if (line === undefined) continue;
        this.given = 1;
        return { value: line, done: false };
      }
      if (this.failure !== undefined) {
        this.close();
        throw this.failure.error;
      }
      if (this.input.readableEnded || this.input.destroyed) {
        const last = this.lineEndingWith(this.decoder.end());
        this.close();
        return last === '' ? { value: undefined, done: true } : { value: last, done: false };
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    return { value: undefined, done: true };
  }

  /** Adds the lines `text` ends to {@link ready}, and keeps what follows the last line ending. */
  private split(text: string): void {
    let start = 0;
    for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
      const line = this.lineEndingWith(text.slice(start, end));
      this.ready.push(line.endsWith('\r') ? line.slice(0, -1) : line);
      start = end + 1;
    }
    if (start < text.length) this.pending.push(text.slice(start));
  }

  /** The pending start of a line, with its `last` piece: the line's whole text. */
  private lineEndingWith(last: string): string {
    if (this.pending.length === 0) return last;
    let line: string;
    try {
      line = this.pending.join('') + last;
    } catch (error) {
      throw error instanceof RangeError ? new LineTooLongError() : error;
    }
    this.pending = [];
    return line;
  }
}

/** A line of `--json` input parsed, or why it could not be. */
export type ParsedLine =
  | { readonly kind: 'value'; readonly value: unknown }
  | { readonly kind: 'blank' }
  /** `message` is JSON.parse's. */
  | { readonly kind: 'invalid'; readonly message: string };

/** Parses one line of JSON lines input. Blank lines (only spaces) carry no value. */
export function parseJsonLine(line: string): ParsedLine {
  if (line.trim() === '') return { kind: 'blank' };
  try {
    return { kind: 'value', value: JSON.parse(line) };
  } catch (error) {
    return { kind: 'invalid', message: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * One result as one line of output. With `json`, every result is JSON; without, a string is
 * written as it is and anything else as JSON. `undefined` (which JSON has no word for) is `null`.
 * @throws TypeError for a value JSON cannot hold (a BigInt, a circular object).
 */
export function formatResult(value: unknown, json: boolean): string {
  if (!json && typeof value === 'string') return value;
  return JSON.stringify(value) ?? 'null';
}

/** Characters gathered before a write; smaller batches go out once the current results are handled. */
const BATCH_CHARS = 64 * 1024;

/**
 * Writes lines to a stream in batches, waiting for `'drain'` when the stream asks to, and noticing
 * when the reader has gone (EPIPE, as after `| head`) instead of throwing.
 */
export class LineWriter {
  private buffer = '';
  private scheduled = false;
  /** Set while the stream's buffer is full: the next write waits for it. */
  private waiting: Promise<void> | undefined;
  private failure: Error | undefined;
  /** Settles once the last text given to the stream is written. */
  private lastWrite: Promise<void> = Promise.resolve();
  /** Settles when the run is aborted: a stream nobody reads never calls back. */
  private readonly aborted: Promise<void>;

  constructor(
    private readonly stream: Writable,
    /** Ends waiting for `'drain'`, so an interrupted run never hangs on a reader that stopped reading. */
    private readonly signal: AbortSignal,
  ) {
    this.aborted = new Promise((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    // A listener, so that EPIPE is noticed here rather than thrown as an uncaught error.
    stream.on('error', (error: Error) => {
      this.failure ??= error;
    });
  }

  /** Why the stream cannot take more (EPIPE when its reader went away), once that happened. */
  get error(): Error | undefined {
    return this.failure;
  }

  /** Adds one line (a newline is appended). Resolves once the stream can take more. */
  async write(line: string): Promise<void> {
    if (this.waiting !== undefined) await this.waiting;
    if (this.failure !== undefined) return;
    this.buffer += `${line}\n`;
    if (this.buffer.length >= BATCH_CHARS) this.flush();
    else if (!this.scheduled) {
      // After the results at hand are handled: lines go out at once when results come slowly.
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  /** Writes what is gathered and waits until the stream has written it (or failed to). */
  async end(): Promise<void> {
    this.flush();
    if (this.waiting !== undefined) await this.waiting;
    await Promise.race([this.lastWrite, this.aborted]);
  }

  private flush(): void {
    const text = this.buffer;
    this.buffer = '';
    if (text === '' || this.failure !== undefined) return;
    this.lastWrite = new Promise((resolve) => {
      // The callback comes once the text is written, or with the error that stopped it.
      if (!this.stream.write(text, () => resolve())) this.waiting ??= this.drained();
    });
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        this.stream.off('error', done);
        this.signal.removeEventListener('abort', done);
        this.waiting = undefined;
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
      this.stream.on('error', done);
      this.signal.addEventListener('abort', done);
      if (this.signal.aborted) done();
    });
  }
}

/**
 * Which input line each item came from. Items and lines go together except where lines were left
 * out (blank or invalid `--json` lines), so only those places are kept: from `item` on, item `i` is
 * on line `line + (i - item)`.
 */
export class LineNumbers {
  private readonly jumps: { readonly item: number; readonly line: number }[] = [];
  /** Jumps before this position are no longer needed (see {@link forgetBefore}). */
  private start = 0;
  private items = 0;
  private lines = 0;
  private lastItemLine = 0;

  /** The next line became the next item; returns its line number. */
  addItem(): number {
    this.lines += 1;
    if (this.lines !== this.lastItemLine + 1) this.jumps.push({ item: this.items, line: this.lines });
    this.lastItemLine = this.lines;
    this.items += 1;
    return this.lines;
  }

  /** The next line was left out; returns its line number. */
  skipLine(): number {
    this.lines += 1;
    return this.lines;
  }

  /** How many items were made so far. */
  get itemCount(): number {
    return this.items;
  }

  /** The 1-based line number of item `index` (0-based). */
  lineOf(index: number): number {
    let low = this.start;
    let high = this.jumps.length - 1;
    let found: { readonly item: number; readonly line: number } | undefined;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const jump = this.jumps[middle];
      if (jump === undefined) break;
      if (jump.item <= index) {
        found = jump;
        low = middle + 1;
      } else high = middle - 1;
    }
    return found === undefined ? index + 1 : found.line + (index - found.item);
  }

  /**
   * Drops what only items before `index` need (in ordered output, those already written): after
   * this, {@link lineOf} is right for `index` and later items only.
   */
  forgetBefore(index: number): void {
    while (
      this.start + 1 < this.jumps.length &&
      (this.jumps[this.start + 1]?.item ?? Number.POSITIVE_INFINITY) <= index
    ) {
      this.start += 1;
    }
    if (this.start > 1024 && this.start * 2 > this.jumps.length) {
      this.jumps.splice(0, this.start);
      this.start = 0;
    }
  }
}
