/**
 * The request side of `http_server.ts`: what a request head says, parsed
 * from its lines as `AsyncChat` splits them, and the checks that turn a bad
 * one into an error status.
 *
 * @module
 */

/** The longest request line, and the most bytes of header lines, accepted. */
export const MAX_HEAD_PART = 8192;

/** A parsed request head. */
export interface Request {
  /** The request line as received, for the access log. */
  line: string;
  method: string;
  /** The request target: `/path?query`, or an absolute URL. */
  target: string;
  /** The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1 (and 1.x). */
  minor: number;
  /** Header fields by lower-case name; repeated fields joined by `, `. */
  headers: Map<string, string>;
}

/** A request that cannot be served: the status to answer it with. */
export class HttpError extends Error {
  readonly status: number;
  /** Whether the connection must close after the answer. */
  readonly fatal: boolean;

  constructor(status: number, message: string, fatal = true) {
    super(message);
    this.status = status;
    this.fatal = fatal;
  }
}

const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const REQUEST_LINE = new RegExp(`^(${TOKEN}) (\\S+) HTTP/(\\d)\\.(\\d)$`);
const HEADER_LINE = new RegExp(`^(${TOKEN}):[ \\t]*(.*?)[ \\t]*$`);

/** Parses a request line (without its line end) into a request. */
export function parseRequestLine(line: string): Request {
  if (line.length > MAX_HEAD_PART) {
    throw new HttpError(414, "request line too long");
  }
  const match = REQUEST_LINE.exec(line);
  if (match === null) throw new HttpError(400, "malformed request line");
  const [, method, target, major, minor] = match;
  if (major !== "1") throw new HttpError(505, `HTTP/${major} not supported`);
  return {
    line,
    method,
    target,
    minor: minor === "0" ? 0 : 1,
    headers: new Map(),
  };
}

/** Adds a header line (without its line end) to `request`. */
export function addHeader(request: Request, line: string): void {
  const match = HEADER_LINE.exec(line);
  if (match === null) throw new HttpError(400, "malformed header line");
  const name = match[1].toLowerCase();
  const value = match[2];
  const before = request.headers.get(name);
  request.headers.set(
    name,
    before === undefined ? value : `${before}, ${value}`,
  );
}

/** How the request's body is framed. */
export type BodyFraming = { length: number } | "chunked";

/** The body's framing: a length (0 for none), or chunked. */
export function bodyFraming(request: Request): BodyFraming {
  const coding = request.headers.get("transfer-encoding");
  const length = request.headers.get("content-length");
  if (coding !== undefined) {
    // Both at once is how requests are smuggled past proxies: refuse it.
    if (length !== undefined) {
      throw new HttpError(400, "both Content-Length and Transfer-Encoding");
    }
    const codings = coding.toLowerCase().split(",").map((c) => c.trim());
    if (codings.at(-1) !== "chunked") {
      throw new HttpError(400, `unknown transfer coding ${coding}`);
    }
    return "chunked";
  }
  if (length === undefined) return { length: 0 };
  // Repeated fields must agree ("5, 5").
  const values = new Set(length.split(",").map((v) => v.trim()));
  const [value] = values;
  if (values.size !== 1 || !/^\d{1,15}$/.test(value)) {
    throw new HttpError(400, `bad Content-Length ${length}`);
  }
  return { length: Number(value) };
}

/** Parses a chunk-size line (extensions after `;` ignored). */
export function parseChunkSize(line: string): number {
  const match = /^([0-9A-Fa-f]{1,12})[ \t]*(;.*)?$/.exec(line);
  if (match === null) throw new HttpError(400, "malformed chunk size");
  return parseInt(match[1], 16);
}

/** Whether the connection stays open after the response. */
export function keepsAlive(request: Request): boolean {
  const connection = request.headers.get("connection")?.toLowerCase() ?? "";
  const tokens = connection.split(",").map((t) => t.trim());
  if (tokens.includes("close")) return false;
  return request.minor >= 1 || tokens.includes("keep-alive");
}
