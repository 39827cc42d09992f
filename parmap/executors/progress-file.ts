/**
 * A process worker's progress file as its parent reads it (see `PROGRESS_FILE_INTS` in
 * protocol.ts). Opened when the worker names it, and unlinked at once, so nothing is left behind
 * however either side ends; read when the timeout is checked, and once more when the worker ends.
 */
import { closeSync, openSync, readSync, unlinkSync } from 'node:fs';
import { PROGRESS_FILE_INTS } from '../protocol.js';

export class ProgressFileReader {
  private readonly slot = new Int32Array(PROGRESS_FILE_INTS);
  private readonly bytes = new Uint8Array(this.slot.buffer);
  private fd: number | undefined;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Opens the file a worker named; `undefined` if it is gone (the worker was killed first). */
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
      // The worker unlinks it too as it exits.
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
