/**
 * The remote backend's pure parts, without Redis: what the caller and `parmap worker` write for
 * each other (signatures, chunks, outcomes as they cross), the `backend` option's checks, the
 * worker's command line, and the worker-side timeout watch on a fake executor.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ParmapRemoteError, ParmapScopeError } from '../dist/index.js';
import { parseCommandLine, UsageError } from '../dist/parmap/cli/arguments.js';
import { ChunkRunner } from '../dist/parmap/executors/chunk-runner.js';
import type {
  ChunkOutcome,
  ChunkTask,
  Executor,
  ExecutorListener,
  ItemsStarted,
} from '../dist/parmap/executors/executor.js';
import {
  chunkJob,
  chunkResult,
  readChunkJob,
  readChunkResult,
  sign,
  toRemoteOutcome,
  verify,
} from '../dist/parmap/executors/remote-wire.js';
import { checkBackend } from '../dist/parmap/front/backend.js';
import { resolveOptions } from '../dist/parmap/front/options.js';
import { toBytes } from '../dist/parmap/transfer.js';

const SECRET = 'a shared secret';
const CALL = 'c0123456789abcdef';
const HASH = 'f'.repeat(64);

describe('signatures', () => {
  it('verify what was signed with the same secret, and nothing else', () => {
    const signature = sign(SECRET, ['chunk', 'a', new Uint8Array([1, 2])]);
    assert.equal(verify(SECRET, ['chunk', 'a', new Uint8Array([1, 2])], signature), true);
    assert.equal(verify('another secret', ['chunk', 'a', new Uint8Array([1, 2])], signature), false);
    assert.equal(verify(SECRET, ['chunk', 'a', new Uint8Array([1, 3])], signature), false);
    assert.equal(verify(SECRET, ['chunk', 'a', new Uint8Array([1, 2])], undefined), false);
    assert.equal(verify(SECRET, ['chunk', 'a', new Uint8Array([1, 2])], 'zz'), false);
  });

  it('tell parts apart by their lengths: moving bytes between parts breaks the signature', () => {
    const signature = sign(SECRET, ['ab', 'c']);
    assert.equal(verify(SECRET, ['a', 'bc'], signature), false);
  });
});

describe('chunks as jobs', () => {
  const items = [1, 'two', Buffer.from('three'), new Float64Array([4.5])];

  it('come back as the items they carried, a Buffer still a Buffer', () => {
    const job = chunkJob(SECRET, CALL, HASH, 40, toBytes(items));
    const read = readChunkJob(SECRET, CALL, HASH, JSON.parse(JSON.stringify(job)));
    assert.equal(read.start, 40);
    assert.deepEqual(read.items, items);
    assert.ok(Buffer.isBuffer(read.items[2]));
    assert.ok(read.items[3] instanceof Float64Array);
  });

  it('are refused when unsigned, signed with another secret, moved to another call, or altered', () => {
    const job = chunkJob(SECRET, CALL, HASH, 0, toBytes(items));
    const refusals: [string, unknown, RegExp][] = [
      ['unsigned', { ...job, signature: undefined }, /unsigned/],
      ['another secret', chunkJob('other', CALL, HASH, 0, toBytes(items)), /another secret.*PARMAP_SECRET/],
      ['another start', { ...job, start: 1 }, /another secret/],
      ['another set-up', { ...job, setup: '0'.repeat(64) }, /another set-up/],
      ['not a chunk', 'rm -rf /', /not a parmap chunk/],
    ];
    for (const [what, data, message] of refusals) {
      assert.throws(() => readChunkJob(SECRET, CALL, HASH, data), message, what);
      assert.throws(() => readChunkJob(SECRET, CALL, HASH, data), ParmapRemoteError, what);
    }
    assert.throws(() => readChunkJob(SECRET, 'c0000000000000000', HASH, job), /another secret/);
  });

  it('cannot carry shared memory, which cannot leave the process', () => {
    assert.throws(() => toBytes([new Uint8Array(new SharedArrayBuffer(4))]), /shared memory.*another machine/);
  });
});

describe('outcomes as they cross back', () => {
  const roundTrip = (outcome: ChunkOutcome, secret = SECRET): ChunkOutcome => {
    const result = JSON.parse(JSON.stringify(chunkResult(SECRET, CALL, 'k7', toRemoteOutcome(outcome))));
    return readChunkResult(secret, CALL, 'k7', result);
  };

  it('keep results, Buffers included', () => {
    const back = roundTrip({ kind: 'done', values: [1, Buffer.from('x'), undefined], ms: 3 });
    assert.equal(back.kind, 'done');
    if (back.kind !== 'done') return;
    assert.deepEqual(back.values, [1, Buffer.from('x'), undefined]);
    assert.ok(Buffer.isBuffer(back.values[1]));
    assert.equal(back.ms, 3);
  });

  it('keep what fn threw: its class, message and own properties', () => {
    const thrown = Object.assign(new RangeError('too far'), { code: 'E_FAR', limit: 3 });
    const back = roundTrip({ kind: 'threw', at: 2, thrown, before: ['a', 'b'] });
    assert.equal(back.kind, 'threw');
    if (back.kind !== 'threw') return;
    assert.equal(back.at, 2);
    assert.ok(back.thrown instanceof RangeError);
    assert.equal((back.thrown as RangeError).message, 'too far');
    assert.equal((back.thrown as { code?: string }).code, 'E_FAR');
    assert.deepEqual(back.before, ['a', 'b']);
  });

  it('say which item a stopped worker was running past its timeout', () => {
    const back = roundTrip({
      kind: 'lost',
      ending: { stopped: true },
      started: { started: 3, oldest: 2 },
      timedOutAt: 2,
    });
    assert.deepEqual(back, {
      kind: 'lost',
      ending: { exitCode: undefined, signal: undefined, outOfMemory: false, uncaught: undefined, stopped: true },
      started: { started: 3, oldest: 2 },
      timedOutAt: 2,
    });
  });

  it('keep the names a scope error lists', () => {
    const back = roundTrip({ kind: 'failed', error: new ParmapScopeError(['helper']) });
    assert.equal(back.kind, 'failed');
    if (back.kind === 'failed') assert.deepEqual((back.error as ParmapScopeError).names, ['helper']);
  });

  it('fail the call when a result is not signed with this secret', () => {
    const back = roundTrip({ kind: 'done', values: [1], ms: 1 }, 'another secret');
    assert.equal(back.kind, 'failed');
    if (back.kind === 'failed') {
      assert.ok(back.error instanceof ParmapRemoteError);
      assert.match(back.error.message, /PARMAP_SECRET/);
    }
    const forged = readChunkResult(SECRET, CALL, 'k7', { outcome: 'AAAA', signature: 'f'.repeat(64) });
    assert.equal(forged.kind, 'failed');
  });
});

describe('the backend option', () => {
  const env = { PARMAP_SECRET: 'from env' };

  it('takes a URL or connection options, and the secret from PARMAP_SECRET', () => {
    const remote = checkBackend({ redis: 'redis://user:pw@db.example:6380/2' }, env);
    assert.deepEqual(remote.connection, { url: 'redis://user:pw@db.example:6380/2' });
    assert.equal(remote.where, 'redis://user:***@db.example:6380/2', 'the password is not in messages');
    assert.equal(remote.secret, 'from env');
    assert.equal(remote.prefix, 'parmap');
    const tls = checkBackend({ redis: { host: 'db', port: 6380, tls: {} }, secret: 'given' }, env);
    assert.equal(tls.where, 'rediss://db:6380');
    assert.equal(tls.secret, 'given');
  });

  it('names what is wrong', () => {
    const cases: [unknown, RegExp][] = [
      ['redis://x', /Expected `backend` to be \{ redis/],
      [{ redis: 'http://x:6379' }, /start with redis:\/\//],
      [{ redis: 'not a url' }, /backend\.redis` to be a URL/],
      [{ redis: { port: 0 } }, /backend\.redis\.port/],
      [
        { redis: 'redis://x', waitForWorker: 5 },
        /Unknown option `backend\.waitForWorker`\. Did you mean `backend\.waitForWorkers`/,
      ],
      [{ redis: 'redis://x', waitForWorkers: -1 }, /backend\.waitForWorkers/],
      [{ redis: 'redis://x', prefix: 'a b' }, /backend\.prefix/],
      [{ redis: 'redis://x', secret: '' }, /backend\.secret/],
    ];
    for (const [backend, message] of cases) assert.throws(() => checkBackend(backend, env), message);
    assert.throws(() => checkBackend({ redis: 'redis://x' }, {}), /set PARMAP_SECRET/);
  });

  it('does not go with n, and is refused by a pool', async () => {
    const backend = { redis: 'redis://x', secret: 's' };
    assert.throws(() => resolveOptions((x: number) => x, [1], { n: 2, backend }), /`n` and `backend`/);
    const { createPool } = await import('../dist/index.js');
    const pool = createPool({ n: 1 });
    try {
      assert.throws(() => pool.map((x: number) => x, [1], { backend } as never), /`backend` does not go with a pool/);
    } finally {
      await pool.close();
    }
  });
});

describe('parmap worker: its command line', () => {
  it('reads --redis, -n, --prefix and --lock-ms', () => {
    assert.deepEqual(
      parseCommandLine(['worker', '--redis', 'redis://h:1', '-n', '3', '--prefix', 'jobs', '--lock-ms', '500']),
      {
        kind: 'worker',
        connection: { url: 'redis://h:1' },
        where: 'redis://h:1',
        slots: 3,
        prefix: 'jobs',
        lockMs: 500,
      },
    );
    assert.deepEqual(parseCommandLine(['worker', '--help']), { kind: 'workerHelp' });
    const fromEnv = parseCommandLine(['worker'], { PARMAP_REDIS: 'redis://:pw@h:2' });
    assert.equal(fromEnv.kind === 'worker' && fromEnv.where, 'redis://:***@h:2', 'the URL may come from PARMAP_REDIS');
  });

  it('names the mistake', () => {
    const cases: [string[], RegExp][] = [
      [['worker'], /needs --redis <url> \(or PARMAP_REDIS\)/],
      [['worker', '--redis', 'http://h'], /--redis expects a URL/],
      [['worker', '--redis', 'redis://h', '-n', '0'], /-n expects a whole number, at least 1/],
      [['worker', '--redis', 'redis://h', '--lock-ms', '5'], /--lock-ms expects a whole number, at least 100/],
      [['worker', '--redis', 'redis://h', 'extra'], /takes no arguments/],
      [['worker', '--redis', 'redis://h', '--bogus'], /parmap worker has no option '--bogus'; it takes --redis, /],
    ];
    for (const [argv, message] of cases) {
      assert.throws(
        () => parseCommandLine(argv),
        // Its help is the worker's: `parmap --help` had been named, which says nothing of these.
        (error: unknown) =>
          error instanceof UsageError && message.test(error.message) && error.help === 'parmap worker --help',
      );
    }
  });
});

/** An executor whose chunks run until the test settles them, reporting how far they got. */
class HeldExecutor implements Executor {
  readonly stoppable = true;
  readonly capacity = 1;
  readonly submitted: ChunkTask[] = [];
  readonly stopped: number[] = [];
  progress: ItemsStarted | undefined;
  constructor(private readonly listener: () => ExecutorListener) {}
  want(): void {}
  submit(task: ChunkTask): void {
    this.submitted.push(task);
  }
  started(): ItemsStarted | undefined {
    return this.progress;
  }
  stop(id: number): void {
    this.stopped.push(id);
    queueMicrotask(() =>
      this.listener().outcome(id, { kind: 'lost', ending: { stopped: true }, started: this.progress }),
    );
  }
  hold(): void {}
  async close(): Promise<void> {}
  settle(id: number, outcome: ChunkOutcome): void {
    this.listener().outcome(id, outcome);
  }
}

describe('ChunkRunner: chunks on a worker host', () => {
  it('runs one chunk at a time within capacity, each settled with its own outcome', async () => {
    const runner = new ChunkRunner(undefined, () => undefined);
    const executor = new HeldExecutor(() => runner);
    runner.use(executor);
    const first = runner.run(0, ['a']);
    const second = runner.run(1, ['b']);
    assert.equal(executor.submitted.length, 1, 'the second waits for capacity');
    executor.settle(0, { kind: 'done', values: ['A'], ms: 1 });
    assert.deepEqual(await first, { kind: 'done', values: ['A'], ms: 1 });
    assert.equal(executor.submitted.length, 2);
    executor.settle(1, { kind: 'done', values: ['B'], ms: 1 });
    assert.deepEqual(await second, { kind: 'done', values: ['B'], ms: 1 });
  });

  it('stops the worker of an item past the timeout, and says which item it was', async () => {
    const runner = new ChunkRunner(20, () => undefined);
    const executor = new HeldExecutor(() => runner);
    runner.use(executor);
    executor.progress = { started: 2, oldest: 1 };
    const outcome = await runner.run(10, ['a', 'b', 'c']);
    assert.deepEqual(executor.stopped, [0]);
    assert.equal(outcome.kind, 'lost');
    if (outcome.kind === 'lost') assert.equal(outcome.timedOutAt, 1);
  });

  it('settles every chunk, waiting or running, when its call ends', async () => {
    const runner = new ChunkRunner(undefined, () => undefined);
    const executor = new HeldExecutor(() => runner);
    runner.use(executor);
    const chunks = [runner.run(0, [1]), runner.run(1, [2])];
    const ended: ChunkOutcome = { kind: 'failed', error: new ParmapRemoteError('the call ended') };
    runner.end(ended);
    assert.deepEqual(await Promise.all(chunks), [ended, ended]);
    assert.equal(await runner.run(2, [3]), ended, 'and any later one');
  });
});
