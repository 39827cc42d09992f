/**
 * Trivial work, where parmap's own overhead is all there is to see: against the hand-written
 * reference (200k and 2M numbers, 20k strings of 5 KB), and against the per-item pools of its
 * peers (workerpool and piscina).
 */

import { parmap } from 'parmap';
import { Piscina } from 'piscina';
import workerpool from 'workerpool';
import {
  type Contender,
  count,
  interleave,
  ms,
  perSecond,
  quick,
  rounds,
  roundsNote,
  sameArrayAs,
  WORKERS,
} from './measure.js';
import { handWrittenPool } from './reference.js';
import { addToSummary, Table, throughputTarget } from './report.js';
import { handWrittenStream } from './streaming-reference.js';

const increment = (x: number) => x + 1;
const same = (text: string) => text;
const AT_LEAST_095 = { least: 0.95, text: '>= 0.95' };

/**
 * The cheapest async iterator there is, over values already computed: what `for await` itself
 * costs per result, with no worker and no message, which no streamed call can get under.
 */
function readyValues<T>(values: readonly T[]): AsyncIterable<T> {
  let index = 0;
  const iterator: AsyncIterator<T> = {
    next: () =>
      Promise.resolve(
        index < values.length ? { value: values[index++] as T, done: false } : { value: undefined, done: true },
      ),
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

/** The reference as the performance issue sets it: chunks of 1,000, two in flight per worker. */
function reference<T, R>(fn: (item: T) => R, items: readonly T[]): Contender {
  return {
    name: 'hand-written pool',
    run: () =>
      handWrittenPool<T, R>(String(fn), items, { workers: WORKERS, chunkSize: 1_000, chunksInFlightPerWorker: 2 }),
  };
}

/** 200,000 numbers, as one array and as a stream, in the same rounds as the reference. */
async function trivialNumbers(): Promise<void> {
  const items = Array.from({ length: 200_000 }, (_, i) => i);
  const measured = await interleave(
    '200k trivial items',
    [
      reference(increment, items),
      { name: 'parmap, await', run: () => parmap(increment, items, { n: WORKERS }) },
      {
        name: 'parmap, for await',
        run: async () => {
          const results: number[] = [];
          for await (const result of parmap(increment, items, { n: WORKERS })) results.push(result);
          return results;
        },
      },
      { name: 'Array.map (one core)', run: () => items.map(increment) },
      {
        name: 'hand-written stream, for await',
        run: async () => {
          const results: number[] = [];
          const options = { workers: WORKERS, chunkSize: 1_000, chunksInFlightPerWorker: 2 };
          for await (const result of handWrittenStream<number, number>(String(increment), items, options)) {
            results.push(result);
          }
          return results;
        },
      },
      {
        name: 'for await alone',
        run: async () => {
          const results: number[] = [];
          for await (const result of readyValues(items.map(increment))) results.push(result);
          return results;
        },
      },
    ],
    rounds(9),
    sameArrayAs(items.map(increment)),
  );
  const [handWritten = 0, awaited = 0, streamed = 0, serial = 0, handStreamed = 0, floor = 0] = measured.medians;
  const table = new Table('1. 200,000 trivial items (x => x + 1), 2 workers, start-up included');
  table.add('', 'time', 'items/s');
  table.add('hand-written pool (reference)', ms(handWritten), perSecond(items.length, handWritten));
  table.add('await parmap(...)', ms(awaited), perSecond(items.length, awaited));
  table.add('for await (const r of parmap(...))', ms(streamed), perSecond(items.length, streamed));
  table.add('Array.map on one core (for scale)', ms(serial), perSecond(items.length, serial));
  table.add(
    'hand-written pool streamed, for await (for scale)',
    ms(handStreamed),
    perSecond(items.length, handStreamed),
  );
  table.add('for await alone, over ready values (the floor)', ms(floor), perSecond(items.length, floor));
  table.print(roundsNote(measured.rounds));
  console.log(
    `  ${throughputTarget('200k trivial, array', { parmap: awaited, reference: handWritten }, AT_LEAST_095)}`,
  );
  console.log(
    `  ${throughputTarget('200k trivial, for await', { parmap: streamed, reference: handWritten }, AT_LEAST_095)}`,
  );
}

/** One row of parmap against the reference on the same items and function. */
async function againstReference<T, R>(row: string, fn: (item: T) => R, items: readonly T[], roundCount: number) {
  const measured = await interleave(
    row,
    [reference(fn, items), { name: 'parmap', run: () => parmap(fn, items, { n: WORKERS }) }],
    roundCount,
    sameArrayAs(items.map(fn)),
  );
  const [handWritten = 0, ours = 0] = measured.medians;
  return { handWritten, ours, rounds: measured.rounds };
}

/** 2,000,000 numbers: large results, where array sizes cross V8's large-object threshold. */
async function manyNumbers(): Promise<void> {
  const items = Array.from({ length: 2_000_000 }, (_, i) => i);
  const {
    handWritten,
    ours,
    rounds: roundCount,
  } = await againstReference('2M trivial items', increment, items, rounds(5));
  const table = new Table('2. 2,000,000 trivial items (x => x + 1), array result, 2 workers');
  table.add('hand-written pool (reference)', ms(handWritten), perSecond(items.length, handWritten));
  table.add('await parmap(...)', ms(ours), perSecond(items.length, ours));
  table.print(roundsNote(roundCount));
  console.log(`  ${throughputTarget('2M trivial, array', { parmap: ours, reference: handWritten }, AT_LEAST_095)}`);
}

/** 20,000 distinct strings of 5 KB, returned as they are: 100 MB each way. */
async function largeStrings(): Promise<void> {
  const size = 5 * 1024;
  const filler = 'abcdefghijklmnopqrstuvwxyz'.repeat(Math.ceil(size / 26));
  // A JSON round trip makes every string flat, so that the first contender does not pay for
  // flattening strings built by concatenation.
  const items: string[] = JSON.parse(
    JSON.stringify(Array.from({ length: 20_000 }, (_, i) => `${i}:${filler}`.slice(0, size))),
  );
  const {
    handWritten,
    ours,
    rounds: roundCount,
  } = await againstReference('20k strings of 5 KB', same, items, rounds(5));
  const table = new Table('3. 20,000 strings of 5 KB returned as they are (s => s), 2 workers');
  table.add('hand-written pool (reference)', ms(handWritten), perSecond(items.length, handWritten));
  table.add('await parmap(...)', ms(ours), perSecond(items.length, ours));
  table.print(roundsNote(roundCount));
  console.log(`  ${throughputTarget('20k strings of 5 KB', { parmap: ours, reference: handWritten }, AT_LEAST_095)}`);
}

function workerpoolPerItem(items: readonly number[]): Contender {
  return {
    name: 'workerpool, one exec per item',
    run: async () => {
      const pool = workerpool.pool(new URL('./workers/increment-workerpool.cjs', import.meta.url).pathname, {
        maxWorkers: WORKERS,
        workerThreadOpts: { execArgv: [] },
      });
      try {
        return await Promise.all(items.map((x) => Promise.resolve(pool.exec('increment', [x]))));
      } finally {
        await pool.terminate();
      }
    },
  };
}

function piscinaPerItem(items: readonly number[]): Contender {
  return {
    name: 'piscina, one run per item',
    run: async () => {
      const pool = new Piscina({
        filename: new URL('./workers/increment.mjs', import.meta.url).href,
        minThreads: WORKERS,
        maxThreads: WORKERS,
        execArgv: [],
      });
      try {
        return await Promise.all(items.map((x) => pool.run(x)));
      } finally {
        await pool.destroy();
      }
    },
  };
}

/**
 * Peers that send one task per item. Their time grows in proportion to the items (start-up is a
 * few % of it), so they run on 20,000 items and their rate stands for 200,000 too; parmap runs on
 * both counts, and the target compares rates with parmap on 200,000.
 */
async function perItemPeers(): Promise<void> {
  const few = Array.from({ length: quick ? 2_000 : 20_000 }, (_, i) => i);
  const many = Array.from({ length: 200_000 }, (_, i) => i);
  const measured = await interleave(
    'per-item peers',
    [
      workerpoolPerItem(few),
      piscinaPerItem(few),
      { name: `parmap, ${count(few.length)} items`, run: () => parmap(increment, few, { n: WORKERS }) },
      {
        name: `parmap, ${count(many.length)} items`,
        run: () => parmap(increment, many, { n: WORKERS }),
        check: sameArrayAs(many.map(increment)),
      },
    ],
    rounds(5),
    sameArrayAs(few.map(increment)),
  );
  const [workerpoolTime = 0, piscinaTime = 0, oursFew = 0, oursMany = 0] = measured.medians;
  const table = new Table('4. Peers with one task per item, trivial work (x => x + 1), 2 workers, start-up included');
  table.add('', 'items', 'time', 'items/s', 'parmap on the same items is');
  for (const [name, time] of [
    ['workerpool, one exec per item', workerpoolTime],
    ['piscina, one run per item', piscinaTime],
  ] as const) {
    table.add(name, count(few.length), ms(time), perSecond(few.length, time), `${(time / oursFew).toFixed(1)}x faster`);
  }
  table.add('parmap', count(few.length), ms(oursFew), perSecond(few.length, oursFew), '');
  table.add('parmap', count(many.length), ms(oursMany), perSecond(many.length, oursMany), '');
  table.print(roundsNote(measured.rounds));
  for (const [name, time] of [
    ['workerpool per item', workerpoolTime],
    ['piscina per item', piscinaTime],
  ] as const) {
    const ratio = many.length / oursMany / (few.length / time);
    const met = ratio >= 100;
    addToSummary({
      row: `${name} (items/s)`,
      parmap: perSecond(many.length, oursMany),
      reference: perSecond(few.length, time),
      ratio: ratio.toFixed(1),
      target: '>= 100',
      met,
    });
    console.log(
      `  ${name}: parmap's rate on 200,000 / theirs ${ratio.toFixed(1)} (target >= 100: ${met ? 'met' : 'NOT met'})`,
    );
  }
}

export async function trivialWork(): Promise<void> {
  await trivialNumbers();
  await manyNumbers();
  await largeStrings();
  await perItemPeers();
}
