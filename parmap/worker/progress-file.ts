/**
 * A process worker's progress file (see `PROGRESS_FILE_INTS` in protocol.ts): where it writes a
 * chunk's marks as each item starts, for a parent that cannot read its memory. Made on the first
 * chunk that asks for it; the parent unlinks it once it has opened it, and this process unlinks it
 * as it exits in case the parent never did (it was killed first).
 */
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROGRESS_FILE_INTS } from '../protocol.js';

export interface ProgressFile {
  readonly path: string;
  /** Starts writing for the chunk `key`: its marks, all 0, are written at once. */
  marksFor(key: number): Int32Array;
  /** Writes the key and the marks as they are now. */
  write(): void;
}

let made: ProgressFile | null | undefined;

/** This process's progress file, made on first use; `undefined` when it cannot be made. */
export function progressFile(): ProgressFile | undefined {
  if (made === undefined) made = makeProgressFile();
  return made ?? undefined;
}

function makeProgressFile(): ProgressFile | null {
  const path = join(tmpdir(), `parmap-progress-${process.pid}-${Date.now().toString(36)}`);
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch {
    // No writable temporary directory: the parent then sees no progress, as a timeout's last resort.
    return null;
  }
  process.once('exit', () => {
    closeSync(fd);
    try {
      unlinkSync(path);
    } catch {
      // The parent unlinked it, as it should.
    }
  });
  const slot = new Int32Array(PROGRESS_FILE_INTS);
  const bytes = new Uint8Array(slot.buffer);
  const write = () => {
    writeSync(fd, bytes, 0, bytes.length, 0);
  };
  return {
    path,
    marksFor(key) {
      slot.fill(0);
      slot[0] = key;
      write();
      return slot.subarray(1);
    },
    write,
  };
}
