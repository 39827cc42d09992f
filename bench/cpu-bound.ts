/**
 * Work that keeps the cores busy: parmap against the ceiling (each of 2 threads given one half of
 * the items in one message, which nothing beats for tasks of equal length), and how parmap's time
 * grows with the number of items and with their size.
 */
import { parmap } from 'parmap';
import { interleave, ms, perSecond, rounds, roundsNote, sameArrayAs, timeOnce, WORKERS } from './measure.js';
import { handWrittenPool } from './reference.js';
import { Table, throughputTarget } from './report.js';

/** Deterministic busy work: `loops` rounds of integer arithmetic. */
export function spin(loops: number): number {
  let acc = 0;
  for (let i = 0; i < loops; i++) acc = (acc * 31 + i) % 1000003;
  return acc;
}

/** How many `spin` loops take 1 ms on this machine, now. */
export function loopsPerMs(): number {
  spin(1e6);
  const started = performance.now();
  spin(2e7);
  return 2e7 / (performance.now() - started);
}

export async function cpuBound(calibration: number): Promise<void> {
  const table = new Table('10. CPU-bound work on 2 workers, start-up included, against the ceiling');
  table.add('tasks', 'serial (one run)', 'ceiling (halves)', 'parmap', 'ceiling speed-up', 'parmap speed-up');
  const lines: string[] = [];
  let roundCount = 0;
  for (const [taskCount, taskMs] of [
    [2_000, 1],
    [200, 10],
  ] as const) {
    const items = Array.from({ length: taskCount }, () => Math.round(calibration * taskMs));
    // The serial run gives the expected output and the scale of the speed-ups; it is not compared.
    const [serial, expected] = await timeOnce(() => items.map(spin));
    const row = `CPU-bound ${taskCount} x ${taskMs} ms`;
    const measured = await interleave(
      row,
      [
        {
          name: 'ceiling: one half per worker',
          run: () =>
            handWrittenPool(String(spin), items, {
              workers: WORKERS,
              chunkSize: Math.ceil(taskCount / WORKERS),
              chunksInFlightPerWorker: 1,
            }),
        },
        { name: 'parmap', run: () => parmap(spin, items, { n: WORKERS }) },
      ],
      rounds(5),
      sameArrayAs(expected),
    );
    roundCount = measured.rounds;
    const [ceiling = 0, ours = 0] = measured.medians;
    table.add(
      `${taskCount} x ${taskMs} ms`,
      ms(serial),
      ms(ceiling),
      ms(ours),
      `${(serial / ceiling).toFixed(2)}x`,
      `${(serial / ours).toFixed(2)}x`,
    );
    lines.push(throughputTarget(row, { parmap: ours, reference: ceiling }, { least: 0.97, text: '>= 0.97' }));
  }
  table.print(`ceiling and parmap: ${roundsNote(roundCount)}`);
  for (const line of lines) console.log(`  ${line}`);
}

/** How time grows with the number of items and with their size. No targets: for reading. */
export async function scaling(calibration: number): Promise<void> {
  const table = new Table('11. How cost grows with the number of items (10 us each) and with item size (trivial work)');
  table.add('items', 'item', 'rounds', 'serial', 'parmap', 'parmap items/s', 'parmap speed-up');
  const loops = Math.round(calibration / 100); // about 10 us per item
  // The larger counts cost seconds a round: fewer rounds there.
  for (const [itemCount, fullRounds] of [
    [1_000, 5],
    [10_000, 5],
    [100_000, 3],
    [300_000, 1],
  ] as const) {
    const items = Array.from({ length: itemCount }, () => loops);
    const measured = await interleave(
      `${itemCount} items of 10 us`,
      [
        { name: 'Array.map', run: () => items.map(spin) },
        { name: 'parmap', run: () => parmap(spin, items, { n: WORKERS }) },
      ],
      rounds(fullRounds),
      sameArrayAs(items.map(spin)),
    );
    const [serial = 0, ours = 0] = measured.medians;
    const speedUp = `${(serial / ours).toFixed(2)}x`;
    table.add(itemCount, '10 us of work', measured.rounds, ms(serial), ms(ours), perSecond(itemCount, ours), speedUp);
  }
  for (const size of [10, 100, 1_000, 10_000]) {
    const itemCount = 20_000;
    const items = Array.from({ length: itemCount }, (_, i) => ({ id: i, text: 'x'.repeat(size) }));
    const lengthPlusId = (item: { id: number; text: string }) => item.text.length + item.id;
    const measured = await interleave(
      `${itemCount} objects with ${size} B of text`,
      [
        { name: 'Array.map', run: () => items.map(lengthPlusId) },
        { name: 'parmap', run: () => parmap(lengthPlusId, items, { n: WORKERS }) },
      ],
      rounds(5),
      sameArrayAs(items.map(lengthPlusId)),
    );
    const [serial = 0, ours = 0] = measured.medians;
    const speedUp = `${(serial / ours).toFixed(2)}x`;
    const item = `object with ${size} B of text`;
    table.add(itemCount, item, measured.rounds, ms(serial), ms(ours), perSecond(itemCount, ours), speedUp);
  }
  table.print('medians, order rotated each round; fewer rounds where a round takes seconds (see rounds)');
}
