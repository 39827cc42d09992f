import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CallShape } from '../dist/parmap/front/options.js';
import { createInvoker } from '../dist/parmap/worker/invoke.js';

const record = (...args: unknown[]) => args;
const shape = (overrides: Partial<CallShape>): CallShape => ({
  star: false,
  kwstar: false,
  args: [],
  kwargs: undefined,
  ...overrides,
});
const call = (item: unknown, overrides: Partial<CallShape>) =>
  createInvoker(record as (...args: unknown[]) => unknown, shape(overrides))(item);

describe('star / kwstar / args / kwargs (the parmapper table)', () => {
  it('plain: fn(item) exactly, with no options argument', () => {
    assert.deepEqual(call(5, {}), [5]);
    assert.deepEqual(call([1, 2], {}), [[1, 2]]);
  });

  it('star: fn(...item, ...args)', () => {
    assert.deepEqual(call([1, 2], { star: true }), [1, 2]);
    assert.deepEqual(call([1, 2], { star: true, args: ['C'] }), [1, 2, 'C']);
  });

  it('args without star: fn(item, ...args)', () => {
    assert.deepEqual(call(1, { args: ['B', 'C'] }), [1, 'B', 'C']);
  });

  it('kwargs: a fixed options object as the last argument', () => {
    assert.deepEqual(call(1, { kwargs: { opt: true } }), [1, { opt: true }]);
    assert.deepEqual(call([1, 2], { star: true, args: ['C'], kwargs: { opt: true } }), [1, 2, 'C', { opt: true }]);
  });

  it('kwstar: [arg, kw] calls fn(arg, ...args, {...kwargs, ...kw}), item keys winning', () => {
    assert.deepEqual(call([1, { opt: true }], { kwstar: true }), [1, { opt: true }]);
    assert.deepEqual(call([1, { opt: true }], { kwstar: true, kwargs: { opt: false, opt2: 1 } }), [
      1,
      { opt: true, opt2: 1 },
    ]);
  });

  it("star + kwstar with args and kwargs: the issue's example", () => {
    assert.deepEqual(
      call([[1, 2], { opt: true }], { star: true, kwstar: true, args: ['C'], kwargs: { opt2: false } }),
      [1, 2, 'C', { opt2: false, opt: true }],
    );
  });

  it("the seed's examples: zip of two lists with star, changing keywords with kwstar", () => {
    const doSomething = (a: number, b: number, opt: { opt?: boolean } = {}) => `${a}+${b}:${opt.opt ?? 'none'}`;
    const itemsAB = [
      [1, 10],
      [2, 20],
    ];
    const star = createInvoker(doSomething as (...args: unknown[]) => unknown, shape({ star: true }));
    assert.deepEqual(itemsAB.map(star), ['1+10:none', '2+20:none']);
    const kws = [{ opt: true }, { opt: false }];
    const both = createInvoker(doSomething as (...args: unknown[]) => unknown, shape({ star: true, kwstar: true }));
    assert.deepEqual(
      itemsAB.map((ab, i) => both([ab, kws[i]])),
      ['1+10:true', '2+20:false'],
    );
  });

  it('gives each call a fresh options object, so one call cannot change the next', () => {
    const mutate = (_x: unknown, options: { seen?: number }) => {
      options.seen = (options.seen ?? 0) + 1;
      return options.seen;
    };
    const invoke = createInvoker(mutate as (...args: unknown[]) => unknown, shape({ kwargs: {} }));
    assert.deepEqual([invoke(1), invoke(2)], [1, 1]);
  });

  it('cannot pollute Object.prototype through a per-item __proto__ key', () => {
    const item = [1, JSON.parse('{"__proto__": {"polluted": true}, "opt": 1}')];
    const [, merged] = call(item, { kwstar: true, kwargs: { base: 1 } }) as [number, Record<string, unknown>];
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.getPrototypeOf(merged), Object.prototype);
    assert.equal(merged.opt, 1);
    assert.equal(merged.base, 1);
  });
});
