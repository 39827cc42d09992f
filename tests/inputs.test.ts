/**
 * Inputs as users pass them: streams that produce on their own, and iterables that misbehave.
 * Each scenario runs in its own Node process that must end by itself.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertClean, lastJson, MODES, runScenario } from './fixtures/child-scenario.js';

const range = (count: number) => Array.from({ length: count }, (_, i) => i);

describe('inputs that produce on their own lose nothing', { concurrency: 3 }, () => {
  let dir = '';
  let file = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'parmap-inputs-'));
    file = join(dir, 'lines.txt');
    writeFileSync(
      file,
      range(50_000)
        .map((i) => `line ${i}\n`)
        .join(''),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const mode of MODES) {
    it(`a 50,000-line file read with readline gives every line, in order (${mode.name})`, async () => {
      const outcome = await runScenario(
        `import { createReadStream } from 'node:fs';
         import { createInterface } from 'node:readline';
         const lines = createInterface({ input: createReadStream(${JSON.stringify(file)}) });
         const results = await parmap((line) => line.toUpperCase(), lines, ${mode.options});
         const wrong = results.findIndex((r, i) => r !== 'LINE ' + i);
         console.log(JSON.stringify({ length: results.length, wrong }));`,
      );
      assertClean(outcome);
      assert.deepEqual(lastJson(outcome), { length: 50_000, wrong: -1 });
    });

    it(`events.on() fed synchronously right after the call gives every event, in order (${mode.name})`, async () => {
      const outcome = await runScenario(
        `import { EventEmitter, on } from 'node:events';
         const emitter = new EventEmitter();
         const results = parmap(([x]) => x * 2, on(emitter, 'data', { close: ['end'] }), ${mode.options});
         for (let i = 0; i < 1000; i++) emitter.emit('data', i);
         emitter.emit('end');
         console.log(JSON.stringify(await results));`,
      );
      assertClean(outcome);
      assert.deepEqual(
        lastJson(outcome),
        range(1000).map((x) => x * 2),
      );
    });

    it(`readline lines written synchronously right after the call all arrive, in order (${mode.name})`, async () => {
      const outcome = await runScenario(
        `import { PassThrough } from 'node:stream';
         import { createInterface } from 'node:readline';
         const lines = createInterface({ input: new PassThrough() });
         const results = parmap((line) => Number(line), lines, ${mode.options});
         for (let i = 0; i < 1000; i++) lines.write(i + '\\n');
         lines.close();
         console.log(JSON.stringify(await results));`,
      );
      assertClean(outcome);
      assert.deepEqual(lastJson(outcome), range(1000));
    });
  }
});

/** An iterable whose `length` says one count while it yields another. */
const lyingIterable = (length: number, count: number) =>
  `({ length: ${length}, *[Symbol.iterator]() { for (let i = 0; i < ${count}; i++) yield i } })`;

describe('odd inputs', { concurrency: 3 }, () => {
  for (const mode of MODES) {
    for (const [length, count] of [
      [3, 10],
      [10, 3],
      [0, 5],
    ] as const) {
      it(`an iterable whose length says ${length} but yields ${count} gives what it yields (${mode.name})`, async () => {
        const outcome = await runScenario(
          `console.log(JSON.stringify(await parmap((x) => x * 10, ${lyingIterable(length, count)}, ${mode.options})));`,
        );
        assertClean(outcome);
        assert.deepEqual(
          lastJson(outcome),
          range(count).map((x) => x * 10),
        );
      });
    }
  }

  for (const mode of MODES) {
    for (const kind of ['sync', 'async'] as const) {
      for (const bad of ['undefined', '5', 'null', "'done'"]) {
        it(`a ${kind} iterator whose next() returns ${bad} rejects with a TypeError naming the item (${mode.name})`, async () => {
          const outcome = await runScenario(
            `let i = 0;
             const iterator = { next: () => (i < 3 ? { value: i++, done: false } : ${bad}) };
             const input = ${kind === 'sync' ? '{ [Symbol.iterator]: () => iterator }' : '{ [Symbol.asyncIterator]: () => ({ next: async () => iterator.next() }) }'};
             try { await parmap((x) => x, input, ${mode.options}); console.log('{"resolved":true}') }
             catch (e) { console.log(JSON.stringify({ type: e?.constructor?.name, message: e?.message })) }`,
          );
          assertClean(outcome);
          const error = lastJson(outcome) as { type: string; message: string };
          assert.equal(error.type, 'TypeError', JSON.stringify(error));
          assert.match(error.message, /\bitem 3\b/);
          assert.doesNotMatch(error.message, /Cannot read|undefined \(reading/);
        });
      }

      const throwingInput =
        kind === 'sync'
          ? `{ *[Symbol.iterator]() { yield* range(10); throw failure } }`
          : `{ async *[Symbol.asyncIterator]() { yield* range(10); throw failure } }`;

      it(`a ${kind} input whose next() throws rejects with that very error (${mode.name})`, async () => {
        const outcome = await runScenario(
          `const failure = new Error('input broke');
           try { await parmap((x) => x, ${throwingInput}, ${mode.options}); console.log('"resolved"') }
           catch (e) { console.log(JSON.stringify(e === failure ? 'same error' : String(e?.stack ?? e))) }`,
        );
        assertClean(outcome);
        assert.equal(lastJson(outcome), 'same error');
      });

      it(`a ${kind} input whose next() throws a revoked Proxy rejects with it, also with progress (${mode.name})`, async () => {
        // Asking whether it was an AbortError threw, and parmap's own TypeError replaced it.
        const outcome = await runScenario(
          `const { proxy: failure, revoke } = Proxy.revocable({}, {});
           revoke();
           const same = [];
           for (const extra of [{}, { progress: () => {} }]) {
             try { await parmap((x) => x, ${throwingInput}, { ...${mode.options}, ...extra }); same.push('resolved') }
             catch (e) { same.push(e === failure) }
           }
           console.log(JSON.stringify(same))`,
        );
        assertClean(outcome);
        assert.deepEqual(lastJson(outcome), [true, true]);
      });

      it(`a ${kind} input whose next() throws: for await yields the results before it, then throws it (${mode.name})`, async () => {
        const outcome = await runScenario(
          `const failure = new Error('input broke');
           const seen = [];
           try { for await (const r of parmap((x) => x * 10, ${throwingInput}, ${mode.options})) seen.push(r); console.log('"finished"') }
           catch (e) { console.log(JSON.stringify({ seen, same: e === failure })) }`,
        );
        assertClean(outcome);
        assert.deepEqual(lastJson(outcome), {
          seen: range(10).map((x) => x * 10),
          same: true,
        });
      });
    }

    const badReturns = {
      'a sync iterator whose return() throws': `{ [Symbol.iterator]() { let i = 0; return { next: () => ({ value: i++, done: false }), return() { throw new Error('return failed') } } } }`,
      'an async iterator whose return() rejects': `{ [Symbol.asyncIterator]() { let i = 0; return { next: async () => ({ value: i++, done: false }), return: async () => { throw new Error('return failed') } } } }`,
      'an async iterator whose return() never settles': `{ [Symbol.asyncIterator]() { let i = 0; return { next: async () => ({ value: i++, done: false }), return: () => new Promise(() => {}) } } }`,
    };
    for (const [name, input] of Object.entries(badReturns)) {
      it(`break ends the loop and leaves no worker, with ${name} (${mode.name})`, async () => {
        const outcome = await runScenario(
          `let seen = 0;
           try { for await (const r of parmap((x) => x, ${input}, ${mode.options})) if (++seen === 100) break; console.log(JSON.stringify({ seen })) }
           catch (e) { console.log(JSON.stringify({ seen, error: String(e) })) }`,
        );
        assertClean(outcome);
        assert.deepEqual(lastJson(outcome), { seen: 100 });
      });
    }

    it(`signal ends a call whose async input never settles, with an AbortError (${mode.name})`, async () => {
      const outcome = await runScenario(
        `const controller = new AbortController();
         // Aborts once parmap is waiting on the input.
         const never = { [Symbol.asyncIterator]: () => ({ next: () => { setImmediate(() => controller.abort()); return new Promise(() => {}) } }) };
         try { await parmap((x) => x, never, { ...${mode.options}, signal: controller.signal }); console.log('"resolved"') }
         catch (e) { console.log(JSON.stringify(e instanceof AbortError ? 'AbortError' : String(e))) }`,
      );
      assertClean(outcome);
      assert.equal(lastJson(outcome), 'AbortError');
    });
  }
});
