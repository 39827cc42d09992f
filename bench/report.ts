/**
 * What the benchmark prints: a table per section, and the summary of every row that has a target,
 * gathered as the sections run and printed at the end.
 */

/** Columns padded to their widest cell, printed under a title and notes. */
export class Table {
  private readonly rows: string[][] = [];

  constructor(private readonly title: string) {}

  add(...cells: (string | number)[]): void {
    this.rows.push(cells.map(String));
  }

  print(...notes: string[]): void {
    console.log(`\n${this.title}`);
    for (const note of notes) console.log(`  ${note}`);
    const widths = this.rows[0]?.map((_, column) => Math.max(...this.rows.map((cells) => cells[column]?.length ?? 0)));
    for (const cells of this.rows) {
      console.log(`  ${cells.map((cell, i) => cell.padEnd(widths?.[i] ?? 0)).join('  ')}`.trimEnd());
    }
  }
}

/** One line of the summary. `met` is `undefined` when the row could not be measured. */
export interface SummaryLine {
  readonly row: string;
  readonly parmap: string;
  readonly reference: string;
  readonly ratio: string;
  readonly target: string;
  readonly met: boolean | undefined;
}

const summaryLines: SummaryLine[] = [];

export function addToSummary(line: SummaryLine): void {
  summaryLines.push(line);
}

/**
 * A row whose result is a throughput ratio, reference time / parmap time (above 1, parmap is
 * faster), against the least ratio its target allows. Adds it to the summary and gives the line
 * to print under its section.
 */
export function throughputTarget(
  row: string,
  times: { parmap: number; reference: number },
  target: { least: number; text: string },
): string {
  const ratio = times.reference / times.parmap;
  const met = ratio >= target.least;
  addToSummary({
    row,
    parmap: `${times.parmap.toFixed(1)} ms`,
    reference: `${times.reference.toFixed(1)} ms`,
    ratio: ratio.toFixed(2),
    target: target.text,
    met,
  });
  return `${row}: parmap / reference ${ratio.toFixed(2)} (target ${target.text}: ${met ? 'met' : 'NOT met'})`;
}

export function printSummary(): void {
  const table = new Table('Summary (ratio: parmap / reference as throughput, above 1 means parmap is faster)');
  table.add('row', 'parmap', 'reference', 'ratio', 'target', 'met?');
  for (const line of summaryLines) {
    const met = line.met === undefined ? 'n/a' : line.met ? 'yes' : 'no';
    table.add(line.row, line.parmap, line.reference, line.ratio, line.target, met);
  }
  table.print();
}
