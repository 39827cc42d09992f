import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ChunkSizer,
  chunkByteLimit,
  MAX_AUTO_CHUNK,
  MAX_CHUNK_BYTES,
  MAX_CHUNK_MS,
  MIN_CHUNK_MS,
} from '../dist/parmap/scheduler/chunking.js';
import { type Chunk, Feeder, type FeederHooks } from '../dist/parmap/scheduler/feeder.js';
import { takeInput } from '../dist/parmap/scheduler/input.js';

describe('chunk sizer', () => {
  it('uses a fixed chunksize as given', () => {
    const sizer = new ChunkSizer(7, 2, 1000);
    assert.equal(sizer.next(), 7);
    sizer.record(7, 100);
    assert.equal(sizer.next(500), 7);
  });

  it('starts auto with single items, until a chunk has been measured', () => {
    const sizer = new ChunkSizer('auto', 2, 1000);
    assert.equal(sizer.next(), 1);
    assert.equal(sizer.next(1), 1);
  });

  it('holds at most a quarter second of work per chunk, and at least 10 ms', () => {
    const sizer = new ChunkSizer('auto', 2, undefined);
    sizer.record(10, 10); // 1 ms per item
    assert.equal(sizer.next(), MAX_CHUNK_MS);
    const slow = new ChunkSizer('auto', 2, undefined);
    slow.record(1, 5000);
    assert.equal(slow.next(), 1);
  });

  it('guides: large chunks first, shrinking as the remaining items run out', () => {
    const sizer = new ChunkSizer('auto', 2, 2000);
    sizer.record(10, 10); // 1 ms per item
    assert.equal(sizer.next(0), 250); // a quarter second, less than 2000 / 4
    assert.equal(sizer.next(1200), 200); // 800 left / (2 workers * 2)
    assert.equal(sizer.next(1960), MIN_CHUNK_MS); // never less than 10 ms of work
  });

  it('sends trivial items in large chunks, up to the cap', () => {
    const sizer = new ChunkSizer('auto', 2, 1_000_000);
    sizer.record(1000, 0.001);
    assert.equal(sizer.next(0), MAX_AUTO_CHUNK);
    assert.equal(sizer.next(999_990), MAX_AUTO_CHUNK);
    const stream = new ChunkSizer('auto', 2, undefined);
    stream.record(1000, 0.001);
    assert.equal(stream.next(5_000_000), MAX_AUTO_CHUNK);
  });

  it('keeps the bytes of a chunk (items and results) under its limit, whatever the item count', () => {
    const sizer = new ChunkSizer('auto', 2, 100_000, { maxBytes: 1_000_000 });
    sizer.record(10, 0.001, 100_000); // 10 KB per item, both ways together
    assert.equal(sizer.next(0), 100);
    sizer.record(100, 0.01, 100 * 400_000); // larger items now: the average is what counts
    assert.equal(sizer.next(110), Math.floor(1_000_000 / ((100_000 + 40_000_000) / 110)));
    const huge = new ChunkSizer('auto', 2, 100, { maxBytes: 1_000_000 });
    huge.record(1, 1, 50_000_000);
    assert.equal(huge.next(1), 1, 'an item larger than the limit still goes, alone');
  });

  it('measures bytes only from chunks that crossed to a worker', () => {
    const sizer = new ChunkSizer('auto', 2, 1_000_000, { maxBytes: 1_000 });
    sizer.record(1000, 0.001); // the in-thread run: nothing crossed
    assert.equal(sizer.next(0), MAX_AUTO_CHUNK);
  });

  it('gives an fn that returns promises chunks of at least `concurrency` items, or an even share of the rest', () => {
    // One item waiting 200 ms was a whole chunk's worth of time: chunks of one, nothing overlapped.
    const known = new ChunkSizer('auto', 2, 1_000, { concurrency: 32 });
    known.record(1, 200, undefined, true);
    assert.equal(known.next(1), 32);
    assert.equal(known.next(990), 5, 'an even share of the last items per worker');
    const stream = new ChunkSizer('auto', 2, undefined, { concurrency: 16 });
    stream.record(1, 200, undefined, true);
    assert.equal(stream.next(1), 16);
    const sync = new ChunkSizer('auto', 2, 1_000, { concurrency: 32 });
    sync.record(1, 200);
    assert.equal(sync.next(1), 1, 'a sync fn of 200 ms an item still goes one item at a time');
  });

  it('splits the bytes in flight between the chunks that may be on their way', () => {
    assert.equal(chunkByteLimit(32 * 2 ** 20, 4), MAX_CHUNK_BYTES);
    assert.equal(chunkByteLimit(4_000_000, 4), 1_000_000);
    assert.equal(chunkByteLimit(1, 4), 1);
  });
});

/** A run that takes chunks as the feeder offers them, with at most `room` unanswered at a time. */
function fakeRun(room: number) {
  const chunks: Chunk[] = [];
  let outstanding = 0;
  let peak = 0;
  const state = { ended: false, failure: undefined as unknown };
  const hooks: FeederHooks = {
    hasRoom: () => outstanding < room,
    submit: (chunk) => {
      chunks.push(chunk);
      outstanding++;
      peak = Math.max(peak, outstanding);
    },
    fail: (error) => {
      state.failure = error;
    },
    ended: () => {
      state.ended = true;
    },
  };
  return {
    hooks,
    chunks,
    state,
    get peak() {
      return peak;
    },
    answer(feeder: Feeder, count = 1) {
      outstanding -= count;
      feeder.pump();
    },
    answerAll(feeder: Feeder) {
      outstanding = 0;
      feeder.pump();
    },
  };
}

const noCheck = () => {};

describe('feeder', () => {
  it('numbers the items of an array into consecutive chunks', () => {
    const run = fakeRun(100);
    const feeder = Feeder.for(takeInput([10, 11, 12, 13, 14]), new ChunkSizer(2, 1, 5), noCheck, run.hooks);
    feeder.pump();
    assert.deepEqual(
      run.chunks.map(({ sequence, start, items }) => [sequence, start, items]),
      [
        [0, 0, [10, 11]],
        [1, 2, [12, 13]],
        [2, 4, [14]],
      ],
    );
    assert.equal(run.state.ended, true);
  });

  it('reads a generator lazily: never more chunks than the run has room for', () => {
    let read = 0;
    function* endless() {
      for (;;) yield read++;
    }
    const run = fakeRun(3);
    const feeder = Feeder.for(takeInput(endless()), new ChunkSizer(10, 1, undefined), noCheck, run.hooks);
    feeder.pump();
    assert.equal(run.chunks.length, 3);
    assert.equal(read, 30);
    run.answer(feeder);
    assert.equal(run.chunks.length, 4);
    assert.equal(read, 40);
    assert.equal(run.peak, 3);
    feeder.close();
    assert.equal(run.state.ended, false);
  });

  it('closes an unfinished generator, so its finally block runs', () => {
    let cleanedUp = false;
    function* source() {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        cleanedUp = true;
      }
    }
    const run = fakeRun(1);
    const feeder = Feeder.for(takeInput(source()), new ChunkSizer(5, 1, undefined), noCheck, run.hooks);
    feeder.pump();
    feeder.close();
    assert.equal(cleanedUp, true);
  });

  it('reports an item with the wrong shape through fail, naming its index', () => {
    const run = fakeRun(10);
    const check = (item: unknown, index: number) => {
      if (typeof item !== 'number') throw new TypeError(`item ${index} is bad`);
    };
    const feeder = Feeder.for(takeInput([1, 2, 'x', 4]), new ChunkSizer(2, 1, 4), check, run.hooks);
    feeder.pump();
    assert.equal(run.chunks.length, 1);
    assert.match(String(run.state.failure), /item 2 is bad/);
  });

  it('passes on the error of a generator that throws', () => {
    function* broken() {
      yield 1;
      throw new Error('source broke');
    }
    const run = fakeRun(10);
    Feeder.for(takeInput(broken()), new ChunkSizer(5, 1, undefined), noCheck, run.hooks).pump();
    assert.match(String(run.state.failure), /source broke/);
    assert.equal(run.state.ended, false);
  });

  it('sends a partly filled chunk from a slow async source instead of waiting for it to fill', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    async function* slow() {
      yield 'first';
      await gate;
      yield 'second';
    }
    const run = fakeRun(2);
    const feeder = Feeder.for(takeInput(slow()), new ChunkSizer(100, 1, undefined), noCheck, run.hooks);
    feeder.pump();
    while (run.chunks.length === 0) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(run.chunks[0]?.items, ['first']);
    release();
    while (!run.state.ended) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(
      run.chunks.flatMap((chunk) => chunk.items),
      ['first', 'second'],
    );
  });

  it('reads every item of an async source exactly once, in order', async () => {
    async function* numbers() {
      for (let i = 0; i < 1000; i++) yield i;
    }
    const run = fakeRun(2);
    const feeder = Feeder.for(takeInput(numbers()), new ChunkSizer(64, 1, undefined), noCheck, run.hooks);
    feeder.pump();
    while (!run.state.ended) {
      await new Promise((resolve) => setImmediate(resolve));
      run.answerAll(feeder);
    }
    const items = run.chunks.flatMap((chunk) => chunk.items);
    assert.deepEqual(
      items,
      Array.from({ length: 1000 }, (_, i) => i),
    );
    const starts = run.chunks.map((chunk) => chunk.start);
    let expected = 0;
    for (const [i, chunk] of run.chunks.entries()) {
      assert.equal(starts[i], expected);
      expected += chunk.items.length;
    }
  });
});
