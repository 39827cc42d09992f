import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';

const root = join(import.meta.dirname, '..');

function sources(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const files = sources(join(root, 'parmap')).map((path) => ({
  name: relative(root, path),
  text: readFileSync(path, 'utf8'),
}));

describe('layers and dependencies', () => {
  it('uses workerpool through its documented API only: no deep import, no private field, no parsing of its messages', () => {
    const forbidden = [
      /workerpool\/src/,
      /_ensureMinWorkers|_removeWorker|_getWorker|_next\b/,
      /\.processing\b|\.requestQueue\b|\.terminationHandler\b/,
      /minWorkers\s*=/,
      /\bpool\.workers\b|\bhandler\.worker\b/,
      /exitCode: `|signalCode: `|terminated unexpectedly|Workerpool Worker/i,
    ];
    for (const { name, text } of files) {
      for (const pattern of forbidden) assert.doesNotMatch(text, pattern, `${name} matches ${pattern}`);
    }
  });

  it('imports workerpool in two places: where pools are made and the worker script', () => {
    const importers = files
      .filter(({ text }) => /from 'workerpool'|import\('workerpool'\)|require\('workerpool'\)/i.test(text))
      .map(({ name }) => name)
      .sort();
    assert.deepEqual(importers, [
      join('parmap', 'executors', 'workerpool-pool.ts'),
      join('parmap', 'worker', 'main.ts'),
    ]);
  });

  it('loads bullmq and ioredis only for a remote call or worker: the remote executor imports them when it starts', () => {
    const importers = files
      .filter(({ text }) => /from '(bullmq|ioredis)'|import\('(bullmq|ioredis)'\)/.test(text))
      .map(({ name }) => name)
      .sort();
    for (const name of importers)
      assert.match(name, /executors[\\/](remote|chunk-runner)/, `${name} imports bullmq or ioredis`);
    for (const { name, text } of files) {
      assert.doesNotMatch(
        text,
        /^import (?!type )[^;]*from '(bullmq|ioredis)'/m,
        `${name} loads bullmq or ioredis with itself`,
      );
    }
  });

  it('keeps the scheduler free of workers: it imports no executor implementation', () => {
    for (const { name, text } of files.filter(({ name }) => name.includes(`${join('parmap', 'scheduler')}`))) {
      assert.doesNotMatch(
        text,
        /from '\.\.\/executors\/(?!executor\.js)/,
        `${name} imports an executor implementation`,
      );
      assert.doesNotMatch(text, /node:worker_threads|node:child_process|workerpool/, `${name} touches workers`);
    }
  });

  it('defines every message between the two sides in one module', () => {
    const messageTypes =
      /export (type|interface) (ChunkRequest|ChunkReply|WorkerEvent|CallSetup|ThreadStart|Remote(CallRecord|ChunkJob|ChunkResult|Outcome))\b/;
    const definers = files.filter(({ text }) => messageTypes.test(text)).map(({ name }) => name);
    assert.deepEqual(definers, [join('parmap', 'protocol.ts')]);
  });
});
