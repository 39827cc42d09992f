/**
 * Names a worker provides to `fn` beyond its own globals: `require` and friends resolved from the
 * caller's file, and the helpers that transpilers (tsc, esbuild/tsx) and coverage tools inject into
 * function text. Main thread and worker share this list: the main thread to tell which free names
 * need `scope`, the worker to define them.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { importFromCaller, resolveFromCaller } from './resolve.js';

/** Names the source rewriter puts in place of `import(...)` and `import.meta`. */
export const IMPORT_NAME = '__parmapImport';
export const IMPORT_META_NAME = '__parmapImportMeta';

// Not `arguments`: it is free in fn only when an arrow uses its enclosing function's, which no
// worker has (functionExpression refuses those), and strict code cannot take it as a parameter.
const CALLER_NAMES = new Set([
  'require',
  '__dirname',
  '__filename',
  IMPORT_NAME,
  IMPORT_META_NAME,
  '__vite_ssr_dynamic_import__',
  '__vite_ssr_import_meta__',
]);

type Helper = (...args: never[]) => unknown;

// esbuild's own helpers, written as esbuild emits them; tsx injects `__name` into every named
// inner function.
const defineProperty = Object.defineProperty;
const ESBUILD_HELPERS: Record<string, Helper> = {
  __name: (target: object, value: string) => defineProperty(target, 'name', { value, configurable: true }),
  __defNormalProp: (object: object, key: PropertyKey, value: unknown) => {
    if (key in object) defineProperty(object, key, { enumerable: true, configurable: true, writable: true, value });
    else (object as Record<PropertyKey, unknown>)[key] = value;
    return value;
  },
  __publicField: (object: object, key: PropertyKey, value: unknown) =>
    (ESBUILD_HELPERS.__defNormalProp as (o: object, k: PropertyKey, v: unknown) => unknown)(
      object,
      typeof key !== 'symbol' ? `${String(key)}` : key,
      value,
    ),
  __spreadValues: (target: Record<PropertyKey, unknown>, source: Record<PropertyKey, unknown>) => {
    for (const key of Reflect.ownKeys(source ?? {})) {
      if (Object.prototype.propertyIsEnumerable.call(source, key)) target[key] = source[key];
    }
    return target;
  },
  __spreadProps: (target: object, source: object) =>
    Object.defineProperties(target, Object.getOwnPropertyDescriptors(source)),
  __objRest: (source: Record<PropertyKey, unknown>, exclude: PropertyKey[]) => {
    const target: Record<PropertyKey, unknown> = {};
    for (const key of Reflect.ownKeys(source)) {
      if (!exclude.includes(key) && Object.prototype.propertyIsEnumerable.call(source, key)) {
        target[key] = source[key];
      }
    }
    return target;
  },
  __pow: Math.pow,
  __async: (self: unknown, args: unknown[], generatorFunction: (...a: unknown[]) => Generator) =>
    new Promise((resolve, reject) => {
      const generator = generatorFunction.apply(self, args);
      const step = (result: IteratorResult<unknown>): void => {
        if (result.done) resolve(result.value);
        else Promise.resolve(result.value).then(fulfilled, rejected);
      };
      const fulfilled = (value: unknown): void => {
        try {
          step(generator.next(value));
        } catch (error) {
          reject(error);
        }
      };
      const rejected = (value: unknown): void => {
        try {
          step(generator.throw(value));
        } catch (error) {
          reject(error);
        }
      };
      fulfilled(undefined);
    }),
};

// istanbul-style coverage counters (`cov_x().s[3]++`), recognised by how they are used (see the
// function-code module): every access lands in a sink that ignores it.
const coverageSink: unknown = new Proxy(() => undefined, {
  get: (_target, key) => (key === Symbol.toPrimitive ? () => 0 : coverageSink),
  set: () => true,
  apply: () => coverageSink,
});

/** The value a worker gives a coverage counter function. */
export const coverageCounter = (): unknown => coverageSink;

const ownRequire = createRequire(import.meta.url);
let tslib: Record<string, unknown> | undefined;
function tslibHelper(name: string): unknown {
  if (!name.startsWith('__')) return undefined;
  tslib ??= ownRequire('tslib') as Record<string, unknown>;
  return Object.hasOwn(tslib, name) ? tslib[name] : undefined;
}

/** Whether a worker can provide `name` to fn without `scope`. */
export function isProvidedName(name: string): boolean {
  return CALLER_NAMES.has(name) || Object.hasOwn(ESBUILD_HELPERS, name) || tslibHelper(name) !== undefined;
}

/** The value a worker gives `name`, with `require` and imports resolved from the caller's file. */
export function providedValue(name: string, callerFile: string): unknown {
  if (Object.hasOwn(ESBUILD_HELPERS, name)) return ESBUILD_HELPERS[name];
  switch (name) {
    case 'require':
      return createRequire(callerFile);
    case '__dirname':
      return dirname(callerFile);
    case '__filename':
      return callerFile;
    case IMPORT_NAME:
    case '__vite_ssr_dynamic_import__':
      return importFromCaller(callerFile);
    case IMPORT_META_NAME:
    case '__vite_ssr_import_meta__':
      return importMetaOf(callerFile);
    default:
      return tslibHelper(name);
  }
}

function importMetaOf(callerFile: string): object {
  const url = pathToFileURL(callerFile).href;
  return {
    url,
    filename: callerFile,
    dirname: dirname(callerFile),
    resolve: (specifier: string) => resolveFromCaller(specifier, callerFile),
  };
}
