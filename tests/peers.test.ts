/**
 * What the README's comparison says p-map, workerpool and piscina do, shown by running the
 * installed versions: each test asserts one behaviour a cell describes (the parmap column is
 * asserted on the same scenarios at the end), so the README cannot drift from what the libraries
 * do. Cells that describe an API need no run: piscina takes a worker file, workerpool and piscina
 * take one task per call. Every pool is closed; a run that could keep a process alive happens in
 * a child process with a limit.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { threadId } from 'node:worker_threads';
import pMap, { pMapIterable } from 'p-map';
import { Piscina } from 'piscina';
import workerpool from 'workerpool';
import { ParmapTaskError, ParmapWorkerError, parmap } from '../dist/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const LIMIT = { timeout: 20_000 };

/**
 * A function made from its text, so that what workerpool sends is exactly this text (tsx, which
 * runs these tests, would add helpers to a function written here that a worker lacks).
 */
const fromText = (text: string) => new Function(`return (${text});`)() as (...args: unknown[]) => unknown;

/** An error as a worker's `fn` throws it in these tests: a TypeError with a `code` and a `cause`. */
const THROW_CODED_TYPE_ERROR = `() => {
  throw Object.assign(new TypeError('bad input', { cause: new RangeError('inner') }), { code: 'E_BAD' });
}`;

interface Ending {
  /** Whether the process ended by itself within the wait. */
  readonly exited: boolean;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs an ES module script in a fresh Node process (from the repository, so packages resolve) and
 * waits at most `waitMs` for it to end by itself; a process still alive then is killed.
 */
function runUntilExitOrKill(script: string, waitMs: number): Promise<Ending> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data) => {
      stdout += data;
    });
    child.stderr.on('data', (data) => {
      stderr += data;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), waitMs);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve({ exited: signal === null, stdout: stdout.trim(), stderr: stderr.trim() });
    });
  });
}

/** Whether a promise settles within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await sleep(ms);
  return settled;
}

describe('p-map', LIMIT, () => {
  it('runs the mapper in the calling thread: concurrency, not other cores', async () => {
    const threads = await pMap([1, 2, 3], async () => threadId, { concurrency: 3 });
    assert.deepEqual(threads, [threadId, threadId, threadId]);
  });

  it('reads an endless input lazily, a few items ahead of its concurrency', async () => {
    let pulled = 0;
    function* endless() {
      for (let i = 0; ; i++) {
        pulled++;
        yield i;
      }
    }
    await assert.rejects(
      pMap(
        endless(),
        async (x) => {
          await sleep(5);
          if (x === 3) throw new Error('stop');
          return x;
        },
        { concurrency: 2 },
      ),
      { message: 'stop' },
    );
    assert.ok(pulled <= 6, `pulled ${pulled} items`);
  });

  it('rejects with the very error the mapper threw', async () => {
    const thrown = new TypeError('bad input');
    const caught = await pMap([1], () => Promise.reject(thrown)).catch((error: unknown) => error);
    assert.equal(caught, thrown);
  });

  it('stops mapping and closes the source when the consumer of pMapIterable breaks', async () => {
    let mapped = 0;
    let closed = false;
    function* endless() {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        closed = true;
      }
    }
    const mapper = async (x: number) => {
      mapped++;
      await sleep(5);
      return x;
    };
    for await (const value of pMapIterable(endless(), mapper, { concurrency: 2 })) {
      if (value === 3) break;
    }
    const mappedAtBreak = mapped;
    await sleep(50);
    assert.equal(mapped, mappedAtBreak, 'the mapper was called after the break');
    assert.ok(closed, "the source's finally block did not run");
  });
});

describe('workerpool', LIMIT, () => {
  it('exec(fn) sends fn as text and compiles it again for every task', async () => {
    const pool = workerpool.pool({ maxWorkers: 1, workerType: 'thread' });
    try {
      // Inside fn, `this` is the function workerpool compiled for the task: a new one each time.
      const task = fromText(
        'function () { const seen = (globalThis.seen ??= new Set()); seen.add(this); return seen.size; }',
      );
      const sizes = [await pool.exec(task, []), await pool.exec(task, []), await pool.exec(task, [])];
      assert.deepEqual(sizes, [1, 2, 3]);
    } finally {
      await pool.terminate(true);
    }
  });

  it('rejects with a plain Error: a TypeError arrives named Error, code is kept, cause is a plain object', async () => {
    const pool = workerpool.pool({ maxWorkers: 1, workerType: 'thread' });
    try {
      const caught = (await pool
        .exec(fromText(THROW_CODED_TYPE_ERROR), [])
        .catch((error: unknown) => error)) as Error & {
        code?: unknown;
      };
      assert.equal(Object.getPrototypeOf(caught), Error.prototype);
      assert.ok(!(caught instanceof TypeError));
      assert.equal(caught.name, 'Error');
      assert.equal(caught.message, 'bad input');
      assert.equal(caught.code, 'E_BAD');
      assert.ok(!(caught.cause instanceof Error), 'the cause arrived as an Error');
      assert.equal((caught.cause as { message?: unknown }).message, 'inner');
    } finally {
      await pool.terminate(true);
    }
  });

  it('when a worker dies, its task rejects and the tasks queued behind it wait for the next exec()', async () => {
    const pool = workerpool.pool({ maxWorkers: 1, workerType: 'thread' });
    try {
      const dying = pool.exec(fromText('() => process.exit(3)'), []);
      const queued = Promise.all([
        pool.exec(fromText('(x) => x * 10'), [1]),
        pool.exec(fromText('(x) => x * 10'), [2]),
      ]);
      await assert.rejects(dying, (error: Error) => error instanceof workerpool.TerminateError);
      assert.equal(await settlesWithin(queued, 300), false, 'the queued tasks settled without another exec()');
      assert.equal(await pool.exec(fromText('() => "next"'), []), 'next');
      assert.deepEqual(await queued, [10, 20]);
    } finally {
      await pool.terminate(true);
    }
  });

  it('has a per-task timeout: .timeout(ms) on the task', async () => {
    const pool = workerpool.pool({ maxWorkers: 1, workerType: 'thread' });
    try {
      const started = performance.now();
      await assert.rejects(pool.exec(fromText('() => { for (;;); }'), []).timeout(100), { name: 'TimeoutError' });
      assert.ok(performance.now() - started < 2_000);
    } finally {
      await pool.terminate(true);
    }
  });

  it('keeps the process alive until the pool is terminated', async () => {
    const script = `import workerpool from 'workerpool';
      const pool = workerpool.pool({ maxWorkers: 1, workerType: 'thread' });
      console.log(await pool.exec((x) => x + 1, [1]));`;
    const ending = await runUntilExitOrKill(script, 1_500);
    assert.equal(ending.stdout, '2', ending.stderr);
    assert.equal(ending.exited, false, 'the process ended without pool.terminate()');
  });
});

describe('piscina', LIMIT, () => {
  // piscina runs the export of a worker file: no function can be passed to it.
  let folder: string;
  let workerFile: string;
  before(() => {
    folder = mkdtempSync(join(tmpdir(), 'parmap-peers-'));
    workerFile = join(folder, 'worker.mjs');
    writeFileSync(
      workerFile,
      `export default (task) => {
        if (task === 'coded') (${THROW_CODED_TYPE_ERROR})();
        if (task === 'custom') {
          class ValidationError extends Error {}
          throw Object.assign(new ValidationError('x'), { name: 'ValidationError' });
        }
        if (task === 'exit') process.exit(3);
        if (task === 'spin') for (;;);
        return task * 10;
      };`,
    );
  });
  // Removed only as this process exits: after a task is aborted, piscina starts a replacement
  // worker on its own, even past destroy(), and that worker loads the file.
  process.once('exit', () => rmSync(folder, { recursive: true, force: true }));

  it("rejects with the error's structured clone: class and cause kept, code and a custom class lost", async () => {
    const pool = new Piscina({ filename: workerFile, maxThreads: 1 });
    try {
      const coded = (await pool.run('coded').catch((error: unknown) => error)) as TypeError & { code?: unknown };
      assert.ok(coded instanceof TypeError);
      assert.equal(coded.message, 'bad input');
      assert.ok(coded.cause instanceof RangeError);
      assert.equal(coded.code, undefined);
      const custom = (await pool.run('custom').catch((error: unknown) => error)) as Error;
      assert.equal(Object.getPrototypeOf(custom), Error.prototype);
      assert.equal(custom.name, 'Error');
    } finally {
      await pool.destroy();
    }
  });

  it('when a worker dies, its task rejects and the others run', async () => {
    const pool = new Piscina({ filename: workerFile, maxThreads: 1 });
    try {
      const [dying, ...others] = await Promise.allSettled([pool.run('exit'), pool.run(1), pool.run(2)]);
      assert.equal(dying?.status, 'rejected');
      assert.deepEqual(others, [
        { status: 'fulfilled', value: 10 },
        { status: 'fulfilled', value: 20 },
      ]);
    } finally {
      await pool.destroy();
    }
  });

  it('has a per-task timeout through an AbortSignal', async () => {
    const pool = new Piscina({ filename: workerFile, maxThreads: 1 });
    try {
      await assert.rejects(pool.run('spin', { signal: AbortSignal.timeout(100) }), { name: 'AbortError' });
    } finally {
      await pool.destroy();
    }
  });

  it('lets the process exit with the pool still open', async () => {
    const script = `import { Piscina } from 'piscina';
      const pool = new Piscina({ filename: ${JSON.stringify(pathToFileURL(workerFile).href)}, maxThreads: 1 });
      console.log(await pool.run(1));`;
    const ending = await runUntilExitOrKill(script, 5_000);
    assert.equal(ending.stdout, '10', ending.stderr);
    assert.ok(ending.exited, 'the process stayed alive');
  });
});

describe('parmap, on the same scenarios', LIMIT, () => {
  it('fails with the item named and the error rebuilt: class, code and cause kept', async () => {
    const fn = (x: number) => {
      if (x === 1)
        throw Object.assign(new TypeError('bad input', { cause: new RangeError('inner') }), { code: 'E_BAD' });
      return x;
    };
    const caught = await parmap(fn, [0, 1, 2], { n: 2 }).catch((error: unknown) => error);
    assert.ok(caught instanceof ParmapTaskError);
    assert.equal(caught.index, 1);
    const cause = caught.cause as TypeError & { code?: unknown };
    assert.ok(cause instanceof TypeError);
    assert.equal(cause.code, 'E_BAD');
    assert.ok(cause.cause instanceof RangeError);
  });

  it('fails the call naming the item when a worker dies', async () => {
    const caught = await parmap(
      (x: number) => {
        if (x === 2) process.exit(3);
        return x;
      },
      [0, 1, 2, 3],
      { n: 2, chunksize: 1 },
    ).catch((error: unknown) => error);
    assert.ok(caught instanceof ParmapWorkerError);
    assert.equal(caught.index, 2);
    assert.equal(caught.exitCode, 3);
  });

  it('closes the input when the consumer breaks', async () => {
    let closed = false;
    function* endless() {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        closed = true;
      }
    }
    for await (const value of parmap((x: number) => x * 2, endless(), { n: 2 })) {
      if (value >= 6) break;
    }
    assert.ok(closed, "the source's finally block did not run");
  });

  it('lets the process exit by itself', async () => {
    const entry = pathToFileURL(join(root, 'dist', 'index.js')).href;
    const script = `import { parmap } from ${JSON.stringify(entry)};
      console.log((await parmap((x) => x + 1, [1, 2], { n: 2 })).join(','));`;
    const ending = await runUntilExitOrKill(script, 10_000);
    assert.equal(ending.stdout, '2,3', ending.stderr);
    assert.ok(ending.exited, 'the process stayed alive');
  });
});
