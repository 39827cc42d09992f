/**
 * `context` and `teardown` with a real resource: each worker opens one socket to a TCP server on
 * 127.0.0.1 that counts connections, fn writes to it, and the teardown says `bye` and closes it.
 * Every scenario runs in a process of its own (see fixtures/context-scenario.mjs), which must end
 * by itself.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fixture, lastJson, runModule, runNode } from './fixtures/integration-child.js';

interface Connection {
  /** `<pid>:<threadId>` of the worker whose context opened it; null if it closed before saying. */
  readonly opener: string | null;
  readonly items: number;
  readonly bye: boolean;
  readonly closed: boolean;
}

interface Report {
  readonly pid: number;
  readonly outcome: string;
  readonly allClosed: boolean;
  readonly connections: readonly Connection[];
}

type Mode = 'thread' | 'process' | 'inline';
type Ending = 'ok' | 'throw' | 'break' | 'abort';

async function scenario(mode: Mode, ending: Ending, release = 'teardown'): Promise<{ report: Report; stderr: string }> {
  const outcome = await runNode([fixture('context-scenario.mjs'), mode, ending, release]);
  return { report: lastJson<Report>(outcome), stderr: outcome.stderr };
}

const expectedOutcome: Record<Ending, RegExp> = {
  ok: /^correct results$/,
  throw: /^ParmapTaskError: .*item 10.*boom/,
  break: /^broke$/,
  abort: /^AbortError/,
};

/** One socket per worker that ran, never two from one worker, and every one closed in the end. */
function assertOnePerWorker(report: Report, mode: Mode): void {
  assert.equal(report.allClosed, true, JSON.stringify(report));
  const openers = report.connections.flatMap(({ opener }) => (opener === null ? [] : [opener]));
  assert.equal(new Set(openers).size, openers.length, `a worker opened two sockets: ${JSON.stringify(report)}`);
  assert.ok(report.connections.length >= 1 && report.connections.length <= (mode === 'inline' ? 1 : 2));
  for (const opener of openers) {
    const [pid, threadId] = (opener as string).split(':').map(Number);
    if (mode === 'inline') assert.deepEqual([pid, threadId], [report.pid, 0], 'n: 1 makes the context in this thread');
    if (mode === 'thread') assert.ok(pid === report.pid && threadId !== 0, opener);
    if (mode === 'process') assert.notEqual(pid, report.pid, opener);
  }
}

const modes: Mode[] = ['thread', 'process', 'inline'];
const endings: Ending[] = ['ok', 'throw', 'break', 'abort'];

describe('context and teardown: one resource per worker, released however the call ends', () => {
  for (const mode of modes) {
    for (const ending of endings) {
      it(`${mode}: ${ending}: one socket per worker, all closed`, async () => {
        const { report } = await scenario(mode, ending);
        assert.match(report.outcome, expectedOutcome[ending]);
        assertOnePerWorker(report, mode);
        if (ending === 'ok') {
          assert.equal(
            report.connections.reduce((sum, { items }) => sum + items, 0),
            40,
            'each item wrote once',
          );
          for (const connection of report.connections) assert.ok(connection.opener !== null && connection.bye);
        }
      });
    }
  }

  for (const ending of ['throw', 'break', 'abort'] as const) {
    it(`inline: teardown runs on ${ending}`, async () => {
      const { report } = await scenario('inline', ending);
      assert.deepEqual(
        report.connections.map(({ bye }) => bye),
        [true],
      );
    });
  }

  for (const mode of ['thread', 'process'] as const) {
    for (const ending of ['throw', 'break', 'abort'] as const) {
      it(`${mode}: teardown runs in every worker that made a context, also busy ones, on ${ending}`, async () => {
        const { report } = await scenario(mode, ending);
        for (const connection of report.connections) {
          if (connection.opener !== null) assert.ok(connection.bye, JSON.stringify(report));
        }
      });
    }
  }

  it('teardown runs on a worker busy with an item when another item fails', async () => {
    const outcome = await runModule(`
      const { existsSync, readFileSync, rmSync } = await import('node:fs');
      const file = (await import('node:path')).join((await import('node:os')).tmpdir(), 'parmap-teardown-' + process.pid);
      const context = () => ({ id: require('node:worker_threads').threadId });
      const teardown = (value) => require('node:fs').appendFileSync(file, 'bye ' + value.id + '\\n');
      // Item 1 says it has started, then waits for ever; item 0 waits for that, then throws.
      const started = new Int32Array(new SharedArrayBuffer(4));
      const fn = async (x, flag) => {
        if (x === 1) { Atomics.store(flag, 0, 1); Atomics.notify(flag, 0); await new Promise(() => {}) }
        Atomics.wait(flag, 0, 0);
        throw new Error('boom');
      };
      const error = await parmap(fn, [0, 1], { n: 2, chunksize: 1, args: [started], context, teardown, scope: { file } }).catch((e) => e);
      const lines = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\\n') : [];
      rmSync(file, { force: true });
      console.log(JSON.stringify({ error: error.name, teardowns: lines.length }));
    `);
    assert.deepEqual(lastJson(outcome), { error: 'ParmapTaskError', teardowns: 2 });
  });

  for (const mode of ['thread', 'process'] as const) {
    it(`${mode}: a context still being made when the pool closes is finished, then released`, async () => {
      // Told to stop while its context awaited, a worker released the contexts it had (none yet)
      // and exited: one that was made a moment later was never released (process workers lost
      // most teardowns when a call was aborted during its start-up).
      const outcome = await runModule(`
        const net = await import('node:net');
        const sockets = [];
        const said = [];
        let closing;
        const server = net.createServer((socket) => {
          socket.on('error', () => {});
          socket.on('data', (data) => {
            for (const word of String(data).split('\\n').filter(Boolean)) {
              said.push(word);
              // Both contexts wait for a go: the pool is closed then, and the go comes later.
              if (word === 'making' && sockets.push(socket) === 2) {
                closing = pool.close();
                setTimeout(() => { for (const each of sockets) each.write('go') }, 300);
              }
            }
          });
        }).listen(0, '127.0.0.1');
        await new Promise((resolve) => server.once('listening', resolve));
        const port = server.address().port;
        const context = () => new Promise((resolve) => {
          const socket = require('node:net').connect(port, '127.0.0.1', () => socket.write('making\\n'));
          socket.once('data', () => { socket.write('made\\n'); resolve(socket) });
        });
        const teardown = (socket) => new Promise((resolve) => socket.end('bye\\n', resolve));
        const pool = createPool({ n: 2, workerType: '${mode}' });
        const error = await pool.map((x, socket) => x, [0, 1], { chunksize: 1, context, teardown, scope: { port } }).catch((e) => e);
        await closing;
        await new Promise((resolve) => server.close(resolve));
        const count = (word) => said.filter((each) => each === word).length;
        console.log(JSON.stringify({ error: error?.message, made: count('made'), bye: count('bye') }));
      `);
      assert.deepEqual(lastJson(outcome), {
        error: 'parmap: the pool was closed while this call was running',
        made: 2,
        bye: 2,
      });
    });
  }

  // After a break, a process worker takes workerpool's stop message while its chunk is still
  // running (fn awaits between items): the teardown runs, and the chunk's next item then starts
  // with the released value. With the socket of the scenarios above, fn writes after end() and the
  // worker dies with ERR_STREAM_WRITE_AFTER_END on the caller's stderr. Intermittent (about one run
  // in three here), so each check runs the call five times.
  for (const mode of ['thread', 'process'] as const) {
    it(`${mode}: no item starts after its worker's teardown (break)`, {}, async () => {
      const outcome = await runModule(`
        const { existsSync, readFileSync, rmSync } = await import('node:fs');
        const file = (await import('node:path')).join((await import('node:os')).tmpdir(), 'parmap-after-release-' + process.pid);
        const context = () => ({ released: false });
        const teardown = (value) => { value.released = true };
        const fn = async (x, value) => {
          if (value.released) require('node:fs').appendFileSync(file, x + '\\n');
          await new Promise((resolve) => setImmediate(resolve));
          return x;
        };
        const endless = function* () { for (let i = 0; ; i++) yield i };
        for (let run = 0; run < 5; run++) {
          let seen = 0;
          for await (const _ of parmap(fn, endless(), { n: 2, workerType: '${mode}', context, teardown, scope: { file } })) if (++seen === 50) break;
        }
        const late = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\\n').length : 0;
        rmSync(file, { force: true });
        console.log(JSON.stringify({ itemsStartedAfterTeardown: late }));
      `);
      assert.deepEqual(lastJson(outcome), { itemsStartedAfterTeardown: 0 });
    });
  }

  // With n: 1 the whole call runs in microtasks: no timer or I/O callback runs until it ends, so a
  // signal aborted by one never stops a sync fn on an endless input (and the context is never
  // released). fn gives up after 3 million items, which take well under a second here.
  it('n: 1: an abort from a macrotask stops a sync fn on an endless input, and releases the context', {}, async () => {
    const outcome = await runModule(`
      const controller = new AbortController();
      // After the first items ran (so the context was made), from a timer, while fn keeps running.
      setTimeout(() => controller.abort(), 20);
      let released = false;
      const fn = (x) => { if (x === 3e6) throw new Error('never aborted'); return x };
      const endless = function* () { for (let i = 0; ; i++) yield i };
      const error = await parmap(fn, endless(), { n: 1, signal: controller.signal, context: () => ({}), teardown: () => { released = true } }).catch((e) => e);
      console.log(JSON.stringify({ error: error?.name === 'AbortError' ? 'AbortError' : String(error?.cause ?? error), released }));
    `);
    assert.deepEqual(lastJson(outcome), { error: 'AbortError', released: true });
  });

  for (const release of ['dispose', 'close'] as const) {
    it(`without teardown, the value's own ${release === 'dispose' ? 'Symbol.asyncDispose' : 'close()'} releases it`, async () => {
      for (const mode of modes) {
        const { report } = await scenario(mode, 'ok', release);
        assert.equal(report.outcome, 'correct results');
        assertOnePerWorker(report, mode);
        for (const connection of report.connections) assert.ok(connection.bye, `${mode}: ${JSON.stringify(report)}`);
      }
    });
  }
});

describe('context: the value and how fn receives it', () => {
  const options = ['{ n: 2 }', "{ n: 2, workerType: 'process' }", '{ n: 1 }'];

  it('comes after the item and args, before the kwargs object (also with star)', async () => {
    const outcome = await runModule(`
      const out = [];
      for (const options of [${options.join(', ')}]) {
        out.push(await parmap((x, a, value, kw) => [x, a, value, kw], [1, 2], { ...options, args: ['A'], kwargs: { k: 1 }, context: () => 'C' }));
        out.push(await parmap((x, y, a, value) => [x, y, a, value], [[1, 2]], { ...options, star: true, args: ['A'], context: () => 'C' }));
      }
      console.log(JSON.stringify(out));
    `);
    const perMode = [
      [
        [1, 'A', 'C', { k: 1 }],
        [2, 'A', 'C', { k: 1 }],
      ],
      [[1, 2, 'A', 'C']],
    ];
    assert.deepEqual(lastJson(outcome), [...perMode, ...perMode, ...perMode]);
  });

  it('may be async and sees scope', async () => {
    const outcome = await runModule(`
      const out = [];
      for (const options of [${options.join(', ')}]) {
        const context = async () => { await new Promise((r) => setImmediate(r)); return { greeting: prefix + '!' } };
        out.push(await parmap((x, value) => value.greeting + x, [1, 2], { ...options, context, scope: { prefix: 'hi' } }));
      }
      console.log(JSON.stringify(out));
    `);
    assert.deepEqual(lastJson(outcome), [
      ['hi!1', 'hi!2'],
      ['hi!1', 'hi!2'],
      ['hi!1', 'hi!2'],
    ]);
  });

  it('a context that throws fails the call saying so, and no item runs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parmap-context-'));
    try {
      const marks = join(dir, 'ran');
      const outcome = await runModule(`
        const out = [];
        for (const options of [${options.join(', ')}]) {
          const error = await parmap((x) => require('node:fs').appendFileSync(marks, 'x'), range(20), {
            ...options, context: () => { throw new Error('no database') }, scope: { marks: ${JSON.stringify(marks)} },
          }).then(() => undefined, (e) => e);
          out.push({ name: error?.name, message: error?.message, cause: error?.cause?.message });
        }
        console.log(JSON.stringify(out));
      `);
      for (const error of lastJson<{ name: string; message: string; cause: string }[]>(outcome)) {
        assert.equal(error.name, 'ParmapSetupError');
        // What it threw is in the message itself: a log line often shows no cause.
        assert.match(error.message, /context function threw, so no item could run: Error: no database$/);
        assert.equal(error.cause, 'no database');
      }
      assert.equal(existsSync(marks), false, 'an item ran');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a context that throws a value that cannot be read is still a ParmapSetupError, on workers and with n: 1', async () => {
    // With n: 1 the thrown value is the error's cause as it is, and adding the caller's frames
    // read its stack: a revoked Proxy, or an Error whose message getter throws, replaced the
    // ParmapSetupError with the getter's own error.
    const { parmap } = await import('../dist/index.js');
    // Each is whole in itself: a worker gets it by its source text.
    const contexts: Record<string, () => unknown> = {
      revokedProxy: () => {
        const { proxy, revoke } = Proxy.revocable({}, {});
        revoke();
        throw proxy;
      },
      rejectsRevokedProxy: async () => {
        const { proxy, revoke } = Proxy.revocable({}, {});
        revoke();
        throw proxy;
      },
      messageThrows: () => {
        throw Object.defineProperty(new Error('no database'), 'message', {
          get() {
            throw new Error('no message');
          },
        });
      },
      nameThrows: async () => {
        throw Object.defineProperty(new Error('no database'), 'name', {
          get() {
            throw new Error('no name');
          },
        });
      },
      stackThrows: () => {
        throw Object.defineProperty(new Error('no database'), 'stack', {
          get() {
            throw new Error('no stack');
          },
        });
      },
    };
    for (const n of [1, 2]) {
      for (const [name, context] of Object.entries(contexts)) {
        const error = await parmap((x: number) => x, [1, 2], { n, context }).then(
          () => assert.fail('the call did not fail'),
          (e: unknown) => e as Error,
        );
        assert.equal(error.name, 'ParmapSetupError', `n: ${n}, ${name}: ${String(error.message)}`);
        assert.match(error.message, /context function threw/);
      }
    }
  });

  it('a teardown that throws is told on stderr, and the results stand: on workers and with n: 1 alike', async () => {
    // With n: 1, the call rejected with the teardown's raw error, and its results were lost.
    const outcome = await runModule(`
      const results = [];
      for (const n of [1, 2]) {
        results.push(await parmap((x, c) => x + c, [1, 2], { n, context: () => 10, teardown: () => { throw new TypeError('close failed') } }));
      }
      console.log(JSON.stringify(results));
    `);
    assert.deepEqual(lastJson(outcome), [
      [11, 12],
      [11, 12],
    ]);
    assert.match(outcome.stderr, /parmap: releasing the context failed: TypeError: close failed/);
    assert.match(outcome.stderr, /parmap: releasing a worker's context failed: TypeError: close failed/);
  });

  for (const workerType of ['thread', 'process'] as const) {
    it(`a context that ends its worker is named as the set-up's fault, with the exit code, not an item's (${workerType})`, async () => {
      // It was "a worker ended unexpectedly while running item 0", an item that never ran (threads
      // also lost the exit code).
      // On a pool, or once awaiting, a thread that died making it was taken for one idle after the
      // chunk it had taken and never started: "after running item 1, while idle".
      const outcome = await runModule(`
        const contexts = [() => process.exit(3), async () => { await new Promise((r) => setTimeout(r, 20)); process.exit(3) }];
        const reports = [];
        for (const context of contexts) {
          for (const pooled of [false, true]) {
            const pool = pooled ? createPool({ n: 2, workerType: '${workerType}' }) : undefined;
            const call = pooled
              ? pool.map((x, db) => x, [10, 20, 30], { context })
              : parmap((x, db) => x, [10, 20, 30], { n: 2, workerType: '${workerType}', context });
            const error = await call.catch((e) => e);
            await pool?.close();
            reports.push({ name: error.name, exitCode: error.exitCode, index: error.index ?? null, whileIdle: error.whileIdle, message: error.message });
          }
        }
        console.log(JSON.stringify(reports));
      `);
      const reports = lastJson(outcome) as {
        name: string;
        exitCode: number;
        index: number | null;
        whileIdle: boolean;
        message: string;
      }[];
      assert.equal(reports.length, 4);
      for (const report of reports) {
        assert.equal(report.name, 'ParmapWorkerError', report.message);
        assert.equal(report.exitCode, 3);
        assert.equal(report.index, null);
        assert.equal(report.whileIdle, false, report.message);
        assert.match(report.message, /exited with code 3 before starting any item .*the context function/);
      }
    });
  }

  it('teardown without context is a TypeError at the call', async () => {
    const { parmap } = await import('../dist/index.js');
    for (const n of [1, 2]) {
      assert.throws(() => parmap((x: number) => x, [1], { n, teardown: () => undefined }), {
        name: 'TypeError',
        message: /`teardown` releases the value of `context`/,
      });
    }
  });
});
