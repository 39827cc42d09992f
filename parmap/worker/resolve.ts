/**
 * `import()` and `import.meta.resolve()` as the caller's file would do them. Code rebuilt in a
 * worker lives in parmap's worker script, so a plain `import('pkg')` there would look for the
 * package from parmap's own folder: an ESM-only package of the caller would not be found, and a
 * package parmap also uses would load parmap's copy. Bare specifiers are therefore resolved here
 * from the caller's folder, with the `import` conditions, following the package's `exports`.
 */
import { readFileSync, statSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Conditions of an ES module import, plus the caller's own `--conditions`. */
const CONDITIONS = new Set(['node', 'import', 'default', ...userConditions(process.execArgv)]);

/** `import(specifier, attributes)` resolved from `callerFile`. */
export function importFromCaller(callerFile: string): (specifier: unknown, attributes?: unknown) => Promise<unknown> {
  return (specifier, attributes) => {
    const url = resolveFromCaller(String(specifier), callerFile);
    return attributes === undefined ? import(url) : import(url, attributes as ImportCallOptions);
  };
}

/** The URL `import(specifier)` would load from `callerFile`. Throws when nothing is found. */
export function resolveFromCaller(specifier: string, callerFile: string): string {
  const callerUrl = pathToFileURL(callerFile);
  if (specifier.startsWith('./') || specifier.startsWith('../') || specifier.startsWith('/')) {
    return new URL(specifier, callerUrl).href;
  }
  if (/^[a-z][a-z\d+.-]*:/i.test(specifier) || builtinModules.includes(specifier)) return specifier;
  const found = resolvePackage(specifier, dirname(callerFile));
  if (found !== undefined) return pathToFileURL(found).href;
  // Not a package with `exports` we can read: what require would find, if anything.
  try {
    return pathToFileURL(createRequire(callerFile).resolve(specifier)).href;
  } catch {
    const error = new Error(`Cannot find package '${specifier}' imported from ${callerFile}`) as Error & {
      code: string;
    };
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
}

function resolvePackage(specifier: string, fromDir: string): string | undefined {
  const parts = specifier.split('/');
  const nameLength = specifier.startsWith('@') ? 2 : 1;
  const name = parts.slice(0, nameLength).join('/');
  const subpath = parts.length > nameLength ? `./${parts.slice(nameLength).join('/')}` : '.';
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const packageDir = join(dir, 'node_modules', name);
    const manifest = readManifest(join(packageDir, 'package.json'));
    if (manifest !== undefined) return resolveInPackage(packageDir, manifest, subpath);
    if (dirname(dir) === dir) return undefined;
  }
}

function resolveInPackage(packageDir: string, manifest: Record<string, unknown>, subpath: string): string | undefined {
  const { exports } = manifest;
  if (exports === undefined || exports === null) {
    if (subpath !== '.') return join(packageDir, subpath);
    const main = typeof manifest.main === 'string' ? manifest.main : 'index.js';
    return existingFile(join(packageDir, main)) ?? existingFile(join(packageDir, main, 'index.js'));
  }
  const target = exportTarget(exports, subpath);
  return typeof target === 'string' ? join(packageDir, target) : undefined;
}

function exportTarget(exports: unknown, subpath: string): string | undefined {
  const isSubpathMap =
    typeof exports === 'object' &&
    exports !== null &&
    !Array.isArray(exports) &&
    Object.keys(exports).some((key) => key.startsWith('.'));
  if (!isSubpathMap) return subpath === '.' ? conditionalTarget(exports) : undefined;
  const map = exports as Record<string, unknown>;
  if (Object.hasOwn(map, subpath)) return conditionalTarget(map[subpath]);
  for (const key of Object.keys(map)) {
    const star = key.indexOf('*');
    if (star < 0) continue;
    const prefix = key.slice(0, star);
    const suffix = key.slice(star + 1);
    if (subpath.startsWith(prefix) && subpath.endsWith(suffix) && subpath.length >= key.length - 1) {
      const middle = subpath.slice(prefix.length, subpath.length - suffix.length);
      return conditionalTarget(map[key])?.replaceAll('*', middle);
    }
  }
  return undefined;
}

function conditionalTarget(target: unknown): string | undefined {
  if (typeof target === 'string') return target;
  if (Array.isArray(target)) {
    for (const candidate of target) {
      const found = conditionalTarget(candidate);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (typeof target !== 'object' || target === null) return undefined;
  for (const [condition, value] of Object.entries(target)) {
    if (!CONDITIONS.has(condition)) continue;
    const found = conditionalTarget(value);
    if (found !== undefined) return found;
  }
  return undefined;
}

function readManifest(path: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function existingFile(path: string): string | undefined {
  try {
    return statSync(path).isFile() ? path : undefined;
  } catch {
    return undefined;
  }
}

function userConditions(execArgv: readonly string[]): string[] {
  const conditions: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const flag = execArgv[i] as string;
    const inline = /^(?:--conditions|-C)=(.+)$/.exec(flag);
    if (inline !== null) conditions.push(inline[1] as string);
    else if ((flag === '--conditions' || flag === '-C') && i + 1 < execArgv.length)
      conditions.push(execArgv[++i] as string);
  }
  return conditions;
}
