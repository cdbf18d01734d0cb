// A small HTTP/1.1 client over a raw Deno.Conn for the tests of
// examples/http_server.ts: write any bytes, read responses one at a time
// (by Content-Length), and see whether the server closed. Every read is
// bounded.

import { assert } from "@std/assert";
import { concat } from "@std/bytes";
import { IO_TIMEOUT, within } from "./_examples_helpers.ts";
import { closeQuietly, text, writeAll } from "./_helpers.ts";

/** One response as read off the connection. */
export interface Response {
  status: number;
  /** The status line and fields, as received. */
  head: string;
  /** Fields by lower-case name. */
  headers: Map<string, string>;
  body: Uint8Array;
}

/** A connection to the server with a read buffer. */
export class HttpConn implements Disposable {
  readonly conn: Deno.Conn;
  #buffer: Uint8Array = new Uint8Array(0);
  #eof = false;

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  static async open(port: number): Promise<HttpConn> {
    return new HttpConn(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Writes `data` (a string is sent as UTF-8). */
  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string"
      ? new TextEncoder().encode(data)
      : data;
    await writeAll(this.conn, bytes);
  }

  /** Reads more into the buffer; false at end of stream (or a reset). */
  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(65536);
    let count: number | null;
    try {
      count = await this.conn.read(chunk);
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) count = null;
      else throw error;
    }
    if (count === null) {
      this.#eof = true;
      return false;
    }
    this.#buffer = concat([this.#buffer, chunk.subarray(0, count)]);
    return true;
  }

  /**
   * Reads one response; `bodyless` for the answer to a HEAD (or a 304),
   * whose Content-Length describes no body.
   */
  response(bodyless = false, ms = IO_TIMEOUT): Promise<Response> {
    return within(
      ms,
      "reading a response",
      this.#response(bodyless),
      () => this.close(),
    );
  }

  async #response(bodyless: boolean): Promise<Response> {
    let end: number;
    while ((end = findHeadEnd(this.#buffer)) < 0) {
      if (!await this.#fill()) {
        throw new Error(
          `closed before a whole response head: ${
            JSON.stringify(text(this.#buffer))
          }`,
        );
      }
    }
    const head = text(this.#buffer.subarray(0, end));
    this.#buffer = this.#buffer.subarray(end + 4);
    const [statusLine, ...lines] = head.split("\r\n");
    const match = /^HTTP\/1\.[01] (\d{3}) /.exec(statusLine);
    assert(match, `a status line, got ${JSON.stringify(statusLine)}`);
    const headers = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers.set(
        line.slice(0, colon).toLowerCase(),
        line.slice(colon + 1).trim(),
      );
    }
    const status = Number(match[1]);
    const length = bodyless || status === 304
      ? 0
      : Number(headers.get("content-length") ?? "0");
    while (this.#buffer.length < length) {
      if (!await this.#fill()) {
        throw new Error(`closed after ${this.#buffer.length} of ${length}`);
      }
    }
    const body = this.#buffer.slice(0, length);
    this.#buffer = this.#buffer.subarray(length);
    return { status, head, headers, body };
  }

  /** Whether the server closes (nothing more arrives) within `ms`. */
  closed(ms = IO_TIMEOUT): Promise<boolean> {
    return within(
      ms,
      "waiting for the server to close",
      (async () => {
        while (await this.#fill());
        return this.#buffer.length === 0;
      })(),
      () => this.close(),
    );
  }

  close(): void {
    closeQuietly(this.conn);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function findHeadEnd(buffer: Uint8Array): number {
  for (let i = 0; i + 3 < buffer.length; i++) {
    if (
      buffer[i] === 13 && buffer[i + 1] === 10 && buffer[i + 2] === 13 &&
      buffer[i + 3] === 10
    ) return i;
  }
  return -1;
}

/** `GET path` with a Host field and any extra fields. */
export function get(path: string, fields: string[] = [], method = "GET") {
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${
    fields.map((f) => f + "\r\n").join("")
  }\r\n`;
}
