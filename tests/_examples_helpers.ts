/**
 * Helpers for the end-to-end tests of `examples/`: spawn an example as a
 * subprocess, find the port it prints, talk to it over loopback, and stop it
 * with SIGINT. Every wait is bounded.
 *
 * @module
 */

import { assert, assertEquals, assertMatch, assertNotMatch } from "@std/assert";
import {
  BACKEND,
  killQuietly,
  probe,
  readExactly,
  readToEnd,
  text,
  within,
  writeAll,
} from "./_helpers.ts";

export { hasPython3, within } from "./_helpers.ts";

/** A Python with Twisted (Debian's python3-twisted), if one is installed. */
export const twistedPython: string | undefined = ["python3", "/usr/bin/python3"]
  .find((python) => probe(python, ["-c", "import twisted.protocols.basic"]));

const TWISTED_IMPORTS = `
import sys
from twisted.internet import protocol, reactor
`;

/**
 * A Twisted client program for `python -c`: `client` is Python defining a
 * protocol class `Client` (`sys`, `protocol` and `reactor` are imported),
 * which connects to 127.0.0.1 on the port in `sys.argv[1]`. A failed connect
 * is reported on stderr, and the reactor stops after 10 s at most.
 */
export function twistedClient(client: string): string {
  return TWISTED_IMPORTS + client + `
class Factory(protocol.ClientFactory):
    protocol = Client
    def clientConnectionFailed(self, connector, reason):
        print("failed:", reason.getErrorMessage(), file=sys.stderr)
        reactor.stop()

reactor.connectTCP("127.0.0.1", int(sys.argv[1]), Factory(), timeout=10)
reactor.callLater(10, reactor.stop)
reactor.run()
`;
}

/**
 * A Twisted server program for `python -c`: `server` is Python defining
 * what `factory` (a Python expression) makes (`sys`, `protocol` and
 * `reactor` are imported). It listens on a free port of 127.0.0.1, prints
 * the port, and stops after 20 s at most.
 */
export function twistedServer(server: string, factory: string): string {
  return TWISTED_IMPORTS + server + `
port = reactor.listenTCP(0, ${factory}, interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.callLater(20, reactor.stop)
reactor.run()
`;
}

/** The repository root: examples run from here so `deno.json` applies. */
export const ROOT: string = new URL("../", import.meta.url).pathname;

/** How long a server may take to print its address. */
export const START_TIMEOUT = 15_000;
/** How long any one exchange with an example may take. */
export const IO_TIMEOUT = 10_000;

/**
 * The flags an example runs with: the ones its README line gives, plus
 * `--allow-ffi --allow-env` when the suite runs on the epoll backend (the
 * example inherits ASYNCORE_BACKEND, as an unmodified program would).
 */
export function permissionArgs(
  allowRead?: boolean,
  allowWrite?: boolean,
): string[] {
  const flags = allowRead ? ["--allow-net", "--allow-read"] : ["--allow-net"];
  if (allowWrite) flags.push("--allow-write");
  if (BACKEND === "epoll") flags.push("--allow-ffi", "--allow-env");
  return flags;
}

/** What a finished example left behind. */
export interface Finished {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** Options for {@linkcode startServer} and {@linkcode runExample}. */
export interface ExampleOptions {
  /** Run with `--allow-read` too. */
  allowRead?: boolean;
  /** Run with `--allow-write` too. */
  allowWrite?: boolean;
  /** The option that takes the port to listen on. @default {"--port"} */
  portFlag?: string;
}

/** A running example whose output is collected as it comes. */
export class RunningExample implements AsyncDisposable {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  #ended = false;
  #changed: () => void = () => {};
  #drained: Promise<void>;
  #status: Promise<Deno.CommandStatus>;
  #finished = false;

  constructor(name: string, args: string[], options: ExampleOptions = {}) {
    this.name = name;
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...permissionArgs(options.allowRead, options.allowWrite),
        `examples/${name}`,
        ...args,
      ],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#status = this.child.status;
    this.#drained = Promise.all([
      this.#collect(this.child.stdout, (t) => this.#stdout += t),
      this.#collect(this.child.stderr, (t) => this.#stderr += t),
    ]).then(() => {
      this.#ended = true;
      this.#changed();
    });
  }

  async #collect(
    stream: ReadableStream<Uint8Array>,
    append: (text: string) => void,
  ): Promise<void> {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      append(chunk);
      this.#changed();
    }
  }

  /** Everything the example printed on stdout so far. */
  get stdout(): string {
    return this.#stdout;
  }

  /** Everything the example printed on stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Waits until stdout matches `pattern`; fails after `ms`. */
  async waitForOutput(
    pattern: RegExp,
    ms: number = IO_TIMEOUT,
  ): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const match = this.#stdout.match(pattern);
      if (match) return match;
      if (this.#ended) {
        throw new Error(
          `${this.name} ended without printing ${pattern}\nstdout:\n${this.#stdout}\nstderr:\n${this.#stderr}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `${this.name} did not print ${pattern} within ${ms} ms\nstdout:\n${this.#stdout}\nstderr:\n${this.#stderr}`,
        );
      }
      const changed = new Promise<void>((resolve) => this.#changed = resolve);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        changed,
        new Promise<void>((resolve) => timer = setTimeout(resolve, left)),
      ]);
      clearTimeout(timer);
    }
  }

  /** Sends SIGINT and waits (bounded) for the exit and the last output. */
  async stop(): Promise<Finished> {
    if (!this.#finished) {
      killQuietly(this.child, "SIGINT");
    }
    return await this.wait();
  }

  /** Waits (bounded) for the exit and the last output. */
  async wait(ms: number = IO_TIMEOUT): Promise<Finished> {
    const status = await within(
      ms,
      `${this.name} to exit`,
      this.#status,
      () => this.child.kill("SIGKILL"),
    ).finally(() => this.#finished = true);
    await this.#drained;
    return {
      code: status.code,
      signal: status.signal,
      stdout: this.#stdout,
      stderr: this.#stderr,
    };
  }

  /** Kills the example if it still runs, and releases its streams. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#finished) {
      killQuietly(this.child, "SIGKILL");
      await this.#status;
      this.#finished = true;
    }
    await this.#drained;
  }
}

/** A server example and the address it printed. */
export interface Server {
  example: RunningExample;
  hostname: string;
  port: number;
}

/**
 * Starts a server example with `--port 0` (or `options.portFlag`), plus
 * `args`, and reads the `listening on HOST:PORT` line it prints.
 */
export async function startServer(
  name: string,
  args: string[] = [],
  options: ExampleOptions = {},
): Promise<RunningExample & { port: number; hostname: string }> {
  const example = new RunningExample(
    name,
    [options.portFlag ?? "--port", "0", ...args],
    options,
  );
  try {
    const match = await example.waitForOutput(
      /^listening on \[?([^\s\]]+)\]?:(\d+)$/m,
      START_TIMEOUT,
    );
    return Object.assign(example, {
      hostname: match[1],
      port: Number(match[2]),
    });
  } catch (error) {
    await example[Symbol.asyncDispose]();
    throw error;
  }
}

/** The exit code after Ctrl-C that shells expect: 128 + SIGINT (2). */
export const INTERRUPTED = 130;

/**
 * Asserts a clean SIGINT shutdown: exit code {@linkcode INTERRUPTED} and no
 * output that says error; returns what the example printed.
 */
export async function stopCleanly(example: RunningExample): Promise<Finished> {
  const finished = await example.stop();
  assertEquals(
    [finished.code, finished.signal],
    [INTERRUPTED, null],
    `${example.name} did not exit cleanly\nstdout:\n${finished.stdout}\nstderr:\n${finished.stderr}`,
  );
  assertNotMatch(finished.stdout, /error|uncaptured|exception/i);
  assertNotMatch(finished.stderr, /error|uncaptured|exception/i);
  return finished;
}

/** What a finished client example printed, as bytes too. */
export interface Output {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

/** Runs a client example to completion, bounded by `ms`. */
export async function runExample(
  name: string,
  args: string[],
  options: ExampleOptions & { timeout?: number } = {},
): Promise<Output> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...permissionArgs(options.allowRead, options.allowWrite),
      `examples/${name}`,
      ...args,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = await within(
    options.timeout ?? IO_TIMEOUT,
    `${name} ${args.join(" ")} to finish`,
    child.output(),
    () => child.kill("SIGKILL"),
  ).catch(async (error) => {
    await child.status;
    throw error;
  });
  return {
    code: output.code,
    stdout: output.stdout,
    stderr: text(output.stderr),
  };
}

/**
 * Runs an example with bad arguments and checks it exits with code 2 and
 * prints `message` and the usage text on stderr.
 */
export async function assertUsageError(
  name: string,
  args: string[],
  message: RegExp,
  options: ExampleOptions = {},
): Promise<void> {
  const { code, stdout, stderr } = await runExample(name, args, options);
  assertEquals(code, 2, `${name} ${args.join(" ")}: stderr:\n${stderr}`);
  assertEquals(text(stdout), "");
  assertMatch(stderr, message);
  assertMatch(stderr, new RegExp(`^usage: deno run .*examples/${name}`, "m"));
}

/** Connects to a port on 127.0.0.1. */
export function connect(port: number, hostname = "127.0.0.1") {
  return Deno.connect({ hostname, port });
}

/** Whether the peer closed: the next read sees end of stream (or a reset). */
export async function assertClosedByPeer(
  conn: Deno.Conn,
  ms: number = IO_TIMEOUT,
): Promise<void> {
  let rest: Uint8Array;
  try {
    rest = await readToEnd(conn, ms);
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset) return;
    throw error;
  }
  assertEquals(text(rest), "", "expected the peer to close without data");
}

/** Sends `data` and reads its echo, writing and reading at once. */
export async function echo(
  conn: Deno.Conn,
  data: Uint8Array,
  ms: number = IO_TIMEOUT,
): Promise<Uint8Array> {
  const [, received] = await Promise.all([
    writeAll(conn, data),
    readExactly(conn, data.length, ms),
  ]);
  return received;
}

/** Deterministic test bytes of every value. */
export function pattern(length: number, seed = 1): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Runs a CPython script to completion, bounded by `ms`. */
export async function runPython(
  script: string,
  args: string[],
  ms: number = IO_TIMEOUT,
  python = "python3",
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(python, {
    args: ["-c", script, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = await within(
    ms,
    "python3 to finish",
    child.output(),
    () => child.kill("SIGKILL"),
  ).catch(async (error) => {
    await child.status;
    throw error;
  });
  return {
    code: output.code,
    stdout: text(output.stdout),
    stderr: text(output.stderr),
  };
}

/** Asserts `haystack` holds each of `lines` as a whole line. */
export function assertLines(haystack: string, lines: string[]): void {
  const have = new Set(haystack.split("\n"));
  for (const line of lines) {
    assert(
      have.has(line),
      `missing line ${JSON.stringify(line)} in:\n${haystack}`,
    );
  }
}
