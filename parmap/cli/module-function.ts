/**
 * The function given with `--module path[:export]`. A module the command cannot use (no such
 * file, a syntax error, an import that throws, no such export) is a usage error that names it,
 * with exit code 2, not a failed run in the library's words.
 *
 * Only what needs no evaluation is checked before the input is read: that the file exists. The
 * module itself is imported up front only with `-n 1`, where the run imports it in this thread
 * anyway (Node keeps one instance of a module per thread), so even an empty input finds a module
 * that cannot be loaded. With workers, importing it here too would run its top-level code once
 * more than the run needs: a module that loads a large model at its top would cost one more copy
 * of it, and its load time, before any work starts. The workers import it, and when they cannot
 * prepare the call the library says so with a {@link ParmapSetupError}, which
 * {@link moduleSetupProblem} words as the same usage error. An empty input then imports nothing,
 * and the run succeeds.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { FunctionFromModule, ParmapSetupError } from '../../index.js';
import { quote, UsageError } from './arguments.js';
import { thrownText, withoutPrefix } from './failures.js';
import { settledEvaluation } from './function-text.js';

/** A `--module` as the command line gives it: a path from the working directory, and an export. */
export interface ModuleSource {
  readonly path: string;
  readonly export: string;
}

/** The module as the command line gave it: `--module './score.mjs:score'`. */
function given(source: ModuleSource): string {
  return `--module ${quote(source.export === 'default' ? source.path : `${source.path}:${source.export}`)}`;
}

/**
 * The reference the library imports the function by, in each worker, once the file is known to
 * exist; nothing is imported here.
 * @throws UsageError when there is no file at the path.
 */
export function moduleReference(source: ModuleSource, cwd: string): FunctionFromModule {
  const path = resolve(cwd, source.path);
  if (!existsSync(path)) throw new UsageError(`${given(source)}: there is no file at ${path}`);
  return { module: pathToFileURL(path).href, export: source.export };
}

/**
 * Imports the module in this thread and checks that the export is a function (for `-n 1`, where
 * the run imports it here anyway); gives the reference the library imports it by.
 * @throws UsageError naming the module and what is wrong with it.
 */
export async function functionFromModule(source: ModuleSource, cwd: string): Promise<FunctionFromModule> {
  const reference = moduleReference(source, cwd);
  let namespace: Readonly<Record<string, unknown>>;
  try {
    const { value, late } = await settledEvaluation(given(source), async () => ({
      namespace: (await import(reference.module as string)) as Record<string, unknown>,
    }));
    if (late.length > 0) throw late[0];
    namespace = value.namespace;
  } catch (error) {
    throw await cannotBeLoaded(error, source, cwd);
  }
  const value = Object.hasOwn(namespace, source.export) ? namespace[source.export] : undefined;
  if (typeof value !== 'function') throw new UsageError(`${given(source)}: ${missingExport(namespace, source)}`);
  return reference;
}

/**
 * The usage error for a module the workers could not prepare the call from, told as
 * {@link functionFromModule} tells it where it can. What the worker threw is the error's `cause`:
 * the import's error, told in the same words. A missing export throws nothing, and its functions
 * are known only to the workers, whose own words, which name them, are then given after the
 * module. Nothing is imported here.
 */
export async function moduleSetupProblem(
  error: ParmapSetupError,
  source: ModuleSource,
  cwd: string,
): Promise<UsageError> {
  if (error.cause !== undefined) return cannotBeLoaded(error.cause, source, cwd);
  return new UsageError(`${given(source)}: ${oneLine(withoutPrefix(error.message))}`);
}

/** `--module './broken.mjs' cannot be loaded: Error: no database here (at broken.mjs:2)`. */
async function cannotBeLoaded(error: unknown, source: ModuleSource, cwd: string): Promise<UsageError> {
  const path = resolve(cwd, source.path);
  const where = placeInStack(error, cwd) ?? (await syntaxErrorPlace(error, path, cwd));
  return new UsageError(
    `${given(source)} cannot be loaded: ${oneLine(thrownText(error))}${where === undefined ? '' : ` (at ${where})`}`,
  );
}

/** Why the module has no function by that name, and which name to give instead. */
function missingExport(namespace: Readonly<Record<string, unknown>>, source: ModuleSource): string {
  const functions = Object.keys(namespace).filter((name) => typeof namespace[name] === 'function');
  const problem = Object.hasOwn(namespace, source.export)
    ? `${source.export === 'default' ? 'the default export' : `the export ${quote(source.export)}`} is ${kindOf(namespace[source.export])}, not a function`
    : source.export === 'default'
      ? 'the module has no default export'
      : `the module has no export named ${quote(source.export)}`;
  if (functions.length === 0) return `${problem}, and exports no function: export the function to run`;
  const named = functions.find((name) => name !== 'default');
  const advice =
    named === undefined
      ? `leave the name out for the default export, as in --module ${source.path}`
      : `name one after a colon, as in --module ${source.path}:${named}`;
  return `${problem} (its functions: ${functions.join(', ')}): ${advice}`;
}

function kindOf(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  const type = typeof value;
  return `${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type}`;
}

/** parmap's own files (this command's, the library's, the workers'): never the place of an error. */
const OWN_FILES = fileURLToPath(new URL('../', import.meta.url));

/**
 * Where in the user's files the error is, as `lib/score.mjs:2`: the head of a CommonJS syntax
 * error's stack (the file and line, then the source line), or the first frame in a file that is
 * not parmap's own (an error from a worker has the worker's frames below the module's).
 */
function placeInStack(error: unknown, cwd: string): string | undefined {
  let stack: unknown;
  try {
    stack = (error as { readonly stack?: unknown } | null)?.stack;
  } catch {
    return undefined;
  }
  if (typeof stack !== 'string') return undefined;
  // Node's own frames (`node:internal/...`) are neither URLs of files nor absolute paths.
  const frames = /(?<=^|[\s(])(file:\/\/\/[^\s()]+?|\/[^\s():]+):(\d+)(?::\d+)?(?=[\s)]|$)/gm;
  for (const [, file = '', line = ''] of stack.matchAll(frames)) {
    const path = file.startsWith('file:') ? fileURLToPath(file) : file;
    if (!path.startsWith(OWN_FILES)) return `${shownPath(path, cwd)}:${line}`;
  }
  return undefined;
}

/**
 * Where an ES module's syntax error is: Node's error for a module that does not parse carries no
 * place (only a crash prints it), so the file is parsed again here. When it parses, the syntax
 * error is in a module it imports, and no place is given rather than a wrong one.
 */
async function syntaxErrorPlace(error: unknown, path: string, cwd: string): Promise<string | undefined> {
  if (!(error instanceof SyntaxError) || !/\.m?js$/.test(path)) return undefined;
  try {
    const { parse } = await import('acorn');
    parse(readFileSync(path, 'utf8'), { ecmaVersion: 'latest', sourceType: 'module', allowHashBang: true });
  } catch (parseError) {
    const place = (parseError as { readonly loc?: { readonly line?: unknown; readonly column?: unknown } }).loc;
    if (typeof place?.line === 'number' && typeof place.column === 'number') {
      return `${shownPath(path, cwd)}:${place.line}:${place.column + 1}`;
    }
  }
  return undefined;
}

/** A path from the working directory when it is under it, else as it is. */
function shownPath(path: string, cwd: string): string {
  const shown = relative(cwd, path);
  return shown.startsWith('..') || isAbsolute(shown) ? path : shown;
}

/** A message on one line: an import error's message may hold the source line and a caret. */
function oneLine(text: string): string {
  return text.split(/\r?\n/, 1)[0] ?? text;
}
