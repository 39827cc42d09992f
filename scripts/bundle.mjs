// Bundles what tsc built into the three files that run: the library's entry (ESM), the `parmap`
// command (ESM) and the worker script (CommonJS). Node's ES module loader then resolves one file
// instead of a graph of about fifty: importing parmap went from about 24 ms to 8 ms, and each worker starts about 12 ms sooner
// (a quarter of a thread's whole start-up on a 2-core machine).
import { chmodSync } from 'node:fs';
import { build } from 'esbuild';

const shared = { bundle: true, platform: 'node', target: 'node20', logLevel: 'warning' };
// import(url, attributes) with attributes from the caller's code: left as it is, which Node runs.
const logOverride = { 'unsupported-dynamic-import': 'silent' };

/**
 * An ES module bundle that keeps its packages (workerpool, acorn, ora...) as imports: they load
 * only when used. Modules find the worker script and resolve packages from their own place, which
 * in the bundle is stood in for by `executors`, the folder they were built into, relative to it.
 */
function esmBundle(entry, outfile, executors, extra = {}) {
  return build({
    ...shared,
    entryPoints: [entry],
    outfile,
    format: 'esm',
    packages: 'external',
    define: { 'import.meta.url': '__parmapModuleUrl' },
    banner: { js: `const __parmapModuleUrl = new URL('${executors}', import.meta.url).href;` },
    logOverride,
    ...extra,
  });
}

await esmBundle('dist/index.js', 'dist/parmap.js', './parmap/executors/');

// The command, with the library inside: run from the module graph tsc wrote, it spent about 20 ms
// more loading it before doing anything. Coverage of its code is counted, through the source map,
// in the files it was bundled from.
await esmBundle('dist/parmap/cli/main.js', 'dist/parmap/cli.js', './executors/', { sourcemap: 'linked' });
chmodSync('dist/parmap/cli.js', 0o755);

await build({
  ...shared,
  entryPoints: ['dist/parmap/worker/main.js'],
  outfile: 'dist/parmap/worker.cjs',
  format: 'cjs',
  // workerpool's worker side goes into the bundle too (through its main entry, as any import):
  // loading it from node_modules cost each worker about a third of its start-up. tslib is
  // loaded only when transpiled code needs its helpers.
  external: ['tslib'],
  define: { 'import.meta.url': '__parmapModuleUrl' },
  banner: { js: "const __parmapModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logOverride,
});
