/**
 * Calls that must compile, with the types they must give: compiled (never run) by
 * `tests/types.test.ts` against the built declarations, as a user's code is.
 */
import {
  createPool,
  type FunctionFromModule,
  ParmapError,
  type ParmapOptions,
  type ParmapResult,
  parmap,
} from '../../dist/index.js';

/** `true` when `A` and `B` are the same type, `false` otherwise. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** Compiles only for `true`: `expectTrue<Equal<typeof value, number[]>>()`. */
declare function expectTrue<T extends true>(): void;

declare const numbers: number[];
declare const words: readonly string[];
declare const zipped: [count: number, text: string][];

export async function plainCalls(): Promise<void> {
  const doubled = await parmap((x) => x * 2, numbers);
  expectTrue<Equal<typeof doubled, number[]>>();

  const lengths = await parmap((word: string) => word.length, words, { n: 2, ordered: false, chunksize: 'auto' });
  expectTrue<Equal<typeof lengths, number[]>>();

  // An async fn's results are awaited.
  const fetched = await parmap(async (x: number) => ({ id: x }), new Set([1, 2]), { concurrency: 8 });
  expectTrue<Equal<typeof fetched, { id: number }[]>>();

  // Any iterable or async iterable, generators included.
  function* lines() {
    yield 'a,b';
  }
  async function* ids() {
    yield 1n;
  }
  const fields = await parmap((line) => line.split(','), lines());
  expectTrue<Equal<typeof fields, string[][]>>();
  const next = await parmap((id) => id + 1n, ids());
  expectTrue<Equal<typeof next, bigint[]>>();
  const characters = await parmap((character: string) => character.charCodeAt(0), 'abc');
  expectTrue<Equal<typeof characters, number[]>>();

  // A result feeds the next call.
  const stage: ParmapResult<number> = parmap((word: string) => word.length, words, { progress: 'lengths' });
  const squares = await parmap((length) => length ** 2, stage, { progress: true });
  expectTrue<Equal<typeof squares, number[]>>();

  // Optional parameters beyond the item, and none at all, are fine; so are named functions.
  const offsets = await parmap((x: number, offset?: number) => x + (offset ?? 0), numbers);
  expectTrue<Equal<typeof offsets, number[]>>();
  const randoms = await parmap(() => Math.random(), numbers);
  expectTrue<Equal<typeof randoms, number[]>>();
  const parsed = await parmap(Number.parseInt, words);
  expectTrue<Equal<typeof parsed, number[]>>();
  const texts = await parmap(String, numbers);
  expectTrue<Equal<typeof texts, string[]>>();
  // Explicit type arguments: the item's, then the result's.
  const explicit = await parmap<number, string>((x) => x.toFixed(1), numbers);
  expectTrue<Equal<typeof explicit, string[]>>();
}

export async function spreadItems(): Promise<void> {
  // Tuples in a literal, spread into an unannotated fn.
  const sums = await parmap(
    (a, b) => a + b,
    [
      [1, 2],
      [3, 4],
    ],
    { star: true },
  );
  expectTrue<Equal<typeof sums, number[]>>();

  const repeated = await parmap((count: number, text: string) => text.repeat(count), zipped, { star: true });
  expectTrue<Equal<typeof repeated, string[]>>();
  const readonlyZipped = zipped as readonly (readonly [number, string])[];
  await parmap((count: number, text: string) => text.repeat(count), readonlyZipped, { star: true });

  // A rest parameter takes arrays of any length.
  const maxima = await parmap((...values: number[]) => Math.max(...values), [[1, 2, 3], [4]], { star: true });
  expectTrue<Equal<typeof maxima, number[]>>();

  // With args after the item's own; optional parameters in the item.
  const totals = await parmap((a: number, b: number, c: number) => a + b + c, [[1, 2]], { star: true, args: [1000] });
  expectTrue<Equal<typeof totals, number[]>>();
  await parmap((a: number, b?: number) => a + (b ?? 0), [[1], [1, 2]], { star: true });
}

export async function argsAndKwargs(): Promise<void> {
  const scaled = await parmap((x: number, factor: number) => x * factor, numbers, { args: [3] });
  expectTrue<Equal<typeof scaled, number[]>>();
  // Unannotated parameters take the types of what is passed.
  const labelled = await parmap((x, label) => `${label}${x}`, numbers, { args: ['#'] });
  expectTrue<Equal<typeof labelled, string[]>>();

  const withOptions = await parmap((x: number, options: { factor: number }) => x * options.factor, numbers, {
    kwargs: { factor: 2 },
  });
  expectTrue<Equal<typeof withOptions, number[]>>();
  const unannotated = await parmap((x, options) => x * options.factor, numbers, { kwargs: { factor: 2 } });
  expectTrue<Equal<typeof unannotated, number[]>>();
  await parmap((x: number, options?: { factor?: number }) => x * (options?.factor ?? 1), numbers, { kwargs: {} });
  await parmap(
    (x: number, scale: number, options: { round: boolean }) => (options.round ? Math.round(x * scale) : x * scale),
    numbers,
    {
      args: [2],
      kwargs: { round: true },
    },
  );
}

export async function keywordItems(): Promise<void> {
  // The seed's example: keyword arguments that change per item.
  const doSomething = (item: number, { opt = false } = {}) => (opt ? `${item}!` : `${item}`);
  const marked = await parmap(
    doSomething,
    [
      [0, { opt: true }],
      [1, {}],
    ],
    { kwstar: true },
  );
  expectTrue<Equal<typeof marked, string[]>>();

  const unannotated = await parmap((x, kw) => (kw.opt ? x : -x), [[0, { opt: true }]], { kwstar: true });
  expectTrue<Equal<typeof unannotated, number[]>>();

  // An item's keys complete those of kwargs: here `level` comes from kwargs only.
  const levels = await parmap(
    (x: number, kw: { level: number; verbose?: boolean }) => x * kw.level,
    [
      [1, { verbose: true }],
      [2, { level: 3 }],
    ],
    { kwstar: true, kwargs: { level: 1 } },
  );
  expectTrue<Equal<typeof levels, number[]>>();

  // The example: star, kwstar, args and kwargs together.
  const record = await parmap(
    (a: number, b: number, c: string, kw: { opt?: boolean; opt2?: boolean }) => [a, b, c, kw] as const,
    [[[1, 2], { opt: true }]],
    { star: true, kwstar: true, args: ['C'], kwargs: { opt2: false } },
  );
  expectTrue<Equal<typeof record, (readonly [number, number, string, { opt?: boolean; opt2?: boolean }])[]>>();
}

interface Database {
  insert(row: string): Promise<number>;
  end(): Promise<void>;
}
declare function connect(url: string): Promise<Database>;

export async function contexts(): Promise<void> {
  // The README's example: fn and teardown get the context's awaited value.
  const inserted = await parmap((row, db) => db.insert(row), words, {
    context: async () => connect('db://'),
    teardown: (db) => db.end(),
  });
  expectTrue<Equal<typeof inserted, number[]>>();

  await parmap((row: string, db: Database) => db.insert(row), words, { context: () => connect('db://') });
  // After the item and args, before the options object.
  await parmap(
    (x: number, label: string, db: Database, options: { dryRun: boolean }) => [x, label, db, options],
    numbers,
    {
      args: ['a'],
      context: () => connect('db://'),
      kwargs: { dryRun: true },
    },
  );
  // fn may leave the context value alone.
  await parmap((x: number) => x, numbers, { context: () => new Map<string, number>() });
  // A context from a module: its value is not known here.
  const module: FunctionFromModule = { module: './connection.js', export: 'open' };
  await parmap((row: string, db: Database) => db.insert(row), words, {
    context: module,
    teardown: (db: Database) => db.end(),
  });
}

export async function failuresInPlace(): Promise<void> {
  const results = await parmap((x: number) => 1 / x, numbers, { onError: 'return', retries: 1, timeout: 1000 });
  expectTrue<Equal<typeof results, (number | ParmapError)[]>>();
  const ok = results.filter((result): result is number => !(result instanceof ParmapError));
  expectTrue<Equal<typeof ok, number[]>>();

  for await (const result of parmap(async (x: number) => `${x}`, numbers, { onError: 'return', ordered: false })) {
    expectTrue<Equal<typeof result, string | ParmapError>>();
  }
  for await (const result of parmap((x: number) => x > 0, numbers)) {
    expectTrue<Equal<typeof result, boolean>>();
  }
  const explicit = await parmap((x: number) => x, numbers, { onError: 'throw' });
  expectTrue<Equal<typeof explicit, number[]>>();
}

export async function optionsInVariables(options: ParmapOptions): Promise<void> {
  // Typed as ParmapOptions, star and onError are known only at run time: fn is not checked, and
  // the results are typed as plain results (a call that returns errors says onError: 'return').
  const loose = await parmap((word: string) => word.length, words, options);
  expectTrue<Equal<typeof loose, number[]>>();
  const spread = await parmap((word: string) => word.length, words, { ...options, n: 2 });
  expectTrue<Equal<typeof spread, number[]>>();

  // `satisfies` keeps what the object says.
  const settings = { n: 2, ordered: false } satisfies ParmapOptions;
  const exact = await parmap((word: string) => word.length, words, settings);
  expectTrue<Equal<typeof exact, number[]>>();
  const spreading = { star: true, args: [1] } as const;
  const spreadSums = await parmap((a: number, b: number, c: number) => a + b + c, [[1, 2]], spreading);
  expectTrue<Equal<typeof spreadSums, number[]>>();
}

export async function pools(): Promise<void> {
  const pool = createPool({ n: 2, workerType: 'thread' });
  const lengths = await pool.map((word: string) => word.length, words);
  expectTrue<Equal<typeof lengths, number[]>>();
  const sums = await pool.map((a, b) => a + b, [[1, 2]], { star: true, onError: 'return' });
  expectTrue<Equal<typeof sums, (number | ParmapError)[]>>();
  for await (const value of pool.map((x: number, factor: number) => x * factor, numbers, { args: [2] })) {
    expectTrue<Equal<typeof value, number>>();
  }
  await pool.close();
}

export async function stages(): Promise<void> {
  // filter gives the items themselves, whatever fn returns.
  const even = await parmap.filter((x: number) => x % 2, numbers);
  expectTrue<Equal<typeof even, number[]>>();
  const longWords = await parmap.filter(async (word: string) => word.length > 3, words, { ordered: false });
  expectTrue<Equal<typeof longWords, string[]>>();
  const kept = await parmap.filter((count: number, text: string) => text.length > count, zipped, { star: true });
  expectTrue<Equal<typeof kept, [count: number, text: string][]>>();
  const withErrors = await parmap.filter((x: number) => x > 0, numbers, { onError: 'return' });
  expectTrue<Equal<typeof withErrors, (number | ParmapError)[]>>();

  // flatMap spreads arrays, Sets and Maps (entries); anything else is one element.
  const wordsOfLines = await parmap.flatMap((line: string) => line.split(' '), words);
  expectTrue<Equal<typeof wordsOfLines, string[]>>();
  const fetched = await parmap.flatMap(async (x: number) => [x, String(x)] as const, numbers);
  expectTrue<Equal<typeof fetched, (number | string)[]>>();
  const distinct = await parmap.flatMap((word: string) => new Set(word), words);
  expectTrue<Equal<typeof distinct, string[]>>();
  const entries = await parmap.flatMap((word: string) => new Map([[word, word.length]]), words);
  expectTrue<Equal<typeof entries, [string, number][]>>();
  const bytes = Buffer.from([0]);
  const whole = await parmap.flatMap((x: number) => (x > 0 ? Buffer.from([x]) : String(x)), numbers);
  expectTrue<Equal<typeof whole, (typeof bytes | string)[]>>();
  const mixed = await parmap.flatMap((x: number) => (x > 0 ? [x] : undefined), numbers);
  expectTrue<Equal<typeof mixed, (number | undefined)[]>>();
  const flatErrors = await parmap.flatMap((x: number) => [x], numbers, { onError: 'return' });
  expectTrue<Equal<typeof flatErrors, (number | ParmapError)[]>>();

  // Stages chain: each result is the next call's items.
  const lines = parmap.filter((line: string) => line !== '', words, { progress: 'lines' });
  expectTrue<Equal<typeof lines, ParmapResult<string>>>();
  const tokens = parmap.flatMap((line) => line.split(' '), lines, { buffer: 1000 });
  const lengths = await parmap((token) => token.length, tokens);
  expectTrue<Equal<typeof lengths, number[]>>();

  // The same on a pool, so stages share its workers.
  const pool = createPool({ n: 2 });
  const pooled = await pool.flatMap(
    (x: number) => [x, x],
    pool.filter((x: number) => x > 1, numbers),
  );
  expectTrue<Equal<typeof pooled, number[]>>();
  await pool.close();
}

export async function moduleFunctions(): Promise<void> {
  const scores = await parmap({ module: new URL('./score.js', import.meta.url), export: 'score' }, words);
  expectTrue<Equal<typeof scores, unknown[]>>();
  const fromPackage = await parmap({ module: 'some-package' }, [[1, 2]], { star: true, n: 2 });
  expectTrue<Equal<typeof fromPackage, unknown[]>>();
  const pool = createPool();
  const pooled = await pool.map({ module: 'some-package', export: 'run' }, numbers, { onError: 'return' });
  expectTrue<Equal<typeof pooled, unknown[]>>();
  await pool.close();
}

export async function pipelines(): Promise<void> {
  // Each step's result type flows into the next; groupByKey and reduceByKey need pairs.
  const counts = await parmap
    .pipeline(words, { n: 2, buffer: 64 })
    .flatMap((line) => line.split(' '))
    .map((word) => [word, 1] as [string, number], { label: 'pair' })
    .reduceByKey((acc, one) => acc + one)
    .collect();
  expectTrue<Equal<typeof counts, [string, number][]>>();

  const grouped = parmap
    .pipeline(numbers)
    .map((x): [boolean, number] => [x % 2 === 0, x])
    .groupByKey({ maxItems: 10 });
  for await (const group of grouped) expectTrue<Equal<typeof group, [boolean, number[]]>>();

  // An annotated fn that takes the chain's items; reduceByKey with its own accumulator.
  const lengths = await parmap
    .pipeline(words)
    .map((word: string) => [word.length, word] as const)
    .reduceByKey((list: string[], word) => [...list, word], { initial: () => [] as string[] })
    .collect();
  expectTrue<Equal<typeof lengths, [number, string[]][]>>();

  // filter keeps the items; onError: 'return' puts errors in their place.
  const kept = await parmap
    .pipeline(numbers)
    .filter((x) => x > 1)
    .map((x) => x * 2, { onError: 'return' })
    .collect();
  expectTrue<Equal<typeof kept, (number | ParmapError)[]>>();

  // The callback receives every step's figures.
  await parmap
    .pipeline(numbers, {
      progress: ({ steps }) => {
        for (const step of steps) expectTrue<Equal<typeof step.buffered, number | undefined>>();
      },
    })
    .map((x) => x)
    .collect();
}
