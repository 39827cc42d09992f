import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { ParmapScopeError, ParmapTaskError, ParmapWorkerError, parmap } from '../dist/index.js';
import {
  describeThrown,
  describeValue,
  rebuildThrown,
  reportThrown,
  ThrownValueDescription,
} from '../dist/parmap/errors.js';

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
  });

  it('shows built-in objects as their kind and size, not as JSON shows them', () => {
    // A Set showed as `{}`, a Uint8Array as {"0":1,"1":2}, a Date as a quoted string.
    assert.equal(describeValue(new Set([1, 2])), '`Set(2)` (object)');
    assert.equal(describeValue(new Map([[1, 2]])), '`Map(1)` (object)');
    assert.equal(describeValue(new Uint8Array([1, 2])), '`Uint8Array(2 bytes)` (object)');
    assert.equal(describeValue(Buffer.from('abc')), '`Buffer(3 bytes)` (object)');
    assert.equal(describeValue(new Date(0)), '`Date(1970-01-01T00:00:00.000Z)` (object)');
    assert.equal(describeValue({ a: 1 }), '`{"a":1}` (object)');
  });

  it('never gives an empty message', () => {
    assert.equal(describeThrown(new Error('')), 'Error: (no message)');
    const error = new ParmapTaskError(4, undefined);
    assert.equal(error.message, 'parmap: fn failed on item 4: a non-Error value was thrown: `undefined` (undefined)');
  });

  it('repeats at most 2,000 characters of a huge message; cause keeps it whole', async () => {
    // A 50 MB message went whole into parmap's own, and printing the error printed it twice.
    const huge = 'y'.repeat(200_000);
    const error = await parmap(
      (x: number, text: string) => {
        throw new Error(text + x);
      },
      [1],
      { n: 2, args: [huge] },
    ).catch((e: unknown) => e);
    assert.ok(error instanceof ParmapTaskError);
    assert.ok(error.message.length < 2_200, `message of ${error.message.length} characters`);
    assert.match(error.message, /… \(198001 characters more, in `cause`\)/);
    assert.equal((error.cause as Error).message, `${huge}1`);
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

/** Throws `problem` when read: a getter for defineProperty. */
const throwing = (problem: unknown) => ({
  get(): never {
    throw problem;
  },
  enumerable: true,
  configurable: true,
});

/** A proxy of `target` every trap of which throws. */
const hostile = (target: object) =>
  new Proxy(target, new Proxy({}, { get: (_handler, trap) => throwing(`the ${String(trap)} trap`).get }));

describe('thrown values that fight back', () => {
  it('rebuilds an error named after any Object.prototype key as a plain Error, and keeps __proto__ as data', () => {
    for (const name of Object.getOwnPropertyNames(Object.prototype)) {
      const error = new Error(`named ${name}`);
      error.name = name;
      Object.defineProperty(error, '__proto__', { value: { polluted: name }, enumerable: true });
      const rebuilt = across(error) as Error;
      assert.equal(Object.getPrototypeOf(rebuilt), Error.prototype, name);
      assert.equal(rebuilt.name, name);
      assert.equal(rebuilt.message, `named ${name}`);
      assert.deepEqual(Object.getOwnPropertyDescriptor(rebuilt, '__proto__')?.value, { polluted: name });
    }
  });

  it('keeps an AggregateError with its errors, each rebuilt', () => {
    const inner = new AggregateError([new RangeError('deep')], 'inner');
    const rebuilt = across(new AggregateError([new TypeError('t'), 'plain', inner], 'all')) as AggregateError;
    assert.ok(rebuilt instanceof AggregateError);
    assert.equal(rebuilt.message, 'all');
    assert.equal(rebuilt.errors.length, 3);
    assert.ok(rebuilt.errors[0] instanceof TypeError);
    assert.equal(rebuilt.errors[1], 'plain');
    assert.ok(rebuilt.errors[2] instanceof AggregateError);
    assert.ok(rebuilt.errors[2].errors[0] instanceof RangeError);
    assert.equal(rebuilt.errors[2].errors[0].message, 'deep');
  });

  it('keeps a DOMException with its name and code, and the built-in class of a subclass', () => {
    const rebuilt = across(new DOMException('stopped', 'AbortError')) as DOMException;
    assert.ok(rebuilt instanceof DOMException);
    assert.equal(rebuilt.name, 'AbortError');
    assert.equal(rebuilt.code, DOMException.ABORT_ERR);
    assert.equal(rebuilt.message, 'stopped');
    class ValidationError extends TypeError {
      override name = 'ValidationError';
    }
    const subclass = across(new ValidationError('bad')) as Error;
    assert.ok(subclass instanceof TypeError);
    assert.equal(subclass.name, 'ValidationError');
  });

  it('cuts circular causes and errors, and bounds deep ones', () => {
    const circular = new Error('me');
    circular.cause = circular;
    const rebuilt = across(circular) as Error;
    assert.ok(rebuilt.cause instanceof ThrownValueDescription);
    assert.match(String(rebuilt.cause), /circular/);
    const aggregate = new AggregateError([], 'holds itself');
    aggregate.errors.push(aggregate);
    assert.ok((across(aggregate) as AggregateError).errors[0] instanceof ThrownValueDescription);
    let deep = new Error('level 0');
    for (let level = 1; level <= 1000; level++) deep = new Error(`level ${level}`, { cause: deep });
    let levels = 0;
    for (let at: unknown = across(deep); at instanceof Error; at = at.cause) levels++;
    assert.ok(levels > 1 && levels < 20, `${levels} levels`);
  });

  it('reports anything thrown without throwing, in a form structuredClone takes', () => {
    const getter = Object.defineProperty(new Error('getter'), 'bad', throwing(new Error('boom')));
    // The stack first: V8 formats a pending stack, reading name and message, when it is redefined.
    const fields = new Error('fields');
    for (const field of ['stack', 'name', 'message', 'cause']) Object.defineProperty(fields, field, throwing(field));
    const odd = Object.assign(new Error('odd'), { big: 10n, symbol: Symbol('s'), proxy: new Proxy({}, {}) });
    Object.assign(odd, { self: odd, name: Symbol('name') });
    const revocable = Proxy.revocable({}, {});
    revocable.revoke();
    const thrown: unknown[] = [
      ...[getter, fields, odd, null, undefined, Symbol('x'), () => 1, class Named {}],
      ...[hostile({}), hostile(new Error('proxied')), revocable.proxy],
      ...[Object.defineProperty({}, 'bad', throwing('boom')), Object.create(null), { text: 'a', f() {} }],
    ];
    for (const value of thrown) {
      const rebuilt = rebuildThrown(structuredClone(reportThrown(value)));
      assert.ok(describeThrown(value).length > 0);
      assert.ok(describeThrown(rebuilt).length > 0);
    }
    assert.match((across(getter) as Record<string, unknown>).bad as string, /reading `bad` threw Error: boom/);
    assert.match((across(fields) as Error).message, /reading its message threw `"message"` \(string\)/);
  });

  it('describes thrown functions and symbols in words, without nested quotes', () => {
    const anonymous = across(() => 1);
    assert.ok(anonymous instanceof ThrownValueDescription);
    assert.equal(anonymous.description, 'a function (anonymous)');
    assert.equal(describeThrown(anonymous), 'a non-Error value was thrown: a function (anonymous)');
    assert.equal(describeThrown(across(function named() {})), 'a non-Error value was thrown: a function named');
    assert.equal(String(across(Symbol('x'))), 'Symbol(x)');
    const holding = describeThrown(across({ text: 'a', f() {} }));
    assert.equal(holding, 'a non-Error value was thrown: an object that cannot be copied: `{"text":"a"}`');
    assert.equal(
      new ParmapTaskError(3, across(Symbol('x'))).message,
      'parmap: fn failed on item 3: a non-Error value was thrown: Symbol(x)',
    );
    assert.equal(describeValue(0), '`0` (number)');
    assert.equal(describeValue('x'), '`"x"` (string)');
  });
});

describe('ParmapScopeError', () => {
  it('says to pass the names in scope, unless the caller gives its own advice', () => {
    const plain = new ParmapScopeError(['a', 'b']);
    assert.equal(
      plain.message,
      'parmap: fn uses `a`, `b` from the code around it, and a worker cannot see them. ' +
        'Pass them with the scope option ({ scope: { a, b } }), define or import it inside fn, ' +
        'or use n: 1 without `scope` to run fn in this thread as it is.',
    );
    const advice = 'it is imported, so it cannot travel as text: use { module, export }';
    const imported = new ParmapScopeError(['helper'], advice);
    assert.equal(
      imported.message,
      `parmap: fn uses \`helper\` from the code around it, and a worker cannot see it. ${advice}`,
    );
    assert.deepEqual(imported.names, ['helper']);
  });
});

describe('published declarations', () => {
  it('compile for a project whose lib is es2019', () => {
    const declarations = fileURLToPath(new URL('../dist/parmap/errors.d.ts', import.meta.url));
    const program = ts.createProgram([declarations], {
      noEmit: true,
      strict: true,
      skipLibCheck: false,
      target: ts.ScriptTarget.ES2019,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ['lib.es2019.d.ts', 'lib.esnext.asynciterable.d.ts'],
      types: ['node'],
      typeRoots: [fileURLToPath(new URL('../node_modules/@types', import.meta.url))],
    });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((diagnostic) => diagnostic.file?.fileName.endsWith('dist/parmap/errors.d.ts'))
      .map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
    assert.deepEqual(problems, []);
  });
});

describe('the stack of an error from a worker', () => {
  const ownFiles = fileURLToPath(new URL('../dist/', import.meta.url));
  const thisFile = fileURLToPath(import.meta.url);

  for (const [way, n] of [
    ['awaited, on workers', 2],
    ['iterated, on workers', 2],
    ['awaited, in this thread', 1],
  ] as const) {
    it(`shows fn's frame, then the caller's own line, and none of parmap's (${way})`, async () => {
      const failing = (x: number) => {
        if (x === 3) throw new Error('boom');
        return x;
      };
      const callLine = Number(new Error().stack?.split('\n')[1]?.match(/:(\d+):\d+\)?$/)?.[1]) + 1;
      const result = parmap(failing, [1, 2, 3, 4], { n });
      const error = await (way.startsWith('iterated')
        ? (async () => {
            for await (const _ of result);
          })()
        : result
      ).then(
        () => assert.fail('no error'),
        (thrown: unknown) => thrown,
      );
      assert.ok(error instanceof ParmapTaskError);
      const frames = (error.stack ?? '').split('\n').slice(1);
      assert.match(error.stack ?? '', /^ParmapTaskError: parmap: fn failed on item 2/);
      assert.ok(frames.length > 0);
      assert.ok(!frames.some((frame) => frame.includes(ownFiles)), error.stack);
      const callerFrame = frames.findIndex((frame) => frame.includes(`${thisFile}:${callLine}:`));
      assert.ok(callerFrame >= 0, `no frame at line ${callLine} of this file in:\n${error.stack}`);
      assert.ok(callerFrame >= 1, 'fn comes first');
    });
  }
});
