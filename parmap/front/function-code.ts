/**
 * Turns `fn` and `scope` into the text a worker compiles once: the scope values as local constants,
 * then the function as an expression. Also finds the free variables of that text, so a function
 * that needs something from its surroundings fails with a clear error before any item runs.
 */
import { createRequire } from 'node:module';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ParmapScopeError } from '../errors.js';
import type { SourceFunction } from '../protocol.js';
import { IMPORT_META_NAME, IMPORT_NAME, isProvidedName } from '../worker/prelude.js';

/** What a worker needs to rebuild `fn`. */
export type FunctionCode = SourceFunction;

interface AstNode {
  readonly type: string;
  readonly start: number;
  readonly end: number;
  readonly [key: string]: unknown;
}

// acorn, eslint-scope and serialize-javascript cost milliseconds to load; only calls that send a
// function to workers pay for them, and only once.
const lazyRequire = createRequire(import.meta.url);
let acorn: { parse(text: string, options: object): AstNode } | undefined;
let eslintScope: { analyze(ast: AstNode, options: object): ScopeManager } | undefined;
let serializeJavascript: ((value: unknown, options?: object) => string) | undefined;
interface ScopeManager {
  readonly globalScope: { readonly through: readonly { readonly identifier: AstNode & { name: string } }[] };
}

const PARSE_OPTIONS = {
  ecmaVersion: 'latest',
  sourceType: 'module',
  allowReturnOutsideFunction: true,
  allowAwaitOutsideFunction: true,
  ranges: true,
} as const;

/**
 * The source text of `fn` as an expression. Refuses, with a TypeError saying what to do, functions
 * whose text cannot be rebuilt elsewhere.
 */
export function functionExpression(fn: (...args: never[]) => unknown, allowClass = false): string {
  const text = Function.prototype.toString.call(fn);
  const refuse = (why: string): TypeError =>
    new TypeError(
      `parmap cannot send \`fn\`${fn.name ? ` (${fn.name})` : ''} to a worker: ${why}. ` +
        'Pass an arrow function or function expression that does the work (it may call other code ' +
        'through scope, require or import), or use n: 1 to run in this thread.',
    );
  if (/\{\s*\[native code\]\s*\}\s*$/.test(text)) {
    throw refuse('it is a bound, native or proxied function, whose source text cannot be rebuilt');
  }
  if (/^class\b/.test(text)) {
    if (allowClass) return text;
    throw refuse('it is a class, which cannot be called without `new`');
  }
  acorn ??= lazyRequire('acorn') as typeof acorn;
  const parser = acorn as NonNullable<typeof acorn>;
  try {
    parser.parse(`(${text})`, PARSE_OPTIONS);
    return text;
  } catch {
    // Not an expression: a method (`twice(x) {...}`, `static`, `get`, computed key) is tried next.
  }
  const methodText = text.replace(/^static\s+/, '');
  try {
    const wrapped = `({${methodText}})`;
    const program = parser.parse(wrapped, PARSE_OPTIONS) as AstNode & { body: AstNode[] };
    const statement = program.body[0] as AstNode & { expression: AstNode & { properties: AstNode[] } };
    const property = statement.expression.properties[0] as AstNode & { value: AstNode };
    const value = property.value as AstNode & { async: boolean; generator: boolean };
    const head = `${value.async ? 'async ' : ''}${value.generator ? '*' : ''}`;
    // Renamed so a computed key (`[key](x) {...}`) needs no variable the worker lacks.
    return `({ ${head}method${wrapped.slice(value.start, -2)} }).method`;
  } catch {
    throw refuse(
      'its source text does not parse on its own (a class member that uses #private fields or ' +
        'needs its class cannot be rebuilt)',
    );
  }
}

/**
 * Builds the body a worker compiles: scope values that hold code (functions, classes, objects with
 * methods) as constants, so a scope function can use another scope value; then `return (fn)`.
 * Scope values that are plain data travel apart, by structured clone: faster for large data, and
 * exact (serialize-javascript turns NaN into null and typed arrays into plain objects).
 * `import()` and `import.meta` are rewritten so they resolve from the caller's file.
 */
export function buildFunctionCode(
  fn: (...args: never[]) => unknown,
  scope: Readonly<Record<string, unknown>> | undefined,
): FunctionCode {
  const declarations: string[] = [];
  const scopeData: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(scope ?? {})) {
    if (!holdsCode(value)) {
      scopeData[name] = value;
      continue;
    }
    serializeJavascript ??= lazyRequire('serialize-javascript') as typeof serializeJavascript;
    let text: string;
    try {
      text = (serializeJavascript as NonNullable<typeof serializeJavascript>)(value, { ignoreFunction: false });
    } catch (error) {
      throw new TypeError(
        `\`scope.${name}\` cannot be sent to workers: ${error instanceof Error ? error.message : String(error)}. ` +
          'Scope values may be data (also Map, Set, Date, RegExp, BigInt) and functions, but not circular.',
        { cause: error },
      );
    }
    if (typeof value === 'function') text = functionExpression(value as (...args: never[]) => unknown, true);
    declarations.push(`const ${name} = (${text});`);
  }
  const source = `${declarations.join('\n')}\nreturn (${functionExpression(fn)});`;
  const { text, freeNames } = analyze(source);
  const counters = freeNames.filter((name) => isCoverageCounter(name, text));
  return {
    kind: 'source',
    body: `"use strict";\n${text}\n//# sourceURL=parmap-fn.js`,
    freeNames: freeNames.filter((name) => !Object.hasOwn(scopeData, name) && !counters.includes(name)),
    scopeData,
    coverageCounters: counters,
  };
}

/**
 * Whether a value holds a function or a symbol anywhere, so structured clone cannot carry it. A
 * walk in JavaScript, cheap next to cloning (a million numbers take about 2 ms).
 */
export function holdsCode(value: unknown, seen = new Set<object>()): boolean {
  if (typeof value === 'function' || typeof value === 'symbol') return true;
  if (typeof value !== 'object' || value === null || seen.has(value)) return false;
  seen.add(value);
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof Date || value instanceof RegExp) {
    return false;
  }
  if (Array.isArray(value)) {
    for (const element of value) {
      const type = typeof element;
      if (type === 'function' || type === 'symbol' || (type === 'object' && holdsCode(element, seen))) return true;
    }
    return false;
  }
  if (value instanceof Map) {
    for (const [key, entry] of value) if (holdsCode(key, seen) || holdsCode(entry, seen)) return true;
    return false;
  }
  if (value instanceof Set) {
    for (const entry of value) if (holdsCode(entry, seen)) return true;
    return false;
  }
  for (const key of Object.keys(value)) if (holdsCode((value as Record<string, unknown>)[key], seen)) return true;
  return false;
}

/**
 * Whether every use of `name` in the text is an istanbul coverage counter (`name().s[3]++`,
 * `.f[0]`, `.b[1][0]`): instrumentation recognised by how it is used, never by its name, so a
 * variable of the user's that happens to be called `cov_x` is still a free variable.
 */
function isCoverageCounter(name: string, text: string): boolean {
  const escaped = name.replace(/\$/g, '\\$');
  const uses = text.match(new RegExp(`(?<![\\w$.])${escaped}(?![\\w$])`, 'g'))?.length ?? 0;
  const counts = text.match(new RegExp(`(?<![\\w$.])${escaped}\\(\\)\\.(?:s|f|b|bT)\\[`, 'g'))?.length ?? 0;
  return uses > 0 && uses === counts;
}

/**
 * Throws a ParmapScopeError for free names that no worker can have: not a global here, not
 * provided by the worker prelude. (A worker checks again against its own globals.)
 */
export function checkFreeNames(freeNames: readonly string[], isGlobal: (name: string) => boolean): void {
  const missing = freeNames.filter((name) => !isProvidedName(name) && !isGlobal(name));
  if (missing.length > 0) throw new ParmapScopeError(missing);
}

function analyze(source: string): { text: string; freeNames: string[] } {
  acorn ??= lazyRequire('acorn') as typeof acorn;
  eslintScope ??= lazyRequire('eslint-scope') as typeof eslintScope;
  const ast = (acorn as NonNullable<typeof acorn>).parse(source, PARSE_OPTIONS);
  const replacements: { start: number; end: number; text: string }[] = [];
  const typeofOperands = new Set<AstNode>();
  walk(ast, (node) => {
    if (node.type === 'ImportExpression') {
      replacements.push({ start: node.start, end: node.start + 'import'.length, text: IMPORT_NAME });
    } else if (node.type === 'MetaProperty' && (node.meta as { name: string }).name === 'import') {
      replacements.push({ start: node.start, end: node.end, text: IMPORT_META_NAME });
    } else if (node.type === 'UnaryExpression' && node.operator === 'typeof') {
      typeofOperands.add(node.argument as AstNode);
    }
  });
  const freeNames = new Set<string>();
  const manager = (eslintScope as NonNullable<typeof eslintScope>).analyze(ast, {
    ecmaVersion: 2022,
    sourceType: 'module',
    fallback: 'iteration',
  });
  // `typeof x` is how code asks whether x exists; it is no use of x.
  for (const reference of manager.globalScope.through) {
    if (!typeofOperands.has(reference.identifier)) freeNames.add(reference.identifier.name);
  }
  let text = source;
  for (const { start, end, text: replacement } of replacements.sort((a, b) => b.start - a.start)) {
    text = text.slice(0, start) + replacement + text.slice(end);
    freeNames.add(replacement);
  }
  return { text, freeNames: [...freeNames] };
}

function walk(node: AstNode, visit: (node: AstNode) => void): void {
  visit(node);
  for (const key of Object.keys(node)) {
    const child = node[key];
    if (Array.isArray(child)) {
      for (const item of child) if (isNode(item)) walk(item, visit);
    } else if (isNode(child)) walk(child, visit);
  }
}

function isNode(value: unknown): value is AstNode {
  return typeof value === 'object' && value !== null && typeof (value as AstNode).type === 'string';
}

/**
 * The file that called parmap, so `require`, `import()` and `__dirname` inside fn resolve as they
 * would there. Falls back to the working directory (REPL, eval).
 */
export function callerFile(skip: (...args: never[]) => unknown): string {
  const savedPrepare = Error.prepareStackTrace;
  const savedLimit = Error.stackTraceLimit;
  let file: string | null | undefined;
  try {
    Error.stackTraceLimit = 1;
    Error.prepareStackTrace = (_error, sites) => sites;
    const holder: { stack?: NodeJS.CallSite[] } = {};
    Error.captureStackTrace(holder, skip);
    file = holder.stack?.[0]?.getFileName();
  } finally {
    Error.prepareStackTrace = savedPrepare;
    Error.stackTraceLimit = savedLimit;
  }
  if (typeof file === 'string' && file.startsWith('file:')) return fileURLToPath(file);
  if (typeof file === 'string' && isAbsolute(file)) return file;
  return join(process.cwd(), '[parmap caller]');
}
