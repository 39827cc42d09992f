/**
 * Many small calls: the warm workers of one `createPool` pool against a pool started per call.
 * Calls alternate between the two (a block of warm calls, then one cold call, the order swapped
 * each round), and each call is timed on its own.
 */
import { createPool, parmap } from 'parmap';
import { median, ms, quick, WORKERS, WrongOutputError } from './measure.js';
import { Table } from './report.js';

const WARM_CALLS_PER_COLD = 10;
const double = (x: number) => x * 2;

/** One call timed, without the garbage collection `timeOnce` does: these calls make little garbage. */
async function timeCall<T>(call: () => PromiseLike<T>): Promise<[number, T]> {
  const started = performance.now();
  const output = await call();
  return [performance.now() - started, output];
}

function checkSingle(contender: string, output: readonly number[], item: number): void {
  if (output.length !== 1 || output[0] !== item * 2) {
    throw new WrongOutputError('many small calls', contender, `for [${item}], got [${output.join(', ')}]`);
  }
}

export async function reusablePool(): Promise<void> {
  const roundCount = quick ? 5 : 100;
  const warm: number[] = [];
  const cold: number[] = [];
  const pool = createPool({ n: WORKERS });
  try {
    // Warm the pool first: its start-up is paid once, and is not what this row measures.
    await pool.map(double, [0]);
    for (let round = 0; round < roundCount; round++) {
      const coldCall = async () => {
        const [took, output] = await timeCall(() => parmap(double, [round], { n: WORKERS }));
        checkSingle('parmap(f, [x])', output, round);
        cold.push(took);
      };
      if (round % 2 === 0) await coldCall();
      for (let call = 0; call < WARM_CALLS_PER_COLD; call++) {
        const item = round * WARM_CALLS_PER_COLD + call;
        const [took, output] = await timeCall(() => pool.map(double, [item]));
        checkSingle('pool.map(f, [x])', output, item);
        warm.push(took);
      }
      if (round % 2 === 1) await coldCall();
    }
  } finally {
    await pool.close();
  }
  const table = new Table('12. Many small calls: a reusable pool against a pool per call (one item each, 2 workers)');
  table.add('call', 'calls', 'median per call');
  table.add('pool.map(f, [x]) on one createPool pool', warm.length, ms(median(warm)));
  table.add('parmap(f, [x])', cold.length, ms(median(cold)));
  table.print(`${roundCount} rounds of ${WARM_CALLS_PER_COLD} warm calls and one cold call, in turn`);
  console.log(`  parmap(f, [x]) / pool.map(f, [x]), per call: ${(median(cold) / median(warm)).toFixed(1)}x the time`);
}
