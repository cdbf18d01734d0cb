/**
 * The file side of `http_server.ts`: a request target resolved to a file
 * under the root, the `Range` header, and a producer of a byte range of an
 * open file.
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
  let real = inside(root, `${root}/${segments.join("/")}`);
  let info = statOrNotFound(real);
  if (info.isDirectory) {
    real = inside(root, `${real}/index.html`);
    info = statOrNotFound(real);
  }
  if (!info.isFile) throw new HttpError(404, "not a file", false);
  const dot = real.lastIndexOf(".");
  const extension = dot > real.lastIndexOf("/") ? real.slice(dot) : "";
  return {
    path: real,
    size: info.size,
    mtime: Math.floor((info.mtime?.getTime() ?? 0) / 1000),
    type: contentType(extension.toLowerCase()) ?? "application/octet-stream",
  };
}

/** The real path of `path`, which must be `root` or under it. */
function inside(root: string, path: string): string {
  let real: string;
  try {
    real = Deno.realPathSync(path);
  } catch (error) {
    throw fileError(error);
  }
  if (real !== root && !real.startsWith(root + "/")) {
    throw new HttpError(404, "outside the root", false);
  }
  return real;
}

function statOrNotFound(path: string): Deno.FileInfo {
  try {
    return Deno.statSync(path);
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
 * Produces `length` bytes of an open file from `start`, a block at a time,
 * and closes it after the last: Medusa's `file_producer` for a range. A file
 * that turns out shorter than promised throws, so the channel closes rather
 * than leave the client waiting for bytes the head announced.
 */
export class FileRangeProducer implements Producer, Disposable {
  #file: Deno.FsFile | null;
  #left: number;
  #blockSize: number;

  constructor(
    file: Deno.FsFile,
    start: number,
    length: number,
    blockSize = 65536,
  ) {
    this.#file = file;
    this.#left = length;
    this.#blockSize = blockSize;
    if (start > 0) file.seekSync(start, Deno.SeekMode.Start);
    if (length === 0) this.close();
  }

  more(): Uint8Array {
    const file = this.#file;
    if (file === null) return new Uint8Array(0);
    const buffer = new Uint8Array(Math.min(this.#blockSize, this.#left));
    let count: number | null;
    try {
      count = file.readSync(buffer);
    } catch (error) {
      this.close();
      throw error;
    }
    if (count === null || count === 0) {
      this.close();
      throw new Error(`file ended ${this.#left} bytes early`);
    }
    this.#left -= count;
    if (this.#left === 0) this.close();
    return count === buffer.length ? buffer : buffer.subarray(0, count);
  }

  close(): void {
    const file = this.#file;
    this.#file = null;
    file?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
