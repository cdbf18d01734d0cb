/**
 * The response side of `http_server.ts`: the head of a response, the dates
 * HTTP and the access log write (made once a second, not per request), and
 * the access log itself, written in batches.
 *
 * @module
 */

import { STATUS_TEXT, type StatusCode } from "@std/http/status";

const encoder = new TextEncoder();

let second = -1;
let httpNow = "";
let logNow = "";
const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");

function tick(): void {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s === second) return;
  second = s;
  const date = new Date(s * 1000);
  httpNow = date.toUTCString();
  const two = (n: number) => String(n).padStart(2, "0");
  logNow = `${two(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/` +
    `${date.getUTCFullYear()}:${two(date.getUTCHours())}:` +
    `${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} +0000`;
}

/** Now, as HTTP writes dates: `Sun, 06 Nov 1994 08:49:37 GMT`. */
export function httpDate(): string {
  tick();
  return httpNow;
}

/** Now, as the Common Log Format writes it: `06/Nov/1994:08:49:37 +0000`. */
export function logDate(): string {
  tick();
  return logNow;
}

/** A time in seconds since the epoch as an HTTP date. */
export function formatHttpDate(seconds: number): string {
  return new Date(seconds * 1000).toUTCString();
}

/** The reason phrase of `status`, from `@std/http`. */
export function reason(status: number): string {
  return STATUS_TEXT[status as StatusCode] ?? "Unknown";
}

// The heads made this second, by text: most responses repeat one (the
// same file, the same fields), and an encoded copy is a fresh array each
// time, which the garbage collector then has to sweep.
const heads = new Map<string, Uint8Array>();
let headsSecond = -1;

/**
 * A response head: the status line, `Date`, `Server`, the given fields,
 * and the empty line, as bytes. The same head within a second is the same
 * array, so it must not be written to.
 */
export function responseHead(status: number, fields: string[]): Uint8Array {
  let head =
    `HTTP/1.1 ${status} ${reason(status)}\r\nServer: asyncore-http\r\n` +
    `Date: ${httpDate()}\r\n`;
  for (const field of fields) head += field + "\r\n";
  head += "\r\n";
  if (headsSecond !== second) {
    heads.clear();
    headsSecond = second;
  }
  let bytes = heads.get(head);
  if (bytes === undefined) {
    bytes = encoder.encode(head);
    if (heads.size < 1000) heads.set(head, bytes);
  }
  return bytes;
}

/** A short HTML page naming an error status. */
export function errorPage(status: number): Uint8Array {
  const text = `${status} ${reason(status)}`;
  return encoder.encode(
    `<!DOCTYPE html>\n<html><head><title>${text}</title></head>` +
      `<body><h1>${text}</h1></body></html>\n`,
  );
}

// deno-lint-ignore no-control-regex
const UNSAFE_IN_LOG = /[\x00-\x1f\x7f"\\]/g;

/** A request line as the access log quotes it: no quotes or controls raw. */
export function quoteForLog(text: string): string {
  return text.replace(
    UNSAFE_IN_LOG,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/**
 * Access log lines, gathered and written to stdout together once the
 * current work is done: one write for many requests rather than one each.
 */
export class AccessLog {
  #lines: string[] = [];
  #flushing = false;
  #broken = false;

  /** Queues one line. */
  write(line: string): void {
    if (this.#broken) return;
    this.#lines.push(line);
    if (this.#flushing) return;
    this.#flushing = true;
    queueMicrotask(() => this.flush());
  }

  /**
   * Writes what is queued. A stdout that fails (its reader gone) ends the
   * log, not the server.
   */
  flush(): void {
    this.#flushing = false;
    if (this.#lines.length === 0 || this.#broken) return;
    const bytes = encoder.encode(this.#lines.join("\n") + "\n");
    this.#lines = [];
    try {
      for (let at = 0; at < bytes.length;) {
        at += Deno.stdout.writeSync(bytes.subarray(at));
      }
    } catch {
      this.#broken = true;
    }
  }
}
