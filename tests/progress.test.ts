import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parmap } from '../dist/index.js';
import { clock, formatLine, isLiveTerminal, printableLabel } from '../dist/parmap/scheduler/progress.js';

const range = (count: number) => Array.from({ length: count }, (_, i) => i);

/** A stream that records what is written, posing as a terminal or as a pipe. */
class FakeStream {
  readonly chunks: string[] = [];
  constructor(
    readonly isTTY: boolean,
    readonly columns = 80,
  ) {}
  write(text: string): boolean {
    this.chunks.push(String(text));
    return true;
  }
  // The tty.WriteStream methods ora uses, writing the codes a terminal would get.
  cursorTo(x: number): boolean {
    return this.write(`\u001b[${x + 1}G`);
  }
  moveCursor(dx: number, dy: number): boolean {
    return this.write(dy < 0 ? `\u001b[${-dy}A` : dy > 0 ? `\u001b[${dy}B` : dx === 0 ? '' : `\u001b[${dx}C`);
  }
  clearLine(): boolean {
    return this.write('\u001b[2K');
  }
  on(): this {
    return this;
  }
  once(): this {
    return this;
  }
  removeListener(): this {
    return this;
  }
  get output(): string {
    return this.chunks.join('');
  }
  /** What a terminal would show after all the writes: cursor moves and line clears applied. */
  get screen(): string[] {
    const lines: string[] = [''];
    let row = 0;
    let column = 0;
    const put = (text: string) => {
      const line = lines[row] ?? '';
      lines[row] = line.slice(0, column).padEnd(column) + text + line.slice(column + text.length);
      column += text.length;
    };
    // biome-ignore lint/suspicious/noControlCharactersInRegex: parsing terminal codes.
    for (const token of this.output.split(/(\u001b\[[0-9;?]*[A-Za-z]|\n|\r)/)) {
      if (token === '') continue;
      if (token === '\n') {
        row++;
        column = 0;
        lines[row] ??= '';
      } else if (token === '\r') column = 0;
      else if (token.startsWith('\u001b[')) {
        const amount = Number.parseInt(token.slice(2), 10) || 1;
        const code = token.at(-1);
        if (code === 'G') column = amount - 1;
        else if (code === 'K') lines[row] = '';
        else if (code === 'A') row = Math.max(0, row - amount);
        else if (code === 'B') row += amount;
      } else put(token);
    }
    return lines.map((line) => line.trimEnd()).filter((line) => line !== '');
  }
}

const HIDE_CURSOR = '\u001b[?25l';
const SHOW_CURSOR = '\u001b[?25h';

describe('progress line format', () => {
  it('shows counts, percent, rate, elapsed and ETA while running', () => {
    const line = formatLine('parmap', {
      done: 61_440,
      total: 100_000,
      failed: 0,
      rate: 12_030,
      elapsed: 5.1,
      eta: 3.2,
    });
    assert.equal(line, 'parmap  61,440/100,000  61%  12,030 it/s  elapsed 0:05  ETA 0:03');
  });

  it('leaves out total, percent and ETA when the total is unknown, and shows failures', () => {
    const line = formatLine('parse', {
      done: 1500,
      total: undefined,
      failed: 2,
      rate: 2.5,
      elapsed: 61,
      eta: undefined,
    });
    assert.equal(line, 'parse  1,500  2 failed  2.5 it/s  elapsed 1:01');
  });

  it('summarises with the total time, and says how a call that did not finish ended', () => {
    const progress = { done: 10, total: 10, failed: 0, rate: 1000, elapsed: 3725, eta: 0 };
    assert.equal(formatLine('job', progress, 'done'), 'job  10/10  100%  1,000 it/s  total 1:02:05');
    assert.equal(
      formatLine('job', { ...progress, done: 4 }, 'aborted'),
      'job  4/10  40%  1,000 it/s  after 1:02:05  aborted',
    );
  });

  it('shows escape sequences and other control characters in a label instead of sending them', () => {
    const label = 'evil\u001b[2J\u001b]0;title\u0007\nnext\u202eline';
    const line = formatLine(label, { done: 1, total: 2, failed: 0, rate: 1, elapsed: 1, eta: 1 });
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
    assert.doesNotMatch(line, /[\u0000-\u001f\u007f-\u009f\u202e]/);
    assert.ok(line.startsWith('evil\\u001b[2J\\u001b]0;title\\u0007\\u000anext\\u202eline  '), line);
    assert.equal(printableLabel('photos: 2024 ✓ résumé'), 'photos: 2024 ✓ résumé');
  });

  it('writes durations as m:ss or h:mm:ss', () => {
    assert.equal(clock(0), '0:00');
    assert.equal(clock(59.9), '0:59');
    assert.equal(clock(3600), '1:00:00');
  });
});

describe('progress display', () => {
  let savedCI: string | undefined;
  before(() => {
    savedCI = process.env.CI;
    delete process.env.CI;
  });
  after(() => {
    if (savedCI !== undefined) process.env.CI = savedCI;
  });

  it('treats a terminal with zero columns, or any stream under CI, as plain', () => {
    assert.equal(isLiveTerminal(new FakeStream(true, 80)), true);
    assert.equal(isLiveTerminal(new FakeStream(true, 0)), false);
    assert.equal(isLiveTerminal(new FakeStream(false)), false);
    assert.equal(isLiveTerminal({ isTTY: true, columns: 80, write: () => true }), false);
    process.env.CI = 'true';
    assert.equal(isLiveTerminal(new FakeStream(true, 80)), false);
    delete process.env.CI;
  });

  it('on a terminal: hides the cursor, redraws in place, ends with one summary line and the cursor back', async () => {
    const stream = new FakeStream(true);
    const results = await parmap((x: number) => x * 2, range(2000), { n: 2, progress: { label: 'double', stream } });
    assert.equal(results.length, 2000);
    assert.ok(stream.output.startsWith(HIDE_CURSOR), 'the cursor is hidden first');
    assert.ok(stream.output.includes(SHOW_CURSOR), 'the cursor is shown again');
    assert.ok(stream.output.lastIndexOf(SHOW_CURSOR) > stream.output.lastIndexOf(HIDE_CURSOR));
    assert.equal(stream.screen.length, 1, `the screen shows ${JSON.stringify(stream.screen)}`);
    assert.match(stream.screen[0] ?? '', /^✔ double {2}2,000\/2,000 {2}100% {2}[\d,.]+ it\/s {2}total \d+:\d\d$/);
  });

  it('redraws about ten times a second at most, however fast items finish', async () => {
    const stream = new FakeStream(true);
    const started = performance.now();
    await parmap((x: number) => x, range(3000), { n: 2, chunksize: 1, progress: { stream } });
    const elapsedMs = performance.now() - started;
    const redraws = stream.chunks.filter((chunk) => chunk === '\u001b[?2026h').length;
    assert.ok(redraws >= 1);
    assert.ok(
      redraws <= Math.ceil(elapsedMs / 100) + 2,
      `${redraws} redraws in ${Math.round(elapsedMs)} ms for 3,000 chunks`,
    );
  });

  it('on a plain stream: no terminal codes, just the final line for a short run', async () => {
    const stream = new FakeStream(false);
    await parmap((x: number) => x, range(500), { n: 2, progress: { stream } });
    assert.equal(stream.output.includes('\u001b'), false);
    assert.deepEqual(stream.output.split('\n').filter(Boolean).length, 1);
    assert.match(stream.output, /^✔ parmap {2}500\/500 {2}100% {2}.* total \d+:\d\d\n$/);
  });

  it('a zero-column terminal gets plain lines, not endless clear-line codes', async () => {
    const stream = new FakeStream(true, 0);
    await parmap((x: number) => x, range(100), { n: 2, progress: { stream } });
    assert.equal(stream.output.includes('\u001b'), false);
    assert.match(stream.output, /^✔ parmap {2}100\/100/);
  });

  it('ends with ✖, the failure and the cursor back when fn throws', async () => {
    const stream = new FakeStream(true);
    await assert.rejects(
      parmap(
        (x: number) => {
          if (x === 50) throw new Error('no');
          return x;
        },
        range(100),
        { n: 2, chunksize: 10, progress: { stream } },
      ),
    );
    assert.match(stream.screen[0] ?? '', /^✖ parmap {2}\d+\/100 {2}\d+% {2}1 failed .* after \d+:\d\d {2}failed$/);
    assert.ok(
      stream.output.endsWith(`${SHOW_CURSOR}`) ||
        stream.output.lastIndexOf(SHOW_CURSOR) > stream.output.lastIndexOf(HIDE_CURSOR),
    );
  });

  it('ends with ■ when the caller breaks, and with ✖ aborted on abort', async () => {
    const stream = new FakeStream(true);
    for await (const value of parmap((x: number) => x, range(10_000), { n: 2, progress: { stream, label: 'walk' } })) {
      if (value === 100) break;
    }
    assert.match(stream.screen[0] ?? '', /^■ walk .* stopped$/);
    const aborted = new FakeStream(false);
    const controller = new AbortController();
    await assert.rejects(async () => {
      for await (const value of parmap((x: number) => x, range(10_000), {
        n: 2,
        signal: controller.signal,
        progress: { stream: aborted },
      })) {
        if (value === 10) controller.abort();
      }
    });
    assert.match(aborted.output, /^✖ parmap .* aborted\n$/);
  });

  it('shows chained stages at once, a line each, and leaves a summary line for each', async () => {
    const stream = new FakeStream(true);
    const parsed = parmap((x: number) => x + 1, range(3000), { n: 2, progress: { label: 'parse', stream } });
    const scored = parmap((x: number) => x * 2, parsed, { n: 2, progress: { label: 'score', stream } });
    assert.equal(scored.total, 3000, 'the total passes down the chain');
    assert.equal((await scored).length, 3000);
    const twoLineFrame = stream.chunks.some((chunk) => /score.*\n.*parse|parse.*\n.*score/s.test(chunk));
    assert.ok(twoLineFrame, 'one redraw shows both stages');
    assert.deepEqual(
      stream.screen.map((line) => line.split(/\s+/).slice(0, 3).join(' ')),
      ['✔ parse 3,000/3,000', '✔ score 3,000/3,000'],
    );
  });
});

describe('progress callback', () => {
  it('never goes backwards and ends with done === total', async () => {
    const updates: { done: number; total: number | undefined; failed: number }[] = [];
    await parmap((x: number) => x, range(5000), {
      n: 2,
      chunksize: 10,
      progress: ({ done, total, failed }) => updates.push({ done, total, failed }),
    });
    for (let i = 1; i < updates.length; i++) assert.ok((updates[i]?.done ?? 0) >= (updates[i - 1]?.done ?? 0));
    assert.deepEqual(updates.at(-1), { done: 5000, total: 5000, failed: 0 });
    assert.ok(updates.length <= 501, 'at most one call per chunk, plus the last');
  });

  it('learns the total of an input that could not tell it, by the last call', async () => {
    const updates: { done: number; total: number | undefined; eta: number | undefined }[] = [];
    await parmap(
      (x: number) => x,
      (function* () {
        yield* range(300);
      })(),
      { n: 2, progress: ({ done, total, eta }) => updates.push({ done, total, eta }) },
    );
    assert.deepEqual(updates.at(-1), { done: 300, total: 300, eta: 0 });
  });

  for (const n of [1, 2]) {
    it(`counts as done, when the call fails, every result handed out before the error (n: ${n})`, async () => {
      // The items before the failing one in its chunk were left out: 2 done, 17 results handed out.
      let last = { done: 0, failed: 0 };
      let handedOut = 0;
      const failAt17 = (x: number) => {
        if (x === 17) throw new Error('bad item');
        return x;
      };
      const call = parmap(failAt17, range(100), {
        n,
        chunksize: 30,
        progress: ({ done, failed }) => (last = { done, failed }),
      });
      await assert.rejects(async () => {
        for await (const _ of call) handedOut++;
      }, /bad item/);
      assert.equal(handedOut, 17);
      assert.ok(last.done >= 17, `done: ${last.done}`);
      assert.equal(last.failed, 1);
    });
  }

  it('works the same with n: 1', async () => {
    const updates: number[] = [];
    await parmap((x: number) => x, range(200), { n: 1, progress: ({ done }) => updates.push(done) });
    assert.equal(updates.at(-1), 200);
  });

  it('fails the call, naming the callback error, when the callback throws', async () => {
    await assert.rejects(
      parmap((x: number) => x, range(10), {
        n: 2,
        progress: () => {
          throw new Error('callback broke');
        },
      }),
      /callback broke/,
    );
  });
});

/** Runs the interrupted-progress program in a real pseudo-terminal of 100 columns. */
function inTerminal(argument: string): { status: number | null; output: string } {
  const program = fileURLToPath(new URL('./fixtures/interrupted-progress.mjs', import.meta.url));
  const command = `stty cols 100 rows 30; ${JSON.stringify(process.execPath)} ${JSON.stringify(program)} ${argument}`;
  // Under CI (the variable set), every stream counts as plain: the terminal here is real.
  const { CI: _ci, ...env } = process.env;
  const run = spawnSync('script', ['-qec', command, '/dev/null'], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30_000,
  });
  return { status: run.status, output: run.stdout };
}

const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

describe('Ctrl-C during a progress line, in a real terminal', { skip: !hasScript && 'no `script` command' }, () => {
  it('leaves a last line with the counts so far, shows the cursor again, and ends as Ctrl-C does', () => {
    const { status, output } = inTerminal('');
    assert.equal(status, 130, output);
    const last = /■ resize photos {2}([\d,]+)\/400 {2}\d+% .*interrupted/.exec(output);
    assert.ok(last, `no last line in:\n${JSON.stringify(output.slice(-400))}`);
    assert.ok(Number(last[1]) >= 100, 'the counts so far');
    assert.ok(output.lastIndexOf('\u001b[?25h') > output.lastIndexOf('\u001b[?25l'), 'the cursor is shown again');
    assert.doesNotMatch(output, /finished/);
  });

  it('leaves the choice to a program that handles SIGINT itself', () => {
    const { status, output } = inTerminal('own-handler');
    assert.equal(status, 0, output);
    assert.match(output, /the program handles SIGINT itself/);
    assert.match(output, /finished 400/);
    assert.match(output, /✔ resize photos {2}400\/400/, 'the run goes on, and its summary still comes');
  });
});
