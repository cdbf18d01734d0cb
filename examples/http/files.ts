/**
 * The file side of `http_server.ts`: a request target resolved to a file
 * under the root, the contents of small files kept in memory, the `Range`
 * header, and a producer of a byte range of a file.
 *
 * @module
 */

import { contentType } from "@std/media-types";
import type { Producer } from "@asyncore/asyncore/producers";
import { HttpError } from "./request.ts";

/** A file found for a request. */
export interface Found {
  /** Its real path, under the root. */
  path: string;
  size: number;
  /** Its modification time in whole seconds since the epoch (HTTP's resolution). */
  mtime: number;
  /** What changes when the file does: inode, times to the ms, and size. */
  version: string;
  /** The `Content-Type` its extension gives. */
  type: string;
}

/**
 * Finds the file `target` names under `root` (a real path, no trailing
 * slash): the path is percent-decoded, `.` and empty segments dropped and
 * `..` applied (a target that climbs above the root is a 400), and the real
 * path (symlinks followed) must stay under the root, else it is a 404 as
 * for a missing file. A directory serves its `index.html`.
 */
export function findFile(root: string, target: string): Found {
  let path = target;
  if (!path.startsWith("/")) {
    // The absolute form (`http://host/path`), as a proxy would send it.
    const match = /^https?:\/\/[^/?#]*(.*)$/i.exec(path);
    if (match === null) throw new HttpError(400, "bad request target", false);
    path = match[1].startsWith("/") ? match[1] : "/" + match[1];
  }
  const end = path.search(/[?#]/);
  if (end >= 0) path = path.slice(0, end);
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    throw new HttpError(400, "bad percent-encoding", false);
  }
  if (decoded.includes("\0")) throw new HttpError(400, "NUL in path", false);
  const segments: string[] = [];
  for (const segment of decoded.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment !== "..") segments.push(segment);
    else if (segments.pop() === undefined) {
      throw new HttpError(400, "path above the root", false);
    }
  }
  let [real, info] = lookUp(root, segments);
  if (info.isDirectory) {
    [real, info] = lookUp(root, [...segments, "index.html"]);
  }
  if (!info.isFile) throw new HttpError(404, "not a file", false);
  const dot = real.lastIndexOf(".");
  const extension = dot > real.lastIndexOf("/") ? real.slice(dot) : "";
  return {
    path: real,
    size: info.size,
    mtime: Math.floor((info.mtime?.getTime() ?? 0) / 1000),
    version:
      `${info.ino}:${info.mtime?.getTime()}:${info.ctime?.getTime()}:${info.size}`,
    type: typeOf(extension.toLowerCase()),
  };
}

const types = new Map<string, string>();

/** The `Content-Type` of an extension (`@std/media-types`), looked up once. */
function typeOf(extension: string): string {
  let type = types.get(extension);
  if (type === undefined) {
    type = contentType(extension) ?? "application/octet-stream";
    if (types.size < 1000) types.set(extension, type);
  }
  return type;
}

/**
 * The real path of `root/segments...` and what `stat` says of it. Each
 * component is looked at with `lstat`, one system call each (`realpath`
 * costs several per component): while none is a symlink the path is
 * already real. Past a symlink, `realpath` says where it leads, which must
 * be under `root`.
 */
function lookUp(root: string, segments: string[]): [string, Deno.FileInfo] {
  if (segments.length === 0) {
    return [root, statOrNotFound(root || "/", Deno.statSync)];
  }
  let path = root;
  for (let i = 0;; i++) {
    path += "/" + segments[i];
    const info = statOrNotFound(path, Deno.lstatSync);
    if (info.isSymlink) return followed(root, `${root}/${segments.join("/")}`);
    if (i === segments.length - 1) return [path, info];
    if (!info.isDirectory) throw new HttpError(404, "no such file", false);
  }
}

function followed(root: string, path: string): [string, Deno.FileInfo] {
  let real: string;
  try {
    real = Deno.realPathSync(path);
  } catch (error) {
    throw fileError(error);
  }
  if (real !== root && !real.startsWith(root + "/")) {
    throw new HttpError(404, "outside the root", false);
  }
  return [real, statOrNotFound(real, Deno.statSync)];
}

function statOrNotFound(
  path: string,
  stat: (path: string) => Deno.FileInfo,
): Deno.FileInfo {
  try {
    return stat(path);
  } catch (error) {
    throw fileError(error);
  }
}

/** A file system error as the status it answers. */
export function fileError(error: unknown): HttpError {
  if (error instanceof Deno.errors.PermissionDenied) {
    return new HttpError(403, "permission denied", false);
  }
  return new HttpError(404, "no such file", false);
}

/**
 * The contents of small files, kept while the lookup each request makes
 * anyway (one `lstat`) shows the same inode, times and size: a file is
 * opened and read once, not per request (an open from Deno costs a
 * `readlink` per path component besides the `open`, `read` and `close`).
 * Bounded: files up to `maxFile` bytes, `maxTotal` bytes in all, the
 * longest kept going first.
 */
export class SmallFileCache {
  readonly maxFile: number;
  readonly maxTotal: number;
  #entries = new Map<string, { version: string; data: Uint8Array }>();
  #total = 0;

  constructor(maxFile: number, maxTotal: number) {
    this.maxFile = maxFile;
    this.maxTotal = maxTotal;
  }

  /**
   * The contents of `found`, kept or read now; null when it is too large to
   * keep, or changed while being read (the caller then reads it itself).
   */
  get(found: Found): Uint8Array | null {
    if (found.size > this.maxFile) return null;
    const entry = this.#entries.get(found.path);
    if (entry?.version === found.version) return entry.data;
    if (entry !== undefined) this.#drop(found.path, entry.data);
    let data: Uint8Array;
    try {
      data = Deno.readFileSync(found.path);
    } catch (error) {
      throw fileError(error);
    }
    if (data.length !== found.size) return null;
    for (const [path, { data }] of this.#entries) {
      if (this.#total + data.length <= this.maxTotal) break;
      this.#drop(path, data);
    }
    this.#entries.set(found.path, { version: found.version, data });
    this.#total += data.length;
    return data;
  }

  #drop(path: string, data: Uint8Array): void {
    this.#entries.delete(path);
    this.#total -= data.length;
  }
}

/** A byte range: `start` and `length` in bytes. */
export interface ByteRange {
  start: number;
  length: number;
}

/**
 * The range a `Range` header asks of a file of `size` bytes: null when the
 * header is not a single `bytes=a-b`, `bytes=a-` or `bytes=-n` (the whole
 * file is then sent, as HTTP lets a server do with ranges it ignores);
 * "unsatisfiable" when it starts past the end or asks for no bytes.
 */
export function parseRange(
  header: string,
  size: number,
): ByteRange | "unsatisfiable" | null {
  const match = /^bytes=[ \t]*(\d*)-(\d*)[ \t]*$/i.exec(header);
  if (match === null) return null;
  const [, first, last] = match;
  if (first === "" && last === "") return null;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    const length = Math.min(suffix, size);
    return { start: size - length, length };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== "" && Number(last) < start) return null; // invalid: ignored
  if (start >= size) return "unsatisfiable";
  return { start, length: end - start + 1 };
}

/**
 * One array handed out again and again, grown when asked for more: the
 * pieces a channel's responses produce, each sent whole before the next is
 * asked for (a channel pulls a producer's next piece only once it has sent
 * the last, and its responses one after another), so one array per channel
 * serves them all. A fresh 64 KiB array per piece cost more than filling it
 * (V8 zero-fills it).
 */
export class PieceBuffer {
  #bytes = new Uint8Array(0);

  /** An array of at least `size` bytes, the same one while it is enough. */
  get(size: number): Uint8Array {
    if (this.#bytes.length < size) this.#bytes = new Uint8Array(size);
    return this.#bytes;
  }
}

/**
 * Produces a response's head and a body held in memory: the first piece is
 * the head and up to `blockSize` bytes of the body copied together into
 * `buffer`, so that a body of up to a block leaves in one send with its
 * head (the epoll backend sends each piece with a system call of its own);
 * the rest of the body follows as it is, not copied.
 *
 * It must be pulled by a channel directly, not through a producer that
 * gathers pieces (see {@linkcode PieceBuffer}).
 */
export class HeadAndBytesProducer implements Producer {
  #head: Uint8Array | null;
  #body: Uint8Array;
  #buffer: PieceBuffer;
  #blockSize: number;

  constructor(
    head: Uint8Array,
    body: Uint8Array,
    buffer: PieceBuffer,
    blockSize = 65536,
  ) {
    this.#head = head;
    this.#body = body;
    this.#buffer = buffer;
    this.#blockSize = blockSize;
  }

  more(): Uint8Array {
    const head = this.#head;
    if (head === null) {
      const rest = this.#body;
      this.#body = new Uint8Array(0);
      return rest;
    }
    this.#head = null;
    const first = this.#body.subarray(0, this.#blockSize);
    this.#body = this.#body.subarray(first.length);
    const piece = this.#buffer.get(head.length + first.length)
      .subarray(0, head.length + first.length);
    piece.set(head);
    piece.set(first, head.length);
    return piece;
  }
}

/**
 * Produces `length` bytes of a file from `start`, a block at a time:
 * Medusa's `file_producer` for a range. The file is opened when the first
 * block is asked for, so responses queued behind another hold no
 * descriptor (nor buffer) yet, and closed after the last block. A file that
 * turns out shorter than promised throws, so the channel closes rather than
 * leave the client waiting for bytes the head announced.
 *
 * Given the response's `head`, it produces it too, in front of the first
 * block and in the same piece, so that a body of up to a block leaves in
 * one send with its head.
 *
 * Every block is read into the same buffer (`buffer`, else one of its own):
 * a channel asks for more only once it has sent the last piece, so it must
 * be pulled by a channel directly, not through a producer that gathers
 * pieces (a `GlobbingProducer`).
 */
export class FileRangeProducer implements Producer, Disposable {
  readonly path: string;
  #start: number;
  #left: number;
  #blockSize: number;
  #head: Uint8Array | null;
  #buffers: PieceBuffer;
  #file: Deno.FsFile | null = null;

  constructor(
    path: string,
    start: number,
    length: number,
    blockSize = 65536,
    options: { head?: Uint8Array; buffer?: PieceBuffer } = {},
  ) {
    this.path = path;
    this.#start = start;
    this.#left = length;
    this.#blockSize = blockSize;
    this.#head = options.head ?? null;
    this.#buffers = options.buffer ?? new PieceBuffer();
  }

  more(): Uint8Array {
    if (this.#left === 0) return new Uint8Array(0);
    try {
      return this.#read();
    } catch (error) {
      this.close();
      throw error;
    }
  }

  #read(): Uint8Array {
    if (this.#file === null) {
      this.#file = Deno.openSync(this.path);
      if (this.#start > 0) {
        this.#file.seekSync(this.#start, Deno.SeekMode.Start);
      }
    }
    const headLength = this.#head?.length ?? 0;
    const size = Math.min(this.#blockSize, this.#left);
    const whole = this.#buffers.get(headLength + size);
    if (this.#head !== null) whole.set(this.#head);
    const count = this.#file.readSync(
      whole.subarray(headLength, headLength + size),
    );
    if (count === null || count === 0) {
      throw new Error(`${this.path} ended ${this.#left} bytes early`);
    }
    this.#head = null;
    this.#left -= count;
    if (this.#left === 0) this.close();
    return whole.subarray(0, headLength + count);
  }

  /** Closes the file (if open); `more()` then returns nothing. */
  close(): void {
    this.#left = 0;
    this.#file?.close();
    this.#file = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
