/**
 * The reference a parmap stream is measured against: raw `worker_threads` fed by hand from a lazy
 * input, results handed out in input order through an async generator. Its read-ahead is bounded:
 * each worker holds at most `chunksInFlightPerWorker` chunks, and chunks read and not yet taken by
 * the consumer number at most one more per worker (room for answers that come out of order), so a
 * slow consumer stops the reading instead of filling memory.
 * Messages are bounded by items and, for large items, by bytes. The workers are made by the stream
 * and ended when it ends, as parmap's are.
 */
import { Worker } from 'node:worker_threads';

const CHUNKED_WORKER = new URL('./workers/chunked.cjs', import.meta.url);

export interface StreamReferenceOptions<T> {
  readonly workers: number;
  /** The most items in one message. */
  readonly chunkSize: number;
  /** A message is closed once its items reach `limit` bytes, as `sizeOf` counts them. */
  readonly chunkBytes?: { readonly limit: number; readonly sizeOf: (item: T) => number };
  /** Chunks sent to a worker before its first answer: above 1, it never waits for the main side. */
  readonly chunksInFlightPerWorker: number;
}

/** A chunk's answer: the index of its first item, and its results. */
type ChunkResult<R> = [start: number, results: R[]];

/** `fn` (given by its source text) on every item of `input`, on `options.workers` fresh threads. */
export async function* handWrittenStream<T, R>(
  source: string,
  input: Iterable<T>,
  options: StreamReferenceOptions<T>,
): AsyncGenerator<R> {
  const workers = Array.from(
    { length: options.workers },
    // No execArgv: like parmap's, these threads skip the loader the benchmark itself runs under.
    () => new Worker(CHUNKED_WORKER, { workerData: { source, args: [] }, execArgv: [] }),
  );
  try {
    const chunks = orderedChunks<T, R>(workers, input[Symbol.iterator](), options);
    for (let results = await chunks.next(); results !== undefined; results = await chunks.next()) {
      for (const result of results) yield result;
    }
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}

/** The chunks' results in input order, one chunk per `next()`; `undefined` once the input is done. */
function orderedChunks<T, R>(
  workers: readonly Worker[],
  input: Iterator<T>,
  options: StreamReferenceOptions<T>,
): { next(): Promise<R[] | undefined> } {
  const readChunk = chunkReader(input, options);
  const answered = new Map<number, R[]>(); // by start index: finished, out of order, not yet taken
  const inFlight = workers.map(() => 0);
  const mostChunksAhead = workers.length * (options.chunksInFlightPerWorker + 1);
  let itemsSent = 0;
  let itemsTaken = 0;
  let chunksAhead = 0; // sent and not yet taken by the consumer
  let inputDone = false;
  let failure: Error | undefined;
  let wake = () => {};

  /** Sends chunks to the least busy worker while the read-ahead bound allows. */
  const fill = () => {
    while (!inputDone && chunksAhead < mostChunksAhead) {
      const worker = inFlight.indexOf(Math.min(...inFlight));
      if ((inFlight[worker] as number) >= options.chunksInFlightPerWorker) return;
      const items = readChunk();
      if (items === undefined) {
        inputDone = true;
        return;
      }
      workers[worker]?.postMessage([itemsSent, items]);
      itemsSent += items.length;
      inFlight[worker] = (inFlight[worker] as number) + 1;
      chunksAhead++;
    }
  };
  workers.forEach((worker, index) => {
    worker.on('message', ([start, results]: ChunkResult<R>) => {
      inFlight[index] = (inFlight[index] as number) - 1;
      answered.set(start, results);
      fill();
      wake();
    });
    const fail = (error: Error) => {
      failure ??= error;
      wake();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`A reference worker exited early, with code ${code}`)));
  });

  return {
    async next() {
      fill();
      for (;;) {
        if (failure !== undefined) throw failure;
        const results = answered.get(itemsTaken);
        if (results !== undefined) {
          answered.delete(itemsTaken);
          itemsTaken += results.length;
          chunksAhead--;
          fill();
          return results;
        }
        if (inputDone && itemsTaken === itemsSent) return undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    },
  };
}

/** Reads the next chunk from the input: `chunkSize` items, or fewer once they reach the byte limit. */
function chunkReader<T>(input: Iterator<T>, options: StreamReferenceOptions<T>): () => T[] | undefined {
  return () => {
    const items: T[] = [];
    let bytes = 0;
    while (items.length < options.chunkSize && bytes < (options.chunkBytes?.limit ?? Number.POSITIVE_INFINITY)) {
      const next = input.next();
      if (next.done) break;
      items.push(next.value);
      bytes += options.chunkBytes?.sizeOf(next.value) ?? 0;
    }
    return items.length > 0 ? items : undefined;
  };
}
