/**
 * A process worker's progress file (see `PROGRESS_FILE_INTS` in protocol.ts): where it writes a
 * chunk's marks as each item starts, for a parent that cannot read its memory. Made on the first
 * chunk that asks for it, where the parent says; the parent unlinks it once it has opened it, and
 * removes what is left under its prefix as it closes or exits. When the parent is killed, the
 * watchdog removes it.
 */
import { openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { PROGRESS_FILE_INTS } from '../protocol.js';
import { removeIfOrphaned } from './watchdog.js';

export interface ProgressFile {
  readonly path: string;
  /** Starts writing for the chunk `key`: its marks, all 0, are written at once. */
  marksFor(key: number): Int32Array;
  /** Writes the key and the marks as they are now. */
  write(): void;
}

let made: ProgressFile | string | undefined;

/**
 * This process's progress file, made on first use at `prefix` and this pid, or why it cannot be
 * made: a call whose timeout could not be watched must not run as if it had none.
 */
export function progressFile(prefix: string): ProgressFile | string {
  made ??= makeProgressFile(prefix);
  return made;
}

function makeProgressFile(prefix: string): ProgressFile | string {
  const path = `${prefix}${process.pid}`;
  const directory = dirname(path);
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
  // Left for the parent, which unlinks it once it has opened it, even after this process has
  // ended (it then reads where the chunk had got); a parent that is gone leaves it to the watchdog.
  removeIfOrphaned(path);
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
