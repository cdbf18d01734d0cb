/**
 * Medusa's HTTP server (`http_server.py` with its `default_handler`, by Sam
 * Rushing): a static file server, one `AsyncChat` channel per connection,
 * answering through producers.
 *
 * ```sh
 * deno run --allow-net --allow-read examples/http_server.ts [--root DIR] [--host H] [--port N] [--quiet] [--header-timeout S] [--idle-timeout S]
 * ```
 *
 * As in Medusa, a channel reads the request head a line at a time, and each
 * response is one producer chain: a `CompositeProducer` of the head and the
 * body (a file producer), inside a `HookedProducer` that writes the access
 * log line (Common Log Format, on stdout unless `--quiet`) once the last
 * byte is produced, inside a `GlobbingProducer` so that a small response
 * leaves in one send. A larger body's producer puts the head in front of
 * its first block, in one array the channel keeps for these, so that a
 * response of up to 64 KiB leaves in one send on the epoll backend too,
 * where each array sent is a system call of its own (a head sent alone
 * cost one per response). The body is read from the file only as the socket
 * takes more, so a slow client holds a block and its socket's send buffer
 * in memory, not the file.
 *
 * It serves GET and HEAD of files under `--root`: `Content-Type` by
 * extension (`@std/media-types`), `Content-Length`, `Last-Modified`, 304 for
 * `If-Modified-Since`, one byte range (`Range`, `If-Range`) with 206 or 416,
 * a directory's `index.html`. HTTP/1.1 connections persist unless the
 * client says `Connection: close` (HTTP/1.0 ones only with `keep-alive`),
 * and pipelined requests are answered in order; a request body, with
 * `Content-Length` or chunked, is read and dropped. Targets are
 * percent-decoded and never leave the root: `..` past it is a 400, and a
 * symlink to a file outside is a 404 as for a missing file. Errors: a bad
 * request line or header 400, a request line over 8 KiB 414, header lines
 * over 8 KiB together 431 (all three close the connection), a method other
 * than GET and HEAD 405 with `Allow`. `--header-timeout` bounds the time
 * from a request's first byte to the end of its head (408, then close),
 * `--idle-timeout` the time a connection may wait with no request in
 * progress; a response being sent is never timed out.
 *
 * Differences from Medusa: no handler chain (only the default handler's
 * files), no directory listings, `Expect: 100-continue` answered, a client
 * that shuts down its sending side still gets the answers to what it sent,
 * a channel stops reading while it has 8 responses or 256 KiB queued (so a
 * client that pipelines without reading is pushed back), a file is opened
 * only when its body is about to be sent, small files (up to 128 KiB, 16
 * MiB in all) are kept in memory while `lstat` shows them unchanged, and
 * status texts come from `@std/http` rather than a table of its own.
 * Chunked output (`ChunkedProducer`) is there for bodies of unknown length,
 * which a file never is. The epoll backend could send file bodies with
 * `sendfile(2)`, as nginx does; the library's public API has no such call,
 * so bodies are read into memory and sent.
 *
 * @module
 */

import { AsyncChat } from "@asyncore/asyncore/asynchat";
import {
  callLater,
  closeAll,
  type DelayedCall,
  Dispatcher,
  loop,
} from "@asyncore/asyncore/asyncore";
import {
  ChunkedProducer,
  CompositeProducer,
  GlobbingProducer,
  HookedProducer,
  type Producer,
  SimpleProducer,
} from "@asyncore/asyncore/producers";
import type { Socket } from "@asyncore/asyncore/select";
import {
  catchInterrupt,
  Cli,
  listenOrExit,
  messageOf,
  serverOptions,
} from "./_cli.ts";
import {
  addHeader,
  bodyFraming,
  HttpError,
  keepsAlive,
  MAX_HEAD_PART,
  parseChunkSize,
  parseRequestLine,
  type Request,
} from "./http/request.ts";
import {
  type ByteRange,
  FileRangeProducer,
  findFile,
  type Found,
  HeadAndBytesProducer,
  parseRange,
  PieceBuffer,
  SmallFileCache,
} from "./http/files.ts";
import {
  AccessLog,
  errorPage,
  formatHttpDate,
  logDate,
  quoteForLog,
  responseHead,
} from "./http/response.ts";

/** What every channel of a server shares. */
export interface ServerConfig {
  /** The real path of the directory served, without a trailing slash. */
  root: string;
  /** Small files' contents, read once. */
  cache: SmallFileCache;
  /** Where access log lines go; null for `--quiet`. */
  log: AccessLog | null;
  /** Ms from a request's first byte to the end of its head. */
  headerTimeout: number;
  /** Ms a connection may wait with no request in progress. */
  idleTimeout: number;
}

/** The block size of file reads, and what a `GlobbingProducer` gathers. */
const BLOCK = 65536;
/**
 * A body up to this size leaves in one send with its head (a
 * `GlobbingProducer` copies the two together, into a fresh array). A
 * larger one read from a file is read behind its head, a block at a time,
 * into the channel's one buffer (`PieceBuffer`); a cached one is copied
 * there behind its head on the epoll backend, and on the default backend,
 * whose send buffer joins the two anyway, sent as it is.
 */
const GATHERED = 16384;
/**
 * The send buffer of a connection on the default backend, which keeps its
 * own (64 KiB unless told), and the most a channel sends at once
 * (`acOutBufferSize`, 64 KiB unless told): room for a block and the head
 * before it, so that a 64 KiB file leaves in one write instead of two (the
 * second, its last few hundred bytes, a write round trip later). On the
 * epoll backend the kernel's buffer, which grows as it needs, is left alone.
 */
const SEND_BUFFER = 2 * BLOCK;
/** Files up to this size are kept in memory... */
const CACHED_FILE = 131072;
/** ...up to this many bytes in all. */
const CACHE_TOTAL = 16 * 1048576;
/** A channel stops reading while this many responses are queued... */
const MAX_QUEUED_RESPONSES = 8;
/** ...or this many bytes. */
const HIGH_WATER = 262144;
const decoder = new TextDecoder();

/**
 * A body of a length the head gives that produces the head too, in front
 * of its first block and in the same piece: one send, not two, for a body
 * of up to a block.
 */
type HeadedBody = (head: Uint8Array) => Producer;

/** Where a channel is in its input. */
type State =
  | "request-line"
  | "headers"
  | "body"
  | "chunk-size"
  | "chunk-data"
  | "chunk-end"
  | "trailers"
  | "closing";

/** Listens, and starts an `HttpChannel` for each connection. */
export class HttpServer extends Dispatcher {
  readonly config: ServerConfig;

  constructor(
    config: ServerConfig,
    address: { hostname: string; port: number },
  ) {
    super();
    this.config = config;
    this.createSocket();
    this.setReuseAddr();
    try {
      this.bind(address);
      this.listen(511);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  override handleAccepted(sock: Socket, addr: Deno.Addr): void {
    new HttpChannel(this.config, sock, addr);
  }
}

/** One connection: reads requests, answers each with a producer chain. */
export class HttpChannel extends AsyncChat {
  readonly config: ServerConfig;
  /** The client's address, for the log. */
  readonly client: string;
  #state: State = "request-line";
  #request: Request | null = null;
  /** Whether bytes of a request head have arrived (its deadline runs). */
  #inHead = false;
  #headerBytes = 0;
  /** Inside recv(): an end of input it finds comes from the client. */
  #reading = false;
  /** The last request line read, for the log when it cannot be parsed. */
  #requestLine = "";
  /** Responses queued and not yet produced to their end. */
  #queued = 0;
  /** When the connection is timed out (performance.now() ms), or Infinity. */
  #deadline = Infinity;
  #timer: DelayedCall | null = null;
  /** The array the pieces of its large responses are put together in. */
  #pieces = new PieceBuffer();
  /**
   * Whether each array sent is a send of its own (the epoll backend), so
   * that a cached body is worth copying behind its head; the default
   * backend copies what one turn sends into one write anyway.
   */
  #sendsEachPiece: boolean;

  constructor(config: ServerConfig, sock: Socket, addr: Deno.Addr) {
    if (sock.backend === "deno") sock.sendBufferSize = SEND_BUFFER;
    super(sock);
    this.#sendsEachPiece = sock.backend !== "deno";
    this.config = config;
    this.client = addr.transport === "tcp" ? addr.hostname : "-";
    this.maxRecordSize = MAX_HEAD_PART + 1; // a line and its CR
    this.acOutBufferSize = SEND_BUFFER;
    this.setTerminator("\n");
    this.#setDeadline(config.idleTimeout);
  }

  /** Reads unless the connection is closing or much output is queued. */
  override readable(): boolean {
    return this.#state !== "closing" && this.#queued < MAX_QUEUED_RESPONSES &&
      this.sendBuffered < HIGH_WATER;
  }

  override collectIncomingData(data: Uint8Array): void {
    switch (this.#state) {
      case "body":
      case "chunk-data":
        // Dropped; the body only has to keep arriving.
        this.#setDeadline(this.config.idleTimeout);
        return;
      case "closing":
        return;
      case "request-line":
        if (!this.#inHead) {
          this.#inHead = true;
          this.#setDeadline(this.config.headerTimeout);
        }
    }
    super.collectIncomingData(data);
  }

  override foundTerminator(): void {
    try {
      this.#advance();
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      this.#fail(error);
    }
  }

  /** Handles the line (or body part) just read, by state. */
  #advance(): void {
    if (this.#state === "body") return this.#complete();
    if (this.#state === "chunk-data") {
      this.setTerminator("\n");
      this.#state = "chunk-end";
      return;
    }
    if (this.#state === "closing") return;
    let line = decoder.decode(this.getData());
    if (line.endsWith("\r")) line = line.slice(0, -1);
    switch (this.#state) {
      case "request-line":
        // Empty lines before a request are skipped, as RFC 9112 advises.
        if (line !== "") {
          this.#requestLine = line.slice(0, 200);
          this.#request = parseRequestLine(line);
          this.#headerBytes = 0;
          this.#state = "headers";
        }
        return;
      case "headers":
      case "trailers":
        if (line === "") {
          return this.#state === "headers"
            ? this.#endOfHead()
            : this.#complete();
        }
        this.#headerBytes += line.length + 2;
        if (this.#headerBytes > MAX_HEAD_PART) {
          throw new HttpError(431, "header section too large");
        }
        if (this.#state === "headers") addHeader(this.#request!, line);
        return;
      case "chunk-size": {
        const size = parseChunkSize(line);
        if (size === 0) {
          this.#state = "trailers";
        } else {
          this.setTerminator(size);
          this.#state = "chunk-data";
        }
        return;
      }
      case "chunk-end":
        if (line !== "") throw new HttpError(400, "chunk without its CRLF");
        this.#state = "chunk-size";
        return;
    }
  }

  #endOfHead(): void {
    this.#inHead = false;
    const framing = bodyFraming(this.#request!);
    if (framing === "chunked") {
      this.#continue();
      this.#headerBytes = 0;
      this.#state = "chunk-size";
      this.#setDeadline(this.config.idleTimeout);
    } else if (framing.length > 0) {
      this.#continue();
      this.setTerminator(framing.length);
      this.#state = "body";
      this.#setDeadline(this.config.idleTimeout);
    } else {
      this.#complete();
    }
  }

  /** Tells a client waiting with `Expect: 100-continue` to send its body. */
  #continue(): void {
    const expect = this.#request!.headers.get("expect");
    if (expect?.toLowerCase() === "100-continue" && this.#request!.minor >= 1) {
      this.push("HTTP/1.1 100 Continue\r\n\r\n");
    }
  }

  /** The request has been read whole: answer it, and read the next. */
  #complete(): void {
    const request = this.#request!;
    this.#request = null;
    if (this.#state !== "headers") this.setTerminator("\n");
    this.#state = "request-line";
    this.#setDeadline(Infinity);
    const keepAlive = keepsAlive(request);
    try {
      if (request.method !== "GET" && request.method !== "HEAD") {
        throw new HttpError(405, "method not allowed", false);
      }
      this.#serveFile(
        request,
        findFile(this.config.root, request.target),
        keepAlive,
      );
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      this.#sendError(
        request,
        request.line,
        error.status,
        keepAlive && !error.fatal,
      );
    }
  }

  /** Medusa's default handler: the file, or a range of it, or a 304. */
  #serveFile(request: Request, found: Found, keepAlive: boolean): void {
    const lastModified = formatHttpDate(found.mtime);
    const since = Date.parse(request.headers.get("if-modified-since") ?? "");
    if (found.mtime <= since / 1000) {
      return this.#send(
        request,
        304,
        [`Last-Modified: ${lastModified}`],
        null,
        keepAlive,
      );
    }
    let range: ByteRange | "unsatisfiable" | null = null;
    const rangeHeader = request.headers.get("range");
    const ifRange = request.headers.get("if-range");
    if (
      rangeHeader !== undefined &&
      (ifRange === undefined || ifRange === lastModified)
    ) {
      range = parseRange(rangeHeader, found.size);
    }
    if (range === "unsatisfiable") {
      return this.#sendError(request, request.line, 416, keepAlive, [
        `Content-Range: bytes */${found.size}`,
      ]);
    }
    const { start, length } = range ?? { start: 0, length: found.size };
    const fields = [
      `Content-Type: ${found.type}`,
      `Content-Length: ${length}`,
      `Last-Modified: ${lastModified}`,
      "Accept-Ranges: bytes",
    ];
    if (range !== null) {
      fields.push(
        `Content-Range: bytes ${start}-${start + length - 1}/${found.size}`,
      );
    }
    const status = range === null ? 200 : 206;
    if (request.method !== "GET" || length === 0) {
      return this.#send(request, status, fields, null, keepAlive);
    }
    const cached = this.config.cache.get(found);
    if (cached !== null && (length <= GATHERED || !this.#sendsEachPiece)) {
      const piece = cached.subarray(start, start + length);
      const body = new SimpleProducer(piece, piece.length);
      const small = length <= GATHERED;
      return this.#send(
        request,
        status,
        fields,
        body,
        keepAlive,
        request.line,
        small,
      );
    }
    // The pieces of these bodies go to the channel as they are, not
    // gathered: they are put together in the channel's one buffer.
    const body: HeadedBody = cached !== null
      ? (head) =>
        new HeadAndBytesProducer(
          head,
          cached.subarray(start, start + length),
          this.#pieces,
          BLOCK,
        )
      : (head) =>
        new FileRangeProducer(found.path, start, length, BLOCK, {
          head,
          buffer: this.#pieces,
        });
    this.#send(request, status, fields, body, keepAlive, request.line, false);
  }

  /** An error page (no body for HEAD). */
  #sendError(
    request: Request | null,
    line: string,
    status: number,
    keepAlive: boolean,
    extra: string[] = [],
  ): void {
    const page = errorPage(status);
    const fields = [
      "Content-Type: text/html; charset=UTF-8",
      `Content-Length: ${page.length}`,
      ...extra,
    ];
    if (status === 405) fields.push("Allow: GET, HEAD");
    const body = request?.method === "HEAD"
      ? null
      : new SimpleProducer(page, page.length);
    this.#send(request, status, fields, body, keepAlive, line);
  }

  /**
   * Queues a response as Medusa's `http_request.done()` does: the head and
   * the body (chunked when its length is not in the head), hooked for the
   * log, and (when `glob`) globbed into one piece.
   */
  #send(
    request: Request | null,
    status: number,
    fields: string[],
    body: Producer | HeadedBody | null,
    keepAlive: boolean,
    line = request?.line ?? "",
    glob = true,
  ): void {
    const hasLength = body === null || typeof body === "function" ||
      fields.some((f) => f.startsWith("Content-Length:"));
    if (!hasLength && request !== null && request.minor >= 1) {
      fields.push("Transfer-Encoding: chunked");
      body = new ChunkedProducer(body as Producer);
    } else if (!hasLength) {
      keepAlive = false; // the end of the body is the end of the connection
    }
    if (!keepAlive) fields.push("Connection: close");
    else if (request?.minor === 0) fields.push("Connection: keep-alive");
    const head = responseHead(status, fields);
    const parts: Producer[] = typeof body === "function"
      ? [body(head)]
      : [new SimpleProducer(head, head.length)];
    if (body !== null && typeof body !== "function") parts.push(body);
    this.#queued++;
    const logged = new HookedProducer(
      new CompositeProducer(parts),
      (bytes) => this.#sent(line, status, bytes - head.length),
    );
    this.pushWithProducer(glob ? new GlobbingProducer(logged, BLOCK) : logged);
    if (!keepAlive) {
      this.#state = "closing";
      this.setTerminator(null);
      this.closeWhenDone();
    }
  }

  /** A response has been produced to its end: log it. */
  #sent(line: string, status: number, bodyBytes: number): void {
    this.#queued--;
    this.config.log?.write(
      `${this.client} - - [${logDate()}] "${quoteForLog(line)}" ${status} ${
        bodyBytes > 0 ? bodyBytes : "-"
      }`,
    );
    if (this.#queued === 0 && !this.#inHead && this.#state === "request-line") {
      this.#setDeadline(this.config.idleTimeout);
    }
  }

  /** A request that cannot be read on: answer it, and close. */
  #fail(error: HttpError): void {
    const line = this.#request?.line ?? this.#requestLine;
    this.#inHead = false;
    this.#sendError(this.#request, line.slice(0, 200), error.status, false);
    this.#request = null;
  }

  /** A line over 8 KiB: 414 for the request line, 431 for a header. */
  override handleRecordTooLarge(): void {
    const status = this.#state === "request-line"
      ? 414
      : this.#state === "headers" || this.#state === "trailers"
      ? 431
      : 400;
    this.#fail(new HttpError(status, "line too long"));
  }

  /**
   * Sets the deadline `ms` from now (Infinity: none). One timer per
   * connection checks it, re-armed at most every min(header, idle)
   * timeout, so that a deadline moved later, as every request does, costs
   * an assignment, not a timer.
   */
  #setDeadline(ms: number): void {
    this.#deadline = performance.now() + ms;
    if (ms === Infinity || this.#timer !== null) return;
    this.#arm(ms);
  }

  #arm(ms: number): void {
    const { headerTimeout, idleTimeout } = this.config;
    this.#timer = callLater(
      Math.min(ms, headerTimeout, idleTimeout),
      () => this.#checkDeadline(),
      { channel: this },
    );
  }

  #checkDeadline(): void {
    this.#timer = null;
    if (!this.connected) return;
    const left = this.#deadline - performance.now();
    if (left === Infinity) return;
    if (left > 0) return this.#arm(left);
    if (this.#inHead) {
      this.#fail(new HttpError(408, "request head too slow"));
    } else {
      this.handleClose();
    }
  }

  override handleError(error: unknown): void {
    console.error(`${this.client}: ${messageOf(error)}`);
    this.handleClose();
  }

  /**
   * A client may shut its side down once it has sent its requests: the end
   * of input found by a read then waits for the answers queued before it.
   */
  override recv(bufsize: number): Uint8Array {
    this.#reading = true;
    try {
      return super.recv(bufsize);
    } finally {
      this.#reading = false;
    }
  }

  override handleClose(): void {
    if (
      this.#reading && this.#state !== "closing" &&
      (this.#queued > 0 || this.sendBuffered > 0)
    ) {
      this.#state = "closing";
      this.setTerminator(null);
      this.closeWhenDone();
      return;
    }
    this.#timer?.cancel();
    this.#timer = null;
    this.close();
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "http_server.ts",
    summary: "Serves the files under --root over HTTP/1.1 (GET and HEAD, " +
      "ranges, keep-alive, pipelining). Prints `listening on HOST:PORT` " +
      "once it accepts (--port 0 picks a free port), then a Common Log " +
      "Format line per request on stdout unless --quiet.",
    permissions: "--allow-net --allow-read",
    options: {
      root: { value: "DIR", help: "directory to serve", default: "." },
      ...serverOptions("8080"),
      "header-timeout": {
        value: "S",
        help: "seconds from a request's first byte to the end of its head",
        default: "20",
      },
      "idle-timeout": {
        value: "S",
        help: "seconds a connection may wait with no request in progress",
        default: "60",
      },
    },
    flags: { quiet: "no access log (the listening line is printed anyway)" },
  });
  const { options, flags } = cli.parse();
  const seconds = (what: string, text: string | undefined): number => {
    const value = /^\d+(\.\d+)?$/.test(text ?? "") ? Number(text) : NaN;
    if (!(value > 0 && value <= 86400)) {
      cli.fail(
        `${what} must be a number of seconds from 0 to 86400, got ${
          JSON.stringify(text ?? "")
        }`,
      );
    }
    return value * 1000;
  };
  let root = "";
  try {
    root = Deno.realPathSync(options.root!);
    if (!Deno.statSync(root).isDirectory) throw new Error("not a directory");
  } catch (error) {
    cli.fail(`--root ${JSON.stringify(options.root)}: ${messageOf(error)}`);
  }
  const log = flags.quiet ? null : new AccessLog();
  const config: ServerConfig = {
    root: root === "/" ? "" : root,
    cache: new SmallFileCache(CACHED_FILE, CACHE_TOTAL),
    log,
    headerTimeout: seconds("--header-timeout", options["header-timeout"]),
    idleTimeout: seconds("--idle-timeout", options["idle-timeout"]),
  };
  const address = {
    hostname: cli.host("--host", options.host),
    port: cli.port("--port", options.port),
  };
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  listenOrExit("http_server.ts", () => new HttpServer(config, address));
  await loop({ signal: interrupt.signal });
  closeAll();
  log?.flush();
}
