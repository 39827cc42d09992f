/**
 * What `timeout` costs process workers. A process shares no memory with its parent, so with a
 * timeout it writes where it has got to a small file as each item starts (about a microsecond an
 * item); threads share that counter in memory and pay nothing. The same call with and without a
 * timeout, on items of about 10 µs, where the cost shows most.
 */
import { parmap } from 'parmap';
import { interleave, ms, rounds, roundsNote, sameArrayAs, WORKERS } from './measure.js';
import { Table } from './report.js';

const busyTenMicroseconds = (x: number) => {
  const end = performance.now() + 0.01;
  while (performance.now() < end);
  return x * 2;
};

export async function processTimeout(): Promise<void> {
  const items = Array.from({ length: 100_000 }, (_, i) => i);
  const measured = await interleave(
    'process workers with a timeout',
    [
      { name: 'no timeout', run: () => parmap(busyTenMicroseconds, items, { n: WORKERS, workerType: 'process' }) },
      {
        name: 'timeout: 100',
        run: () => parmap(busyTenMicroseconds, items, { n: WORKERS, workerType: 'process', timeout: 100 }),
      },
    ],
    rounds(5),
    sameArrayAs(items.map((x) => x * 2)),
  );
  const [without = 0, withTimeout = 0] = measured.medians;
  const table = new Table('15. Process workers with a timeout: 100,000 items of about 10 µs, 2 processes');
  table.add('', 'time', 'time / without');
  table.add('no timeout', ms(without), '');
  table.add(
    "timeout: 100 (each item's start written to the worker's progress file)",
    ms(withTimeout),
    (withTimeout / without).toFixed(2),
  );
  table.print(roundsNote(measured.rounds));
}
