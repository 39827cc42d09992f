/**
 * Turns `fn` and `scope` into the text a worker compiles once: the scope values as local constants,
 * then the function as an expression. Also finds the free variables of that text, so a function
 * that needs something from its surroundings fails with a clear error before any item runs.
 */
import { readFileSync, statSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { basename, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ParmapScopeError } from '../errors.js';
import type { SourceFunction } from '../protocol.js';
import { IMPORT_META_NAME, IMPORT_NAME, isProvidedName } from '../worker/prelude.js';
import { type AstNode, declaredAround, unresolvedReferences } from './free-names.js';

/** What a worker needs to rebuild `fn`. */
export type FunctionCode = SourceFunction;

type Program = AstNode & { readonly body: readonly AstNode[] };

// acorn and serialize-javascript cost milliseconds to load; only calls that send a function to
// workers pay for them, and only once.
const lazyRequire = createRequire(import.meta.url);
let acorn: { parse(text: string, options: object): AstNode } | undefined;
let serializeJavascript: ((value: unknown, options?: object) => string) | undefined;

const PARSE_OPTIONS = {
  ecmaVersion: 'latest',
  sourceType: 'module',
  allowReturnOutsideFunction: true,
  allowAwaitOutsideFunction: true,
} as const;

// Workers compile fn in strict mode; sloppy-mode code is parsed this way only to say what it relies on.
const SLOPPY_OPTIONS = { ...PARSE_OPTIONS, sourceType: 'script' } as const;

function parser(): NonNullable<typeof acorn> {
  acorn ??= lazyRequire('acorn') as typeof acorn;
  return acorn as NonNullable<typeof acorn>;
}

function parse(text: string, options: object): Program | undefined {
  try {
    return parser().parse(text, options) as Program;
  } catch {
    return undefined;
  }
}

/**
 * The source text of `fn` as an expression. Refuses, with a TypeError saying what to do, functions
 * whose text cannot be rebuilt elsewhere, or would mean something else there.
 */
export function functionExpression(fn: (...args: never[]) => unknown, allowClass = false): string {
  const text = Function.prototype.toString.call(fn);
  const refuse = (why: string): TypeError =>
    new TypeError(
      `parmap cannot send \`fn\`${fn.name ? ` (${fn.name})` : ''} to a worker: ${why}. ` +
        'Pass an arrow function or function expression that does the work (it may call other code ' +
        'through scope, require or import), or use n: 1 without `scope` to run it in this thread as it is.',
    );
  if (/\{\s*\[native code\]\s*\}\s*$/.test(text)) {
    throw refuse('it is a bound, native or proxied function, whose source text cannot be rebuilt');
  }
  if (/^class\b/.test(text)) {
    if (allowClass) return text;
    throw refuse('it is a class, which cannot be called without `new`');
  }
  const parsed = parseFunction(text);
  if (parsed === undefined) throw refuse(unparsableReason(text));
  // V8 gives only sloppy-mode functions an own `caller`, and it cannot be deleted.
  const problem = misuseOf(parsed, Object.hasOwn(fn, 'caller'));
  if (problem !== undefined) throw refuse(problem);
  return parsed.expression;
}

interface ParsedFunction {
  /** The text a worker evaluates to get the function. */
  readonly expression: string;
  readonly node: AstNode;
  readonly program: Program;
  readonly method: boolean;
}

function parseFunction(text: string): ParsedFunction | undefined {
  const program = parse(`(${text})`, PARSE_OPTIONS);
  if (program !== undefined) return { expression: text, node: expressionOf(program), program, method: false };
  // Not an expression: a method (`twice(x) {...}`, `static`, `get`, computed key) is tried next.
  const wrapped = `({${text.replace(/^static\s+/, '')}})`;
  const methodProgram = parse(wrapped, PARSE_OPTIONS);
  if (methodProgram === undefined) return undefined;
  const [property] = expressionOf(methodProgram).properties as (AstNode & { value: AstNode })[];
  const value = property?.value as AstNode & { async: boolean; generator: boolean };
  const head = `${value.async ? 'async ' : ''}${value.generator ? '*' : ''}`;
  // Renamed so a computed key (`[key](x) {...}`) needs no variable the worker lacks.
  const expression = `({ ${head}method${wrapped.slice(value.start, -2)} }).method`;
  return { expression, node: value, program: methodProgram, method: true };
}

function expressionOf(program: Program): AstNode {
  return (program.body[0] as AstNode & { expression: AstNode }).expression;
}

const USES_SUPER =
  'it uses `super`, which only works inside its class (or object literal), and a worker rebuilds fn ' +
  'from its text alone';

const SLOPPY = 'it is sloppy-mode code (from a CommonJS file or `new Function` without "use strict") that';

/** Why a function whose text does not parse as strict code on its own cannot be sent. */
function unparsableReason(text: string): string {
  if (parse(`(${text})`, { ...PARSE_OPTIONS, allowSuperOutsideMethod: true }) !== undefined) return USES_SUPER;
  const sloppy = parse(`(${text})`, SLOPPY_OPTIONS) ?? parse(`({${text.replace(/^static\s+/, '')}})`, SLOPPY_OPTIONS);
  if (sloppy !== undefined && contains(sloppy, (node) => node.type === 'WithStatement')) {
    return `${SLOPPY} uses \`with\`, which the strict mode a worker runs fn in does not have`;
  }
  if (sloppy !== undefined) {
    return (
      `${SLOPPY} does not parse in the strict mode a worker runs fn in (a legacy octal literal such as ` +
      '010, `delete` of a variable, duplicate parameter names, or a reserved word such as `let` as a name)'
    );
  }
  return (
    'its source text does not parse on its own (a class member that uses #private fields or ' +
    'needs its class cannot be rebuilt)'
  );
}

/** What makes a function that parses mean something else when rebuilt alone in strict mode. */
function misuseOf(parsed: ParsedFunction, sloppy: boolean): string | undefined {
  if (parsed.method && inOwnCode(parsed.node, (node) => node.type === 'Super')) return USES_SUPER;
  if (parsed.node.type === 'ArrowFunctionExpression' && inOwnCode(parsed.node, isArgumentsReference)) {
    return (
      'it is an arrow function that uses `arguments`, which belong to the function around it, not to ' +
      'fn, and a worker has no such function; take the values as parameters instead (`(...args) => ...`)'
    );
  }
  return sloppy ? sloppyReliance(parsed) : undefined;
}

// Functions and classes have their own `super` and `arguments`; arrows share their surroundings'.
const OWN_CONTEXT = new Set(['FunctionExpression', 'FunctionDeclaration', 'ClassExpression', 'ClassDeclaration']);

/** Whether `test` holds for some node inside `parent` that is not inside a nested function or class. */
function inOwnCode(parent: AstNode, test: (node: AstNode, parent: AstNode) => boolean): boolean {
  for (const child of children(parent)) {
    if (test(child, parent)) return true;
    if (!OWN_CONTEXT.has(child.type) && inOwnCode(child, test)) return true;
  }
  return false;
}

/** `arguments` as a variable, not as a property name or label (strict code cannot declare it). */
function isArgumentsReference(node: AstNode, parent: AstNode): boolean {
  if (node.type !== 'Identifier' || node.name !== 'arguments') return false;
  if (parent.computed === true || parent.shorthand === true) return true;
  const isName = (parent.type === 'MemberExpression' && parent.property === node) || parent.key === node;
  return !isName && parent.label !== node;
}

/** What code that parses in strict mode relies on sloppy mode for, at run time. */
function sloppyReliance(parsed: ParsedFunction): string | undefined {
  if (contains(parsed.node, isCalleeAccess)) {
    return `${SLOPPY} uses \`arguments.callee\`, which throws in strict mode: call the function by a name of its own`;
  }
  const undeclared = unresolvedReferences(parsed.program, 'script')
    .filter((reference) => reference.writeOnly)
    .map((reference) => reference.identifier.name)
    .filter((name, index, names) => !(name in globalThis) && names.indexOf(name) === index);
  if (undeclared.length === 0) return undefined;
  const them = undeclared.length > 1 ? 'them' : 'it';
  return (
    `${SLOPPY} assigns to ${quoted(undeclared)} without declaring ${them}: sloppy mode makes such a ` +
    `name a global, the strict mode a worker runs fn in throws. Declare ${them} inside fn`
  );
}

function isCalleeAccess(node: AstNode): boolean {
  if (node.type !== 'MemberExpression') return false;
  const object = node.object as AstNode;
  const property = node.property as AstNode;
  const key = node.computed ? property.value : property.name;
  return object.type === 'Identifier' && object.name === 'arguments' && (key === 'callee' || key === 'caller');
}

function quoted(names: readonly string[]): string {
  return names.map((name) => `\`${name}\``).join(', ');
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
  const free = freeNames.filter((name) => !Object.hasOwn(scopeData, name) && !counters.includes(name));
  recordRewrittenImports(free, text);
  return {
    kind: 'source',
    body: `"use strict";\n${text}\n//# sourceURL=parmap-fn.js`,
    freeNames: free,
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

// Test runners that rewrite imports (vite SSR, vitest) leave `__vite_ssr_import_0__.helper` in fn's
// text. The error names `helper`, read from the text, which checkFreeNames is not given: it finds
// the members here, by the free-names array that buildFunctionCode returned.
const REWRITTEN_IMPORT = /^__vi(?:te_ssr)?_import_\d+__$/;
const rewrittenMembers = new WeakMap<readonly string[], ReadonlyMap<string, readonly string[]>>();

function recordRewrittenImports(freeNames: readonly string[], text: string): void {
  const members = new Map<string, string[]>();
  for (const name of freeNames.filter((each) => REWRITTEN_IMPORT.test(each))) {
    const uses = text.matchAll(new RegExp(`(?<![\\w$.])${name}\\s*\\.\\s*([\\w$]+)`, 'g'));
    members.set(name, [...new Set(Array.from(uses, (use) => use[1] as string))]);
  }
  if (members.size > 0) rewrittenMembers.set(freeNames, members);
}

/**
 * Throws a ParmapScopeError for free names that no worker can have: not a global here, not
 * provided by the worker prelude (a worker checks again against its own globals), or a global
 * that the caller's file hides with a binding of its own, which a worker would silently swap for
 * its global. `file` is the caller's file; by default, the one of the parmap call being prepared.
 */
export function checkFreeNames(
  freeNames: readonly string[],
  isGlobal: (name: string) => boolean,
  file: string | undefined = pendingCaller,
): void {
  // A provided name the caller also binds (`const require = createRequire(import.meta.url)`) is
  // resolved from the same file on workers.
  const candidates = freeNames.filter((name) => !isProvidedName(name));
  if (candidates.length === 0) return;
  const bindings = file === undefined ? NO_BINDINGS : callerBindings(file);
  const missing = candidates.filter((name) => !isGlobal(name) || hidesGlobal(name, bindings.get(name)));
  if (missing.length === 0) return;
  throw scopeError(missing, { bindings, isGlobal, file, members: rewrittenMembers.get(freeNames) });
}

interface ScopeErrorContext {
  readonly bindings: Bindings;
  readonly isGlobal: (name: string) => boolean;
  readonly file: string | undefined;
  readonly members: ReadonlyMap<string, readonly string[]> | undefined;
}

const MODULE_FUNCTION = "parmap({ module: new URL('./file.js', import.meta.url), export: 'name' }, items)";

/** The error for missing names, with advice that fits how each got into fn's surroundings. */
function scopeError(missing: readonly string[], context: ScopeErrorContext): ParmapScopeError {
  const rewritten = missing.filter((name) => REWRITTEN_IMPORT.test(name));
  const imported = missing.filter((name) => context.bindings.get(name)?.kind === 'import');
  const plain = missing.filter((name) => !rewritten.includes(name) && !imported.includes(name));
  const hiding = plain.filter((name) => context.bindings.has(name) && context.isGlobal(name));
  const helpers = rewritten.flatMap((name) => helpersOf(name, context));
  const names = [...new Set(missing.flatMap((name) => (rewritten.includes(name) ? helpersOf(name, context) : [name])))];
  if (rewritten.length + imported.length + hiding.length === 0) return new ParmapScopeError(names);
  const advice = [
    hiding.length > 0 ? hidingAdvice(hiding, context.file) : '',
    plain.length > 0 ? `Pass ${themOf(plain)} with the scope option ({ scope: { ${plain.join(', ')} } }).` : '',
    imported.length > 0 ? importAdvice(imported, context.bindings) : '',
    rewritten.length > 0 ? rewrittenAdvice(helpers) : '',
    'Or use n: 1 without `scope` to run fn in this thread as it is.',
  ];
  return new ParmapScopeError(names, advice.filter((sentence) => sentence !== '').join(' '));
}

function helpersOf(name: string, context: ScopeErrorContext): readonly string[] {
  const members = context.members?.get(name) ?? [];
  return members.length > 0 ? members : [name];
}

function themOf(names: readonly string[]): string {
  return names.length > 1 ? 'them' : 'it';
}

function hidingAdvice(names: readonly string[], file: string | undefined): string {
  const where = file === undefined ? 'the calling file' : basename(file);
  const [is, it, hides] = names.length > 1 ? ['are', 'they', 'hide'] : ['is', 'it', 'hides'];
  return (
    `${quoted(names)} ${is} declared at the top of ${where}, where ${it} ${hides} the global of that name, ` +
    'and a worker would use its own global instead.'
  );
}

function importAdvice(names: readonly string[], bindings: Bindings): string {
  const imports = names.map((name) => `\`${importInside(name, bindings.get(name))}\``).join(', ');
  return (
    `${quoted(names)} ${names.length > 1 ? 'are' : 'is'} imported, and scope cannot carry an import: a ` +
    'function or class would travel as bare text, without the module it needs. ' +
    `Import ${themOf(names)} inside fn instead, making fn async (${imports}), or run a function from a module: ` +
    `${MODULE_FUNCTION}.`
  );
}

/** The statement that imports `name` inside an async fn as the caller's file imports it. */
function importInside(name: string, binding: Binding | undefined): string {
  if (binding?.kind !== 'import') return `const { ${name} } = await import('...')`;
  const from = `await import('${binding.from.replace(/['\\]/g, '\\$&')}')`;
  if (binding.imported === '*') return `const ${name} = ${from}`;
  return binding.imported === name ? `const { ${name} } = ${from}` : `const { ${binding.imported}: ${name} } = ${from}`;
}

function rewrittenAdvice(helpers: readonly string[]): string {
  const [first] = helpers;
  return (
    `${quoted(helpers)} ${helpers.length > 1 ? 'are' : 'is'} imported, and the test runner (vite or vitest) ` +
    'rewrote the import into a name no worker has. ' +
    `Pass ${themOf(helpers)} in scope under a name of ${helpers.length > 1 ? 'their' : 'its'} own, as the ` +
    `runner rewrites every use of the imported name (\`const run = ${first}\`, then { scope: { run } } and ` +
    `call run in fn), or run a function from a module: ${MODULE_FUNCTION}.`
  );
}

/** How the caller's file binds a name at its top level; `imported` is `default`, `*` or an export. */
type Binding =
  | { readonly kind: 'local' }
  | { readonly kind: 'import'; readonly from: string; readonly imported: string };
type Bindings = ReadonlyMap<string, Binding>;

const LOCAL: Binding = { kind: 'local' };
const NO_BINDINGS: Bindings = new Map();

/**
 * Whether the caller's binding of a global's name is something else than that global. A built-in
 * module's export that is the global itself (`import process from 'node:process'`,
 * `import { Buffer } from 'node:buffer'`) is what a worker's global is too.
 */
function hidesGlobal(name: string, binding: Binding | undefined): boolean {
  if (binding === undefined) return false;
  if (binding.kind !== 'import' || binding.imported === '*' || !isBuiltin(binding.from)) return true;
  const exports = process.getBuiltinModule(binding.from) as unknown as Record<string, unknown> | undefined;
  const value = binding.imported === 'default' ? exports : exports?.[binding.imported];
  return value === undefined || value !== (globalThis as Record<string, unknown>)[name];
}

const fileBindings = new Map<string, { readonly mtimeMs: number; readonly bindings: Bindings }>();

/** The top-level bindings of a file, parsed once per version of it. */
function callerBindings(file: string): Bindings {
  try {
    const stats = statSync(file, { throwIfNoEntry: false });
    if (stats === undefined || !stats.isFile()) return NO_BINDINGS;
    const cached = fileBindings.get(file);
    if (cached?.mtimeMs === stats.mtimeMs) return cached.bindings;
    const bindings = topLevelBindings(readFileSync(file, 'utf8'));
    fileBindings.set(file, { mtimeMs: stats.mtimeMs, bindings });
    return bindings;
  } catch {
    // A file that cannot be read hides nothing we could know of.
    return NO_BINDINGS;
  }
}

function topLevelBindings(text: string): Bindings {
  const program = parse(text, PARSE_OPTIONS) ?? parse(text, SLOPPY_OPTIONS);
  if (program === undefined) return scannedBindings(text);
  const bindings = new Map<string, Binding>();
  for (const statement of program.body) {
    const exported = statement.type.startsWith('Export') && isNode(statement.declaration);
    addDeclaration(bindings, exported ? (statement.declaration as AstNode) : statement);
  }
  return bindings;
}

function addDeclaration(bindings: Map<string, Binding>, node: AstNode): void {
  if (node.type === 'ImportDeclaration') {
    const from = String((node.source as AstNode).value);
    for (const specifier of node.specifiers as AstNode[]) {
      const local = (specifier.local as AstNode).name as string;
      bindings.set(local, { kind: 'import', from, imported: importedName(specifier) });
    }
  } else if (node.type === 'VariableDeclaration') {
    for (const declarator of node.declarations as AstNode[]) addDeclarator(bindings, declarator);
  } else if (isNode(node.id) && (node.type === 'FunctionDeclaration' || node.type === 'ClassDeclaration')) {
    bindings.set(node.id.name as string, LOCAL);
  }
}

function importedName(specifier: AstNode): string {
  if (specifier.type === 'ImportDefaultSpecifier') return 'default';
  if (specifier.type === 'ImportNamespaceSpecifier') return '*';
  const imported = specifier.imported as AstNode;
  return String(imported.name ?? imported.value);
}

/** `const x = ...`, where `require('m')`, `await import('m')` or a member of either is an import. */
function addDeclarator(bindings: Map<string, Binding>, declarator: AstNode): void {
  const id = declarator.id as AstNode;
  const source = isNode(declarator.init) ? requiredModule(declarator.init) : undefined;
  if (source === undefined) {
    for (const name of patternNames(id)) bindings.set(name, LOCAL);
  } else if (id.type === 'ObjectPattern' && source.member === undefined) {
    for (const property of id.properties as AstNode[]) {
      const key = property.type === 'Property' && !property.computed ? (property.key as AstNode) : undefined;
      const imported = key === undefined ? '*' : String(key.name ?? key.value);
      for (const name of patternNames(property)) bindings.set(name, { kind: 'import', from: source.from, imported });
    }
  } else {
    const imported = source.member ?? source.whole;
    for (const name of patternNames(id)) bindings.set(name, { kind: 'import', from: source.from, imported });
  }
}

interface RequiredModule {
  readonly from: string;
  /** What the whole module is as an import: `require` gives the default export, `import()` all. */
  readonly whole: 'default' | '*';
  readonly member?: string;
}

function requiredModule(init: AstNode): RequiredModule | undefined {
  if (init.type === 'MemberExpression' && !init.computed && isNode(init.object)) {
    const whole = requiredModule(init.object);
    return whole && { ...whole, member: String((init.property as AstNode).name) };
  }
  const call = init.type === 'AwaitExpression' ? (init.argument as AstNode) : init;
  const specifier = call.type === 'ImportExpression' ? call.source : (call.arguments as AstNode[] | undefined)?.[0];
  if (!isNode(specifier) || specifier.type !== 'Literal' || typeof specifier.value !== 'string') return undefined;
  if (call.type === 'ImportExpression') return init === call ? undefined : { from: specifier.value, whole: '*' };
  const callee = call.callee as AstNode | undefined;
  const isRequire = call.type === 'CallExpression' && callee?.type === 'Identifier' && callee.name === 'require';
  return isRequire ? { from: specifier.value, whole: 'default' } : undefined;
}

function patternNames(node: AstNode): string[] {
  switch (node.type) {
    case 'Identifier':
      return [node.name as string];
    case 'Property':
      return patternNames(node.value as AstNode);
    case 'ObjectPattern':
      return (node.properties as AstNode[]).flatMap(patternNames);
    case 'ArrayPattern':
      return (node.elements as (AstNode | null)[]).flatMap((element) => (element ? patternNames(element) : []));
    case 'AssignmentPattern':
      return patternNames(node.left as AstNode);
    case 'RestElement':
      return patternNames(node.argument as AstNode);
    default:
      return [];
  }
}

// For files acorn cannot parse (TypeScript, JSX): statements at the start of a line, read by
// pattern. What binds nothing at run time (`declare`, `import type`, interfaces) matches none.
const IMPORT_LINE = /^import\s+(?!type\s)([^'";]*?)\s*from\s*['"]([^'"]+)['"]/gm;
const IMPORT_REQUIRE_LINE = /^(?:export\s+)?import\s+([\w$]+)\s*=\s*require\(\s*['"]([^'"]+)['"]\s*\)/gm;
const VARIABLE_LINE = /^(?:export\s+)?(?:const|let|var)\s+([\w$]+|\{[^}]*\}|\[[^\]]*\])([^\n]*)/gm;
const NAMED_LINE =
  /^(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:function(?:\s*\*\s*|\s+)|(?:abstract\s+)?class\s+|(?:const\s+)?enum\s+|namespace\s+)([\w$]+)/gm;
const REQUIRE_CALL = /^[^=]*=\s*(?:(await\s+import)|require)\(\s*['"]([^'"]+)['"]\s*\)(?:\.([\w$]+))?/;

function scannedBindings(text: string): Bindings {
  const bindings = new Map<string, Binding>();
  for (const [, clause = '', from = ''] of text.matchAll(IMPORT_LINE)) addImportClause(bindings, clause, from);
  for (const [, name = '', from = ''] of text.matchAll(IMPORT_REQUIRE_LINE)) {
    bindings.set(name, { kind: 'import', from, imported: 'default' });
  }
  for (const [, pattern = '', rest = ''] of text.matchAll(VARIABLE_LINE)) addScannedVariable(bindings, pattern, rest);
  for (const [, name = ''] of text.matchAll(NAMED_LINE)) bindings.set(name, LOCAL);
  return bindings;
}

/** `name`, `* as name`, `{ a, b as c, type T }`, or a default and one of the others. */
function addImportClause(bindings: Map<string, Binding>, clause: string, from: string): void {
  const defaultName = /^([\w$]+)\s*(?:,|$)/.exec(clause)?.[1];
  if (defaultName !== undefined) bindings.set(defaultName, { kind: 'import', from, imported: 'default' });
  const namespace = /\*\s*as\s+([\w$]+)/.exec(clause)?.[1];
  if (namespace !== undefined) bindings.set(namespace, { kind: 'import', from, imported: '*' });
  for (const part of /\{([^}]*)\}/.exec(clause)?.[1]?.split(',') ?? []) {
    const named = /^\s*(?!type\s)([\w$]+)(?:\s+as\s+([\w$]+))?\s*$/.exec(part);
    if (named?.[1] !== undefined) bindings.set(named[2] ?? named[1], { kind: 'import', from, imported: named[1] });
  }
}

/** `const x`, `const { a, b: c }` or `const [a, b]`; nested patterns are left out. */
function addScannedVariable(bindings: Map<string, Binding>, pattern: string, rest: string): void {
  const source = REQUIRE_CALL.exec(rest);
  const entries = /^[\w$]+$/.test(pattern)
    ? [[undefined, pattern] as const]
    : pattern
        .slice(1, -1)
        .split(',')
        .map((part) => /^\s*(?:\.\.\.)?([\w$]+)\s*(?::\s*([\w$]+))?\s*(?:=[^,]*)?$/.exec(part))
        .flatMap((found) => (found?.[1] === undefined ? [] : [[found[1], found[2] ?? found[1]] as const]));
  for (const [key, name] of entries) {
    if (source === null) {
      bindings.set(name, LOCAL);
      continue;
    }
    const whole = source[1] === undefined ? 'default' : '*';
    const imported = source[3] ?? (pattern.startsWith('{') ? key : undefined) ?? whole;
    bindings.set(name, { kind: 'import', from: source[2] ?? '', imported });
  }
}

function analyze(source: string): { text: string; freeNames: string[] } {
  const ast = parser().parse(source, PARSE_OPTIONS);
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
  // `typeof x` is how code asks whether x exists; it is no use of x.
  for (const reference of unresolvedReferences(ast, 'module')) {
    if (!typeofOperands.has(reference.identifier) && !declaredAround(reference)) {
      freeNames.add(reference.identifier.name);
    }
  }
  let text = source;
  for (const { start, end, text: replacement } of replacements.sort((a, b) => b.start - a.start)) {
    text = text.slice(0, start) + replacement + text.slice(end);
    freeNames.add(replacement);
  }
  return { text, freeNames: [...freeNames] };
}

function children(node: AstNode): AstNode[] {
  const found: AstNode[] = [];
  for (const key of Object.keys(node)) {
    const child = node[key];
    if (Array.isArray(child)) {
      for (const item of child) if (isNode(item)) found.push(item);
    } else if (isNode(child)) found.push(child);
  }
  return found;
}

function walk(node: AstNode, visit: (node: AstNode) => void): void {
  visit(node);
  for (const child of children(node)) walk(child, visit);
}

function contains(node: AstNode, test: (node: AstNode) => boolean): boolean {
  return test(node) || children(node).some((child) => contains(child, test));
}

function isNode(value: unknown): value is AstNode {
  return typeof value === 'object' && value !== null && typeof (value as AstNode).type === 'string';
}

// The caller's file of the parmap call being prepared. Its free names are checked in the same
// synchronous step that follows callerFile(), by code that does not pass the file on; it is
// forgotten once that step ends, so no later check reads another call's file.
let pendingCaller: string | undefined;

function forgetCaller(): void {
  pendingCaller = undefined;
}

/**
 * The file that called parmap, so `require`, `import()` and `__dirname` inside fn resolve as they
 * would there, and fn's free names are checked against its bindings. Falls back to the working
 * directory (REPL, eval).
 */
export function callerFile(skip: (...args: never[]) => unknown): string {
  const file = stackFile(skip);
  pendingCaller = file;
  queueMicrotask(forgetCaller);
  return file;
}

function stackFile(skip: (...args: never[]) => unknown): string {
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
