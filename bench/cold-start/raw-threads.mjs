// The same program written by hand: two raw threads, one message each (answered), then ended.
import { Worker } from 'node:worker_threads';

const echo = `require('node:worker_threads').parentPort.on('message', (x) => {
  require('node:worker_threads').parentPort.postMessage(x);
});`;
const workers = [1, 2].map(() => new Worker(echo, { eval: true }));
const results = await Promise.all(
  workers.map(
    (worker, i) =>
      new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.postMessage(i + 1);
      }),
  ),
);
await Promise.all(workers.map((worker) => worker.terminate()));
console.log(JSON.stringify(results));
