/**
 * Cold start: what a short program pays for using parmap, as a fresh `node` process sees it (module
 * loading included), against the same program written with two raw threads. Each is timed as a
 * whole child process, less the time of a child that runs an empty script.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Contender, interleave, median, ms, type OutputCheck, rounds, roundsNote } from './measure.js';
import { Table, throughputTarget } from './report.js';

const AT_MOST_130 = { least: 1 / 1.3, text: '>= 0.77 (time <= 1.30x)' };

interface ChildOutcome {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function script(name: string, printed: string): Contender {
  const path = fileURLToPath(new URL(`./cold-start/${name}`, import.meta.url));
  const check: OutputCheck = (output) => {
    const { status, stdout, stderr } = output as ChildOutcome;
    if (status !== 0) return `exited with status ${status}: ${stderr.trim()}`;
    return stdout.trim() === printed ? undefined : `printed ${JSON.stringify(stdout.trim())}, not ${printed}`;
  };
  return {
    name,
    run: (): ChildOutcome => {
      // Plain node: none of the flags or loaders this benchmark runs under.
      const child = spawnSync(process.execPath, [path], { encoding: 'utf8' });
      return { status: child.status, stdout: child.stdout, stderr: child.stderr };
    },
    check,
  };
}

/** The median, over rounds, of what a script took beyond the empty script of the same round. */
function medianBeyond(times: readonly number[], baseline: readonly number[]): number {
  return median(times.map((time, round) => time - (baseline[round] ?? 0)));
}

export async function coldStart(): Promise<void> {
  const measured = await interleave(
    'cold start',
    [script('empty.mjs', ''), script('parmap.mjs', '[1,2]'), script('raw-threads.mjs', '[1,2]')],
    rounds(15),
    () => undefined,
  );
  const [empty = [], ours = [], raw = []] = measured.samples;
  const oursBeyond = medianBeyond(ours, empty);
  const rawBeyond = medianBeyond(raw, empty);
  const table = new Table(
    '6. Cold start: a fresh node process mapping 2 items on 2 workers, less an empty node process',
  );
  table.add('', 'whole process', 'beyond an empty one');
  table.add('node, empty script', ms(median(empty)), '');
  table.add('2 raw worker_threads, one message each (reference)', ms(median(raw)), ms(rawBeyond));
  table.add('await parmap(x => x, [1, 2], { n: 2 }) from dist', ms(median(ours)), ms(oursBeyond));
  table.print(`${roundsNote(measured.rounds)} (the median of each round's difference)`);
  console.log(
    `  ${throughputTarget('cold start, 2 items', { parmap: oursBeyond, reference: rawBeyond }, AT_MOST_130)}`,
  );
}
