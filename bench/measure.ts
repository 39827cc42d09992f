/**
 * Timing helpers: contenders run in turn within each round, in an order that rotates from round to
 * round, and every output is checked before its time counts.
 */

/** Workers on every parallel contender: the machine the figures come from has 2 cores. */
export const WORKERS = 2;

/** `--quick`: every measurement runs once, as a smoke check of the benchmark itself. */
export const quick = process.argv.includes('--quick');

/** The number of rounds to run: `full` normally, one with `--quick`. */
export function rounds(full: number): number {
  return quick ? 1 : full;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** One way of doing a row's work; it returns its output so that the row can check it. */
export interface Contender {
  readonly name: string;
  readonly run: () => unknown;
  /** Its own check, when its output differs from the row's other contenders'. */
  readonly check?: OutputCheck;
}

/**
 * Says what is wrong with an output, or `undefined` when it is right. Checking happens outside the
 * timed part, so a costly comparison never counts against anyone.
 */
export type OutputCheck = (output: unknown) => string | undefined;

/** A contender gave an output that differs from the expected one: its time would mean nothing. */
export class WrongOutputError extends Error {
  override name = 'WrongOutputError';
  constructor(row: string, contender: string, problem: string) {
    super(`Wrong output in row "${row}" from "${contender}": ${problem}`);
  }
}

export interface Measured {
  readonly rounds: number;
  /** Median time of each contender, in ms, in the order the contenders were given. */
  readonly medians: readonly number[];
  /** Every time of each contender, in ms, round by round. */
  readonly samples: readonly (readonly number[])[];
}

/**
 * Runs every contender once per round, the order rotated by one place each round, so that a shared
 * machine whose speed drifts, and whatever a contender leaves behind for the next one (garbage,
 * threads still exiting), falls on each in turn. Garbage is collected before each run when the
 * process allows it (`--expose-gc`), so no contender pays for another's. `firstRound` continues
 * the rotation of an earlier call.
 */
export async function interleave(
  row: string,
  contenders: readonly Contender[],
  roundCount: number,
  check: OutputCheck,
  firstRound = 0,
): Promise<Measured> {
  const samples: number[][] = contenders.map(() => []);
  for (let round = firstRound; round < firstRound + roundCount; round++) {
    for (let turn = 0; turn < contenders.length; turn++) {
      const index = (turn + round) % contenders.length;
      const contender = contenders[index] as Contender;
      const [took, output] = await timeOnce(contender.run);
      const problem = (contender.check ?? check)(output);
      if (problem !== undefined) throw new WrongOutputError(row, contender.name, problem);
      samples[index]?.push(took);
    }
  }
  return { rounds: roundCount, medians: samples.map(median), samples };
}

/** Two measurements of the same contenders, one after the other, as one. */
export function joinMeasured(first: Measured, second: Measured): Measured {
  const samples = first.samples.map((times, i) => [...times, ...(second.samples[i] ?? [])]);
  return { rounds: first.rounds + second.rounds, medians: samples.map(median), samples };
}

/** One timed run, after a garbage collection that is not timed. */
export async function timeOnce<T>(job: () => T): Promise<[number, Awaited<T>]> {
  globalThis.gc?.();
  const started = performance.now();
  const output = await job();
  return [performance.now() - started, output];
}

/** A check that the output is an array equal, element by element (`Object.is`), to `expected`. */
export function sameArrayAs(expected: readonly unknown[]): OutputCheck {
  return (output) => {
    if (!Array.isArray(output)) return `expected an array of ${expected.length}, got ${describe(output)}`;
    if (output.length !== expected.length) {
      return `expected ${expected.length} results, got ${output.length}`;
    }
    for (let i = 0; i < expected.length; i++) {
      if (!Object.is(output[i], expected[i])) {
        return `at index ${i}, expected ${describe(expected[i])}, got ${describe(output[i])}`;
      }
    }
    return undefined;
  };
}

/** A value in a few words, for an error message: long strings are cut. */
export function describe(value: unknown): string {
  if (typeof value === 'string') {
    return value.length > 40
      ? `a string of ${value.length} starting ${JSON.stringify(value.slice(0, 20))}`
      : JSON.stringify(value);
  }
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return String(value);
}

/** How a row's figures were taken, for the line under its title. */
export function roundsNote(roundCount: number): string {
  return roundCount === 1 ? 'one round' : `medians of ${roundCount} rounds, order rotated each round`;
}

export const ms = (value: number): string => `${value.toFixed(1)} ms`;
export const mb = (value: number): string => `${value.toFixed(1)} MB`;
export const perSecond = (items: number, milliseconds: number): string =>
  `${Math.round((items / milliseconds) * 1000).toLocaleString('en-US')}/s`;
export const count = (value: number): string => value.toLocaleString('en-US');
