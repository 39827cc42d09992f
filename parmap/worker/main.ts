/**
 * The script every worker runs, a thread or a child process, registered with workerpool's
 * documented `worker()`. It keeps the calls it has been set up for, compiles fn once per source,
 * and runs each chunk it is given. Replies travel as events (`workerEmit`), so that a result that
 * cannot be cloned is caught here, where its item is known.
 */
import { type MessagePort, threadId, workerData } from 'node:worker_threads';
import workerpool from 'workerpool';
import { cloneProblem, firstUncloneable, reportThrown } from '../errors.js';
import {
  CANCELLED,
  type CallSetup,
  type ChunkReply,
  type ChunkRequest,
  CLAIMED,
  DO_NOTHING,
  type ItemFailure,
  MARK_CLAIM,
  MARK_STARTED,
  MARK_THREAD,
  newChunkMarks,
  type PortChunk,
  type PortReply,
  RUN_CHUNK,
  type SetupFailure,
  type ThreadOutput,
  type ThreadStart,
  UNCLAIMED,
  type WorkerEvent,
} from '../protocol.js';
import { decode, encodeList } from '../transfer.js';
import { type ItemsDone, runItems } from './chunk.js';
import { type PreparedCall, prepareCall, releaseContexts, stopMakingContexts } from './prepare.js';
import { type ProgressFile, progressFile } from './progress-file.js';
import { watchParent } from './watchdog.js';

const inProcess = process.send !== undefined;

/** Calls this worker is set up for, newest last; old ones are dropped past a few. */
const calls = new Map<string, Promise<PreparedCall | SetupFailure>>();
const CALLS_KEPT = 16;

/** How long a worker may spend releasing context values when it is told to stop. */
export const RELEASE_LIMIT_MS = 2_000;

function emit(event: WorkerEvent): void {
  workerpool.workerEmit(event);
}

function prepared(setupId: string, setup: CallSetup | undefined): Promise<PreparedCall | SetupFailure> | undefined {
  let call = calls.get(setupId);
  if (call === undefined && setup !== undefined) {
    call = prepareCall(setup);
    calls.set(setupId, call);
    if (calls.size > CALLS_KEPT) calls.delete(calls.keys().next().value as string);
  }
  return call;
}

/** Where the events of one chunk go: its workerpool task, or the thread's chunk port. */
type Send = (event: WorkerEvent) => void;

/** The chunks of this worker run one after another, in the order they came, by either way. */
let turn: Promise<unknown> = Promise.resolve();

/** This thread's chunk port (threads only): it answers every chunk there (see `replyKey`). */
let chunkPort: MessagePort | undefined;

/** A chunk from workerpool: its task lasts until the chunk has run, in its turn. */
function runChunk(request: ChunkRequest): Promise<void> {
  const { replyKey } = request;
  return inTurn(request, replyKey !== undefined && chunkPort !== undefined ? portReply(chunkPort, replyKey) : emit);
}

function inTurn(request: ChunkRequest, send: Send): Promise<void> {
  // Taken now, so the main side knows which thread holds a chunk that waits its turn.
  if (request.progress !== undefined) request.progress[MARK_THREAD] = threadId;
  const run = turn.then(() => runOne(request, send));
  turn = run.catch(() => undefined);
  return run;
}

async function runOne(request: ChunkRequest, send: Send): Promise<void> {
  const { progress } = request;
  // A process watched for a timeout writes its marks to its progress file (see protocol.ts).
  const made = request.progressPrefix === undefined ? undefined : progressFile(request.progressPrefix);
  const file = typeof made === 'string' ? undefined : made;
  if (progress === undefined) send(took(file));
  // Claimed before it starts: a chunk the main side took back while it waited (it waited behind a
  // slow one) or no longer wants is skipped, unanswered; the main side has moved on.
  else if (Atomics.compareExchange(progress, MARK_CLAIM, UNCLAIMED, CLAIMED) === CANCELLED) return;
  const call = prepared(
    request.setupId,
    request.setup === undefined ? undefined : (decode(request.setup) as CallSetup),
  );
  if (call === undefined) {
    send({ kind: 'reply', reply: { kind: 'notSetUp' } });
    return;
  }
  if (typeof made === 'string') {
    send({ kind: 'reply', reply: { kind: 'setupFailed', missing: [], problem: made } });
    return;
  }
  const ready = await call;
  if (!('invoke' in ready)) {
    send({ kind: 'reply', reply: { kind: 'setupFailed', ...ready } });
    return;
  }
  if (progress === undefined && file === undefined) send({ kind: 'prepared' });
  const items = decode(request.items) as unknown[];
  const marks = progress ?? file?.marksFor(request.progressKey as number) ?? newChunkMarks(false);
  const onMarks = file?.write;
  if (stopping) marks[MARK_CLAIM] = CANCELLED;
  const { invoke, onError, concurrency } = ready;
  const running = runItems(items, { invoke, onError, marks, onMarks, concurrency });
  current = { running, marks };
  const outcome = await running;
  // Past the last item: sending the results back is not an item's run time (see `timeout`).
  marks[MARK_STARTED] = items.length + 1;
  onMarks?.();
  if (outcome.kind === 'threw') sendThrew(send, outcome.at, outcome.thrown, outcome.before);
  else sendDone(send, outcome, ready.onError);
}

/** A process's first word on a chunk; its progress file is named once, to the parent. */
let fileNamed = false;
function took(file: ProgressFile | undefined): WorkerEvent {
  if (file === undefined || fileNamed) return { kind: 'took', worker: process.pid };
  fileNamed = true;
  return { kind: 'took', worker: process.pid, progressFile: file.path };
}

function sendThrew(send: Send, at: number, thrown: unknown, before: unknown[]): void {
  const report = reportThrown(thrown);
  try {
    send({ kind: 'reply', reply: { kind: 'threw', at, thrown: report, before: encodeList(before) } });
  } catch {
    // The results before the failing item are a courtesy: without them the failure still goes.
    send({ kind: 'reply', reply: { kind: 'threw', at, thrown: report } });
  }
}

/**
 * Sends a chunk's results. A result that cannot be cloned is caught here and reported with its
 * item; with `onError: 'return'` each such result becomes its item's failure and the others go.
 */
function sendDone(send: Send, outcome: ItemsDone, onError: 'throw' | 'return'): void {
  const { values } = outcome;
  const failures: ItemFailure[] = (outcome.failures ?? []).map(({ at, thrown }) => ({
    at,
    thrown: reportThrown(thrown),
  }));
  try {
    send({ kind: 'reply', reply: done(values, outcome, failures) });
    return;
  } catch (error) {
    if (onError === 'throw') {
      const message = error instanceof Error ? error.message : String(error);
      send({ kind: 'reply', reply: { kind: 'uncloneable', at: firstUncloneable(values), message } });
      return;
    }
  }
  const kept = values.map((value, at) => {
    const problem = cloneProblem(value);
    if (problem === undefined) return value;
    failures.push({ at, uncloneable: problem });
    return undefined;
  });
  send({ kind: 'reply', reply: done(kept, outcome, failures) });
}

function done(values: unknown[], timing: ItemsDone, failures: readonly ItemFailure[]): ChunkReply {
  const reply = { kind: 'done', values: encodeList(values), ms: timing.ms } as const;
  const awaited = timing.awaited === true ? { awaited: true } : {};
  return failures.length === 0 ? { ...reply, ...awaited } : { ...reply, ...awaited, failures };
}

const start = workerData as Partial<ThreadStart> | null;
if (start !== null && typeof start === 'object') {
  if (start.parmapOutput !== undefined) sendOutput(start.parmapOutput);
  if (start.parmapChunks !== undefined) takeChunks(start.parmapChunks);
  // A thread made for one call gets its set-up with its start, and prepares it before any chunk.
  if (start.parmapSetup !== undefined) {
    const setup = decode(start.parmapSetup) as CallSetup;
    prepared(setup.id, setup);
  }
}

/**
 * A thread's stdout and stderr go to the caller as each write happens, on a port of their own: the
 * thread's own streams would hold them while it is busy, and lose them if it is terminated.
 */
function sendOutput(port: MessagePort): void {
  for (const name of ['stdout', 'stderr'] as const) {
    const stream = process[name];
    stream.write = ((chunk: string | Uint8Array, encoding?: unknown, callback?: unknown) => {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
      port.postMessage([name, text] satisfies ThreadOutput);
      const done = typeof encoding === 'function' ? encoding : callback;
      if (typeof done === 'function') queueMicrotask(() => (done as () => void)());
      return true;
    }) as typeof stream.write;
  }
  port.unref();
}

function portReply(port: MessagePort, key: number): Send {
  return (event) => port.postMessage([key, event] satisfies PortReply);
}

/**
 * Chunks the main side queues on this thread while it runs another (threads only): each runs in
 * its turn and answers on the same port, so the thread goes from one chunk straight to the next.
 */
function takeChunks(port: MessagePort): void {
  chunkPort = port;
  port.on('message', ([key, request]: PortChunk) => void inTurn(request, portReply(port, key)));
  // The port must not keep an idle thread alive: workerpool decides when threads end.
  port.unref();
}

if (inProcess) watchParent();

/** Told to stop: no item starts after this, and contexts are released once the current item ends. */
let stopping = false;
/** The chunk running now, if any, and its marks. */
let current: { readonly running: Promise<unknown>; readonly marks: Int32Array } | undefined;

async function stop(): Promise<void> {
  stopping = true;
  stopMakingContexts();
  if (current !== undefined) current.marks[MARK_CLAIM] = CANCELLED;
  // An async item may be awaiting: its context must outlive it. A context still being made is
  // waited for too, to be released: released before it was made, it was never released (process
  // workers told to stop during a call's start-up lost the teardown of most contexts).
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled([current?.running, ...calls.values()]),
    new Promise((resolve) => {
      timer = setTimeout(resolve, RELEASE_LIMIT_MS);
    }),
  ]);
  clearTimeout(timer);
  await releaseContexts(RELEASE_LIMIT_MS);
  if (inProcess) await flushOutput(RELEASE_LIMIT_MS);
}

/**
 * Waits until what fn printed has been written: a process's stdout, when it is a pipe the reader
 * has not kept up with, holds the rest in memory, and exiting would lose it (the last lines of a
 * run, about one run in eight in a test that prints 2,000).
 */
async function flushOutput(limitMs: number): Promise<void> {
  const pending = [process.stdout, process.stderr]
    .filter((stream) => stream.writableLength > 0)
    .map((stream) => new Promise((resolve) => stream.once('drain', resolve)));
  if (pending.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(pending),
    new Promise((resolve) => {
      timer = setTimeout(resolve, limitMs);
    }),
  ]);
  clearTimeout(timer);
}

workerpool.worker({ [RUN_CHUNK]: runChunk, [DO_NOTHING]: () => undefined }, { onTerminate: stop });
