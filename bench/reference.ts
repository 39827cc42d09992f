/**
 * The reference parmap is measured against: a pool of raw `worker_threads` written by hand for one
 * call, as fast as it honestly goes. Start-up is included (the workers are made and ended by the
 * call, as parmap's are), results are written in place into one array allocated once, each worker
 * holds a next chunk while it works on one, and fixed arguments travel once per worker.
 */
import { Worker } from 'node:worker_threads';

const CHUNKED_WORKER = new URL('./workers/chunked.cjs', import.meta.url);

export interface ReferenceOptions {
  readonly workers: number;
  /** Items per message. */
  readonly chunkSize: number;
  /** Chunks sent to a worker before its first answer: above 1, it never waits for the main side. */
  readonly chunksInFlightPerWorker: number;
  /** Arguments after the item, the same for every item: sent to each worker once, at its start. */
  readonly args?: readonly unknown[];
}

/** A chunk's answer: the index of its first item, and its results. */
type ChunkResult<R> = [start: number, results: R[]];

/**
 * `items.map(fn)` on `options.workers` fresh threads, `fn` given by its source text. Resolves once
 * every worker has exited, as `await parmap(...)` does.
 */
export async function handWrittenPool<T, R>(
  source: string,
  items: readonly T[],
  options: ReferenceOptions,
): Promise<R[]> {
  const workers = Array.from(
    { length: options.workers },
    // No execArgv: like parmap's, these threads skip the loader the benchmark itself runs under.
    () => new Worker(CHUNKED_WORKER, { workerData: { source, args: options.args ?? [] }, execArgv: [] }),
  );
  try {
    return await mapInPlace<T, R>(workers, items, options);
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}

function mapInPlace<T, R>(workers: readonly Worker[], items: readonly T[], options: ReferenceOptions): Promise<R[]> {
  return new Promise((resolve, reject) => {
    let nextStart = 0;
    let remaining = items.length;
    const sendNextChunk = (worker: Worker) => {
      if (nextStart >= items.length) return;
      const start = nextStart;
      nextStart += options.chunkSize;
      worker.postMessage([start, items.slice(start, nextStart)]);
    };
    // Threads boot while the first chunks wait in their queues, and while the result array is made.
    for (const worker of workers) {
      for (let i = 0; i < options.chunksInFlightPerWorker; i++) sendNextChunk(worker);
    }
    const results = new Array<R>(items.length);
    if (remaining === 0) resolve(results);
    for (const worker of workers) {
      worker.on('error', reject);
      worker.on('exit', (code) => reject(new Error(`A reference worker exited early, with code ${code}`)));
      worker.on('message', ([start, chunkResults]: ChunkResult<R>) => {
        for (let i = 0; i < chunkResults.length; i++) results[start + i] = chunkResults[i] as R;
        remaining -= chunkResults.length;
        if (remaining === 0) resolve(results);
        else sendNextChunk(worker);
      });
    }
  });
}
