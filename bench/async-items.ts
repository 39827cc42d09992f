/**
 * Items that wait rather than compute (an async function that sleeps 5 ms): parmap against p-map,
 * which runs the same function in this thread with 50 at once. Here workers help only if each
 * runs many items at once.
 */
import pMap from 'p-map';
import { type ParmapOptions, parmap } from 'parmap';
import {
  type Contender,
  interleave,
  joinMeasured,
  type Measured,
  ms,
  quick,
  roundsNote,
  sameArrayAs,
  WORKERS,
} from './measure.js';
import { addToSummary, Table, throughputTarget } from './report.js';

const ITEMS = 2_000;
const P_MAP_CONCURRENCY = 50;
const WITHIN_TWICE = { least: 0.5, text: '>= 0.50 (time <= 2x)' };

const doubleLater = async (x: number) => {
  await new Promise((resolve) => setTimeout(resolve, 5));
  return x * 2;
};

/** parmap rejects an option it does not know: the row then has nothing to measure. */
class OptionMissing extends Error {
  override name = 'OptionMissing';
}

function parmapWith(options: ParmapOptions, items: readonly number[]): Contender {
  return {
    name: `parmap ${JSON.stringify(options)}`,
    run: async () => {
      try {
        return await parmap(doubleLater, items, options);
      } catch (error) {
        if (error instanceof TypeError && /unknown option `concurrency`/i.test(error.message)) {
          throw new OptionMissing(error.message);
        }
        throw error;
      }
    },
  };
}

/**
 * A row that can cost seconds a round (one item at a time per worker is 2,000 x 5 ms / 2): a first
 * round says how long, and a slow row stops at 3 rounds rather than 5.
 */
async function measureRow(row: string, contenders: readonly Contender[], check: ReturnType<typeof sameArrayAs>) {
  const first = await interleave(row, contenders, 1, check);
  if (quick) return { measured: first, note: 'one round (--quick)' };
  const slow = (first.medians[1] ?? 0) > 1_000;
  const measured = joinMeasured(first, await interleave(row, contenders, slow ? 2 : 4, check, 1));
  const note = slow
    ? `medians of ${measured.rounds} rounds only: parmap takes over a second a round here`
    : roundsNote(measured.rounds);
  return { measured, note };
}

export async function asyncItems(): Promise<void> {
  const items = Array.from({ length: ITEMS }, (_, i) => i);
  const check = sameArrayAs(items.map((x) => x * 2));
  const pMapContender: Contender = {
    name: `p-map, concurrency ${P_MAP_CONCURRENCY}`,
    run: () => pMap(items, doubleLater, { concurrency: P_MAP_CONCURRENCY }),
  };
  const table = new Table(
    `5. ${ITEMS.toLocaleString('en-US')} async items that each wait 5 ms: parmap on ${WORKERS} workers vs p-map in this thread`,
  );
  table.add('', 'p-map (reference)', 'parmap');
  const notes: string[] = [];
  const lines: string[] = [];
  for (const [row, options] of [
    ['async 5 ms, parmap defaults', { n: WORKERS }],
    // Typed loosely on purpose: the option may not exist yet, and parmap then rejects it.
    ['async 5 ms, concurrency 25', { n: WORKERS, concurrency: 25 } as ParmapOptions],
  ] as const) {
    let result: { measured: Measured; note: string };
    try {
      result = await measureRow(row, [pMapContender, parmapWith(options, items)], check);
    } catch (error) {
      if (!(error instanceof OptionMissing)) throw error;
      table.add(row, '', 'n/a (option missing)');
      addToSummary({
        row,
        parmap: 'n/a (option missing)',
        reference: '',
        ratio: '',
        target: WITHIN_TWICE.text,
        met: undefined,
      });
      continue;
    }
    const [reference = 0, ours = 0] = result.measured.medians;
    table.add(row, ms(reference), ms(ours));
    notes.push(`${row}: ${result.note}`);
    lines.push(throughputTarget(row, { parmap: ours, reference }, WITHIN_TWICE));
  }
  table.print(...notes);
  for (const line of lines) console.log(`  ${line}`);
}
