// Bundles the worker script and the modules it uses into one CommonJS file. A worker then starts
// without Node's ES module loader resolving a graph of modules, which costs each worker about
// 12 ms (a quarter of a thread's whole start-up on a 2-core machine).
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/parmap/worker/main.js'],
  outfile: 'dist/parmap/worker.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // workerpool's worker side goes into the bundle too (through its main entry, as any import):
  // loading it from node_modules cost each worker about a third of its start-up. tslib is
  // loaded only when transpiled code needs its helpers.
  external: ['tslib'],
  define: { 'import.meta.url': '__parmapModuleUrl' },
  banner: { js: "const __parmapModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
  // import(url, attributes) with attributes from the caller's code: left as it is, which Node runs.
  logOverride: { 'unsupported-dynamic-import': 'silent' },
});
