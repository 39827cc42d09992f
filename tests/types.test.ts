/**
 * The published types, as a user's compiler sees them. `tests/types/` holds calls that must compile
 * (with the types they must give) and calls that must not (each after a `@ts-expect-error` that
 * quotes part of its message), compiled with the TypeScript API against the built
 * `dist/index.d.ts`; and a small user compiled with an ES2019 `lib` and `skipLibCheck: false`, so
 * that every published declaration is checked against what an older project has.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const folder = fileURLToPath(new URL('./types/', import.meta.url));
const declarations = fileURLToPath(new URL('../dist/index.d.ts', import.meta.url));
const errorsFile = join(folder, 'errors.ts');

const formatHost: ts.FormatDiagnosticsHost = {
  getCanonicalFileName: (name) => name,
  getCurrentDirectory: () => folder,
  getNewLine: () => '\n',
};

function describeDiagnostics(diagnostics: readonly ts.Diagnostic[]): string {
  return ts.formatDiagnostics(diagnostics, formatHost);
}

/** The compiler options and files of a tsconfig in `tests/types/`. */
function readConfig(name: string): ts.ParsedCommandLine {
  const path = join(folder, name);
  const { config, error } = ts.readConfigFile(path, ts.sys.readFile);
  assert.equal(error, undefined, error && describeDiagnostics([error]));
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, folder, undefined, path);
  assert.deepEqual(parsed.errors, [], describeDiagnostics(parsed.errors));
  return parsed;
}

/** Compiles a tsconfig's files; `replaced` gives some of them other text. */
function compile(
  config: ts.ParsedCommandLine,
  replaced: ReadonlyMap<string, string> = new Map(),
  oldProgram?: ts.Program,
): ts.Program {
  const host = ts.createCompilerHost(config.options);
  const readSourceFile = host.getSourceFile;
  host.getSourceFile = (fileName, languageVersion, ...rest) => {
    const text = replaced.get(fileName);
    return text === undefined
      ? readSourceFile(fileName, languageVersion, ...rest)
      : ts.createSourceFile(fileName, text, languageVersion, true);
  };
  return ts.createProgram({
    rootNames: config.fileNames,
    options: config.options,
    host,
    ...(oldProgram && { oldProgram }),
  });
}

/** A line's expected error: the line after a `@ts-expect-error` comment, and the part of the message it quotes. */
interface Expectation {
  readonly line: number;
  readonly message: string;
}

function expectationsOf(text: string): Expectation[] {
  return text.split('\n').flatMap((line, index) => {
    if (!/^\s*\/\/ @ts-expect-error/.test(line)) return [];
    const quoted = /@ts-expect-error `([^`]+)`\s*$/.exec(line);
    assert.ok(quoted, `errors.ts line ${index + 1} does not quote the message it expects: ${line.trim()}`);
    return [{ line: index + 1, message: quoted[1] as string }];
  });
}

describe('the published types', () => {
  let program: ts.Program;

  before(() => {
    assert.ok(existsSync(declarations), 'dist/index.d.ts is missing: run `npm run build` first');
  });

  it('compile every right call with the expected types, and expect an error at every wrong one', () => {
    program = compile(readConfig('tsconfig.json'));
    const diagnostics = ts.getPreEmitDiagnostics(program);
    assert.equal(diagnostics.length, 0, `\n${describeDiagnostics(diagnostics)}`);
  });

  it('reject each wrong call with the message its comment quotes, and nothing else', () => {
    // errors.ts with its @ts-expect-error comments turned off: each expected error must then be
    // reported on the line after its comment, and no other line may have one.
    const text = readFileSync(errorsFile, 'utf8');
    const expectations = expectationsOf(text);
    assert.ok(expectations.length >= 20, `only ${expectations.length} expected errors found`);
    const config = readConfig('tsconfig.json');
    const unchecked = compile(
      config,
      new Map([[errorsFile, text.replaceAll('@ts-expect-error', 'expected error:')]]),
      program,
    );
    const source = unchecked.getSourceFile(errorsFile);
    assert.ok(source);
    const byLine = new Map<number, string[]>();
    for (const diagnostic of ts.getPreEmitDiagnostics(unchecked, source)) {
      const line = source.getLineAndCharacterOfPosition(diagnostic.start ?? 0).line;
      const messages = byLine.get(line) ?? [];
      messages.push(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
      byLine.set(line, messages);
    }
    for (const { line, message } of expectations) {
      const messages = byLine.get(line) ?? [];
      assert.ok(
        messages.some((each) => each.includes(message)),
        `errors.ts line ${line + 1}: expected an error containing "${message}", got:\n${messages.join('\n---\n') || '(none)'}`,
      );
      byLine.delete(line);
    }
    assert.deepEqual([...byLine], [], 'errors on lines without a @ts-expect-error comment');
  });

  it('compile for a project with an ES2019 lib, strict and skipLibCheck: false', () => {
    const config = readConfig('tsconfig.old-lib.json');
    assert.equal(config.options.skipLibCheck, false);
    const diagnostics = ts.getPreEmitDiagnostics(compile(config));
    assert.equal(diagnostics.length, 0, `\n${describeDiagnostics(diagnostics)}`);
  });
});
