/**
 * Calls that must not compile. Each `// @ts-expect-error` sits just above the line TypeScript reports
 * the error at, and quotes part of the message. Compiled (never run) by `tests/types.test.ts`: an
 * expected error that does not happen is itself an error, and the test checks each message.
 */
import { createPool, type ParmapError, parmap } from '../../dist/index.js';

declare const numbers: number[];
declare const arrays: number[][];

interface Database {
  insert(row: string): Promise<number>;
}

export async function mistakes(): Promise<void> {
  // Array.map's index: parmap passes the item alone.
  // @ts-expect-error `Target signature provides too few arguments. Expected 2 or more, but got 1`
  await parmap((x: number, i: number) => x + i, numbers);
  // An item of the wrong type.
  // @ts-expect-error `Type 'number' is not assignable to type 'string'`
  await parmap((word: string) => word.length, [1, 2]);
  // Star items that do not fit fn's parameters.
  // @ts-expect-error `Type 'number' is not assignable to type 'string'`
  await parmap((count: number, text: string) => text.repeat(count), [[1, 2]], { star: true });
  // Star items of unknown length for fixed parameters.
  // @ts-expect-error `Target requires 2 element(s) but source may have fewer`
  await parmap((a: number, b: number) => a + b, arrays, { star: true });
  // Args of the wrong type.
  // @ts-expect-error `Type 'string' is not assignable to type 'number'`
  await parmap((x: number, factor: number) => x * factor, numbers, { args: ['3'] });
  // Args short of what fn requires.
  // @ts-expect-error `Target signature provides too few arguments. Expected 3 or more, but got 2`
  await parmap((x: number, a: number, b: number) => x + a + b, numbers, { args: [1] });
  await parmap((x: number, kw: { verbose?: boolean; level: number }) => x * kw.level, numbers, {
    // A misspelt kwargs key.
    // @ts-expect-error `'verbos' does not exist in type`
    kwargs: { level: 1, verbos: true },
  });
  // A kwargs value of the wrong type.
  // @ts-expect-error `Type 'string' is not assignable to type 'number'`
  await parmap((x: number, kw: { factor: number }) => x * kw.factor, numbers, { kwargs: { factor: '2' } });
  // A misspelt key in a kwstar item.
  // @ts-expect-error `'otp' does not exist in type`
  await parmap((x: number, kw: { opt?: boolean }) => (kw.opt ? x : -x), [[1, { otp: true }]], { kwstar: true });
  // A kwstar item without a key that kwargs does not give either.
  // @ts-expect-error `Property 'level' is missing`
  await parmap((x: number, kw: { level: number }) => x * kw.level, [[1, {}]], { kwstar: true });
  // A context of the wrong type.
  // @ts-expect-error `Type 'number' is not assignable to type 'Database | PromiseLike<Database>'`
  await parmap((row: string, db: Database) => db.insert(row), ['a'], { context: () => 42 });
  // A teardown that expects another value than the context's.
  // @ts-expect-error `Type 'string' is not assignable to type 'number'`
  await parmap((x: number) => x, numbers, { context: () => 'value', teardown: (value: number) => value });
  // `onError` takes 'throw' or 'return'.
  // @ts-expect-error `Type '"ignore"' is not assignable to type '"throw" | "return" | undefined'`
  await parmap((x: number) => x, numbers, { onError: 'ignore' });
  // `workerType` takes 'thread' or 'process'.
  // @ts-expect-error `Did you mean '"thread"'?`
  await parmap((x: number) => x, numbers, { workerType: 'threads' });
  // An unknown option.
  // @ts-expect-error `Did you mean to write 'ordered'?`
  await parmap((x: number) => x, numbers, { n: 2, orderd: true });
  // A module function must name a module.
  // @ts-expect-error `Type 'number' is not assignable to type 'string | URL'`
  await parmap({ module: 1 }, numbers);
}

export async function results(): Promise<void> {
  // With onError: 'return' the results hold errors.
  // @ts-expect-error `Type 'ParmapError' is not assignable to type 'number'`
  const doubled: number[] = await parmap((x: number) => x * 2, numbers, { onError: 'return' });
  // An async fn's results are awaited.
  // @ts-expect-error `Type 'number' is not assignable to type 'Promise<number>'`
  const promises: Promise<number>[] = await parmap(async (x: number) => x, numbers);
  await parmap(
    (x: number) => x,
    // A result that may hold errors does not feed fn as plain items.
    // @ts-expect-error `Type 'ParmapError' is not assignable to type 'number'`
    parmap((x: number) => x, numbers, { onError: 'return' }),
  );
  const kept: (number | ParmapError)[] = [...doubled, ...(await Promise.all(promises))];
  return void kept;
}

export async function stages(): Promise<void> {
  // filter and flatMap check fn as parmap does.
  // @ts-expect-error `Target signature provides too few arguments. Expected 2 or more, but got 1`
  await parmap.filter((x: number, i: number) => x > i, numbers);
  // @ts-expect-error `Type 'number' is not assignable to type 'string'`
  await parmap.flatMap((word: string) => word.split(''), [1, 2]);
  // filter gives the items, not fn's results.
  // @ts-expect-error `Type 'number' is not assignable to type 'boolean'`
  const flags: boolean[] = await parmap.filter((x: number) => x > 0, numbers);
  // flatMap gives the elements of fn's arrays.
  // @ts-expect-error `Type 'string' is not assignable to type 'number'`
  const counts: number[] = await parmap.flatMap((x: number) => [String(x)], numbers);
  await parmap(
    (x: number) => x,
    // A filter that may give errors does not feed fn as plain items.
    // @ts-expect-error `Type 'ParmapError' is not assignable to type 'number'`
    parmap.filter((x: number) => x > 0, numbers, { onError: 'return' }),
  );
  // `buffer` is a number of items.
  // @ts-expect-error `Type 'string' is not assignable to type 'number'`
  await parmap((x: number) => x, numbers, { buffer: '10' });
  return void [flags, counts];
}

export async function pools(): Promise<void> {
  const pool = createPool({ n: 2 });
  // `pool.map` checks fn as parmap does.
  // @ts-expect-error `Target signature provides too few arguments. Expected 2 or more, but got 1`
  await pool.map((x: number, i: number) => x + i, numbers);
  // `n` belongs to the pool, not to one call.
  // @ts-expect-error `'n' does not exist in type`
  await pool.map((x: number) => x, numbers, { n: 2 });
  await pool.close();
}

export async function pipelineMistakes(): Promise<void> {
  // A step's fn that does not take the chain's items.
  // @ts-expect-error `Type 'number' is not assignable to type 'string'`
  parmap.pipeline(numbers).map((word: string) => word.length);
  // groupByKey needs [key, value] pairs.
  // @ts-expect-error `Type 'number' is not assignable to type 'readonly [unknown, unknown]'`
  parmap.pipeline(numbers).groupByKey();
  // reduceByKey's fn folds values of the pairs' value type.
  // @ts-expect-error `Type 'number' is not assignable to type 'string'`
  parmap
    .pipeline(numbers)
    .map((x): [number, number] => [x, x])
    .reduceByKey((acc: string, value: string) => acc + value);
  // `n` belongs to the chain, not to one step.
  // @ts-expect-error `'n' does not exist in type`
  parmap.pipeline(numbers).map((x) => x, { n: 2 });
  // So does `progress`.
  // @ts-expect-error `'progress' does not exist in type`
  parmap.pipeline(numbers).map((x) => x, { progress: true });
}
