import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkItemShape, resolveOptions } from '../dist/parmap/front/options.js';

const fn = (x: unknown) => x;

describe('option checks', () => {
  it('fills in the documented defaults', () => {
    const options = resolveOptions(fn, [1, 2, 3], undefined);
    assert.equal(options.ordered, true);
    assert.equal(options.chunksize, 'auto');
    assert.equal(options.workerType, 'thread');
    assert.equal(options.inThisThread, false);
    assert.equal(options.total, 3);
    assert.deepEqual(options.shape, { star: false, kwstar: false, args: [], kwargs: undefined });
    assert.ok(options.n >= 1);
    assert.equal(options.retries, 0);
    assert.equal(options.timeout, undefined);
    assert.equal(options.onError, 'throw');
    assert.equal(options.maxMemory, undefined);
  });

  it('runs in this thread only for an explicit n: 1', () => {
    assert.equal(resolveOptions(fn, [], { n: 1 }).inThisThread, true);
    assert.equal(resolveOptions(fn, [], { n: 2 }).inThisThread, false);
  });

  it('reads total from length or size, and from the option when given', () => {
    assert.equal(resolveOptions(fn, new Set([1, 2]), {}).total, 2);
    assert.equal(resolveOptions(fn, new Map([[1, 2]]), {}).total, 1);
    assert.equal(resolveOptions(fn, (function* () {})(), {}).total, undefined);
    assert.equal(resolveOptions(fn, (function* () {})(), { total: 7 }).total, 7);
  });

  const rejects: [string, unknown, unknown, RegExp, ErrorConstructor][] = [
    ['fn', 5, [], /Expected `fn` to be a function or \{ module, export \}, got `5` \(number\)/, TypeError],
    ['items null', fn, null, /Expected `items` to be an Iterable or AsyncIterable.*got `null` \(null\)/, TypeError],
    ['items number', fn, 3, /`items`.*got `3` \(number\)/, TypeError],
    ['options', fn, [], /Expected `options` to be a plain object/, TypeError],
  ];
  for (const [name, badFn, items, message, type] of rejects) {
    it(`rejects a bad ${name}`, () => {
      assert.throws(
        () => resolveOptions(badFn, items, name === 'options' ? 'fast' : {}),
        (error: Error) => {
          assert.ok(error instanceof type);
          assert.match(error.message, message);
          return true;
        },
      );
    });
  }

  const badOptions: [Record<string, unknown>, RegExp, ErrorConstructor][] = [
    [{ n: 0 }, /Expected `n` to be a positive integer, got `0` \(number\)/, RangeError],
    [{ n: 1.5 }, /`n`.*`1\.5`/, RangeError],
    [{ n: '2' }, /`n`.*`"2"` \(string\)/, RangeError],
    [{ chunksize: 0 }, /Expected `chunksize` to be a positive integer or 'auto', got `0`/, RangeError],
    [{ chunksize: 'big' }, /`chunksize`.*"big"/, RangeError],
    [{ ordered: 'yes' }, /Expected `ordered` to be a boolean, got `"yes"` \(string\)/, TypeError],
    [{ star: 1 }, /Expected `star` to be a boolean/, TypeError],
    [{ kwstar: null }, /Expected `kwstar` to be a boolean/, TypeError],
    [{ args: 'abc' }, /Expected `args` to be an array, got `"abc"` \(string\)/, TypeError],
    [{ kwargs: [1] }, /Expected `kwargs` to be a plain object, got `\[1\]` \(array\)/, TypeError],
    [{ kwargs: new Map() }, /Expected `kwargs` to be a plain object/, TypeError],
    [{ scope: 3 }, /Expected `scope` to be a plain object/, TypeError],
    [{ scope: { 'not-a-name': 1 } }, /`not-a-name` is not one/, TypeError],
    [{ scope: { class: 1 } }, /`class` is not one/, TypeError],
    [{ workerType: 'fiber' }, /Expected `workerType` to be 'thread' or 'process', got `"fiber"`/, TypeError],
    [{ total: -1 }, /Expected `total` to be a non-negative integer, got `-1`/, RangeError],
    [
      { progress: 3 },
      /Expected `progress` to be a boolean, a label string, \{ label, stream \} or a function/,
      TypeError,
    ],
    [{ progress: { lable: 'x' } }, /Unknown option `progress\.lable`/, TypeError],
    [{ progress: { label: 3 } }, /Expected `progress\.label` to be a string/, TypeError],
    [{ progress: { stream: {} } }, /Expected `progress\.stream` to be a writable stream/, TypeError],
    [{ signal: {} }, /Expected `signal` to be an AbortSignal/, TypeError],
    [{ retries: -1 }, /Expected `retries` to be a non-negative integer, got `-1`/, RangeError],
    [{ retries: 1.5 }, /`retries`/, RangeError],
    [{ timeout: 0 }, /Expected `timeout` to be a positive number of milliseconds, got `0`/, RangeError],
    [{ timeout: Number.POSITIVE_INFINITY }, /`timeout`/, RangeError],
    [{ timeout: '5s' }, /`timeout`.*"5s"/, RangeError],
    [{ onError: 'ignore' }, /Expected `onError` to be 'throw' or 'return', got `"ignore"`/, TypeError],
    [{ maxMemory: 8 }, /Expected `maxMemory` to be a whole number of MB, at least 16, got `8`/, RangeError],
    [{ retry: 2 }, /Unknown option `retry`\. Did you mean `retries`\?/, TypeError],
    [{ orderd: false }, /Unknown option `orderd`\. Did you mean `ordered`\?/, TypeError],
    [{ chunkSize: 10 }, /Unknown option `chunkSize`\. Did you mean `chunksize`\?/, TypeError],
    // What peers call the number of workers: `workers` had been taken for `workerType`.
    [{ workers: 2 }, /Unknown option `workers`\. Did you mean `n`\?/, TypeError],
    [{ maxWorkers: 2 }, /Unknown option `maxWorkers`\. Did you mean `n`\?/, TypeError],
    [{ workers: 2 }, /Unknown option `workers`.*Known options: n, ordered/, TypeError],
  ];
  for (const [options, message, type] of badOptions) {
    it(`rejects ${JSON.stringify(options)}`, () => {
      assert.throws(
        () => resolveOptions(fn, [], options),
        (error: Error) => {
          assert.ok(error instanceof type, `${error.name} is not a ${type.name}`);
          assert.match(error.message, message);
          return true;
        },
      );
    });
  }

  it('accepts every documented kind of progress', () => {
    for (const progress of [true, false, 'label', () => {}, { label: 'x', stream: process.stderr }]) {
      assert.equal(resolveOptions(fn, [], { progress }).progress, progress);
    }
  });
});

describe('item shape checks', () => {
  const plain = { star: false, kwstar: false, args: [], kwargs: undefined };
  it('accepts any item without star or kwstar', () => {
    checkItemShape(5, 0, plain);
    checkItemShape(undefined, 0, plain);
  });

  it('names the item index when star gets a non-array', () => {
    assert.throws(
      () => checkItemShape(5, 3, { ...plain, star: true }),
      /With `star: true` each item must be an array of arguments; item 3 is `5` \(number\)/,
    );
  });

  it('names the item index when kwstar gets no [arg, options] pair', () => {
    const shape = { ...plain, kwstar: true };
    checkItemShape([1, { a: 1 }], 0, shape);
    assert.throws(() => checkItemShape([1], 4, shape), /kwstar: true.*item 4 is `\[1\]` \(array\)/);
    assert.throws(() => checkItemShape([1, 2], 5, shape), /item 5/);
    assert.throws(() => checkItemShape({ a: 1 }, 6, shape), /item 6/);
  });

  it('requires an args array in the pair when star and kwstar are both on', () => {
    const shape = { ...plain, star: true, kwstar: true };
    checkItemShape([[1, 2], {}], 0, shape);
    assert.throws(() => checkItemShape([1, {}], 2, shape), /item 2 has `1` \(number\) in place of the args array/);
  });
});
