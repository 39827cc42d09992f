/**
 * What the caller and `parmap worker` processes write to Redis for each other, used by both sides:
 * the names of the keys, the signing of every payload, and chunk outcomes as they cross. The
 * messages themselves are typed in `protocol.ts`.
 *
 * Workers run code that arrives through Redis, so everything that carries code or data is signed
 * with HMAC-SHA256 under a secret both sides share (`PARMAP_SECRET`): a call's set-up, each chunk,
 * each result. A worker refuses what is unsigned or signed with another secret.
 */
import { ParmapRemoteError, ParmapScopeError, rebuildThrown, reportThrown } from '../errors.js';
import type { RemoteChunkJob, RemoteChunkResult, RemoteOutcome } from '../protocol.js';
import { fromBytes, toBytes, unpacked } from '../transfer.js';
import type { ChunkOutcome } from './executor.js';

/**
 * Node's crypto module, loaded on first use: importing it costs a program about 3 ms at start-up,
 * and only calls with a `backend` need it.
 */
export function nodeCrypto(): typeof import('node:crypto') {
  return process.getBuiltinModule('node:crypto');
}

/** The keys under a prefix (`parmap` unless set); BullMQ's own keys are `<prefix>:<call>:...`. */
export function remoteKeys(prefix: string) {
  return {
    /** A set of the calls that are running: workers serve each of them. */
    calls: `${prefix}:calls`,
    /** A call's record (a hash, {@link RemoteCallRecord}); it expires if its caller disappears. */
    call: (name: string) => `${prefix}:call:${name}`,
    /** A channel on which callers say a call starts (`name`) or ends (`-name`). */
    announce: `${prefix}:announce`,
    /** A set of the ids of workers that have said they are alive. */
    workers: `${prefix}:workers`,
    /** A worker's slots (threads), while it lives: it expires unless the worker renews it. */
    worker: (id: string) => `${prefix}:worker:${id}`,
  };
}

/** How long a call's record lives unless its caller renews it: a caller killed leaves it to expire. */
export const CALL_RECORD_TTL_S = 30;
/** How long a worker's entry lives unless it renews it. */
export const WORKER_ENTRY_TTL_S = 10;

export function hashOf(bytes: Uint8Array): string {
  return nodeCrypto().createHash('sha256').update(bytes).digest('hex');
}

/** The signature of `parts` under `secret`; the first part says what is signed. */
export function sign(secret: string, parts: readonly (string | Uint8Array)[]): string {
  const hmac = nodeCrypto().createHmac('sha256', secret);
  for (const part of parts) {
    const bytes = typeof part === 'string' ? Buffer.from(part) : part;
    // Each part with its length, so no two lists of parts read as the same bytes.
    hmac.update(`${bytes.byteLength}:`);
    hmac.update(bytes);
  }
  return hmac.digest('hex');
}

export function verify(secret: string, parts: readonly (string | Uint8Array)[], signature: unknown): boolean {
  if (typeof signature !== 'string' || signature.length !== 64) return false;
  const expected = Buffer.from(sign(secret, parts), 'hex');
  const given = Buffer.from(signature, 'hex');
  return given.byteLength === expected.byteLength && nodeCrypto().timingSafeEqual(given, expected);
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function fromBase64(text: string): Uint8Array {
  return Buffer.from(text, 'base64');
}

export function signSetup(secret: string, call: string, hash: string, setup: Uint8Array): string {
  return sign(secret, ['setup', call, hash, setup]);
}

export function chunkJob(secret: string, call: string, hash: string, start: number, items: Uint8Array): RemoteChunkJob {
  return {
    setup: hash,
    start,
    items: toBase64(items),
    signature: sign(secret, ['chunk', call, hash, `${start}`, items]),
  };
}

/** A job's items, once its signature is checked; throws a {@link ParmapRemoteError} saying why not. */
export function readChunkJob(
  secret: string,
  call: string,
  hash: string,
  data: unknown,
): { start: number; items: unknown[] } {
  const job = data as Partial<RemoteChunkJob> | null;
  if (job === null || typeof job !== 'object' || typeof job.items !== 'string' || typeof job.start !== 'number') {
    throw new ParmapRemoteError('a chunk is not a parmap chunk');
  }
  if (job.setup !== hash) throw new ParmapRemoteError("a chunk names another set-up than its call's");
  if (job.signature === undefined) throw new ParmapRemoteError('a chunk is unsigned');
  const items = fromBase64(job.items);
  if (!verify(secret, ['chunk', call, hash, `${job.start}`, items], job.signature)) {
    throw new ParmapRemoteError('a chunk is signed with another secret: set PARMAP_SECRET the same on both sides');
  }
  return { start: job.start, items: fromBytes(items) as unknown[] };
}

export function chunkResult(secret: string, call: string, jobId: string, outcome: RemoteOutcome): RemoteChunkResult {
  const bytes = toBytes(outcome);
  return { outcome: toBase64(bytes), signature: sign(secret, ['result', call, jobId, bytes]) };
}

/** What a worker's result means for the scheduler; an unsigned or mis-signed one fails the call. */
export function readChunkResult(secret: string, call: string, jobId: string, value: unknown): ChunkOutcome {
  const result = value as Partial<RemoteChunkResult> | null;
  if (result === null || typeof result !== 'object' || typeof result.outcome !== 'string') {
    return remoteFailure('a worker answered a chunk with something that is not a parmap result');
  }
  const bytes = fromBase64(result.outcome);
  if (!verify(secret, ['result', call, jobId, bytes], result.signature)) {
    return remoteFailure('a result is not signed with this secret: set PARMAP_SECRET the same on both sides');
  }
  return fromRemoteOutcome(fromBytes(bytes) as RemoteOutcome, bytes.byteLength);
}

function remoteFailure(message: string): ChunkOutcome {
  return { kind: 'failed', error: new ParmapRemoteError(message) };
}

/** A chunk's outcome on a worker's host, as it crosses back (what was thrown, as reports). */
export function toRemoteOutcome(outcome: ChunkOutcome): RemoteOutcome {
  switch (outcome.kind) {
    case 'done':
      // Numbers a local executor kept packed cross as the array they stand for, as ever.
      return {
        kind: 'done',
        values: unpacked(outcome.values),
        ms: outcome.ms,
        awaited: outcome.awaited,
        failures: outcome.failures,
      };
    case 'threw':
      return {
        kind: 'threw',
        at: outcome.at,
        thrown: reportThrown(outcome.thrown),
        before: outcome.before === undefined ? undefined : [...outcome.before],
      };
    case 'uncloneable':
      return outcome;
    case 'unsendable':
      return { kind: 'failed', message: `a worker could not pass item ${outcome.at} of a chunk to its threads` };
    case 'lost': {
      const { ending, started } = outcome;
      return {
        kind: 'lost',
        exitCode: ending.exitCode,
        signal: ending.signal,
        outOfMemory: ending.outOfMemory,
        uncaught: ending.uncaught === undefined ? undefined : reportThrown(ending.uncaught),
        stopped: ending.stopped,
        started: started?.started,
        oldest: started?.oldest,
        timedOutAt: outcome.timedOutAt,
      };
    }
    case 'failed':
      return {
        kind: 'failed',
        message: outcome.error.message,
        missing: outcome.error instanceof ParmapScopeError ? outcome.error.names : undefined,
      };
  }
}

export function fromRemoteOutcome(outcome: RemoteOutcome, bytes: number): ChunkOutcome {
  switch (outcome.kind) {
    case 'done':
      return {
        kind: 'done',
        values: outcome.values,
        ms: outcome.ms,
        awaited: outcome.awaited,
        failures: outcome.failures,
        bytes,
      };
    case 'threw':
      return { kind: 'threw', at: outcome.at, thrown: rebuildThrown(outcome.thrown), before: outcome.before };
    case 'uncloneable':
      return outcome;
    case 'lost':
      return {
        kind: 'lost',
        ending: {
          exitCode: outcome.exitCode,
          signal: outcome.signal,
          outOfMemory: outcome.outOfMemory === true,
          uncaught: outcome.uncaught === undefined ? undefined : rebuildThrown(outcome.uncaught),
          stopped: outcome.stopped === true,
        },
        started: outcome.started === undefined ? undefined : { started: outcome.started, oldest: outcome.oldest ?? -1 },
        timedOutAt: outcome.timedOutAt,
      };
    case 'failed':
      return {
        kind: 'failed',
        error:
          outcome.missing !== undefined && outcome.missing.length > 0
            ? new ParmapScopeError(outcome.missing)
            : new ParmapRemoteError(`a worker could not run the call: ${outcome.message.replace(/^parmap: /, '')}`),
      };
  }
}
