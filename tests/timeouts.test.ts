import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createPool, ParmapError, ParmapTimeoutError, parmap } from '../dist/index.js';

/** Given to fn by `scope`. */
declare const HANG: number;
declare const CRASH_AT: number;

const range = (count: number) => Array.from({ length: count }, (_, i) => i);

describe('timeout', () => {
  for (const workerType of ['thread', 'process'] as const) {
    it(`limits an item's own run time, not the time its chunk's results take to travel back (${workerType})`, async () => {
      // Each result has a getter that takes 40 ms, which runs as the result is sent back, not while
      // its item runs: sending a chunk of 10 takes 400 ms or more, four times the 100 ms timeout,
      // which no item comes near (an item takes microseconds).
      const results = await parmap(
        (x: number) => ({
          get value() {
            const end = performance.now() + 40;
            while (performance.now() < end);
            return x;
          },
        }),
        range(20),
        { n: 2, chunksize: 10, timeout: 100, workerType },
      );
      assert.deepEqual(
        results,
        range(20).map((value) => ({ value })),
      );
    });
  }
});

describe('timeout with process workers and many fast items', { timeout: 60_000 }, () => {
  // A process cannot share memory with its parent: it used to send a message as each item started,
  // and those queued in it while fn ran in a loop, so its parent saw no progress and stopped it.
  const busy = (x: number) => {
    const end = performance.now() + (x === HANG ? 30_000 : 0.01);
    while (performance.now() < end);
    return x * 2;
  };

  it('does not stop a process for a timeout that no item ran into', async () => {
    // 100,000 items of 10 µs: with a timeout of 100 ms, the old reports fell behind every time.
    const results = await parmap(busy, range(100_000), {
      n: 2,
      workerType: 'process',
      timeout: 100,
      scope: { HANG: -1 },
    });
    assert.equal(results.length, 100_000);
    assert.ok(results.every((value, i) => value === i * 2));
  });

  for (const hang of [3, 41_234]) {
    it(`names the item that hangs among fast ones, not one before it (item ${hang})`, async () => {
      await assert.rejects(
        parmap(busy, range(60_000), { n: 2, workerType: 'process', timeout: 300, scope: { HANG: hang } }),
        (error: unknown) => error instanceof ParmapTimeoutError && error.index === hang,
      );
    });
  }
});

describe('timeout with process workers and no usable temporary directory', () => {
  it('fails the call saying what to do, rather than run without watching the time', async () => {
    const saved = process.env.TMPDIR;
    // Process workers get this environment as they start; the pool is this call's own.
    process.env.TMPDIR = '/nonexistent/parmap-test-dir';
    try {
      await assert.rejects(
        parmap((x: number) => x, range(100), { n: 2, workerType: 'process', timeout: 1_000 }),
        (error: unknown) =>
          error instanceof ParmapError &&
          /cannot make one in \/nonexistent\/parmap-test-dir/.test(error.message) &&
          /point TMPDIR at a writable directory, or use workerType: 'thread'/.test(error.message),
      );
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });
});

describe('timeout with process workers: where a worker had got, after it ended', () => {
  for (const crashAt of [0, 5, 9]) {
    it(`a worker that exits at item ${crashAt} of its first chunk is blamed on that item alone`, async () => {
      // The worker's progress file must outlive it: its parent may read the file only after the end.
      const results = await parmap(
        (x: number) => {
          if (x === CRASH_AT) process.exit(3);
          return x;
        },
        range(40),
        { n: 2, workerType: 'process', chunksize: 10, timeout: 5_000, onError: 'return', scope: { CRASH_AT: crashAt } },
      );
      const failed = results.flatMap((value, i) => (typeof value === 'number' ? [] : [i]));
      assert.deepEqual(failed, [crashAt]);
    });
  }

  it('a relative TMPDIR means the same place after this process changes directory', async () => {
    const base = mkdtempSync(join(tmpdir(), 'parmap-relative-'));
    const saved = { dir: process.cwd(), tmp: process.env.TMPDIR };
    mkdirSync(join(base, 'a', 'files'), { recursive: true });
    mkdirSync(join(base, 'b'));
    process.chdir(join(base, 'a'));
    process.env.TMPDIR = 'files';
    const pool = createPool({ n: 1, workerType: 'process' });
    try {
      assert.deepEqual(await pool.map((x: number) => x, [1, 2], { timeout: 5_000 }), [1, 2]);
      process.chdir(join(base, 'b'));
      await assert.rejects(
        pool.map(
          (x: number) => {
            if (x === 1) for (;;);
            return x;
          },
          [0, 1],
          { timeout: 300, chunksize: 2, signal: AbortSignal.timeout(10_000) },
        ),
        (error: unknown) => error instanceof ParmapTimeoutError && error.index === 1,
      );
    } finally {
      await pool.close();
      process.chdir(saved.dir);
      if (saved.tmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved.tmp;
      const left = readdirSync(join(base, 'a', 'files'));
      rmSync(base, { recursive: true, force: true });
      assert.deepEqual(left, [], 'progress files left behind');
    }
  });
});
