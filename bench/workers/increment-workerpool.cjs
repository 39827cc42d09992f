// The trivial item function, registered as a workerpool method (its fastest form: no per-task compile).
const workerpool = require('workerpool');
workerpool.worker({ increment: (x) => x + 1 });
