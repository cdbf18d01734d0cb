/**
 * What every example shares, so that each example file holds only the
 * program of its source text: a tiny command-line parser that prints usage
 * on bad or missing options (exit code 2), address formatting, and Ctrl-C
 * handling. Imports nothing but Deno's own APIs.
 *
 * @module
 */

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
export interface CommandSpec<K extends string> {
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
}

/** The parsed command line. */
export interface Parsed<K extends string> {
  /** Each option's value, or its default, or `undefined`. */
  options: Record<K, string | undefined>;
  /** The positional arguments. */
  positionals: string[];
}

/** A command line: parses arguments and reports mistakes with usage text. */
export class Cli<K extends string> {
  readonly spec: CommandSpec<K>;

  constructor(spec: CommandSpec<K>) {
    this.spec = spec;
  }

  /** The usage text. */
  usage(): string {
    const { name, summary, positionals, options } = this.spec;
    const permissions = this.spec.permissions ?? "--allow-net";
    const lines = [
      `usage: deno run ${permissions} examples/${name} [options]${
        positionals ? ` ${positionals}` : ""
      }`,
      "",
      summary,
      "",
      "options:",
    ];
    const entries = Object.entries(options) as [string, OptionSpec][];
    const left = entries.map(([key, option]) => `  --${key} ${option.value}`);
    left.push("  --help");
    const width = Math.max(...left.map((text) => text.length)) + 2;
    entries.forEach(([, option], i) => {
      const fallback = option.default === undefined
        ? ""
        : ` (default: ${option.default})`;
      lines.push(left[i].padEnd(width) + option.help + fallback);
    });
    lines.push("  --help".padEnd(width) + "show this text and exit");
    return lines.join("\n");
  }

  /** Prints `message` and the usage text on stderr and exits with code 2. */
  fail(message: string): never {
    console.error(`${this.spec.name}: ${message}\n\n${this.usage()}`);
    Deno.exit(2);
  }

  /**
   * Parses `--name VALUE`, `--name=VALUE` and positional arguments (`--`
   * ends the options); exits with usage text on anything it does not know.
   */
  parse(args: readonly string[] = Deno.args): Parsed<K> {
    const { options: specs, minPositionals = 0, maxPositionals = 0 } =
      this.spec;
    const options = {} as Record<K, string | undefined>;
    for (const key of Object.keys(specs) as K[]) {
      options[key] = specs[key].default;
    }
    const positionals: string[] = [];
    for (let i = 0; i < args.length; i++) {
      const arg = args[i];
      if (arg === "--") {
        positionals.push(...args.slice(i + 1));
        break;
      }
      if (arg === "--help" || arg === "-h") {
        console.log(this.usage());
        Deno.exit(0);
      }
      if (!arg.startsWith("-") || arg === "-") {
        positionals.push(arg);
        continue;
      }
      const eq = arg.indexOf("=");
      const key = (eq < 0 ? arg.slice(2) : arg.slice(2, eq)) as K;
      if (!arg.startsWith("--") || !Object.hasOwn(specs, key)) {
        this.fail(`unknown option ${JSON.stringify(arg)}`);
      }
      let value: string;
      if (eq >= 0) {
        value = arg.slice(eq + 1);
      } else if (i + 1 < args.length) {
        value = args[++i];
      } else {
        this.fail(`option --${key} needs a value (${specs[key].value})`);
      }
      options[key] = value;
    }
    if (positionals.length < minPositionals) {
      this.fail(`missing ${this.spec.positionals ?? "arguments"}`);
    }
    if (positionals.length > maxPositionals) {
      this.fail(
        `unexpected argument ${JSON.stringify(positionals[maxPositionals])}`,
      );
    }
    return { options, positionals };
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

/**
 * Turns Ctrl-C (SIGINT) into an aborted signal instead of killing the
 * process, so the program can close its channels and exit with code 0.
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

/** Joins byte chunks into one array. */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** The error's message, for one-line reports. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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
