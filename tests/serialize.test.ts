import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ParmapScopeError } from '../dist/index.js';
import { buildFunctionCode, checkFreeNames, functionExpression } from '../dist/parmap/front/function-code.js';

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
    checkFreeNames(['Math', 'require', '__name', '__awaiter', 'cov_1x2y3z'], (name) => name in globalThis);
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
