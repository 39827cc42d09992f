/**
 * The `parmap` command: its argument parsing and line handling as pure functions, then the built
 * binary run as a real process, on real files in a temporary folder, each run killed past a limit.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type MapCommand, moduleSource, parseCommandLine, UsageError } from '../dist/parmap/cli/arguments.js';
import { describeSyntaxError, functionFromText } from '../dist/parmap/cli/function-text.js';
import { formatResult, LineNumbers, LineWriter, parseJsonLine } from '../dist/parmap/cli/lines.js';

/** A name only `scope` gives: the function refers to it, and only a worker has it. */
declare const π: number;

const bin = fileURLToPath(new URL('../dist/parmap/cli.js', import.meta.url));
const fixtures = fileURLToPath(new URL('./fixtures/cli/', import.meta.url));
const packageVersion = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
const LIMIT_MS = 30_000;
const STACK_FRAME = /^\s+at /m;

function map(argv: readonly string[]): MapCommand {
  const command = parseCommandLine(argv);
  assert.equal(command.kind, 'map');
  return command as MapCommand;
}

function usageError(argv: readonly string[], message: RegExp): void {
  assert.throws(
    () => parseCommandLine(argv),
    (error: unknown) => error instanceof UsageError && message.test(error.message),
  );
}

describe('command line parsing', () => {
  it('fills in the defaults around a function', () => {
    assert.deepEqual(map(['w => w.length']), {
      kind: 'map',
      function: { kind: 'text', text: 'w => w.length' },
      workers: undefined,
      chunksize: 'auto',
      ordered: true,
      json: false,
      progress: false,
      scope: undefined,
      timeout: undefined,
      retries: 0,
      onError: 'throw',
      redis: undefined,
    });
  });

  it('reads every option, in both of their spellings', () => {
    const command = map([
      '-n',
      '4',
      '--chunksize=50',
      '--unordered',
      '--json',
      '--progress',
      '--scope',
      'factor=3',
      '--scope=names=["a","b"]',
      '--timeout',
      '1500.5',
      '--retries=2',
      '--on-error',
      'skip',
      'o => o',
    ]);
    assert.equal(command.workers, 4);
    assert.equal(command.chunksize, 50);
    assert.equal(command.ordered, false);
    assert.equal(command.json, true);
    assert.equal(command.progress, true);
    assert.deepEqual(command.scope, { factor: 3, names: ['a', 'b'] });
    assert.equal(command.timeout, 1500.5);
    assert.equal(command.retries, 2);
    assert.equal(command.onError, 'skip');
    assert.equal(map(['-n4', 'f']).workers, 4);
    assert.equal(map(['--workers', '3', 'f']).workers, 3);
    assert.equal(map(['--on-error=return', 'f']).onError, 'return');
    assert.equal(map(['--chunksize', 'auto', 'f']).chunksize, 'auto');
    assert.equal(map(['--redis', 'redis://h:6379', 'f']).redis, 'redis://h:6379');
  });

  it('takes a function that starts with a dash after --', () => {
    assert.deepEqual(map(['--', '-1']).function, { kind: 'text', text: '-1' });
  });

  it('answers --help and --version before anything else is checked', () => {
    assert.deepEqual(parseCommandLine(['--help']), { kind: 'help' });
    assert.deepEqual(parseCommandLine(['-h', '-n', '0']), { kind: 'help' });
    assert.deepEqual(parseCommandLine(['--colour', '--help']), { kind: 'help' });
    assert.deepEqual(parseCommandLine(['--json=yes', '--version']), { kind: 'version' });
    assert.deepEqual(parseCommandLine(['--version']), { kind: 'version' });
    assert.deepEqual(parseCommandLine(['-v']), { kind: 'version' });
  });

  it('splits --module into a path and an export, default when none is named', () => {
    assert.deepEqual(map(['--module', './score.js:score']).function, {
      kind: 'module',
      path: './score.js',
      export: 'score',
    });
    assert.deepEqual(moduleSource('lib/score.mjs'), { kind: 'module', path: 'lib/score.mjs', export: 'default' });
    assert.deepEqual(moduleSource('C:\\work\\score.js'), {
      kind: 'module',
      path: 'C:\\work\\score.js',
      export: 'default',
    });
    assert.deepEqual(moduleSource('C:\\work\\score.js:$run'), {
      kind: 'module',
      path: 'C:\\work\\score.js',
      export: '$run',
    });
  });

  it('keeps a --scope name such as __proto__ as a plain key', () => {
    const scope = map(['--scope', '__proto__={"polluted":true}', 'f']).scope ?? {};
    assert.ok(Object.hasOwn(scope, '__proto__'));
    assert.equal(({} as { polluted?: boolean }).polluted, undefined);
  });

  it('takes a --scope name in any script JavaScript takes, and the function sees it', async () => {
    assert.deepEqual(map(['--scope', 'café=1', '--scope', 'π=3', 'f']).scope, { café: 1, π: 3 });
    const { parmap } = await import('../dist/index.js');
    assert.deepEqual(await parmap((x: number) => x * π, [1, 2], { n: 2, scope: { π: 3 } }), [3, 6]);
  });

  const mistakes: readonly (readonly [string, readonly string[], RegExp])[] = [
    ['an unknown option', ['--colour', 'f'], /^unknown option --colour$/],
    ['a misspelt option, with a suggestion', ['--jsno', 'f'], /^unknown option --jsno \(did you mean --json\?\)$/],
    ['an unknown short option', ['-x', 'f'], /^unknown option -x$/],
    ['no function', [], /^missing the function to run, as in: parmap 'line => line.length'/],
    ['a blank function', ['  '], /^missing the function to run/],
    ['two functions', ['a => a', 'b => b'], /^expected one function, got 2 arguments \('a => a', 'b => b'\)/],
    ['a function and --module', ['--module', 'm.js', 'f'], /^give the function as text or with --module, not both/],
    ['an option without its value', ['f', '-n'], /^-n needs a value: -n <count>$/],
    ['a value given to a flag', ['--json=yes', 'f'], /^--json takes no value, got 'yes'$/],
    ['an option given twice', ['-n', '2', '-n', '3', 'f'], /^-n is given 2 times; give it once$/],
    ['workers here and there', ['-n', '2', '--redis', 'redis://h', 'f'], /^-n and --redis do not go together/],
    ['no workers', ['-n', '0', 'f'], /^-n expects a whole number, at least 1, got '0'$/],
    ['a negative count', ['-n', '-3', 'f'], /^-n expects a whole number, at least 1, got '-3'$/],
    ['a fraction of a worker', ['-n', '1.5', 'f'], /^-n expects a whole number, at least 1, got '1.5'$/],
    [
      'a bad chunk size',
      ['--chunksize', 'big', 'f'],
      /^--chunksize expects a whole number of lines, at least 1, or auto, got 'big'$/,
    ],
    ['a zero timeout', ['--timeout', '0', 'f'], /^--timeout expects a number of milliseconds above 0, got '0'$/],
    [
      'a timeout with a unit',
      ['--timeout', '5s', 'f'],
      /^--timeout expects a number of milliseconds above 0, got '5s'$/,
    ],
    ['a negative retry count', ['--retries', '-1', 'f'], /^--retries expects a whole number \(0 or more\), got '-1'$/],
    [
      'an unknown --on-error mode',
      ['--on-error', 'ignore', 'f'],
      /^--on-error expects throw, return or skip, got 'ignore'$/,
    ],
    [
      'a --scope without =',
      ['--scope', 'factor', 'f'],
      /^--scope expects name=json, as in --scope factor=3; got 'factor'/,
    ],
    [
      'a --scope name that is not a variable name',
      ['--scope', 'a-b=1', 'f'],
      /^--scope 'a-b=1': 'a-b' cannot be a variable name/,
    ],
    ['a --scope name that is a reserved word', ['--scope', 'class=1', 'f'], /'class' cannot be a variable name/],
    ['a --scope name given twice', ['--scope', 'k=1', '--scope', 'k=2', 'f'], /^--scope gives k twice$/],
    [
      'a --scope value that is not JSON',
      ['--scope', 'salt=pepper', 'f'],
      /^--scope salt: the value 'pepper' is not JSON \(.+\); a string needs JSON quotes, as in --scope salt='"text"'$/,
    ],
    [
      'a --module that is only an export',
      ['--module', ':score'],
      /^--module needs a path before the export name, got ':score'$/,
    ],
    ['a --module ending with a colon', ['--module', 'score.js:'], /^--module 'score.js:' ends with a colon/],
  ];
  for (const [what, argv, message] of mistakes) {
    it(`refuses ${what}`, () => usageError(argv, message));
  }
});

describe('a function given as text', () => {
  it('compiles to a function whose source is the text', () => {
    const text = 'async (line, extra = 1) => line.length + extra';
    const fn = functionFromText(text);
    assert.equal(typeof fn, 'function');
    assert.equal(Function.prototype.toString.call(fn), text);
    assert.equal(functionFromText('x => x * 2 // doubled')(21 as never), 42);
  });

  it('shows where a one-line function does not parse, with a caret under the place', () => {
    assert.throws(
      () => functionFromText('x => x +* 2'),
      (error: unknown) =>
        error instanceof UsageError &&
        error.message ===
          "the function does not parse: SyntaxError: Unexpected token '*' (line 1, column 9)\n  x => x +* 2\n          ^",
    );
  });

  it('shows the line and column in a function of several lines', () => {
    assert.throws(
      () => functionFromText('(x) => {\n\tconst y = x;;\n\treturn y +* 2;\n}'),
      (error: unknown) =>
        error instanceof UsageError &&
        error.message.endsWith("Unexpected token '*' (line 3, column 12)\n  \treturn y +* 2;\n  \t          ^"),
    );
  });

  it('points at the end of a function that stops in the middle, and says so', () => {
    assert.throws(
      () => functionFromText('x => {\n  return x'),
      (error: unknown) =>
        error instanceof UsageError && /\(line 2, column 11\)\n {2} {2}return x\n {12}\^$/.test(error.message),
    );
    // V8 names the `)` that parmap adds around the text, which the user never wrote.
    assert.throws(
      () => functionFromText('l => l +'),
      (error: unknown) =>
        error instanceof UsageError &&
        error.message ===
          'the function does not parse: it ends in the middle of an expression (line 1, column 9)\n  l => l +\n          ^',
    );
  });

  it('refuses what is not a function, and what fails when evaluated', () => {
    assert.throws(() => functionFromText('42'), /^UsageError: '42' is not a function \(it is the number 42\)/);
    assert.throws(() => functionFromText('[1]'), /is not a function \(it is an array\)/);
    assert.throws(
      () => functionFromText('missingName'),
      /^UsageError: the function 'missingName' fails when it is evaluated: ReferenceError: missingName is not defined$/,
    );
  });

  it('falls back to the message alone for a SyntaxError that does not say where', () => {
    assert.equal(
      describeSyntaxError('x =>', new SyntaxError('Unexpected end of input')),
      'the function does not parse: SyntaxError: Unexpected end of input',
    );
  });
});

describe('lines in and out', () => {
  it('parses JSON lines, telling blank and invalid lines apart', () => {
    assert.deepEqual(parseJsonLine('{"a":[1,2]}'), { kind: 'value', value: { a: [1, 2] } });
    assert.deepEqual(parseJsonLine('"text"'), { kind: 'value', value: 'text' });
    assert.deepEqual(parseJsonLine('  \t'), { kind: 'blank' });
    const invalid = parseJsonLine('{a:1}');
    assert.equal(invalid.kind, 'invalid');
  });

  it('writes a string as it is without --json, and everything else as JSON', () => {
    assert.equal(formatResult('plain "text"', false), 'plain "text"');
    assert.equal(formatResult('plain "text"', true), '"plain \\"text\\""');
    assert.equal(formatResult({ a: [1, null] }, false), '{"a":[1,null]}');
    assert.equal(formatResult(undefined, false), 'null');
    assert.equal(formatResult(undefined, true), 'null');
    assert.equal(formatResult(3.5, true), '3.5');
    assert.throws(() => formatResult(1n, true), TypeError);
  });

  it('numbers items by their line, across lines left out', () => {
    const numbers = new LineNumbers();
    const expected: number[] = [];
    // Lines 1-3 are items, 4 and 5 are left out, 6 is an item, 7 is left out, 8-9 are items.
    for (const kind of 'iiissisii') {
      if (kind === 'i') expected.push(numbers.addItem());
      else numbers.skipLine();
    }
    assert.deepEqual(expected, [1, 2, 3, 6, 8, 9]);
    assert.deepEqual(
      expected.map((_, index) => numbers.lineOf(index)),
      expected,
    );
    assert.equal(numbers.itemCount, 6);
    numbers.forgetBefore(4);
    assert.deepEqual([numbers.lineOf(4), numbers.lineOf(5)], [8, 9]);
  });

  it('keeps line numbers right over many lines left out, as ordered output forgets the past', () => {
    const numbers = new LineNumbers();
    const lines: number[] = [];
    for (let line = 1; line <= 30_000; line++) {
      if (line % 3 === 0) numbers.skipLine();
      else lines.push(numbers.addItem());
    }
    for (let index = 0; index < lines.length; index++) {
      assert.equal(numbers.lineOf(index), lines[index]);
      numbers.forgetBefore(index);
    }
  });

  it('waits for drain when the stream is full, and writes every line in order', async () => {
    const written: string[] = [];
    let pending = 0;
    const slow = new Writable({
      highWaterMark: 16,
      write(chunk: Buffer, _encoding, done) {
        pending += 1;
        setTimeout(() => {
          written.push(chunk.toString());
          pending -= 1;
          done();
        }, 1);
      },
    });
    const writer = new LineWriter(slow, new AbortController().signal);
    const big = 'x'.repeat(70 * 1024);
    for (let i = 0; i < 5; i++) {
      await writer.write(`${i} ${big}`);
      // A full stream is drained before the writer takes another line.
      assert.ok(pending <= 1, `${pending} writes pending`);
    }
    await writer.write('last');
    await writer.end();
    assert.deepEqual(
      written
        .join('')
        .split('\n')
        .map((line) => line.slice(0, 4)),
      ['0 xx', '1 xx', '2 xx', '3 xx', '4 xx', 'last', ''],
    );
  });

  it('notices a reader that went away (EPIPE) instead of throwing', async () => {
    const gone = new Writable({
      write(_chunk, _encoding, done) {
        done(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
      },
    });
    const writer = new LineWriter(gone, new AbortController().signal);
    await writer.write('one');
    await writer.end();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal((writer.error as NodeJS.ErrnoException | undefined)?.code, 'EPIPE');
    await writer.write('two');
    await writer.end();
  });

  it('stops waiting for drain when the run is aborted', async () => {
    const stuck = new Writable({ highWaterMark: 1, write() {} });
    const stop = new AbortController();
    const writer = new LineWriter(stuck, stop.signal);
    await writer.write('x'.repeat(70 * 1024));
    const next = writer.write('never drained');
    stop.abort();
    await next;
  });
});

interface Outcome {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

/** Starts the built binary; past the limit it is killed and the outcome says so. */
function start(
  args: readonly string[],
  options: { readonly cwd: string; readonly stdin: number | 'pipe'; readonly limitMs?: number },
): { readonly child: ChildProcess; readonly outcome: Promise<Outcome> } {
  const child = spawn(process.execPath, [bin, ...args], { cwd: options.cwd, stdio: [options.stdin, 'pipe', 'pipe'] });
  const outcome = new Promise<Outcome>((resolve) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (data: string) => {
      stdout += data;
    });
    child.stderr?.setEncoding('utf8').on('data', (data: string) => {
      stderr += data;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.limitMs ?? LIMIT_MS);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, timedOut });
    });
  });
  return { child, outcome };
}

function lines(text: string): string[] {
  return text === '' ? [] : text.replace(/\n$/, '').split('\n');
}

describe('the parmap command', { concurrency: 2, timeout: 120_000 }, () => {
  let dir = '';
  let files = 0;

  /** Runs `parmap args` with `input` as stdin, read from a real file. */
  async function cli(args: readonly string[], input = '', limitMs = LIMIT_MS): Promise<Outcome> {
    const file = join(dir, `input-${++files}.txt`);
    writeFileSync(file, input);
    const fd = openSync(file, 'r');
    try {
      const { outcome } = start(args, { cwd: dir, stdin: fd, limitMs });
      return await outcome;
    } finally {
      closeSync(fd);
    }
  }

  function assertClean(outcome: Outcome, status = 0): void {
    assert.equal(outcome.timedOut, false, 'the command did not end by itself');
    assert.equal(outcome.status, status, `exit status ${outcome.status}; stderr: ${outcome.stderr}`);
    assert.doesNotMatch(outcome.stderr, STACK_FRAME);
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'parmap-cli-'));
    copyFileSync(join(fixtures, 'score.mjs'), join(dir, 'score.mjs'));
    copyFileSync(join(fixtures, 'helper.cjs'), join(dir, 'helper.cjs'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('maps a function over the lines of stdin, one result per line, in input order', async () => {
    const words = Array.from({ length: 300 }, (_, i) => `word ${i}`);
    // Uneven work, heavier early, so chunks finish out of order.
    const outcome = await cli(
      [
        '-n',
        '2',
        '--chunksize',
        '7',
        'w => { const n = Number(w.split(" ")[1]); let s = 0; for (let i = 0; i < (300 - n) * 2000; i++) s += i; return w.toUpperCase(); }',
      ],
      `${words.join('\n')}\n`,
    );
    assertClean(outcome);
    assert.equal(outcome.stderr, '');
    assert.deepEqual(
      lines(outcome.stdout),
      words.map((w) => w.toUpperCase()),
    );
  });

  it('reads CRLF and a last line without a line ending, and keeps empty lines', async () => {
    const outcome = await cli(['-n', '2', 'w => "<" + w + ">"'], 'a\r\n\r\nb\n\nlast');
    assertClean(outcome);
    assert.deepEqual(lines(outcome.stdout), ['<a>', '<>', '<b>', '<>', '<last>']);
  });

  it('ends a line at \\n or \\r\\n only: a lone \\r stays in its line, and later lines keep their numbers', async () => {
    const outcome = await cli(
      ['-n', '2', 'w => { if (w === "boom") throw new Error("boom"); return JSON.stringify(w) }'],
      'progress 10%\rprogress 20%\nb\r\nboom\nlast\r',
    );
    assertClean(outcome, 1);
    assert.deepEqual(lines(outcome.stdout), ['"progress 10%\\rprogress 20%"', '"b"']);
    assert.equal(outcome.stderr, 'parmap: line 3: Error: boom\n');
    const json = await cli(['-n', '2', '--json', 'o => o.a'], '{"a":"x\\ry"}\r\n{"a":2}\r{"a":3}\n');
    assertClean(json, 1);
    assert.deepEqual(lines(json.stdout), ['"x\\ry"']);
    assert.match(json.stderr, /^parmap: line 2: SyntaxError: not JSON: /);
  });

  it('writes a result that is not a string as JSON, and undefined as null', async () => {
    const outcome = await cli(
      ['-n', '2', 'w => w === "n" ? w.length : w === "o" ? { w, list: [1, "2"] } : undefined'],
      'n\no\nu\n',
    );
    assertClean(outcome);
    assert.deepEqual(lines(outcome.stdout), ['1', '{"w":"o","list":[1,"2"]}', 'null']);
  });

  it('--json parses each line and writes each result as one line of JSON, leaving blank lines out', async () => {
    const rows = ['{"id":1,"a":2,"b":3}', '', '{"id":2,"a":4,"b":5}', '  ', '{"id":3,"a":6,"b":7}'];
    const outcome = await cli(['-n', '2', '--json', 'o => ({ id: o.id, score: o.a * o.b })'], `${rows.join('\n')}\n`);
    assertClean(outcome);
    assert.deepEqual(
      lines(outcome.stdout).map((line) => JSON.parse(line)),
      [
        { id: 1, score: 6 },
        { id: 2, score: 20 },
        { id: 3, score: 42 },
      ],
    );
    const strings = await cli(['-n', '2', '--json', 'o => o.name + "\\n"'], '{"name":"a"}\n{"name":"b"}\n');
    assertClean(strings);
    assert.deepEqual(lines(strings.stdout), ['"a\\n"', '"b\\n"']);
  });

  it('--module runs an export of a file named relative to the working directory', async () => {
    const named = await cli(['-n', '2', '--module', './score.mjs:score'], 'a\nbbb\n');
    assertClean(named);
    assert.deepEqual(lines(named.stdout), ['10', '30']);
    const byDefault = await cli(['-n', '2', '--module', 'score.mjs'], 'a\nbbb\n');
    assertClean(byDefault);
    assert.deepEqual(lines(byDefault.stdout), ['A!', 'BBB!']);
  });

  it('--module with no such file or no such export is a usage error naming the exports, with -n 1 and workers', async () => {
    for (const workers of ['1', '2']) {
      const missingFile = await cli(['-n', workers, '--module', './nowhere.mjs:score'], 'a\n');
      assertClean(missingFile, 2);
      assert.match(
        missingFile.stderr,
        /^parmap: --module '\.\/nowhere\.mjs:score': there is no file at .*nowhere\.mjs\n/,
      );
      const missingExport = await cli(['-n', workers, '--module', './score.mjs:nope'], 'a\n');
      assertClean(missingExport, 2);
      assert.equal(missingExport.stdout, '');
      assert.match(
        missingExport.stderr,
        workers === '1'
          ? /^parmap: --module '\.\/score\.mjs:nope': the module has no export named 'nope' \(its functions: default, score\)/
          : /^parmap: --module '\.\/score\.mjs:nope': .*no function exported as `nope`.*its exported functions: default, score\n/,
      );
    }
  });

  it('resolves require() inside the function from the working directory', async () => {
    const outcome = await cli(['-n', '2', 'w => require("./helper.cjs")(w)'], 'x\ny\n');
    assertClean(outcome);
    assert.deepEqual(lines(outcome.stdout), ['helped x', 'helped y']);
  });

  it('--scope gives the function JSON values by name', async () => {
    const outcome = await cli(
      [
        '-n',
        '2',
        '--scope',
        'prefix="id-"',
        '--scope',
        'factor=3',
        '--scope',
        'tags={"x":[1,2]}',
        'w => prefix + w.repeat(factor) + tags.x.length',
      ],
      'a\nb\n',
    );
    assertClean(outcome);
    assert.deepEqual(lines(outcome.stdout), ['id-aaa2', 'id-bbb2']);
  });

  it('a --scope value that is not JSON is a usage error naming the key', async () => {
    const outcome = await cli(['-n', '2', '--scope', 'salt=pepper', 'w => salt + w'], 'a\n');
    assertClean(outcome, 2);
    assert.equal(outcome.stdout, '');
    assert.match(outcome.stderr, /^parmap: --scope salt: the value 'pepper' is not JSON/);
    assert.match(outcome.stderr, /Run parmap --help for the options and examples\.\n$/);
  });

  it('a function that uses a name no --scope gives is a usage error saying which flag to add', async () => {
    const outcome = await cli(['-n', '2', 'w => factor * w'], '1\n');
    assertClean(outcome, 2);
    assert.match(outcome.stderr, /^parmap: the function uses factor from outside it.*--scope factor=<json>/);
  });

  it('--unordered writes every line', async () => {
    const input = Array.from({ length: 500 }, (_, i) => String(i));
    const outcome = await cli(
      [
        '-n',
        '2',
        '--unordered',
        '--chunksize',
        '5',
        'x => { let s = 0; for (let i = 0; i < (x % 10) * 20000; i++) s += i; return x * 2; }',
      ],
      `${input.join('\n')}\n`,
    );
    assertClean(outcome);
    assert.deepEqual(
      lines(outcome.stdout)
        .map(Number)
        .sort((a, b) => a - b),
      input.map((x) => Number(x) * 2),
    );
  });

  const failing = 'x => { if (x === "3" || x === "5") throw new TypeError("bad " + x); return x * 2; }';

  it('a failing line stops the run with exit code 1 and one error on stderr naming its line', async () => {
    const outcome = await cli(['-n', '2', failing], '1\n2\n3\n4\n5\n6\n');
    assertClean(outcome, 1);
    assert.deepEqual(lines(outcome.stdout), ['2', '4']);
    assert.equal(outcome.stderr, 'parmap: line 3: TypeError: bad 3\n');
  });

  it('--on-error=return writes each error as a line of JSON in place of its result, and exits 0', async () => {
    const outcome = await cli(['-n', '2', '--on-error=return', failing], '1\n2\n3\n4\n5\n6\n');
    assertClean(outcome);
    assert.equal(outcome.stderr, '');
    assert.deepEqual(lines(outcome.stdout), [
      '2',
      '4',
      '{"error":{"line":3,"name":"TypeError","message":"bad 3"}}',
      '8',
      '{"error":{"line":5,"name":"TypeError","message":"bad 5"}}',
      '12',
    ]);
  });

  it('--on-error=skip leaves failed lines out and reports each on stderr, and exits 0', async () => {
    const outcome = await cli(['-n', '2', '--on-error', 'skip', failing], '1\n2\n3\n4\n5\n6\n');
    assertClean(outcome);
    assert.deepEqual(lines(outcome.stdout), ['2', '4', '8', '12']);
    assert.equal(
      outcome.stderr,
      'parmap: line 3 skipped: TypeError: bad 3\nparmap: line 5 skipped: TypeError: bad 5\nparmap: 2 lines failed and were skipped\n',
    );
  });

  it('numbers failed lines as the input has them, blank and invalid --json lines included', async () => {
    const input = '{"v":1}\n\nnot json\n{"v":"boom"}\n{"v":3}\n';
    const fn = 'o => { if (o.v === "boom") throw new RangeError("boom"); return o.v; }';
    const thrown = await cli(['-n', '2', '--json', fn], input);
    assertClean(thrown, 1);
    assert.deepEqual(lines(thrown.stdout), ['1']);
    assert.match(thrown.stderr, /^parmap: line 3: SyntaxError: not JSON: .+\n$/);
    const returned = await cli(['-n', '2', '--json', '--on-error=return', fn], input);
    assertClean(returned);
    const out = lines(returned.stdout).map((line) => JSON.parse(line));
    assert.equal(out.length, 4);
    assert.equal(out[0], 1);
    assert.equal(out[1].error.line, 3);
    assert.equal(out[1].error.name, 'SyntaxError');
    assert.deepEqual(out[2], { error: { line: 4, name: 'RangeError', message: 'boom' } });
    assert.equal(out[3], 3);
    const skipped = await cli(['-n', '2', '--json', '--on-error=skip', fn], input);
    assertClean(skipped);
    assert.deepEqual(lines(skipped.stdout), ['1', '3']);
    assert.match(
      skipped.stderr,
      /^parmap: line 3 skipped: SyntaxError: not JSON: .+\nparmap: line 4 skipped: RangeError: boom\n/,
    );
  });

  it('a line past --timeout fails naming its line; a result JSON cannot hold fails its line', async () => {
    const slow = await cli(
      [
        '-n',
        '2',
        '--timeout',
        '300',
        'x => { if (x === "2") { const end = Date.now() + 20000; while (Date.now() < end); } return x; }',
      ],
      '1\n2\n3\n',
    );
    assertClean(slow, 1);
    assert.equal(slow.stdout, '1\n');
    assert.equal(
      slow.stderr,
      'parmap: line 2: ParmapTimeoutError: ran longer than the timeout of 300 ms, so its worker was stopped\n',
    );
    const big = await cli(['-n', '2', '--on-error=return', 'x => x === "2" ? 2n : x'], '1\n2\n');
    assertClean(big);
    assert.deepEqual(lines(big.stdout), [
      '1',
      '{"error":{"line":2,"name":"TypeError","message":"the result cannot be written as JSON (it holds a BigInt): return it as a string (String(n)) or as a number (Number(n))"}}',
    ]);
  });

  it('a result JSON cannot hold is told in one line that names its line and says what to return', async () => {
    for (const workers of ['1', '2']) {
      const big = await cli(['-n', workers, 'x => x === "2" ? 2n ** 70n : x'], '1\n2\n3\n');
      assertClean(big, 1);
      assert.deepEqual(lines(big.stdout), ['1']);
      assert.equal(
        big.stderr,
        'parmap: line 2: TypeError: the result cannot be written as JSON (it holds a BigInt): return it as a string (String(n)) or as a number (Number(n))\n',
      );
      const circular = await cli(
        [
          '-n',
          workers,
          '--json',
          '--on-error=skip',
          'o => { if (o !== 2) return o; const a = { o }; a.a = a; return a }',
        ],
        '1\n2\n3\n',
      );
      assertClean(circular);
      assert.deepEqual(lines(circular.stdout), ['1', '3']);
      assert.equal(
        circular.stderr,
        'parmap: line 2 skipped: TypeError: the result cannot be written as JSON (it refers to itself): return plain data without cycles\n' +
          'parmap: 1 line failed and was skipped\n',
      );
    }
  });

  it('usage mistakes exit with code 2 and a message, before reading any input', async () => {
    const cases: readonly (readonly [readonly string[], RegExp])[] = [
      [['--colour', 'w => w'], /^parmap: unknown option --colour\n/],
      [['--jsno', 'w => w'], /^parmap: unknown option --jsno \(did you mean --json\?\)\n/],
      [[], /^parmap: missing the function to run/],
      [['-n', 'two', 'w => w'], /^parmap: -n expects a whole number, at least 1, got 'two'\n/],
      [['--on-error=ignore', 'w => w'], /^parmap: --on-error expects throw, return or skip, got 'ignore'\n/],
      [['42'], /^parmap: '42' is not a function/],
      // Named as the flag, not as the library's `backend.redis`.
      [
        ['--redis', 'http://x', 'w => w'],
        /^parmap: --redis expects a URL such as redis:\/\/host:6379 .*, got 'http:\/\/x'\n/,
      ],
    ];
    for (const [args, message] of cases) {
      const outcome = await cli(args, 'a\n');
      assertClean(outcome, 2);
      assert.equal(outcome.stdout, '');
      assert.match(outcome.stderr, message);
      assert.match(outcome.stderr, /\nRun parmap --help for the options and examples\.\n$/);
    }
  });

  it('a function that does not parse exits with code 2 and shows where', async () => {
    const outcome = await cli(['-n', '2', 'o => {\n  const score = o.a *;\n  return score;\n}'], 'a\n');
    assertClean(outcome, 2);
    assert.equal(
      outcome.stderr,
      "parmap: the function does not parse: SyntaxError: Unexpected token ';' (line 2, column 22)\n" +
        '    const score = o.a *;\n' +
        '                       ^\n' +
        'Run parmap --help for the options and examples.\n',
    );
  });

  it('--help documents every option with examples; --version prints the package version', async () => {
    const help = await cli(['--help']);
    assertClean(help);
    for (const option of [
      '-n, --workers',
      '--chunksize',
      '--unordered',
      '--json',
      '--progress',
      '--module',
      '--scope',
      '--timeout',
      '--retries',
      '--on-error',
      'throw',
      'return',
      'skip',
      '{"error":{"line":N',
      'Exit codes',
      'Examples',
      '--version',
    ]) {
      assert.ok(help.stdout.includes(option), `--help does not mention ${option}`);
    }
    const version = await cli(['--version']);
    assertClean(version);
    assert.equal(version.stdout, `${packageVersion}\n`);
  });

  it('--progress draws on stderr and leaves stdout to the results', async () => {
    const outcome = await cli(['-n', '2', '--progress', 'x => x * 2'], '1\n2\n3\n');
    assertClean(outcome);
    assert.deepEqual(lines(outcome.stdout), ['2', '4', '6']);
    assert.match(outcome.stderr, /parmap {2}3(\/3)?\b/);
  });

  it('streams a large input in order', async () => {
    const count = 200_000;
    const input = Array.from({ length: count }, (_, i) => String(i)).join('\n');
    const outcome = await cli(['-n', '2', 'x => x * 3'], input);
    assertClean(outcome);
    const out = lines(outcome.stdout);
    assert.equal(out.length, count);
    assert.equal(
      out.findIndex((line, i) => line !== String(i * 3)),
      -1,
    );
  });

  it('ends quietly with code 0 when the reader stops early (| head -5), on an endless input', async () => {
    const status = join(dir, 'head-status.txt');
    const errors = join(dir, 'head-stderr.txt');
    const output = await new Promise<string>((resolve, reject) => {
      execFile(
        'sh',
        ['-c', 'yes 21 | { "$NODE" "$BIN" -n 2 "x => x * 2" 2> "$ERRORS"; echo $? > "$STATUS"; } | head -5'],
        {
          cwd: dir,
          timeout: LIMIT_MS,
          env: { ...process.env, NODE: process.execPath, BIN: bin, ERRORS: errors, STATUS: status },
        },
        (error, stdout) => (error === null ? resolve(stdout) : reject(error)),
      );
    });
    assert.deepEqual(lines(output), ['42', '42', '42', '42', '42']);
    assert.equal(readFileSync(status, 'utf8').trim(), '0');
    assert.equal(readFileSync(errors, 'utf8'), '');
  });

  /** Starts a slow run, waits for its first line of output, sends `signal`, and returns the outcome. */
  async function interrupt(signal: NodeJS.Signals, stdin: 'file' | 'open pipe'): Promise<Outcome> {
    const file = join(dir, `slow-${++files}.txt`);
    writeFileSync(file, Array.from({ length: 10_000 }, (_, i) => `${i}\n`).join(''));
    const fd = openSync(file, 'r');
    try {
      const slow = 'async (x) => { await new Promise((resolve) => setTimeout(resolve, 50)); return x; }';
      const { child, outcome } = start(['-n', '2', slow], { cwd: dir, stdin: stdin === 'file' ? fd : 'pipe' });
      // An open pipe: a few lines, then nothing more, and no end.
      if (stdin === 'open pipe') child.stdin?.write('1\n2\n3\n');
      await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
      child.kill(signal);
      return await outcome;
    } finally {
      closeSync(fd);
    }
  }

  it('Ctrl-C (SIGINT) stops the workers and exits with code 130, without a stack trace', async () => {
    const outcome = await interrupt('SIGINT', 'file');
    assertClean(outcome, 130);
    assert.ok(lines(outcome.stdout).length < 10_000);
  });

  it('SIGINT while waiting for more input exits with code 130', async () => {
    assertClean(await interrupt('SIGINT', 'open pipe'), 130);
  });

  it('SIGINT with -n 1, while a line waits on a timer of its own, exits with code 130', async () => {
    const waiting =
      'async (x) => { if (x !== "1") await new Promise((resolve) => setTimeout(resolve, 60_000)); return x; }';
    const { child, outcome } = start(['-n', '1', waiting], { cwd: dir, stdin: 'pipe' });
    child.stdin?.write('1\n2\n');
    // Line 1 is written: line 2 is waiting.
    await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
    child.kill('SIGINT');
    const ended = await outcome;
    child.stdin?.destroy();
    assertClean(ended, 130);
  });

  it('SIGTERM while a --module is still being imported (-n 1) exits with code 143', async () => {
    // Its import never settles, and a timer of its keeps the event loop busy.
    const module = join(dir, `hanging-${++files}.mjs`);
    writeFileSync(
      module,
      "process.stderr.write('importing\\n');\nawait new Promise(() => setInterval(() => {}, 60_000));\nexport default (x) => x;\n",
    );
    const { child, outcome } = start(['-n', '1', '--module', module], { cwd: dir, stdin: 'pipe' });
    child.stdin?.write('1\n');
    await new Promise<void>((resolve) => child.stderr?.once('data', () => resolve()));
    child.kill('SIGTERM');
    const ended = await outcome;
    child.stdin?.destroy();
    assert.equal(ended.status, 143, ended.stderr);
  });

  it('SIGTERM stops the workers and exits with code 143', async () => {
    assertClean(await interrupt('SIGTERM', 'file'), 143);
  });

  it('function text that fails as it is evaluated, now or in a promise, is a usage error', async () => {
    const importing = await cli(['-n', '2', 'import("node:fs")'], 'a\n');
    assertClean(importing, 2);
    assert.match(importing.stderr, /^parmap: 'import\(\\"node:fs\\"\)' is not a function \(it is a promise\)/);
    const rejecting = await cli(['-n', '2', '(Promise.reject(new RangeError("too soon")), x => x)'], 'a\n');
    assertClean(rejecting, 2);
    assert.match(rejecting.stderr, /fails when it is evaluated: RangeError: too soon\n/);
    assert.equal(rejecting.stdout, '');
    const throwingLater = await cli(['-n', '2', '(queueMicrotask(() => { throw new Error("soon") }), x => x)'], 'a\n');
    assertClean(throwingLater, 2);
    assert.match(throwingLater.stderr, /fails when it is evaluated: Error: soon\n/);
    const proxy = await cli(['-n', '2', 'new Proxy(x => x, { get() { throw new Error("no") } })'], 'a\n');
    assertClean(proxy, 2);
    assert.match(proxy.stderr, /^parmap: the function cannot be sent to workers: Error: no\n/);
  });

  it('a function with a `then` of its own is mapped as a function, not waited on', async () => {
    const fn = 'Object.defineProperty(x => x + "!", "then", { get() { throw new Error("not a promise") } })';
    const outcome = await cli(['-n', '2', fn], 'a\nb\n');
    assertClean(outcome);
    assert.deepEqual(lines(outcome.stdout), ['a!', 'b!']);
  });

  it('-n 1: process.exit() or a promise that never settles ends the run with code 1 and says so', async () => {
    const exiting = await cli(['-n', '1', 'x => { if (x === "3") process.exit(0); return x }'], '1\n2\n3\n4\n');
    assertClean(exiting, 1);
    assert.match(exiting.stderr, /^parmap: the process ended \(exit code 0\) before every line was done/);
    const stuck = await cli(['-n', '1', 'x => (x === "2" ? new Promise(() => {}) : x)'], '1\n2\n3\n');
    assertClean(stuck, 1);
    assert.match(stuck.stderr, /before every line was done: .*a promise that never settles/);
  });

  it('-n 1: a --module whose import never settles ends the run with code 1, naming the module', async () => {
    const module = join(dir, `never-loads-${++files}.mjs`);
    writeFileSync(module, 'await new Promise(() => {});\nexport default (x) => x;\n');
    const outcome = await cli(['-n', '1', '--module', module], '1\n2\n');
    assertClean(outcome, 1);
    assert.equal(outcome.stdout, '');
    assert.equal(
      outcome.stderr,
      `parmap: the process ended while --module '${module}' was still loading, before any line was read: its top-level code awaits a promise that nothing is left to settle\n`,
    );
  });

  it('-n 1: a --module that calls process.exit() as it loads ends the run with code 1, saying so', async () => {
    const module = join(dir, `exits-${++files}.mjs`);
    writeFileSync(module, 'process.exit(0);\nexport default (x) => x;\n');
    const outcome = await cli(['-n', '1', '--module', module], '1\n');
    assertClean(outcome, 1);
    assert.match(
      outcome.stderr,
      /was still loading, before any line was read: its top-level code called process\.exit\(0\)\n$/,
    );
  });

  it('-n 1 runs the function as a worker does: require, import() and __dirname from the working directory', async () => {
    const fn =
      'async (w) => [require("./helper.cjs")(w), (await import("./score.mjs")).score(w), __dirname === process.cwd()].join(" ")';
    const inThread = await cli(['-n', '1', fn], 'a\nbbb\n');
    assertClean(inThread);
    assert.deepEqual(lines(inThread.stdout), ['helped a 10 true', 'helped bbb 30 true']);
    const onWorkers = await cli(['-n', '2', fn], 'a\nbbb\n');
    assertClean(onWorkers);
    assert.equal(onWorkers.stdout, inThread.stdout);
    const uncloneable = await cli(['-n', '1', 'w => [() => w]'], 'a\n');
    assertClean(uncloneable, 1);
    assert.match(uncloneable.stderr, /^parmap: line 1: ParmapCloneError: its result cannot be sent back/);
    const outside = await cli(['-n', '1', 'w => factor * w'], '1\n');
    assertClean(outside, 2);
    assert.match(outside.stderr, /^parmap: the function uses factor from outside it.*--scope factor=<json>/);
  });

  it('-n 1: an error a line leaves unhandled (a timer of its own) ends the run with code 1, in one line', async () => {
    const fn = 'x => { if (x === "2") setTimeout(() => { throw new TypeError("late") }); return x }';
    const outcome = await cli(['-n', '1', fn], '1\n2\n3\n');
    assertClean(outcome, 1);
    assert.match(
      outcome.stderr,
      /^parmap: after line [23]: an error nobody handled: TypeError: late\. A timer or promise/,
    );
    assert.equal(lines(outcome.stderr).length, 1);
  });

  it('-n 1: an error a line leaves for later names the last line done, and says --on-error does not apply', async () => {
    const cases: readonly (readonly [string, string])[] = [
      ['return', 'x => { if (x === "2") setTimeout(() => { throw new TypeError("late") }); return x }'],
      ['skip', 'x => { if (x === "2") Promise.reject(new TypeError("late")); return x }'],
    ];
    for (const [mode, fn] of cases) {
      // stdin stays open: the error comes while the run waits for line 3, line 2 being the last done.
      const { child, outcome } = start(['-n', '1', `--on-error=${mode}`, fn], { cwd: dir, stdin: 'pipe' });
      child.stdin?.write('1\n2\n');
      const ended = await outcome;
      child.stdin?.destroy();
      assertClean(ended, 1);
      assert.deepEqual(lines(ended.stdout), ['1', '2']);
      assert.equal(
        ended.stderr,
        "parmap: after line 2: an error nobody handled: TypeError: late. A timer or promise the function started failed after its line returned, so the error belongs to no line's result and --on-error does not apply: await it inside the function, or catch its errors.\n",
      );
    }
  });

  it('-n 1: a timer the function leaves running does not hold the command once every result is written', async () => {
    // The interval would keep a process alive for a minute, twice the time this run is given.
    const outcome = await cli(['-n', '1', 'x => { setInterval(() => {}, 60_000); return x }'], '1\n2\n', LIMIT_MS);
    assertClean(outcome);
    assert.deepEqual(lines(outcome.stdout), ['1', '2']);
    assert.equal(outcome.stderr, '');
  });

  it('a worker that dies while idle is told by the lines it had run, never by item indices', async () => {
    const fn = 'x => { if (x === "boom") setTimeout(() => { throw new Error("late") }); return x }';
    // stdin stays open, so the call is still running when the worker dies.
    const { child, outcome } = start(['-n', '2', fn], { cwd: dir, stdin: 'pipe' });
    child.stdin?.write('ok\nboom\n');
    const ended = await outcome;
    child.stdin?.destroy();
    assertClean(ended, 1);
    assert.match(
      ended.stderr,
      /^parmap: after lines? [\d, to]+, while idle: ParmapWorkerError: its worker .*\(Error: late\)/,
    );
    assert.doesNotMatch(ended.stderr, /\bitems? \d/);
  });

  it('a directory given as stdin is a usage error, not an empty input', async () => {
    const fd = openSync(dir, 'r');
    try {
      const outcome = await start(['-n', '2', 'x => x'], { cwd: dir, stdin: fd }).outcome;
      assertClean(outcome, 2);
      assert.match(outcome.stderr, /^parmap: stdin is a directory/);
    } finally {
      closeSync(fd);
    }
  });

  it('--module that cannot be loaded is a usage error naming it, with -n 1 before any input, with workers once they try', async () => {
    writeFileSync(join(dir, 'broken.mjs'), 'export default (x) => x;\nthrow new Error("no database here");\n');
    writeFileSync(join(dir, 'unparsable.mjs'), 'export default (x) => x;\nexport const y = ;\n');
    writeFileSync(join(dir, 'unparsable.cjs'), 'module.exports = (x) => x;\nconst y = ;\n');
    writeFileSync(join(dir, 'needs-missing.mjs'), 'import "./not-here.mjs";\nexport default (x) => x;\n');
    const cases: readonly (readonly [string, RegExp])[] = [
      ['./absent.mjs', /^parmap: --module '\.\/absent\.mjs': there is no file at .+absent\.mjs$/],
      [
        './unparsable.mjs',
        /^parmap: --module '\.\/unparsable\.mjs' cannot be loaded: SyntaxError: Unexpected token ';' \(at unparsable\.mjs:2:18\)$/,
      ],
      [
        './unparsable.cjs',
        /^parmap: --module '\.\/unparsable\.cjs' cannot be loaded: SyntaxError: Unexpected token ';' \(at unparsable\.cjs:2\)$/,
      ],
      [
        './broken.mjs',
        /^parmap: --module '\.\/broken\.mjs' cannot be loaded: Error: no database here \(at broken\.mjs:2\)$/,
      ],
      [
        './needs-missing.mjs',
        /^parmap: --module '\.\/needs-missing\.mjs' cannot be loaded: Error: Cannot find module '.+not-here\.mjs' imported from .+needs-missing\.mjs$/,
      ],
    ];
    for (const workers of ['1', '2']) {
      for (const [module, message] of cases) {
        const outcome = await cli(['-n', workers, '--module', module], 'a\nb\n');
        assertClean(outcome, 2);
        assert.equal(outcome.stdout, '');
        const [first, ...rest] = lines(outcome.stderr);
        assert.match(first ?? '', message);
        assert.deepEqual(rest, ['Run parmap --help for the options and examples.']);
        // No input at all: with -n 1 the module is imported all the same, as function text is
        // compiled; workers import nothing, so only the file is checked.
        const empty = await cli(['-n', workers, '--module', module], '');
        if (workers === '1' || module === './absent.mjs') {
          assertClean(empty, 2);
          assert.match(lines(empty.stderr)[0] ?? '', message);
        } else {
          assertClean(empty);
          assert.equal(empty.stderr, '');
        }
        assert.equal(empty.stdout, '');
      }
    }
  });

  it("with workers, a --module's top-level code runs only in the workers, never in the command's thread", async () => {
    // The module notes where its top-level code runs: `true 0` for a main thread.
    const module = (name: string, rest: string) =>
      writeFileSync(
        join(dir, name),
        'import { appendFileSync } from "node:fs";\n' +
          'import { isMainThread, threadId } from "node:worker_threads";\n' +
          `appendFileSync(new URL("./${name}.marks", import.meta.url), \`\${isMainThread} \${threadId}\\n\`);\n` +
          rest,
      );
    const marks = (name: string) => lines(readFileSync(join(dir, `${name}.marks`), 'utf8'));
    module('noted.mjs', 'export default (line) => line.toUpperCase();\n');
    module('noted-broken.mjs', 'export default (line) => line;\nthrow new Error("no model here");\n');
    module('noted-other.mjs', 'export const other = (line) => line;\n');

    const ran = await cli(['-n', '2', '--module', './noted.mjs'], 'a\nb\nc\n');
    assertClean(ran);
    assert.deepEqual(lines(ran.stdout), ['A', 'B', 'C']);
    const workers = marks('noted.mjs');
    assert.ok(workers.length >= 1, 'no worker imported the module');
    for (const mark of workers) assert.match(mark, /^false [1-9]\d*$/);

    const broken = await cli(['-n', '2', '--module', './noted-broken.mjs'], 'a\nb\n');
    assertClean(broken, 2);
    assert.match(broken.stderr, /^parmap: --module '\.\/noted-broken\.mjs' cannot be loaded: Error: no model here/);
    const brokenMarks = marks('noted-broken.mjs');
    assert.ok(brokenMarks.length >= 1, 'no worker imported the module');
    for (const mark of brokenMarks) assert.match(mark, /^false [1-9]\d*$/);

    const unnamed = await cli(['-n', '2', '--module', './noted-other.mjs:missing'], 'a\n');
    assertClean(unnamed, 2);
    assert.match(unnamed.stderr, /^parmap: --module '\.\/noted-other\.mjs:missing': .*`missing`.*: other\n/);
    for (const mark of marks('noted-other.mjs')) assert.match(mark, /^false [1-9]\d*$/);

    // With -n 1 the run's own import is the only one, in the command's thread.
    rmSync(join(dir, 'noted.mjs.marks'));
    const inThread = await cli(['-n', '1', '--module', './noted.mjs'], 'a\nb\n');
    assertClean(inThread);
    assert.deepEqual(lines(inThread.stdout), ['A', 'B']);
    assert.deepEqual(marks('noted.mjs'), ['true 0']);
  });

  it('--module that loads but fails on a line is a failed line, with exit code 1', async () => {
    writeFileSync(join(dir, 'picky.mjs'), 'export function parse(line) {\n  return JSON.parse(line).id;\n}\n');
    for (const workers of ['1', '2']) {
      const outcome = await cli(['-n', workers, '--module', './picky.mjs:parse'], '{"id":1}\nnot json\n');
      assertClean(outcome, 1);
      assert.deepEqual(lines(outcome.stdout), ['1']);
      assert.match(outcome.stderr, /^parmap: line 2: SyntaxError: Unexpected token/);
      assert.equal(lines(outcome.stderr).length, 1);
    }
  });
});
