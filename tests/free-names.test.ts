/**
 * The free-variable analysis against eslint-scope, the package it replaces, as the oracle: on
 * hand-written snippets for each scoping rule, on every function of a few real packages, and on
 * generated programs. Both must give the same unresolved references, in the same order, with the
 * same write-only flags, and the same answer for `declaredAround`.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { type Options, parse } from 'acorn';
import * as eslintScope from 'eslint-scope';
import fc from 'fast-check';
import { type AstNode, declaredAround, unresolvedReferences } from '../dist/parmap/front/free-names.js';

type SourceType = 'module' | 'script';

// As function-code parses fn; eslint-scope also needs ranges.
const OPTIONS: Options = {
  ecmaVersion: 'latest',
  sourceType: 'module',
  allowReturnOutsideFunction: true,
  allowAwaitOutsideFunction: true,
  ranges: true,
};

function parsed(text: string, sourceType: SourceType): AstNode | undefined {
  try {
    return parse(text, { ...OPTIONS, sourceType }) as unknown as AstNode;
  } catch {
    return undefined;
  }
}

/** One line per unresolved reference: name, position, write-only, declared around. */
function oracle(program: AstNode, sourceType: SourceType): string[] {
  const manager = eslintScope.analyze(program as never, { ecmaVersion: 2022, sourceType, fallback: 'iteration' });
  return (manager.globalScope?.through ?? []).map((reference) => {
    const { name, range } = reference.identifier as { name: string; range: [number, number] };
    let declared = false;
    for (let scope: eslintScope.Scope | null = reference.from; scope !== null; scope = scope.upper) {
      const variable = scope.set.get(name);
      if (variable === undefined) continue;
      // A parameter's default does not see the body's variables (it does see `arguments`).
      const body = (scope.block as { body?: { range?: [number, number] } }).body?.range;
      const inDefaults = scope.type === 'function' && body !== undefined && range[0] < body[0];
      if (inDefaults && name !== 'arguments' && !variable.defs.some((def) => def.type === 'Parameter')) continue;
      declared = true;
    }
    return `${name}@${range[0]} ${reference.isWriteOnly() ? 'write' : 'read'}${declared ? ' declared' : ''}`;
  });
}

function ours(program: AstNode, sourceType: SourceType): string[] {
  return unresolvedReferences(program, sourceType).map((reference) => {
    const { name, start } = reference.identifier;
    const declared = declaredAround(reference);
    return `${name}@${start} ${reference.writeOnly ? 'write' : 'read'}${declared ? ' declared' : ''}`;
  });
}

/** Compares both analyses on the text in each mode it parses in; returns how many it compared. */
function compare(text: string): number {
  let compared = 0;
  for (const sourceType of ['module', 'script'] as const) {
    const program = parsed(text, sourceType);
    if (program === undefined) continue;
    assert.deepEqual(ours(program, sourceType), oracle(program, sourceType), `${sourceType}: ${text.slice(0, 2000)}`);
    compared++;
  }
  return compared;
}

function freeNames(text: string, sourceType: SourceType = 'module'): string[] {
  const program = parsed(text, sourceType);
  assert.ok(program, text);
  const references = unresolvedReferences(program, sourceType).filter((reference) => !declaredAround(reference));
  return [...new Set(references.map((reference) => reference.identifier.name))];
}

const SNIPPETS = [
  // var and function hoisting, block scopes
  'a; var a; b; { var c } c; d',
  'f(); function f() { g } { function h() {} } h',
  '{ let x; const y = x; class Z {} } x; y; Z',
  'let x = x; const [y = y] = z',
  '(function () { v; if (q) { var v } return w; let w })',
  '() => { { var deep = 1 } return deep }',
  // parameters, defaults seeing earlier ones, destructuring, rest
  '(a, b = a, { c, d: [e] = b, ...f } = g, ...h) => a + b + c + e + f + h + i',
  'function p(a = b, b) { return c }',
  '(a = () => inner) => { var inner; return a }',
  'function q(a = body) { var body } function r(a = arguments) {} function s(a = t) { function t() {} }',
  '(x = y => y + z) => x',
  '({ [key]: value = fallback } = {}) => value',
  // catch params, named function and class expressions
  'try { t() } catch ({ message = dflt, [k]: v }) { message; v; e } finally { fin }',
  'try {} catch { noParam }',
  'try {} catch (e) { var e2 = e } e2; e',
  '(function self(n) { return n ? self(n - 1) : outer })',
  '(class Self { m() { return Self } static s = Self; [Self] = 1 })',
  'class A extends A {} class B extends base { constructor() { super(); B } }',
  '(class extends (class Inner {}) { x = Inner })',
  // labels, properties, members, shorthand, methods, private names
  'loop: for (;;) { break loop; continue loop } loop',
  '({ a: 1, b, [c]: d, "e": f, get g() { return h }, set i(v) { j = v }, k() { l }, async *m() { yield n } })',
  'o.p.q; o[r]; o?.s?.[t]?.(u); new.target; this.x; v.#w',
  'class C { #p = 1; #q() {} static #r; m(o) { return #p in o && this.#p && o.#q() } get [key]() { return 1 } set x(y) { z = y } }',
  'class D { static { var sv = 1; let sl = sv; w } static x = y; z = this.z + arguments2 }',
  '({ arguments: 1 }); obj.arguments',
  // arguments, this, super, new.target
  'function f() { return arguments } () => arguments; function g() { return () => arguments }',
  'function h() { this.x; super.y; new.target } ({ m() { return super.m() } })',
  // optional chaining, getters, generators, async
  'a?.b; a?.[b]; a?.(b); (a?.b).c',
  'async function af() { await aw; for await (const x of it) x } function* gf() { yield* ys; yield }',
  // for heads
  'for (let i = 0; i < n; i++) { i } i',
  'for (const [k, v = dv] of entries) k + v; k',
  'for (var vi in obj) {} vi',
  'for (x of xs); for (y in ys); for ([z, w = u] of zs); for ({ a: p.q, [r]: s } of ss);',
  'for (let x of x) {}',
  'for (using u of us) {}',
  // switch-case lexical scope
  'switch (disc) { case c1: let s = 1; break; case c2: s; function sf() {} default: sf }',
  // writes
  'x = 1; y += 1; z ||= 1; w++; --v; [a, b = c] = d; ({ e, f: g = h, ...i } = j); k.l = m; n[o] = p',
  '[a.b, ...c[d]] = e; ({ x: y.z } = w)',
  // eval
  'function ev(a) { var own = 1; eval(code); return a + own + outside } ev',
  'function out() { let o = 1; function inner() { eval(s); o; x } var late }',
  '{ let blockLet; eval(s); blockLet } top',
  'class E { f = eval(x) + y; static { eval(z); w } }',
  'eval?.(s); v',
  'const top = 1; (() => { eval(code); top; missing })',
  // templates, tags, sequences, spread, new, typeof, delete, regex, bigint
  // biome-ignore lint/suspicious/noTemplateCurlyInString: source text with a template literal in it
  'tag`a${b}c${d}`; `${e}`; (f, g); [...h]; ({ ...i }); new J(...k); typeof l; void m; delete n.o; /re/g; 1n',
  'import(mod); import.meta.url',
  // with (script only), labels on blocks, debugger, do-while
  'with (obj) { prop; var wv = 1 } wv',
  'lbl: { break lbl } do { dw } while (dt); while (wt) ww; if (it) ic; else ie; debugger',
  // nested functions shadowing
  'const shadow = 1; function sh(shadow) { return () => { let shadow; return shadow } } shadow',
  '(a) => { const { a: b } = a; return b }',
  'function dup(a) { var a; let b; return a + b }',
  // module forms
  'import def, { named as local, other } from "m"; import * as ns from "n"; def; local; ns; missing',
  'export const ex = 1; export function ef() { ex2 } export default function () {} export { ex as ex3, unknownExport }; export * from "x"; export { y } from "z"',
  'export default expr; export class EC extends ECBase {}',
  // return and await at the top, as the wrapper uses
  'const helper = (x) => x * 2; return (x) => helper(x) + missing',
  'await thing; return await other',
];

describe('free names match eslint-scope', () => {
  it('on hand-written snippets for every scoping rule', () => {
    let compared = 0;
    for (const snippet of SNIPPETS) compared += compare(snippet);
    console.log(`compared ${compared} analyses of ${SNIPPETS.length} snippets`);
    assert.ok(compared >= SNIPPETS.length, `${compared} comparisons`);
  });

  it('finds the names a function needs, and no others', () => {
    assert.deepEqual(freeNames('(a, b = a) => { let c = b; return c + d + Math.max(e.f) }'), ['d', 'Math', 'e']);
    assert.deepEqual(freeNames('function f() { g(); function g() {} return arguments }'), []);
    assert.deepEqual(freeNames('function ev() { var own = 1; eval(code); return own + outside }'), [
      'eval',
      'code',
      'outside',
    ]);
    assert.deepEqual(freeNames('(class { #p; m() { return this.#p + super.x + label } })'), ['label']);
  });

  it("a parameter's default that names a variable of the body needs the one around the function", () => {
    // At run time the default reads the outer `limit` (the body's is not made yet): a worker
    // without it threw a ReferenceError on every item, or read a global of the same name.
    assert.deepEqual(freeNames('(x, max = limit) => { const limit = 0; return max }'), ['limit']);
    assert.deepEqual(freeNames('function f(a = b) { var b; eval(s) }'), ['b', 'eval', 's']);
    assert.deepEqual(freeNames('function f(a = arguments, b = a) { var c; return c }'), []);
  });

  it("reads names in import()'s options, which eslint-scope does not visit", () => {
    assert.deepEqual(freeNames('async () => import(path, { with: { type: kind } })'), ['path', 'kind']);
  });

  it('on every function of a few real packages', () => {
    const modules = dirname(dirname(createRequire(import.meta.url).resolve('acorn/package.json')));
    const root = (name: string): string => join(modules, name);
    const files = [
      ...['acorn/dist', 'workerpool/src', 'workerpool/dist', 'fast-check/lib', 'fast-check/lib/cjs', 'esbuild/lib']
        .map((folder) => join(root(folder.split('/')[0] as string), folder.split('/').slice(1).join('/')))
        .flatMap((folder) => readdirSync(folder).map((file) => join(folder, file))),
      join(root('p-map'), 'index.js'),
      join(root('serialize-javascript'), 'index.js'),
      join(root('typescript'), 'lib', '_tsc.js'),
    ].filter((file) => /\.[cm]?js$/.test(file));
    let functions = 0;
    let analyses = 0;
    let programs = 0;
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      const program = parsed(text, 'module') ?? parsed(text, 'script');
      if (program === undefined) continue;
      programs += compare(text);
      for (const node of functionsIn(program)) {
        // Each function's text as fn, as function-code wraps it; the largest are whole files again.
        if (node.end - node.start > 20_000) continue;
        functions++;
        analyses += compare(`(${text.slice(node.start, node.end)})`);
      }
    }
    console.log(`compared ${analyses} analyses of ${functions} functions, and ${programs} of ${files.length} files`);
    assert.ok(analyses > 10_000);
  });

  it('on generated programs', () => {
    let compared = 0;
    fc.assert(
      fc.property(program(), (text) => {
        compared += compare(text);
      }),
      { numRuns: 4000 },
    );
    console.log(`compared ${compared} analyses of generated programs`);
    assert.ok(compared > 1000);
  });
});

function functionsIn(node: AstNode, found: AstNode[] = []): AstNode[] {
  if (/^(FunctionExpression|FunctionDeclaration|ArrowFunctionExpression)$/.test(node.type)) found.push(node);
  for (const value of Object.values(node)) {
    for (const child of Array.isArray(value) ? value : [value]) {
      if (typeof child === 'object' && child !== null && typeof child.type === 'string') functionsIn(child, found);
    }
  }
  return found;
}

/** Programs built from the forms that bind, read and write names, over a few names. */
function program(): fc.Arbitrary<string> {
  // Strict code may read `arguments` and `eval` but not bind or assign them.
  const name = fc.constantFrom('a', 'b', 'c', 'd');
  const read = fc.constantFrom('a', 'b', 'c', 'd', 'arguments', 'eval');
  const { statement } = fc.letrec<{ expression: string; statement: string; pattern: string; body: string }>((tie) => ({
    pattern: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      name,
      fc.tuple(name, tie('expression')).map(([n, e]) => `${n} = ${e}`),
      fc.tuple(tie('pattern'), name).map(([p, n]) => `[${p}, ...${n}]`),
      fc.tuple(name, tie('pattern'), tie('expression')).map(([n, p, e]) => `{ ${n}: ${p}, [${e}]: ${n}_ }`),
    ),
    expression: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      read,
      fc.constant('this.x'),
      fc.tuple(name, tie('expression')).map(([n, e]) => `${n} = ${e}`),
      fc.tuple(name, tie('expression')).map(([n, e]) => `${n} += ${e}`),
      name.map((n) => `${n}++`),
      fc.tuple(tie('expression'), name).map(([e, n]) => `(${e}).${n}`),
      fc.tuple(tie('expression'), tie('expression')).map(([e, f]) => `(${e})?.[${f}]`),
      fc.tuple(tie('expression'), tie('expression')).map(([e, f]) => `eval(${e}, ${f})`),
      fc.tuple(tie('pattern'), tie('expression')).map(([p, e]) => `(${p}) => ${e}`),
      fc.tuple(tie('pattern'), tie('body')).map(([p, b]) => `(function (${p}) { ${b} })`),
      fc.tuple(name, tie('pattern'), tie('body')).map(([n, p, b]) => `(function ${n}(${p}) { ${b} })`),
      fc.tuple(name, tie('expression'), tie('body')).map(([n, e, b]) => `(class ${n} extends (${e}) { m() { ${b} } })`),
      fc.tuple(name, tie('expression')).map(([n, e]) => `(class { static ${n} = ${e}; static { ${n}; } })`),
      fc.tuple(tie('expression'), tie('expression')).map(([e, f]) => `({ k${e.replace(/\W/g, '')}: ${f}, x })`),
      tie('expression').map((e) => `typeof (${e})`),
    ),
    statement: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      tie('expression').map((e) => `${e};`),
      fc
        .tuple(fc.constantFrom('var', 'let', 'const'), tie('pattern'), tie('expression'))
        .map(([k, p, e]) => `${k} ${p} = ${e};`),
      fc.tuple(name, tie('pattern'), tie('body')).map(([n, p, b]) => `function ${n}(${p}) { ${b} }`),
      fc.tuple(name, tie('expression')).map(([n, e]) => `class ${n} { x = ${e} }`),
      tie('body').map((b) => `{ ${b} }`),
      fc.tuple(tie('pattern'), tie('body'), tie('body')).map(([p, b, c]) => `try { ${b} } catch (${p}) { ${c} }`),
      fc
        .tuple(fc.constantFrom('let', 'var', ''), tie('pattern'), tie('expression'), tie('body'))
        .map(([k, p, e, b]) => `for (${k} [${p}] of ${e}) { ${b} }`),
      fc.tuple(tie('expression'), tie('body')).map(([e, b]) => `switch (${e}) { case 1: ${b} }`),
      fc.tuple(name, tie('body')).map(([n, b]) => `${n}_label: { ${b} }`),
    ),
    body: fc.array(tie('statement'), { maxLength: 3 }).map((statements) => statements.join(' ')),
  }));
  return fc.array(statement, { minLength: 1, maxLength: 4 }).map((statements) => statements.join('\n'));
}
