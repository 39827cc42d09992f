// A hand-written chunked worker: receives [id, items], answers [id, results]. The practical floor.
const { parentPort, workerData } = require('node:worker_threads');
const fn = new Function(`return (${workerData.source})`)();
parentPort.on('message', ([id, items, extra]) => {
  const out = new Array(items.length);
  for (let i = 0; i < items.length; i++) out[i] = fn(items[i], extra);
  parentPort.postMessage([id, out]);
});
