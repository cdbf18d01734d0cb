/**
 * Helpers for the tests of `examples/smtpd.ts`: a raw SMTP client over a
 * `Deno.Conn` (reply by reply, with STARTTLS), the example started with a
 * maildir, CPython's own smtpd as a reference server, and the messages
 * each of them received. Every wait is bounded.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import { concat } from "@std/bytes";
import {
  IO_TIMEOUT,
  type RunningExample,
  START_TIMEOUT,
  startServer,
  within,
} from "./_examples_helpers.ts";
import {
  closeQuietly,
  hasPython3,
  killQuietly,
  probe,
  text,
  writeAll,
} from "./_helpers.ts";

/** `python3` has CPython's smtpd (3.11 or older). */
export const hasPythonSmtpd: boolean = hasPython3 &&
  probe("python3", ["-W", "ignore", "-c", "import smtpd"]);

/** The test CA and the certificate it signed for localhost and 127.0.0.1. */
export const FIXTURES = new URL("./fixtures/tls/", import.meta.url).pathname;
export const CA: string = Deno.readTextFileSync(`${FIXTURES}ca.crt`);
export const TLS_ARGS: string[] = [
  "--tls-cert",
  `${FIXTURES}localhost.crt`,
  "--tls-key",
  `${FIXTURES}localhost.key`,
];

const CRLF = new Uint8Array([0x0d, 0x0a]);

/** One SMTP client connection, read reply by reply. */
export class SmtpTestClient implements Disposable {
  #conn: Deno.Conn;
  #buffer = new Uint8Array(0);

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Connects to 127.0.0.1 (or `hostname`) on `port`. */
  static async connect(
    port: number,
    hostname = "127.0.0.1",
  ): Promise<SmtpTestClient> {
    return new SmtpTestClient(await Deno.connect({ hostname, port }));
  }

  /** Reads one CRLF-ended line (without it); fails on EOF or timeout. */
  async readLine(ms: number = IO_TIMEOUT): Promise<string> {
    // Bytes read and not yet returned: the buffer, then chunks after it
    // (joined only once a line ends, so a long line costs no more than it
    // is long).
    const chunks = [this.#buffer];
    let at = indexOfCrlf(this.#buffer);
    let length = this.#buffer.length;
    while (at < 0) {
      const chunk = new Uint8Array(65536);
      const count = await within(
        ms,
        () =>
          `a reply line (have ${length} bytes: ${
            JSON.stringify(text(concat(chunks).subarray(0, 200)))
          })`,
        this.#conn.read(chunk),
        () => closeQuietly(this.#conn),
      );
      if (count === null) {
        throw new Error(
          `connection closed; unended: ${JSON.stringify(text(concat(chunks)))}`,
        );
      }
      const last = chunks[chunks.length - 1];
      chunks.push(chunk.subarray(0, count));
      // A CRLF may straddle the previous chunk and this one.
      if (last.at(-1) === 0x0d && chunk[0] === 0x0a) {
        at = length - 1;
      } else {
        const inChunk = indexOfCrlf(chunk.subarray(0, count));
        if (inChunk >= 0) at = length + inChunk;
      }
      length += count;
    }
    const all = concat(chunks);
    this.#buffer = all.slice(at + 2);
    return text(all.subarray(0, at));
  }

  /** Reads one reply: its lines, up to the one without `-` after the code. */
  async readReply(ms?: number): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const line = await this.readLine(ms);
      lines.push(line);
      if (line[3] !== "-") return lines;
    }
  }

  /** Sends bytes, or text as UTF-8. */
  async send(data: string | Uint8Array): Promise<void> {
    await writeAll(
      this.#conn,
      typeof data === "string" ? new TextEncoder().encode(data) : data,
    );
  }

  /** Sends `line` and CRLF, and reads the reply (its lines joined by `|`). */
  async command(line: string | Uint8Array): Promise<string> {
    const bytes = typeof line === "string"
      ? new TextEncoder().encode(line)
      : line;
    await this.send(concat([bytes, CRLF]));
    return (await this.readReply()).join("|");
  }

  /**
   * Whether the server closed within `ms`: end of stream (or a reset) after
   * at most `slack` more bytes (a TLS alert, say).
   */
  async closedByPeer(ms: number = IO_TIMEOUT, slack = 0): Promise<boolean> {
    const chunk = new Uint8Array(1024);
    let extra = 0;
    try {
      for (;;) {
        const count = await within(
          ms,
          "the server to close",
          this.#conn.read(chunk),
          () => closeQuietly(this.#conn),
        );
        if (count === null) return true;
        extra += count;
        if (extra > slack) return false;
      }
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) return true;
      throw error;
    }
  }

  /** Upgrades to TLS (after `220 Ready to start TLS`), trusting `CA`. */
  async startTls(hostname = "localhost"): Promise<void> {
    assertEquals(this.#buffer.length, 0, "bytes after the 220");
    this.#conn = await Deno.startTls(this.#conn as Deno.TcpConn, {
      hostname,
      caCerts: [CA],
    });
    await within(
      IO_TIMEOUT,
      "the TLS handshake",
      (this.#conn as Deno.TlsConn).handshake(),
      () => closeQuietly(this.#conn),
    );
  }

  [Symbol.dispose](): void {
    closeQuietly(this.#conn);
  }
}

function indexOfCrlf(data: Uint8Array): number {
  for (let i = data.indexOf(0x0d); i >= 0; i = data.indexOf(0x0d, i + 1)) {
    if (data[i + 1] === 0x0a) return i;
  }
  return -1;
}

/** A message as a server received it. */
export interface Received {
  peer?: string;
  mailfrom: string;
  rcpttos: string[];
  data: Uint8Array;
}

/** The example with a fresh maildir, removed when disposed. */
export interface Smtpd extends AsyncDisposable {
  example: RunningExample;
  port: number;
  maildir: string;
  /** The messages saved so far, in the order they were accepted. */
  messages(): Received[];
}

/** Starts `examples/smtpd.ts --port 0 --maildir DIR --quiet` plus `args`. */
export async function startSmtpd(args: string[] = []): Promise<Smtpd> {
  const maildir = Deno.makeTempDirSync({ prefix: "smtpd_test_" });
  let example;
  try {
    example = await startServer(
      "smtpd.ts",
      ["--maildir", maildir, "--quiet", ...args],
      { allowRead: true, allowWrite: true },
    );
  } catch (error) {
    Deno.removeSync(maildir, { recursive: true });
    throw error;
  }
  return {
    example,
    port: example.port,
    maildir,
    messages: () => readMaildir(maildir),
    async [Symbol.asyncDispose]() {
      await example[Symbol.asyncDispose]();
      Deno.removeSync(maildir, { recursive: true });
    },
  };
}

/**
 * The messages in a maildir, by the order of acceptance (the counter in
 * the file names); only `.eml` files may be there.
 */
export function readMaildir(maildir: string): Received[] {
  const names = [...Deno.readDirSync(maildir)].map((entry) => entry.name);
  for (const name of names) {
    assert(/^\d+\.\d+\.\d+\.eml$/.test(name), `unexpected file ${name}`);
  }
  const counter = (name: string) => Number(name.split(".")[2]);
  names.sort((a, b) => counter(a) - counter(b));
  return names.map((name) =>
    parseMessageFile(Deno.readFileSync(`${maildir}/${name}`))
  );
}

/** Splits a saved message into its three header lines and its data. */
export function parseMessageFile(content: Uint8Array): Received {
  const fields: string[] = [];
  let start = 0;
  for (const name of ["X-Peer: ", "X-MailFrom: ", "X-RcptTo: "]) {
    const end = content.indexOf(0x0a, start);
    assert(end >= 0, `no ${name}line`);
    const line = text(content.subarray(start, end));
    assert(line.startsWith(name), `expected ${name}, got ${line}`);
    fields.push(line.slice(name.length));
    start = end + 1;
  }
  return {
    peer: fields[0],
    mailfrom: fields[1],
    rcpttos: fields[2] === "" ? [] : fields[2].split(", "),
    data: content.subarray(start),
  };
}

const REFERENCE = `
import base64, json, sys, warnings
warnings.simplefilter("ignore")
import asyncore, smtpd

class Sink(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        print(json.dumps({"mailfrom": mailfrom, "rcpttos": rcpttos,
                          "data": base64.b64encode(data).decode()}), flush=True)

server = Sink(("127.0.0.1", 0), None, data_size_limit=int(sys.argv[1]),
              enable_SMTPUTF8=sys.argv[2] == "1")
print(server.socket.getsockname()[1], flush=True)
asyncore.loop(timeout=1)
`;

/** CPython's smtpd (an SMTPServer that prints each message as JSON). */
export interface Reference extends AsyncDisposable {
  port: number;
  /** The messages printed so far. */
  messages(): Received[];
}

/** Starts CPython's smtpd with `data_size_limit` and `enable_SMTPUTF8`. */
export async function startReference(
  size: number,
  smtputf8: boolean,
): Promise<Reference> {
  const child = new Deno.Command("python3", {
    args: ["-c", REFERENCE, String(size), smtputf8 ? "1" : "0"],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let output = "";
  let changed = () => {};
  const drained = (async () => {
    for await (
      const chunk of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      output += chunk;
      changed();
    }
  })();
  const stop = async () => {
    killQuietly(child, "SIGKILL");
    await child.status;
    await drained;
  };
  const port = await within(
    START_TIMEOUT,
    "CPython's smtpd to print its port",
    (async () => {
      while (!/^\d+\n/.test(output)) {
        await new Promise<void>((resolve) => changed = resolve);
      }
      return Number(output.split("\n")[0]);
    })(),
    () => child.kill("SIGKILL"),
  ).catch(async (error) => {
    await stop();
    throw error;
  });
  return {
    port,
    messages: () =>
      output.split("\n").slice(1).filter((line) => line !== "").map(
        (line) => {
          const { mailfrom, rcpttos, data } = JSON.parse(line);
          return {
            mailfrom,
            rcpttos,
            data: Uint8Array.from(atob(data), (c) => c.charCodeAt(0)),
          };
        },
      ),
    [Symbol.asyncDispose]: stop,
  };
}

/** One step of a conversation: bytes to send, and how many replies follow. */
export type Step = [string | Uint8Array, number];

/**
 * Runs a conversation on a fresh connection: reads the greeting, then
 * sends each step and reads its replies. Returns every reply line, with
 * the server's host name (read from its greeting) as `HOST` and the words
 * of the greeting dropped.
 */
export async function converse(port: number, steps: Step[]): Promise<string[]> {
  using client = await SmtpTestClient.connect(port);
  const greeting = await client.readReply();
  const host = greeting[0].split(" ")[1];
  const lines = [greeting[0].split(" ")[0] + " HOST"];
  for (const [data, replies] of steps) {
    await client.send(data);
    for (let i = 0; i < replies; i++) {
      for (const line of await client.readReply()) {
        lines.push(line.replaceAll(host, "HOST"));
      }
    }
  }
  return lines;
}
