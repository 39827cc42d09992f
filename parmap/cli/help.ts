/** What `parmap --help` and `parmap --version` print. */
import { createRequire } from 'node:module';

/** The version in parmap's package.json, found by the package's own name from this file. */
export function version(): string {
  const manifest: unknown = createRequire(import.meta.url)('parmap/package.json');
  const found = (manifest as { readonly version?: unknown }).version;
  return typeof found === 'string' ? found : 'unknown';
}

export const HELP = `Usage: parmap [options] <function>
       parmap [options] --module <path[:export]>

Runs a function on every line of stdin, on worker threads (one per core), and writes one result
per line to stdout, in input order unless --unordered. Input is read as it is needed, so a huge
input runs in bounded memory.

The function
  <function>                JavaScript source of a function, quoted as one argument, as in
                            'line => line.length'. It is called with each line (a string,
                            without its line ending), or with each line's JSON value with --json.
                            A line ends at \\n (a \\r just before it goes too, for CRLF files);
                            a lone \\r is part of the line.
                            It may be async. It runs on other threads, rebuilt from its text:
                            values from around it go in --scope; require() and import() work
                            inside it and resolve from the current directory.
  --module <path[:export]>  take the function from a module instead: a file path relative to
                            the current directory, then the export's name after a colon
                            (default: the default export). For code that imports other code.
                            Only the workers import it; with -n 1, parmap's own thread does,
                            before it reads any input. One that cannot be loaded or lacks the
                            export is bad usage (exit code 2), found by workers with the first
                            lines: an empty input imports nothing.
  --scope <name=json>       a value the function uses by name, given as JSON; repeat it for
                            more: --scope factor=3 --scope 'names=["a","b"]'
                            --scope 'prefix="id-"' (a string keeps its JSON quotes)

Input and output
  --json                    read JSON lines: each line is parsed as JSON (blank lines are left
                            out), and each result is written as one line of JSON.
                            Without --json, a result that is a string is written as it is (a
                            string with line breaks in it spans several lines) and any other
                            result as JSON; undefined is written as null.
  --unordered               write each result as soon as it is ready, not in input order
  --progress                show a progress line on stderr

Workers
  -n, --workers <count>     how many worker threads (default: one per core). -n 1 runs the
                            function in this thread, with no worker, for debugging.
  --chunksize <lines|auto>  lines sent to a worker at a time (default: auto, sized by timing)
  --timeout <ms>            the longest one line may run: past it the line fails and its worker
                            is stopped
  --retries <count>         how many times to re-run, on a fresh worker, the lines of a worker
                            that died or timed out (default: 0)
  --redis <url>             run the lines on parmap worker processes, on this host or others,
                            through this Redis (redis://host:6379), instead of on threads here;
                            PARMAP_SECRET must be set, the same as the workers' (see
                            parmap worker --help). Not with -n.

Failures
  A line fails when the function throws or rejects for it, runs past --timeout, ends its worker
  (process.exit(), out of memory), returns a value that cannot be written as JSON (a BigInt, a
  circular object), or, with --json, is not JSON.
  --on-error <mode>         what a failing line does (default: throw):
      throw                 stop: the results before it are written, then the error goes to
                            stderr as "parmap: line N: TypeError: ..." and the exit code is 1
      return                write the error in place of the line's result, as one line of JSON:
                            {"error":{"line":N,"name":"TypeError","message":"..."}}
                            and go on; the exit code is 0
      skip                  write nothing for the line, report it on stderr as
                            "parmap: line N skipped: TypeError: ..." and go on; the exit code is 0
  Lines are numbered from 1, as the input has them (with --json, blank lines count too).
  With -n 1, an error the function leaves for later (a promise it did not await, a timer that
  throws) belongs to no line's result: whatever --on-error says, it stops the run with exit code
  1, told as "parmap: after line N: ...", N being the last line done, which may not be its cause.

Other
  -h, --help                show this help
  -v, --version             show parmap's version
  parmap worker --redis <url>
                            serve the calls made with backend: { redis } from any host, on this
                            host's cores (see parmap worker --help)

Exit codes
  0 done; 1 a line failed, a -n 1 run ended with lines not done, or the output could not be
  written; 2 bad usage (an unknown option, a missing function, a function that does not parse, a
  --module that cannot be loaded or has no such function, a --scope value that is not JSON, a
  name the function uses that no --scope gives, --redis without PARMAP_SECRET);
  130 interrupted with Ctrl-C (SIGINT); 143 stopped with SIGTERM. Ctrl-C stops the workers at
  once. A reader that stops early (| head) ends the run quietly, with code 0. Once every result
  is written, parmap exits: a timer the function left running does not keep it waiting.

Examples
  cat words.txt | parmap 'w => w.toUpperCase()'
  parmap -n 4 --progress --json 'o => ({ id: o.id, score: o.a * o.b })' < rows.jsonl > out.jsonl
  parmap --module ./score.js:score --unordered < input.txt
  parmap --scope salt='"pepper"' \\
    'p => require("node:crypto").createHash("sha256").update(salt + p).digest("hex")' < words.txt
  parmap --json --on-error=skip 'async (o) => (await fetch(o.url)).status' < urls.jsonl
  seq 1000000 | parmap 'n => n * n' | head -5
`;
