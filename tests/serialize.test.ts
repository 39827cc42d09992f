import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ParmapScopeError, parmap } from '../dist/index.js';
import { buildFunctionCode, checkFreeNames, functionExpression } from '../dist/parmap/front/function-code.js';
import { fetchAll, hashAll, timings } from './fixtures/scope-shadow.js';

/** Compiles the body as a worker would, with the given names provided. */
function compile(fn: (...args: never[]) => unknown, scope?: Record<string, unknown>) {
  const code = buildFunctionCode(fn, scope);
  const helperNames = code.freeNames.filter((name) => name === '__name');
  const names = [...Object.keys(code.scopeData), ...helperNames];
  const values = [...Object.values(code.scopeData), ...helperNames.map(() => (target: unknown) => target)];
  return new Function(...names, code.body)(...values) as (...args: unknown[]) => unknown;
}

class Shapes {
  static twice(x: number) {
    return x * 2;
  }
  get size() {
    return 3;
  }
  #secret = 1;
  reveal() {
    return this.#secret;
  }
}

class Counted extends Shapes {
  override reveal() {
    return super.reveal() + 1;
  }
  viaArrow = (x: number) => super.reveal() + x;
}

/** An arrow that uses the `arguments` of the function around it. */
function argumentsArrow(..._values: unknown[]) {
  // biome-ignore lint/complexity/noArguments: an arrow using `arguments` is what is refused
  return (x: number) => x + arguments.length;
}

/** A regular function uses its own `arguments`, also from an arrow inside it. */
function ownArguments(..._values: unknown[]) {
  // biome-ignore lint/complexity/noArguments: a function's own `arguments` is what must keep working
  const count = () => arguments.length;
  return count();
}

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const commonjs = createRequire(import.meta.url)(fixture('scope-commonjs.cjs')) as Record<
  string,
  (...args: never[]) => unknown
>;
const isGlobal = (name: string): boolean => name in globalThis;

describe('function source text', () => {
  const forms: [string, (...args: never[]) => unknown, unknown[], unknown][] = [
    ['an arrow', ((x: number) => x + 1) as never, [1], 2],
    ['an arrow with one bare parameter', new Function('return x => x * 3')(), [2], 6],
    ['a function expression', ((x: number) => x - 1) as never, [1], 0],
    ['a declaration', declared as never, [4], 16],
    [
      'default parameters and destructuring',
      (({ a, b = 2 }: { a: number; b?: number }, [c] = [3]) => a + b + c) as never,
      [{ a: 1 }],
      6,
    ],
    [
      'method shorthand',
      {
        twice(x: number) {
          return x * 2;
        },
      }.twice as never,
      [4],
      8,
    ],
    [
      'a computed method key',
      {
        ['tw' + 'ice'](x: number) {
          return x * 2;
        },
      }.twice as never,
      [5],
      10,
    ],
    ['a static method', Shapes.twice as never, [6], 12],
    ['a getter', Object.getOwnPropertyDescriptor(Shapes.prototype, 'size')?.get as never, [], 3],
    [
      'a generator method',
      {
        *pairs(n: number) {
          yield n;
          yield n;
        },
      }.pairs as never,
      [1],
      undefined,
    ],
  ];
  for (const [name, fn, args, expected] of forms) {
    it(`rebuilds ${name}`, () => {
      const rebuilt = compile(fn);
      const result = rebuilt(...args);
      if (expected === undefined) assert.deepEqual([...(result as Iterable<unknown>)], [1, 1]);
      else assert.deepEqual(result, expected);
    });
  }

  it('rebuilds async functions and async methods', async () => {
    assert.equal(await compile(async (x: number) => x + 1)(1), 2);
    assert.equal(
      await compile(
        {
          async go(x: number) {
            return x * 5;
          },
        }.go,
      )(2),
      10,
    );
  });

  it('reads the real source even when toString is overridden', () => {
    const fn = (x: number) => x + 100;
    fn.toString = () => 'not code';
    assert.equal(compile(fn)(1), 101);
  });

  const refused: [string, (...args: never[]) => unknown, RegExp][] = [
    [
      'a bound function',
      function (this: unknown) {
        return this;
      }.bind(null) as never,
      /bound, native or proxied/,
    ],
    ['a native function', Math.max as never, /bound, native or proxied/],
    ['a proxied function', new Proxy(() => 1, {}) as never, /bound, native or proxied/],
    ['a class', Shapes as never, /class, which cannot be called without `new`/],
    ['a method using #private fields', Shapes.prototype.reveal as never, /#private fields/],
    ['a method using super', Counted.prototype.reveal as never, /it uses `super`, which only works inside its class/],
    ['an arrow field using super', new Counted().viaArrow as never, /it uses `super`, which only works inside/],
    [
      'an arrow using the arguments of the function around it',
      argumentsArrow(1, 2) as never,
      /an arrow function that uses `arguments`, which belong to the function around it/,
    ],
    [
      'sloppy CommonJS code that assigns to an undeclared name',
      commonjs.implicitGlobal as never,
      /sloppy-mode code .*assigns to `total` without declaring it/,
    ],
    ['sloppy CommonJS code using `with`', commonjs.withStatement as never, /sloppy-mode code .*uses `with`/],
    ['sloppy CommonJS code using arguments.callee', commonjs.callee as never, /sloppy-mode code .*`arguments\.callee`/],
  ];
  for (const [name, fn, message] of refused) {
    it(`refuses ${name} with a TypeError that says what to do`, () => {
      assert.throws(
        () => functionExpression(fn),
        (error: Error) => {
          assert.ok(error instanceof TypeError);
          assert.match(error.message, message);
          assert.match(error.message, /n: 1/);
          return true;
        },
      );
    });
  }
});

describe('arguments', () => {
  it('lets a regular function use its own arguments, from sloppy and strict code alike', () => {
    assert.equal(compile(ownArguments as never)(1, 2, 3), 3);
    assert.equal(compile(commonjs.ownArguments as never)(1, 2), 2);
    assert.ok(!buildFunctionCode(ownArguments as never, undefined).freeNames.includes('arguments'));
  });

  it('is not a name workers provide', () => {
    assert.throws(
      () => checkFreeNames(['arguments'], isGlobal),
      (error: unknown) => error instanceof ParmapScopeError && error.names.includes('arguments'),
    );
  });
});

function declared(x: number) {
  return x * x;
}

describe('free variables', () => {
  it('finds what fn uses from its surroundings, but not its own locals or parameters', () => {
    const factor = 2;
    const offset = 1;
    const code = buildFunctionCode((x: number) => {
      const local = x * factor;
      return [local, offset].map((value) => value + 1);
    }, undefined);
    assert.deepEqual([...code.freeNames].sort(), ['factor', 'offset']);
  });

  it('does not count a typeof guard as a use', () => {
    const code = buildFunctionCode(() => (typeof window === 'undefined' ? 'node' : 'browser'), undefined);
    assert.deepEqual(code.freeNames, []);
  });

  it('sees through a direct eval: fn still has its own parameters and locals', async () => {
    const usesEval = (x: number) => {
      const local = 2;
      // biome-ignore lint/security/noGlobalEval: a direct eval is what this test is about.
      return eval('x * local') + 1 + 0 * (x + local);
    };
    assert.deepEqual(buildFunctionCode(usesEval, undefined).freeNames, ['eval']);
    assert.deepEqual(await parmap(usesEval, [1, 2], { n: 2 }), [3, 5]);
    // biome-ignore lint/security/noGlobalEval: as above.
    const missing = (x: number) => eval('x') + outside + 0 * x;
    assert.deepEqual([...buildFunctionCode(missing, undefined).freeNames].sort(), ['eval', 'outside']);
  });

  it('with n: 1, an explicit scope (even {}) runs fn as a worker would, refusing what it takes from around it', async () => {
    const factor = 3;
    const closure = (x: number) => x * factor;
    // As it is: the closure works in this thread.
    assert.deepEqual(await parmap(closure, [1, 2], { n: 1 }), [3, 6]);
    assert.throws(
      () => parmap(closure, [1, 2], { n: 1, scope: {} }),
      (error: unknown) => error instanceof ParmapScopeError && error.names.includes('factor'),
    );
    // Rebuilt from its text: the scope's value, not the variable around it.
    assert.deepEqual(await parmap(closure, [1, 2], { n: 1, scope: { factor: 10 } }), [10, 20]);
    // A result a worker could not send back fails as it would there; as it is, it is handed over.
    const makesFunction = (x: number) => (x === 2 ? () => x : x);
    assert.equal(typeof (await parmap(makesFunction, [1, 2], { n: 1 }))[1], 'function');
    await assert.rejects(parmap(makesFunction, [1, 2, 3], { n: 1, scope: {} }), { name: 'ParmapCloneError', index: 1 });
    const returned = await parmap(makesFunction, [1, 2, 3], { n: 1, scope: {}, onError: 'return' });
    assert.equal(returned[0], 1);
    assert.equal((returned[1] as Error).name, 'ParmapCloneError');
    assert.equal(returned[2], 3);
  });

  it('treats scope values as declared, and lets one scope value use another', () => {
    const rate = 3;
    const scale = (x: number) => x * rate;
    const fn = compile((x: number) => scale(x) + 1, { rate, scale });
    assert.equal(fn(2), 7);
  });

  it('carries rich scope values across: Map, Set, Date, RegExp, BigInt, undefined, Infinity', () => {
    const scope = {
      table: new Map([['a', 1]]),
      tags: new Set(['x']),
      when: new Date('2020-01-02T03:04:05Z'),
      pattern: /ab+c/gi,
      huge: 2n ** 70n,
      nothing: undefined,
      forever: Number.POSITIVE_INFINITY,
    };
    const fn = compile(
      () => [table.get('a'), tags.has('x'), when.toISOString(), pattern.flags, huge, nothing, forever],
      scope,
    );
    assert.deepEqual(fn(), [1, true, '2020-01-02T03:04:05.000Z', 'gi', 2n ** 70n, undefined, Number.POSITIVE_INFINITY]);
  });

  it('sends data scope values apart, by structured clone, so they keep NaN, -0, typed arrays and cycles', () => {
    const loop: Record<string, unknown> = { values: new Float64Array([Number.NaN, -0]) };
    loop.self = loop;
    const code = buildFunctionCode(() => loop, { loop });
    assert.deepEqual(Object.keys(code.scopeData), ['loop']);
    assert.equal(code.scopeData.loop, loop);
    assert.deepEqual(code.freeNames, []);
  });

  it('names a scope value holding code that cannot be serialized', () => {
    const loop: Record<string, unknown> = { run: () => 1 };
    loop.self = loop;
    assert.throws(() => buildFunctionCode(() => loop, { loop }), /`scope\.loop` cannot be sent to workers/);
  });

  it('rewrites import() and import.meta to the caller-relative helpers', () => {
    const code = buildFunctionCode(async () => [await import('node:os'), import.meta.url], undefined);
    assert.match(code.body, /__parmapImport\(["']node:os["']\)/);
    assert.match(code.body, /__parmapImportMeta\.url/);
    assert.ok(code.freeNames.includes('__parmapImport'));
  });

  it('reports missing names in one ParmapScopeError, and accepts globals and helpers', () => {
    checkFreeNames(['Math', 'require', '__name', '__awaiter'], (name) => name in globalThis);
    assert.throws(
      () => checkFreeNames(['Math', 'factor', 'helper'], (name) => name in globalThis),
      (error: unknown) => {
        assert.ok(error instanceof ParmapScopeError);
        assert.deepEqual(error.names, ['factor', 'helper']);
        assert.match(error.message, /fn uses `factor`, `helper` from the code around it/);
        assert.match(error.message, /scope: \{ factor, helper \}/);
        return true;
      },
    );
  });
});

declare const window: unknown;
declare const table: Map<string, number>;
declare const tags: Set<string>;
declare const when: Date;
declare const pattern: RegExp;
declare const huge: bigint;
declare const nothing: undefined;
declare const forever: number;
declare const scale: (x: number) => number;

/** Asserts that `run` throws a ParmapScopeError naming `names`, and returns its message. */
function scopeErrorOf(run: () => unknown, names: readonly string[]): string {
  let message = '';
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof ParmapScopeError);
    assert.deepEqual(error.names, names);
    message = error.message;
    return true;
  });
  return message;
}

describe("the caller's own bindings", () => {
  const imports = import(fixture('scope-imports.mjs')) as Promise<
    Record<string, (items: unknown[], options?: object) => Promise<unknown[]>> & { URL: string }
  >;

  it('refuses a global that the calling module hides with its own binding, by name', async () => {
    const { hashes, links } = await imports;
    const hidden = scopeErrorOf(() => hashes?.(['a']), ['crypto']);
    assert.match(hidden, /`crypto` is imported/);
    const local = scopeErrorOf(() => links?.(['/a']), ['URL']);
    assert.match(local, /`URL` is declared at the top of scope-imports\.mjs, where it hides the global/);
    assert.match(local, /scope: \{ URL \}/);
    // The caller's file counts for the call being prepared, not for checks after it.
    await Promise.resolve();
    checkFreeNames(['URL'], isGlobal);
  });

  it('sends the hiding binding through scope, and takes built-in imports that are the globals', async () => {
    const { links, sizes, URL } = await imports;
    assert.deepEqual(await links?.(['/a'], { scope: { URL } }), ['https://example.org/a']);
    assert.deepEqual(await sizes?.(['ab']), [[2, 'number']]);
  });

  it('reads TypeScript callers by their lines, leaving out what is only declared for the types', async () => {
    assert.match(
      scopeErrorOf(() => fetchAll([{ path: '/a' }]), ['fetch']),
      /`fetch` is declared at the top of scope-shadow\.ts/,
    );
    assert.deepEqual(await timings(2), ['number', 'number']);
  });

  it('reads require() in CommonJS callers', () => {
    const names = ['crypto', 'sleep', 'Buffer', 'join', 'Math', 'setTimeout'];
    const message = scopeErrorOf(
      () => checkFreeNames(names, isGlobal, fixture('scope-commonjs.cjs')),
      ['crypto', 'sleep', 'join'],
    );
    assert.match(message, /`const \{ default: crypto \} = await import\('node:crypto'\)`/);
    assert.match(message, /`const \{ setTimeout: sleep \} = await import\('node:timers\/promises'\)`/);
    assert.match(message, /`const \{ join \} = await import\('node:path'\)`/);
  });

  it('reads a caller file once per version of it (path and modification time)', () => {
    const folder = mkdtempSync(join(tmpdir(), 'parmap-scope-'));
    try {
      const file = join(folder, 'caller.mjs');
      const [first, later] = [new Date(2020, 0, 1), new Date(2020, 0, 2)];
      writeFileSync(file, "const URL = 'x';\n");
      utimesSync(file, first, first);
      scopeErrorOf(() => checkFreeNames(['URL'], isGlobal, file), ['URL']);
      writeFileSync(file, 'export {};\n');
      utimesSync(file, first, first);
      scopeErrorOf(() => checkFreeNames(['URL'], isGlobal, file), ['URL']);
      utimesSync(file, later, later);
      checkFreeNames(['URL'], isGlobal, file);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});

describe('imported names', () => {
  it('says an import cannot go in scope, and how to import it inside fn or use a module', async () => {
    const { tripled } = await import(fixture('scope-imports.mjs'));
    const message = scopeErrorOf(() => tripled([1]), ['times3']);
    assert.match(message, /`times3` is imported, and scope cannot carry an import/);
    assert.match(message, /`const \{ triple: times3 \} = await import\('\.\/triple\.mjs'\)`/);
    assert.match(
      message,
      /parmap\(\{ module: new URL\('\.\/file\.js', import\.meta\.url\), export: 'name' \}, items\)/,
    );
    assert.doesNotMatch(message, /scope: \{/);
    assert.match(
      scopeErrorOf(() => hashAll(['a']), ['createHash']),
      /`const \{ createHash \} = await import/,
    );
  });

  it('recognises imports rewritten by vite or vitest, and names the helper', () => {
    const rewritten = new Function(
      '__vite_ssr_import_0__',
      'return (x) => (0, __vite_ssr_import_0__.helper)(x) + __vite_ssr_import_0__.helper(1)',
    )({ helper: (x: number) => x }) as (x: number) => number;
    const code = buildFunctionCode(rewritten, undefined);
    const message = scopeErrorOf(() => checkFreeNames(code.freeNames, isGlobal), ['helper']);
    assert.match(message, /`helper` is imported, and the test runner \(vite or vitest\) rewrote the import/);
    assert.match(message, /scope: \{ run \}/);
    assert.match(message, /export: 'name' \}, items\)/);
    assert.doesNotMatch(message, /__vite_ssr_import_0__/);
  });
});

describe('no name is special', () => {
  it('treats __x, $x, _ and cov_total as free variables, and coverage counters by how they are used', () => {
    const plain = buildFunctionCode(new Function('return (x) => cov_total + __x + $x + _(x)')(), undefined);
    scopeErrorOf(() => checkFreeNames(plain.freeNames, isGlobal), ['cov_total', '__x', '$x', '_']);
    const counted = buildFunctionCode(
      new Function('return (x) => { cov_abc().s[0]++; cov_abc().f[1]++; return x; }')(),
      undefined,
    );
    assert.deepEqual(counted.coverageCounters, ['cov_abc']);
    checkFreeNames(counted.freeNames, isGlobal);
  });
});

declare const outside: number;
