/**
 * A process worker must not outlive its parent, however the parent ends (SIGKILL included) and
 * however busy the worker is: a worker in a CPU loop never runs its event loop, so it cannot hear
 * its IPC channel close. A tiny thread of its own watches the parent's pid instead, and ends the
 * process when the parent is gone.
 */
import { unlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

/** How often the watching thread looks at the parent pid. */
const WATCH_PERIOD_MS = 200;

const WATCHER = `
const { workerData, parentPort, receiveMessageOnPort } = require('node:worker_threads');
const files = [];
parentPort.on('message', (path) => files.push(path));
setInterval(() => {
  if (process.ppid === workerData.parent) return;
  for (let m = receiveMessageOnPort(parentPort); m !== undefined; m = receiveMessageOnPort(parentPort)) files.push(m.message);
  for (const path of files) try { require('node:fs').unlinkSync(path) } catch {}
  process.kill(process.pid, 'SIGKILL');
}, ${WATCH_PERIOD_MS});
`;

let watcher: Worker | undefined;

/** Files this process made for its parent. */
const madeForParent: string[] = [];

function removeMadeForParent(): void {
  for (const file of madeForParent.splice(0)) {
    try {
      unlinkSync(file);
    } catch {
      // The parent removed it.
    }
  }
}

/**
 * A file this process made for its parent: removed if the parent dies before it can. The watcher
 * removes it when the parent is killed while this process is busy; an idle process hears its
 * channel close and exits, and removes it then.
 */
export function removeIfOrphaned(path: string): void {
  if (madeForParent.length === 0) {
    const parent = process.ppid;
    process.once('exit', () => {
      // With the parent alive, the file is the parent's to read, even after this process ended.
      if (!process.connected || process.ppid !== parent) removeMadeForParent();
    });
  }
  madeForParent.push(path);
  watcher?.postMessage(path);
}

export function watchParent(): void {
  watcher = new Worker(WATCHER, {
    eval: true,
    workerData: { parent: process.ppid },
    // It needs nothing of the caller's flags, and must not hold the worker's own exit.
    execArgv: [],
    stdout: false,
    stderr: false,
    resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
  });
  watcher.unref();
  // A parent gone quietly (its end of the channel closed) needs no watcher to notice.
  process.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE' || error.code === 'ERR_IPC_CHANNEL_CLOSED') {
      removeMadeForParent();
      process.exit(0);
    }
    throw error;
  });
}
