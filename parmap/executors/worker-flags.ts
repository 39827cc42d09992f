/**
 * Which of the caller's Node flags its workers get. Both kinds get the flags that change how code
 * behaves or reports (`--conditions`, `--enable-source-maps`, `--unhandled-rejections`, warnings),
 * so fn resolves and fails in a worker as it does in the caller. The rest mean nothing or harm
 * there: module hooks (fn arrives as plain JavaScript; tsx alone costs about 150 ms per worker),
 * the inline script and its `--input-type`, the test runner, watch mode, and, for threads, V8 and
 * process-wide flags, which make `new Worker()` throw.
 */
const SHARED_FLAGS =
  /^--(enable-source-maps|no-warnings|no-deprecation|trace-warnings|trace-deprecation|throw-deprecation|pending-deprecation|unhandled-rejections|conditions|trace-uncaught|stack-trace-limit)(=|$)/;
/** A process is a whole new Node: it may also take flags of the whole process. */
const PROCESS_ONLY_FLAGS = /^--(expose-gc|max-old-space-size|max-semi-space-size|stack-size|disable-proto)(=|$)/;

export function workerFlags(execArgv: readonly string[], kind: 'thread' | 'process'): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const flag = execArgv[i] as string;
    const takesValue = (flag === '--conditions' || flag === '-C') && i + 1 < execArgv.length;
    if (takesValue) {
      kept.push(flag, execArgv[++i] as string);
    } else if (SHARED_FLAGS.test(flag) || (kind === 'process' && PROCESS_ONLY_FLAGS.test(flag))) {
      kept.push(flag);
    } else if (/^-C./.test(flag)) {
      kept.push(flag);
    }
  }
  return kept;
}
