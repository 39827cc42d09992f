/**
 * The command line turned into a plain description of what to do, checked once: pure (no
 * process, file or stream), so every message is tested without running anything. A mistake throws
 * a {@link UsageError} whose message names the flag and quotes what was given.
 */
import { parseArgs } from 'node:util';
import { checkRedis } from '../front/backend.js';
import { isVariableName } from '../front/options.js';
import { parseWorkerCommand, type WorkerCommand } from './worker-arguments.js';

/** What a failing line does: stop the run, become an error line, or be left out. */
export type OnErrorMode = 'throw' | 'return' | 'skip';

/** Where the function comes from: its source text, or a module's export. */
export type FunctionSource =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'module'; readonly path: string; readonly export: string };

/** `parmap [options] <function>`: map a function over the lines of stdin. */
export interface MapCommand {
  readonly kind: 'map';
  readonly function: FunctionSource;
  /** Number of workers; `undefined` leaves the library's default (every core). */
  readonly workers: number | undefined;
  readonly chunksize: number | 'auto';
  readonly ordered: boolean;
  readonly json: boolean;
  readonly progress: boolean;
  /** `--scope` values by name, parsed from JSON; `undefined` when none was given. */
  readonly scope: Readonly<Record<string, unknown>> | undefined;
  readonly timeout: number | undefined;
  readonly retries: number;
  readonly onError: OnErrorMode;
  /** `--redis`: run the lines on `parmap worker` processes through this Redis. */
  readonly redis: string | undefined;
}

/**
 * Everything the command line can ask for. A subcommand (a first positional such as `worker`)
 * gets a kind of its own here and a branch in {@link parseCommandLine}.
 */
export type Command =
  | MapCommand
  | WorkerCommand
  | { readonly kind: 'help' }
  | { readonly kind: 'workerHelp' }
  | { readonly kind: 'version' };

/** A command line that cannot be run: exit code 2, with the message and a pointer to `--help`. */
export class UsageError extends Error {
  /** @param help the command whose help says how: `parmap worker --help` for the worker's options */
  constructor(
    message: string,
    readonly help = 'parmap --help',
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

const OPTIONS = {
  workers: { type: 'string', short: 'n' },
  chunksize: { type: 'string' },
  unordered: { type: 'boolean' },
  json: { type: 'boolean' },
  progress: { type: 'boolean' },
  module: { type: 'string' },
  scope: { type: 'string', multiple: true },
  timeout: { type: 'string' },
  retries: { type: 'string' },
  'on-error': { type: 'string' },
  redis: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

type OptionName = keyof typeof OPTIONS;

const ON_ERROR_MODES: readonly OnErrorMode[] = ['throw', 'return', 'skip'];

/**
 * Reads the arguments after `parmap` (as `process.argv.slice(2)`); `env` is read by the worker
 * command only. Throws a {@link UsageError}.
 */
export function parseCommandLine(argv: readonly string[], env: NodeJS.ProcessEnv = {}): Command {
  // A subcommand is recognised by the first argument and read by a function of its own; anything
  // else is the map command.
  if (argv[0] === 'worker') return parseWorkerCommand(argv.slice(1), env);
  return parseMapCommand(argv);
}

function parseMapCommand(argv: readonly string[]): Command {
  // Not strict: unknown flags and missing values are reported below, in words that name the flag.
  const { tokens } = parseArgs({
    args: [...argv],
    options: OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values = new Map<OptionName, string[]>();
  const positionals: string[] = [];
  // The first mistake is told once --help and --version have had their say.
  let mistake: string | undefined;
  for (const token of tokens) {
    if (token.kind === 'positional') positionals.push(token.value);
    if (token.kind !== 'option') continue;
    if (!Object.hasOwn(OPTIONS, token.name)) {
      mistake ??= unknownOption(token.rawName);
      continue;
    }
    const option = token.name as OptionName;
    if (OPTIONS[option].type === 'string' && token.value === undefined) {
      mistake ??= `${flagOf(option)} needs a value: ${flagOf(option)} ${PLACEHOLDERS[option] ?? '<value>'}`;
    } else if (OPTIONS[option].type === 'boolean' && token.value !== undefined) {
      mistake ??= `${flagOf(option)} takes no value, got ${quote(token.value)}`;
    }
    const given = values.get(option) ?? [];
    given.push(token.value ?? '');
    values.set(option, given);
  }
  if (values.has('help')) return { kind: 'help' };
  if (values.has('version')) return { kind: 'version' };
  if (mistake !== undefined) throw new UsageError(mistake);
  for (const [option, given] of values) {
    if (given.length > 1 && option !== 'scope') {
      throw new UsageError(`${flagOf(option)} is given ${given.length} times; give it once`);
    }
  }
  const one = (option: OptionName): string | undefined => values.get(option)?.[0];
  const flag = (option: OptionName): boolean => values.has(option);

  if (flag('redis') && flag('workers')) {
    throw new UsageError("-n and --redis do not go together: with --redis, each worker's own -n sets its threads");
  }
  return {
    kind: 'map',
    function: functionSource(positionals, one('module')),
    workers: optional(one('workers'), (text) => wholeNumber('-n', text, 1)),
    chunksize: chunksizeOf(one('chunksize')),
    ordered: !flag('unordered'),
    json: flag('json'),
    progress: flag('progress'),
    scope: scopeOf(values.get('scope')),
    timeout: optional(one('timeout'), timeoutOf),
    retries: optional(one('retries'), (text) => wholeNumber('--retries', text, 0)) ?? 0,
    onError: onErrorOf(one('on-error')),
    redis: optional(one('redis'), redisUrlOf),
  };
}

const PLACEHOLDERS: Partial<Record<OptionName, string>> = {
  workers: '<count>',
  chunksize: '<lines|auto>',
  module: '<path[:export]>',
  scope: '<name=json>',
  timeout: '<ms>',
  retries: '<count>',
  'on-error': '<throw|return|skip>',
  redis: '<url>',
};

function flagOf(option: OptionName): string {
  return option === 'workers' ? '-n' : `--${option}`;
}

function unknownOption(rawName: string): string {
  const known = Object.keys(OPTIONS).map((name) => flagOf(name as OptionName));
  const near = rawName.startsWith('--') ? closest(rawName, known) : undefined;
  return `unknown option ${rawName}${near === undefined ? '' : ` (did you mean ${near}?)`}`;
}

function functionSource(positionals: readonly string[], module: string | undefined): FunctionSource {
  if (module !== undefined) {
    if (positionals.length > 0) {
      throw new UsageError(
        `give the function as text or with --module, not both (--module ${quote(module)} and ${quote(positionals[0] ?? '')})`,
      );
    }
    return moduleSource(module);
  }
  const [text, ...extra] = positionals;
  if (text === undefined || text.trim() === '') {
    throw new UsageError("missing the function to run, as in: parmap 'line => line.length' (or --module path:export)");
  }
  if (extra.length > 0) {
    throw new UsageError(
      `expected one function, got ${positionals.length} arguments (${positionals.map(quote).join(', ')}): quote the function as one argument`,
    );
  }
  return { kind: 'text', text };
}

/**
 * `path:export`, or a bare path for the default export. The export is what follows the last colon
 * when that is a name, so a Windows drive (`C:\score.js`) stays part of the path.
 */
export function moduleSource(given: string): FunctionSource {
  const colon = given.lastIndexOf(':');
  const name = colon === -1 ? '' : given.slice(colon + 1);
  const named = /^[A-Za-z_$][\w$]*$/.test(name);
  const path = named ? given.slice(0, colon) : given;
  if (path === '') throw new UsageError(`--module needs a path before the export name, got ${quote(given)}`);
  if (colon !== -1 && !named && /:$/.test(given)) {
    throw new UsageError(
      `--module ${quote(given)} ends with a colon: give the export name after it, or leave both out`,
    );
  }
  return { kind: 'module', path, export: named ? name : 'default' };
}

function optional<T>(text: string | undefined, parse: (text: string) => T): T | undefined {
  return text === undefined ? undefined : parse(text);
}

function wholeNumber(flag: string, text: string, least: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < least) {
    const what = least === 0 ? 'a whole number (0 or more)' : `a whole number, at least ${least}`;
    throw new UsageError(`${flag} expects ${what}, got ${quote(text)}`);
  }
  return value;
}

function chunksizeOf(text: string | undefined): number | 'auto' {
  if (text === undefined || text === 'auto') return 'auto';
  try {
    return wholeNumber('--chunksize', text, 1);
  } catch {
    throw new UsageError(`--chunksize expects a whole number of lines, at least 1, or auto, got ${quote(text)}`);
  }
}

function timeoutOf(text: string): number {
  const value = /^\s*\d+(\.\d+)?\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new UsageError(`--timeout expects a number of milliseconds above 0, got ${quote(text)}`);
  }
  return value;
}

function onErrorOf(text: string | undefined): OnErrorMode {
  if (text === undefined) return 'throw';
  const mode = ON_ERROR_MODES.find((each) => each === text);
  if (mode === undefined) {
    throw new UsageError(`--on-error expects throw, return or skip, got ${quote(text)}`);
  }
  return mode;
}

function scopeOf(entries: readonly string[] | undefined): Readonly<Record<string, unknown>> | undefined {
  if (entries === undefined) return undefined;
  const scope: Record<string, unknown> = {};
  for (const entry of entries) {
    const equals = entry.indexOf('=');
    if (equals === -1) {
      throw new UsageError(`--scope expects name=json, as in --scope factor=3; got ${quote(entry)} (no "=")`);
    }
    const name = entry.slice(0, equals).trim();
    const text = entry.slice(equals + 1);
    if (!isVariableName(name)) {
      throw new UsageError(`--scope ${quote(entry)}: ${quote(name)} cannot be a variable name in the function`);
    }
    if (Object.hasOwn(scope, name)) throw new UsageError(`--scope gives ${name} twice`);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new UsageError(
        `--scope ${name}: the value ${quote(text)} is not JSON (${reason}); a string needs JSON quotes, as in --scope ${name}='"text"'`,
      );
    }
    // Defined, not assigned: a name such as `__proto__` stays a plain key.
    Object.defineProperty(scope, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return scope;
}

/** A value quoted for a message: `'text'`, with quotes and control characters escaped. */
export function quote(text: string): string {
  return `'${JSON.stringify(text).slice(1, -1).replaceAll("'", "\\'")}'`;
}

/** The closest name within two edits, for "did you mean". */
function closest(given: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of names) {
    const distance = editDistance(given, name);
    if (distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** `--redis` as given, once checked as the library checks `backend.redis`, but named as the flag. */
function redisUrlOf(text: string): string {
  try {
    checkRedis(text);
  } catch {
    throw new UsageError(`--redis expects a URL such as redis://host:6379 (rediss:// for TLS), got ${quote(text)}`);
  }
  return text;
}
