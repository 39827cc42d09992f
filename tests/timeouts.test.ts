import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parmap } from '../dist/index.js';

const range = (count: number) => Array.from({ length: count }, (_, i) => i);

describe('timeout', () => {
  for (const workerType of ['thread', 'process'] as const) {
    it(`limits an item's own run time, not the time its chunk's results take to travel back (${workerType})`, async () => {
      // 30 items of about 3 ms each, with 2 MB results: sending a chunk back takes far longer than
      // the 25 ms timeout, which no single item comes near.
      const results = await parmap(
        (x: number) => {
          const end = performance.now() + 3;
          while (performance.now() < end);
          return 'x'.repeat(2_000_000) + x;
        },
        range(60),
        { n: 2, chunksize: 30, timeout: 25, workerType },
      );
      assert.equal(results.length, 60);
      assert.ok(
        results.every((result, i) => result.endsWith(String(i)) && result.length === 2_000_000 + String(i).length),
      );
    });
  }
});
