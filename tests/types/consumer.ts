/**
 * A small user of the package, compiled by `tests/types.test.ts` with `tsconfig.old-lib.json`: an
 * ES2019 `lib`, `strict`, and `skipLibCheck: false`, so that every published declaration is checked
 * too, against what such a project has.
 */
import {
  AbortError,
  createPool,
  type ParmapOptions,
  ParmapTaskError,
  type ProgressInfo,
  parmap,
  setWorkerBudget,
} from '../../dist/index.js';

export async function main(): Promise<void> {
  setWorkerBudget(4);
  const options: ParmapOptions = { n: 2, progress: (info: ProgressInfo) => console.log(info.done) };
  const lengths = await parmap((word: string) => word.length, ['a', 'bb'], options);
  const pool = createPool({ n: 2 });
  try {
    for await (const sum of pool.map((a: number, b: number) => a + b, [[1, 2]], { star: true, onError: 'return' })) {
      if (sum instanceof ParmapTaskError) console.log(sum.index, sum.cause);
      else console.log(sum);
    }
  } catch (error) {
    if (error instanceof AbortError) console.log('aborted');
  } finally {
    await pool.close();
  }
  console.log(lengths);
}
