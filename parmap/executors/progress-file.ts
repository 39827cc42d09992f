/**
 * A process worker's progress file as its parent reads it (see `PROGRESS_FILE_INTS` in
 * protocol.ts). Opened when the worker names it, and unlinked at once, so nothing is left behind
 * however either side ends; read when the timeout is checked, and once more when the worker ends.
 */
import { closeSync, openSync, readdirSync, readSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { PROGRESS_FILE_INTS } from '../protocol.js';

/** Prefixes whose files are removed as this process exits, if still there. */
const livePrefixes = new Set<string>();
let prefixCount = 0;
let removedAtExit = false;

/**
 * A prefix for the progress files of one host's process workers, each adding its pid: absolute,
 * so a relative TMPDIR means the same to every worker whatever this process's directory is now.
 */
export function newProgressPrefix(): string {
  if (!removedAtExit) {
    removedAtExit = true;
    process.once('exit', () => {
      for (const prefix of [...livePrefixes]) removeProgressFiles(prefix);
    });
  }
  const prefix = join(resolve(tmpdir()), `parmap-progress-${process.pid}-${++prefixCount}-`);
  livePrefixes.add(prefix);
  return prefix;
}

/**
 * Removes the files left under `prefix`: a worker whose parent never heard of its file (it ended
 * first, or this process is exiting) leaves it there.
 */
export function removeProgressFiles(prefix: string): void {
  livePrefixes.delete(prefix);
  const start = basename(prefix);
  let names: string[];
  try {
    names = readdirSync(dirname(prefix));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(start)) continue;
    try {
      unlinkSync(join(dirname(prefix), name));
    } catch {
      // Unlinked meanwhile by whoever opened it.
    }
  }
}

export class ProgressFileReader {
  private readonly slot = new Int32Array(PROGRESS_FILE_INTS);
  private readonly bytes = new Uint8Array(this.slot.buffer);
  private fd: number | undefined;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Opens the file a worker named, and unlinks it; `undefined` if it cannot be opened. */
  static open(path: string): ProgressFileReader | undefined {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      return undefined;
    }
    try {
      unlinkSync(path);
    } catch {
      // Removed with the rest under its prefix when the host closes.
    }
    return new ProgressFileReader(fd);
  }

  /** The marks of chunk `key`, if that is the chunk the worker wrote last (a fresh copy). */
  marksOf(key: number): Int32Array | undefined {
    if (this.fd === undefined) return undefined;
    this.slot.fill(0);
    try {
      readSync(this.fd, this.bytes, 0, this.bytes.length, 0);
    } catch {
      return undefined;
    }
    return this.slot[0] === key ? this.slot.slice(1) : undefined;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
