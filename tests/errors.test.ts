import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ParmapTaskError, ParmapWorkerError } from '../dist/index.js';
import { describeThrown, rebuildThrown, reportThrown } from '../dist/parmap/errors.js';

/** What crossing a thread boundary does to a report. */
const across = (thrown: unknown) => rebuildThrown(structuredClone(reportThrown(thrown)));

describe('thrown values crossing from a worker', () => {
  it('keeps the class of built-in errors, the message, the stack and own properties', () => {
    const original = Object.assign(new RangeError('too far'), { code: 'E_FAR', detail: { depth: 3 } });
    const rebuilt = across(original) as RangeError & { code: string; detail: unknown };
    assert.ok(rebuilt instanceof RangeError);
    assert.equal(rebuilt.name, 'RangeError');
    assert.equal(rebuilt.message, 'too far');
    assert.equal(rebuilt.stack, original.stack);
    assert.equal(rebuilt.code, 'E_FAR');
    assert.deepEqual(rebuilt.detail, { depth: 3 });
  });

  it('keeps the name of a custom error class', () => {
    class ValidationError extends Error {
      override name = 'ValidationError';
    }
    const rebuilt = across(new ValidationError('bad input')) as Error;
    assert.equal(rebuilt.name, 'ValidationError');
    assert.equal(rebuilt.message, 'bad input');
  });

  it('keeps a cause chain', () => {
    const rebuilt = across(new Error('outer', { cause: new TypeError('inner') })) as Error;
    assert.ok(rebuilt.cause instanceof TypeError);
    assert.equal((rebuilt.cause as Error).message, 'inner');
  });

  it('survives properties that cannot be cloned, and keeps BigInt and circular ones', () => {
    const error = new Error('odd') as Error & Record<string, unknown>;
    error.callback = () => 1;
    error.big = 10n;
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    error.circular = circular;
    const rebuilt = across(error) as Record<string, unknown>;
    assert.match(String(rebuilt.callback), /function/);
    assert.equal(rebuilt.big, 10n);
    assert.equal((rebuilt.circular as Record<string, unknown>).self, rebuilt.circular);
  });

  it('passes non-Error values through, and describes them readably', () => {
    for (const value of ['x', 42, null, undefined, { a: 1 }]) {
      assert.deepEqual(across(value), value);
      assert.match(describeThrown(value), /^a non-Error value was thrown: `.*` \(\w+\)$/);
    }
    assert.equal(across(Symbol('s')), '`Symbol(s)` (symbol)');
  });

  it('never gives an empty message', () => {
    assert.equal(describeThrown(new Error('')), 'Error: (no message)');
    const error = new ParmapTaskError(4, undefined);
    assert.equal(error.message, 'parmap: fn failed on item 4: a non-Error value was thrown: `undefined` (undefined)');
  });

  it('hints at scope when fn hit an undefined variable', () => {
    const error = new ParmapTaskError(0, new ReferenceError('k is not defined'));
    assert.match(error.message, /pass it with the scope option: \{ scope: \{ k \} \}/);
  });

  it('describes a worker that ended, with the items it held', () => {
    const error = new ParmapWorkerError([4, 5, 6], { exitCode: 3 });
    assert.match(error.message, /a worker exited with code 3 while it held items 4 to 6/);
    assert.equal(new ParmapWorkerError([2], { signal: 'SIGKILL' }).signal, 'SIGKILL');
  });
});
