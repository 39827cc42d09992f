/**
 * A large argument used by every item (a 1,000,000-number table): parmap sends `args` once per
 * worker, and so does the reference (in its workers' workerData), so what is left to compare is
 * how each gets the table across.
 */
import { parmap } from 'parmap';
import { interleave, ms, rounds, roundsNote, sameArrayAs, WORKERS } from './measure.js';
import { handWrittenPool } from './reference.js';
import { Table, throughputTarget } from './report.js';

const AT_MOST_150 = { least: 1 / 1.5, text: '>= 0.67 (time <= 1.50x)' };

const addFromTable = (x: number, table: ArrayLike<number>) => x + (table[x] as number);

/** The table as `scope` names it inside the function sent to the workers. */
declare const lookup: number[];

export async function largeArgument(): Promise<void> {
  const items = Array.from({ length: 4_000 }, (_, i) => i);
  const table = Array.from({ length: 1_000_000 }, (_, i) => i * 3);
  const typedTable = Float64Array.from(table);
  const tinyTable = [1, 2, 3];
  const measured = await interleave(
    'large argument',
    [
      {
        name: 'hand-written pool, table once per worker',
        run: () =>
          handWrittenPool(String(addFromTable), items, {
            workers: WORKERS,
            chunkSize: 1_000,
            chunksInFlightPerWorker: 2,
            args: [table],
          }),
      },
      { name: 'parmap, table in args', run: () => parmap(addFromTable, items, { n: WORKERS, args: [table] }) },
      {
        name: 'parmap, table in scope',
        run: () => parmap((x: number) => x + (lookup[x] as number), items, { n: WORKERS, scope: { lookup: table } }),
      },
      {
        name: 'parmap, table as a Float64Array in args',
        run: () => parmap(addFromTable, items, { n: WORKERS, args: [typedTable] }),
      },
      {
        name: 'parmap, a 3-number table in args',
        run: () => parmap(addFromTable, items, { n: WORKERS, args: [tinyTable] }),
        check: sameArrayAs(items.map((x) => addFromTable(x, tinyTable))),
      },
    ],
    rounds(7),
    sameArrayAs(items.map((x) => addFromTable(x, table))),
  );
  const [reference = 0, inArgs = 0, inScope = 0, asTyped = 0, tiny = 0] = measured.medians;
  const report = new Table(
    '7. 4,000 items, each reading a 1,000,000-number table ((x, table) => x + table[x]), 2 workers',
  );
  report.add('', 'time', 'time / reference');
  report.add('hand-written pool, table sent once per worker (reference)', ms(reference), '');
  report.add('parmap, table in args', ms(inArgs), (inArgs / reference).toFixed(2));
  report.add('parmap, table in scope', ms(inScope), (inScope / reference).toFixed(2));
  report.add('parmap, the same numbers as a Float64Array in args', ms(asTyped), (asTyped / reference).toFixed(2));
  report.add('parmap, a 3-number table in args (for scale)', ms(tiny), (tiny / reference).toFixed(2));
  report.print(roundsNote(measured.rounds));
  console.log(`  ${throughputTarget('large argument (1M numbers)', { parmap: inArgs, reference }, AT_MOST_150)}`);
}
