// The hand-written reference's worker: compiles the function once, takes the fixed arguments once
// (in workerData), then answers each [start, items] with [start, results] so that the main side
// writes the results in place.
const { parentPort, workerData } = require('node:worker_threads');

const fn = new Function(`return (${workerData.source})`)();
const fixedArgs = workerData.args;
// Without fixed arguments the function is called directly, with no spread per item.
const call = fixedArgs.length === 0 ? fn : (item) => fn(item, ...fixedArgs);

parentPort.on('message', ([start, items]) => {
  const results = new Array(items.length);
  for (let i = 0; i < items.length; i++) results[i] = call(items[i]);
  parentPort.postMessage([start, results]);
});
