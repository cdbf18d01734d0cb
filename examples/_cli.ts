/**
 * What every example shares, so that each example file holds only the
 * program of its source text: a command line on `@std/cli`'s `parseArgs`
 * that prints usage on bad or missing options (exit code 2), address
 * formatting, a server's `--quiet` switch and its {@linkcode log}, and Ctrl-C
 * handling.
 *
 * @module
 */

import { parseArgs } from "@std/cli";

/** Joins byte chunks into one array (`@std/bytes`), for the examples. */
export { concat } from "@std/bytes";

/** One `--name VALUE` option. */
export interface OptionSpec {
  /** The placeholder shown in the usage text, e.g. `PORT`. */
  value: string;
  /** One line of help. */
  help: string;
  /** The value when the option is not given. */
  default?: string;
}

/** What a command accepts. */
export interface CommandSpec<K extends string, F extends string = never> {
  /** The file name, e.g. `select_echo_server.ts`. */
  name: string;
  /** One line on what the program does. */
  summary: string;
  /** The positional arguments as shown in the usage line, e.g. `HOST PORT`. */
  positionals?: string;
  /** How many positional arguments are required. @default {0} */
  minPositionals?: number;
  /** How many positional arguments are allowed. @default {0} */
  maxPositionals?: number;
  /** `--net` or `--net --read`: the permissions the program needs. */
  permissions?: string;
  /** The options, by name without the leading `--`. */
  options: Record<K, OptionSpec>;
  /** The switches (`--name`, no value), by name, with one line of help each. */
  flags?: Record<F, string>;
}

/** The parsed command line. */
export interface Parsed<K extends string, F extends string = never> {
  /** Each option's value, or its default, or `undefined`. */
  options: Record<K, string | undefined>;
  /** Whether each switch was given. */
  flags: Record<F, boolean>;
  /** The positional arguments. */
  positionals: string[];
}

/** A command line: parses arguments and reports mistakes with usage text. */
export class Cli<K extends string, F extends string = never> {
  readonly spec: CommandSpec<K, F>;

  constructor(spec: CommandSpec<K, F>) {
    this.spec = spec;
  }

  /** The usage text. */
  usage(): string {
    const { name, summary, positionals, options } = this.spec;
    const permissions = this.spec.permissions ?? "--allow-net";
    const rows = (Object.entries(options) as [string, OptionSpec][]).map((
      [key, option],
    ) => [
      `  --${key} ${option.value}`,
      option.help +
      (option.default === undefined ? "" : ` (default: ${option.default})`),
    ]);
    for (const [key, help] of Object.entries(this.spec.flags ?? {})) {
      rows.push([`  --${key}`, help as string]);
    }
    rows.push(["  --help", "show this text and exit"]);
    const width = Math.max(...rows.map(([left]) => left.length)) + 2;
    return [
      `usage: deno run ${permissions} examples/${name} [options]${
        positionals ? ` ${positionals}` : ""
      }`,
      "",
      summary,
      "",
      "options:",
      ...rows.map(([left, help]) => left.padEnd(width) + help),
    ].join("\n");
  }

  /** Prints `message` and the usage text on stderr and exits with code 2. */
  fail(message: string): never {
    console.error(`${this.spec.name}: ${message}\n\n${this.usage()}`);
    Deno.exit(2);
  }

  /**
   * Parses `--name VALUE`, `--name=VALUE`, `--switch` and positional
   * arguments (`--` ends the options); `--help` or `-h` prints the usage
   * text and exits; anything unknown fails with usage text.
   */
  parse(args: readonly string[] = Deno.args): Parsed<K, F> {
    const { minPositionals = 0, maxPositionals = 0 } = this.spec;
    const names = Object.keys(this.spec.options) as K[];
    const switches = Object.keys(this.spec.flags ?? {}) as F[];
    let unknown: string | undefined;
    const parsed = parseArgs([...args], {
      string: [...names, "_"],
      boolean: ["help", ...switches],
      alias: { h: "help" },
      "--": true,
      unknown(arg: string, key?: string) {
        if (key !== undefined) unknown ??= arg;
        return key === undefined;
      },
    });
    if (parsed.help === true) {
      console.log(this.usage());
      Deno.exit(0);
    }
    if (unknown !== undefined) {
      this.fail(`unknown option ${JSON.stringify(unknown)}`);
    }
    const options = {} as Record<K, string | undefined>;
    for (const key of names) {
      const value = parsed[key];
      // `--name` with nothing after it (or another option) parses as "".
      if (value === "" && needsValue(args, `--${key}`)) {
        this.fail(
          `option --${key} needs a value (${this.spec.options[key].value})`,
        );
      }
      options[key] = typeof value === "string"
        ? value
        : this.spec.options[key].default;
    }
    const flags = {} as Record<F, boolean>;
    for (const key of switches) flags[key] = parsed[key] === true;
    if ((switches as string[]).includes("quiet")) quiet = parsed.quiet === true;
    const positionals = [...parsed._, ...(parsed["--"] ?? [])].map(String);
    if (positionals.length < minPositionals) {
      this.fail(`missing ${this.spec.positionals ?? "arguments"}`);
    }
    if (positionals.length > maxPositionals) {
      this.fail(
        `unexpected argument ${JSON.stringify(positionals[maxPositionals])}`,
      );
    }
    return { options, flags, positionals };
  }

  /** Reads a TCP port (0 to 65535) or fails with usage text. */
  port(what: string, text: string | undefined): number {
    const port = /^\d{1,5}$/.test(text ?? "") ? Number(text) : NaN;
    if (!(port >= 0 && port <= 65535)) {
      this.fail(
        `${what} must be a port number from 0 to 65535, got ${
          JSON.stringify(text ?? "")
        }`,
      );
    }
    return port;
  }

  /** Reads a host name or fails with usage text. */
  host(what: string, text: string | undefined): string {
    if (text === undefined || text === "" || /\s/.test(text)) {
      this.fail(`${what} must be a host name or address`);
    }
    return text.startsWith("[") && text.endsWith("]")
      ? text.slice(1, -1)
      : text;
  }

  /** Reads a positive integer or fails with usage text. */
  positiveInteger(what: string, text: string | undefined): number {
    const value = /^\d{1,15}$/.test(text ?? "") ? Number(text) : NaN;
    if (!(value > 0)) {
      this.fail(
        `${what} must be a positive integer, got ${JSON.stringify(text ?? "")}`,
      );
    }
    return value;
  }

  /**
   * Reads `PORT`, `HOST:PORT` or `[V6ADDR]:PORT` (the Twisted tutorial's
   * address arguments) or fails with usage text.
   */
  address(
    what: string,
    text: string,
    defaultHost = "127.0.0.1",
  ): { hostname: string; port: number } {
    const colon = text.lastIndexOf(":");
    if (colon < 0) {
      return { hostname: defaultHost, port: this.port(what, text) };
    }
    return {
      hostname: this.host(what, text.slice(0, colon)),
      port: this.port(what, text.slice(colon + 1)),
    };
  }
}

/** Whether `flag` is given bare with no value after it (before any `--`). */
function needsValue(args: readonly string[], flag: string): boolean {
  for (let i = 0; i < args.length && args[i] !== "--"; i++) {
    if (args[i] !== flag) continue;
    const next = args[i + 1];
    if (next === undefined || next.startsWith("-")) return true;
  }
  return false;
}

/** `127.0.0.1:8881`, `[::1]:8881` or a Unix socket path. */
export function formatAddress(addr: Deno.Addr): string {
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
  }
  if (addr.transport === "unix" || addr.transport === "unixpacket") {
    return addr.path ?? "";
  }
  return addr.transport;
}

/** The handle {@linkcode catchInterrupt} returns. */
export interface Interrupt extends Disposable {
  /** Aborts on Ctrl-C (SIGINT). */
  readonly signal: AbortSignal;
}

/** How long closed sockets may go on sending after Ctrl-C, in ms. */
export const LINGER_AFTER_INTERRUPT = 2000;

/** The exit code after Ctrl-C: 128 + SIGINT (2), as shells expect. */
export const INTERRUPTED_EXIT_CODE = 130;

/**
 * Turns Ctrl-C (SIGINT) into an aborted signal instead of killing the
 * process, so the program can close its channels and then exit with code
 * 130 (`INTERRUPTED_EXIT_CODE`), as a program killed by Ctrl-C does: a
 * shell script or `make` running it sees that it was interrupted.
 * Disposing the handle removes the signal listener.
 *
 * After Ctrl-C, disposing it also bounds how long the process lingers: a
 * closed `Socket` goes on writing what `send()` accepted, as a kernel does,
 * but while a peer that never reads holds such a write up, Deno's process
 * cannot exit (a kernel would let it exit and linger on its own). So once
 * the channels are closed the process gets `LINGER_AFTER_INTERRUPT` ms to
 * finish those writes, and then exits anyway.
 */
export function catchInterrupt(): Interrupt {
  const controller = new AbortController();
  const onInterrupt = () => controller.abort();
  Deno.addSignalListener("SIGINT", onInterrupt);
  return {
    signal: controller.signal,
    [Symbol.dispose]() {
      Deno.removeSignalListener("SIGINT", onInterrupt);
      if (controller.signal.aborted) {
        Deno.exitCode = INTERRUPTED_EXIT_CODE;
        // An unref'd timer: the process exits at once if nothing lingers.
        setTimeout(() => Deno.exit(), LINGER_AFTER_INTERRUPT).unref();
      }
    },
  };
}

/** Writes all of `bytes` to stdout (responses may not be text). */
export function writeStdout(bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) {
    offset += Deno.stdout.writeSync(bytes.subarray(offset));
  }
}

/** The error's message, for one-line reports. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The `--quiet` switch every server takes (put it in the `flags` of its
 * {@linkcode CommandSpec}): `Cli.parse()` then turns {@linkcode log} off when
 * it is given, so the server prints its `listening on` line and errors only.
 * Logging costs more than it seems: `console.log()` waits while stdout is a
 * full pipe that nobody reads, and with it the whole event loop.
 */
export const QUIET_FLAG: Record<"quiet", string> = {
  quiet: "print only the listening line and errors, no log of connections",
};

let quiet = false;

/**
 * Prints a server's log line (connections, requests) on stdout, as
 * `console.log()` does, unless the server was given `--quiet`.
 */
export function log(...data: unknown[]): void {
  if (!quiet) console.log(...data);
}

/** The `--host` and `--port` options of a server; the port as in its source. */
export function serverOptions(
  defaultPort: string,
): Record<"host" | "port", OptionSpec> {
  return {
    host: { value: "HOST", help: "address to listen on", default: "127.0.0.1" },
    port: { value: "PORT", help: "port to listen on", default: defaultPort },
  };
}

/** The `--max-length BYTES` option of a program with a record limit. */
export function maxLengthOption(
  help: string,
  defaultBytes: number,
): OptionSpec {
  return { value: "BYTES", help, default: String(defaultBytes) };
}

/**
 * Makes a server with `listen()` and prints `listening on ADDRESS`; when it
 * cannot listen (a port in use, say), says why and exits with code 1.
 */
export function listenOrExit<T extends { getsockname(): Deno.Addr }>(
  name: string,
  listen: () => T,
): T {
  let server: T;
  try {
    server = listen();
  } catch (error) {
    console.error(`${name}: cannot listen: ${messageOf(error)}`);
    Deno.exit(1);
  }
  console.log(`listening on ${formatAddress(server.getsockname())}`);
  return server;
}
