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

let made: ProgressFile | string | undefined;

/**
 * This process's progress file, made on first use, or why it cannot be made: a call whose timeout
 * could not be watched must not run as if it had none.
 */
export function progressFile(): ProgressFile | string {
  made ??= makeProgressFile();
  return made;
}

function makeProgressFile(): ProgressFile | string {
  const directory = tmpdir();
  const path = join(directory, `parmap-progress-${process.pid}-${Date.now().toString(36)}`);
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return (
      `with \`timeout\`, a process worker writes where it has got to a small file in the temporary ` +
      `directory, and it cannot make one in ${directory} (${reason}): point TMPDIR at a writable ` +
      `directory, or use workerType: 'thread'`
    );
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
