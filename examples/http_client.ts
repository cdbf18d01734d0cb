/**
 * Medusa's HTTP client, from Sam Rushing's asyncore documentation: one
 * `HttpClient` dispatcher per URL, all fetched at once by one loop. Each
 * sends an HTTP/1.0 `GET` kept in an output buffer, with `writable()` true
 * only while some of it is unsent, and collects the response until the
 * server closes the connection.
 *
 * ```sh
 * deno run --allow-net examples/http_client.ts URL...
 * ```
 *
 * `https://` URLs are fetched over TLS (`createSocket({ tls })`): the
 * certificate is checked against the system's roots and the URL's host;
 * trust a private CA with `deno run --cert ca.crt` or `DENO_CERT=ca.crt`.
 *
 * Each response is printed whole, as it completes, after a line naming its
 * URL and size: `--- http://127.0.0.1:8000/ (1234 bytes)`. Differences from
 * Medusa's: the request carries a `Host` header (which HTTP/1.1 servers
 * expect even of HTTP/1.0 clients), responses are not interleaved, a failed
 * fetch is reported on stderr (and the exit code is 1), and Ctrl-C closes
 * every channel. A fetch fails when the connection cannot be made, when it
 * is reset, when the server closes before a whole response head, or before
 * the `Content-Length` it announced: such a response is not printed.
 *
 * @module
 */

import { closeAll, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
import { catchInterrupt, Cli, concat, messageOf, writeStdout } from "./_cli.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Fetches one URL with HTTP/1.0 and prints the response. */
export class HttpClient extends Dispatcher {
  readonly url: URL;
  buffer: Uint8Array;
  response: Uint8Array[] = [];
  failed = false;

  constructor(url: URL) {
    super();
    this.url = url;
    this.buffer = encoder.encode(
      `GET ${url.pathname}${url.search} HTTP/1.0\r\nHost: ${url.host}\r\n\r\n`,
    );
    const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const secure = url.protocol === "https:";
    this.createSocket(secure ? { tls: { hostname } } : {});
    this.connect({
      hostname,
      port: url.port !== "" ? Number(url.port) : secure ? 443 : 80,
    });
  }

  override handleConnect(): void {}

  override writable(): boolean {
    return this.buffer.length > 0;
  }

  override handleWrite(): void {
    const sent = this.send(this.buffer);
    this.buffer = this.buffer.subarray(sent);
  }

  override handleRead(): void {
    const data = this.recv(8192);
    if (data.length > 0) this.response.push(data);
  }

  /** The end of the connection: prints the response, or why it failed. */
  override handleClose(): void {
    if (this.failed) return;
    const response = concat(this.response);
    const error = this.socket?.error; // a reset, say
    if (error) return this.handleError(error);
    const problem = incomplete(response);
    if (problem !== null) {
      return this.handleError(new Deno.errors.UnexpectedEof(problem));
    }
    console.log(`--- ${this.url.href} (${response.length} bytes)`);
    writeStdout(response);
    if (response.at(-1) !== 0x0a) console.log();
    this.close();
  }

  override handleError(error: unknown): void {
    this.failed = true;
    console.error(`http_client.ts: ${this.url.href}: ${messageOf(error)}`);
    this.close();
  }
}

/**
 * Why a response the server ended is not whole, or `null` when it is: it
 * needs a head, and as much body as its `Content-Length` says.
 */
function incomplete(response: Uint8Array): string | null {
  let end = -1;
  for (let i = 0; i + 3 < response.length && end < 0; i++) {
    if (
      response[i] === 0x0d && response[i + 1] === 0x0a &&
      response[i + 2] === 0x0d && response[i + 3] === 0x0a
    ) end = i;
  }
  if (end < 0) return "the server closed before the end of the response head";
  const head = decoder.decode(response.subarray(0, end));
  const match = head.match(/^content-length:[ \t]*(\d+)[ \t]*$/im);
  if (match === null) return null; // the body ends where the connection does
  const expected = Number(match[1]);
  const body = response.length - (end + 4);
  return body < expected
    ? `the server closed after ${body} of ${expected} bytes of body`
    : null;
}

if (import.meta.main) {
  const cli = new Cli({
    name: "http_client.ts",
    summary:
      "Fetches every URL at once with HTTP/1.0 GET and prints each response.",
    positionals: "URL...",
    minPositionals: 1,
    maxPositionals: Infinity,
    options: {},
  });
  const { positionals } = cli.parse();
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  const urls = positionals.map((text) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return cli.fail(`not a URL: ${JSON.stringify(text)}`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      cli.fail(`HTTP URLs only, please: ${JSON.stringify(text)}`);
    }
    return url;
  });
  const clients = urls.map((url) => new HttpClient(url));
  await loop({ signal: interrupt.signal });
  closeAll();
  if (clients.some((client) => client.failed)) Deno.exitCode = 1;
}
