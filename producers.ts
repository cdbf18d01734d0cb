/**
 * Sources of output for `AsyncChat.pushWithProducer()`: the
 * {@linkcode Producer} interface, Python's {@linkcode SimpleProducer} and
 * Medusa's producers. Each has a `more()` that returns the next piece of
 * output as bytes, and an empty array once exhausted; the wrappers (globbing, hooked, chunked,
 * escaping, composite) take other producers and transform what they yield.
 * A `FileProducer` holds an open file, and the wrappers pass
 * `[Symbol.dispose]()` on to what they wrap, so an `AsyncChat` that closes
 * with such a chain still queued closes the file.
 *
 * @example An HTTP/1.1 chunked body made of lines
 * ```ts
 * import { ChunkedProducer, LinesProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * const body = new ChunkedProducer(new LinesProducer(["hello", "world"]));
 * let text = "";
 * for (let piece = body.more(); piece.length > 0; piece = body.more()) {
 *   text += new TextDecoder().decode(piece);
 * }
 * assertEquals(text, "e\r\nhello\r\nworld\r\n\r\n0\r\n\r\n");
 * ```
 *
 * @module
 */

import { checkSize, describe, toBytes } from "./_validate.ts";
import { concatBytes, EMPTY, indexOfBytes, prefixAtEnd } from "./_bytes.ts";
import { disposeAll, disposeIfDisposable } from "./_dispose.ts";

/**
 * A source of output, pulled only when the channel can send: `more()`
 * returns the next piece, and an empty result means it is exhausted.
 *
 * @example A producer counting down
 * ```ts
 * import type { Producer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * let n = 3;
 * const countdown: Producer = { more: () => (n > 0 ? `${n--}\n` : "") };
 * assertEquals([countdown.more(), countdown.more(), countdown.more()], ["3\n", "2\n", "1\n"]);
 * assertEquals(countdown.more(), "");
 * ```
 */
export interface Producer {
  /**
   * The next piece of output (strings are sent as UTF-8); empty when there
   * is no more.
   */
  more(): Uint8Array | string;
}

/**
 * A producer fed from an asynchronous source (such as a `ReadableStream`),
 * which may have nothing yet without being exhausted: its `more()` then
 * returns a promise that settles when it is worth calling again.
 * `AsyncChat.pushWithProducer()` takes it: the channel sends nothing
 * of it, nor of what is queued after it, until the promise settles, then
 * wakes its loop and calls `more()` again; a rejection reaches
 * `handleError()`. Every {@linkcode Producer} is one that is never waited on.
 *
 * @example A producer whose data arrives later
 * ```ts
 * import type { AsyncProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * const pieces: string[] = [];
 * let ended = false;
 * const { promise: arrived, resolve } = Promise.withResolvers<void>();
 * const later: AsyncProducer = {
 *   more: () => pieces.shift() ?? (ended ? "" : arrived),
 * };
 * const wait = later.more(); // nothing yet: a promise
 * pieces.push("hello");
 * ended = true;
 * resolve();
 * await wait;
 * assertEquals(later.more(), "hello");
 * assertEquals(later.more(), ""); // exhausted
 * ```
 */
export interface AsyncProducer {
  /**
   * The next piece of output (strings are sent as UTF-8); empty when there
   * is no more; a promise while there is nothing yet.
   */
  more(): Uint8Array | string | PromiseLike<unknown>;
}

/**
 * Hands out a byte array (or string) in pieces of at most `bufferSize`
 * bytes: Python's `asynchat.simple_producer`. The pieces are views of the
 * data, not copies.
 *
 * @example
 * ```ts
 * import { SimpleProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * const producer = new SimpleProducer("hello world", 5);
 * const pieces: string[] = [];
 * for (let piece = producer.more(); piece.length > 0; piece = producer.more()) {
 *   pieces.push(new TextDecoder().decode(piece));
 * }
 * assertEquals(pieces, ["hello", " worl", "d"]);
 * ```
 */
export class SimpleProducer implements Producer {
  #data: Uint8Array;
  #bufferSize: number;

  /**
   * Makes a producer of `data`.
   *
   * @param data The bytes to produce; a string is sent as UTF-8.
   * @param bufferSize The most bytes `more()` returns at a time.
   */
  constructor(data: Uint8Array | string, bufferSize = 512) {
    this.#data = toBytes("data", data);
    this.#bufferSize = checkSize("bufferSize", bufferSize);
  }

  /** The next piece, at most `bufferSize` bytes; empty when exhausted. */
  more(): Uint8Array {
    const data = this.#data;
    if (data.length <= this.#bufferSize) {
      this.#data = EMPTY;
      return data;
    }
    this.#data = data.subarray(this.#bufferSize);
    return data.subarray(0, this.#bufferSize);
  }
}

const CRLF = new Uint8Array([13, 10]);
/** The size line of the last chunk: "0\r\n". */
const LAST_CHUNK = new Uint8Array([0x30, 13, 10]);

function checkProducer(name: string, value: unknown): Producer {
  if (
    typeof value !== "object" || value === null ||
    typeof (value as { more?: unknown }).more !== "function"
  ) {
    throw new TypeError(
      `${name} must have a more() method, got ${describe(value)}`,
    );
  }
  return value as Producer;
}

function checkArray(name: string, value: unknown): readonly unknown[] {
  if (!Array.isArray(value)) {
    throw new TypeError(`${name} must be an array, got ${describe(value)}`);
  }
  return value;
}

/** Pulls the next piece from `producer` as bytes. */
function pull(producer: Producer): Uint8Array {
  return toBytes("more() result", producer.more());
}

/**
 * Produces a list of lines, each followed by CRLF, up to 50 lines per
 * `more()`: Medusa's `lines_producer`.
 *
 * @example
 * ```ts
 * import { LinesProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * const producer = new LinesProducer(["HELO example.org", "QUIT"]);
 * assertEquals(
 *   new TextDecoder().decode(producer.more()),
 *   "HELO example.org\r\nQUIT\r\n",
 * );
 * assertEquals(producer.more().length, 0);
 * ```
 */
export class LinesProducer implements Producer {
  #lines: Uint8Array[];
  #index = 0;

  /**
   * Makes a producer of `lines`.
   *
   * @param lines The lines, without line ends; strings are sent as UTF-8.
   */
  constructor(lines: readonly (Uint8Array | string)[]) {
    this.#lines = checkArray("lines", lines).map((line, i) =>
      toBytes(`lines[${i}]`, line)
    );
  }

  /** The next lines, each followed by CRLF; empty when exhausted. */
  more(): Uint8Array {
    const end = Math.min(this.#index + 50, this.#lines.length);
    const parts: Uint8Array[] = [];
    let total = 0;
    for (; this.#index < end; this.#index++) {
      const line = this.#lines[this.#index];
      parts.push(line, CRLF);
      total += line.length + 2;
    }
    return concatBytes(parts, total);
  }
}

/**
 * Produces each buffer of a list in turn: Medusa's
 * `buffer_list_producer`. Empty buffers are skipped, so they do not end it
 * early.
 *
 * @example
 * ```ts
 * import { BufferListProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * const producer = new BufferListProducer(["ab", "", new Uint8Array([99])]);
 * assertEquals(producer.more(), new Uint8Array([97, 98]));
 * assertEquals(producer.more(), new Uint8Array([99]));
 * assertEquals(producer.more().length, 0);
 * ```
 */
export class BufferListProducer implements Producer {
  #buffers: Uint8Array[];
  #index = 0;

  /**
   * Makes a producer of `buffers`.
   *
   * @param buffers The pieces, in order; strings are sent as UTF-8.
   */
  constructor(buffers: readonly (Uint8Array | string)[]) {
    this.#buffers = checkArray("buffers", buffers).map((buffer, i) =>
      toBytes(`buffers[${i}]`, buffer)
    );
  }

  /** The next non-empty buffer; empty when exhausted. */
  more(): Uint8Array {
    while (this.#index < this.#buffers.length) {
      const buffer = this.#buffers[this.#index];
      this.#buffers[this.#index++] = EMPTY;
      if (buffer.length > 0) return buffer;
    }
    return EMPTY;
  }
}

/**
 * Produces the contents of an open file, read synchronously a block at a
 * time, and closes the file when it is exhausted: Medusa's
 * `file_producer`. Call `close()` to let go of the file early.
 *
 * @example
 * ```ts
 * import { FileProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * const path = Deno.makeTempFileSync();
 * Deno.writeTextFileSync(path, "hello world");
 * const producer = new FileProducer(Deno.openSync(path), 8);
 * const decoder = new TextDecoder();
 * assertEquals(decoder.decode(producer.more()), "hello wo");
 * assertEquals(decoder.decode(producer.more()), "rld");
 * assertEquals(producer.more().length, 0); // and the file is closed
 * Deno.removeSync(path);
 * ```
 */
export class FileProducer implements Producer, Disposable {
  #file: Deno.FsFile | null;
  #bufferSize: number;

  /**
   * Makes a producer of what is left of `file`.
   *
   * @param file A file open for reading; the producer closes it.
   * @param bufferSize The most bytes read per `more()`.
   */
  constructor(file: Deno.FsFile, bufferSize = 65536) {
    if (
      typeof file !== "object" || file === null ||
      typeof (file as { readSync?: unknown }).readSync !== "function"
    ) {
      throw new TypeError(`file must be a Deno.FsFile, got ${describe(file)}`);
    }
    this.#file = file;
    this.#bufferSize = checkSize("bufferSize", bufferSize);
  }

  /** Whether the file is still open. */
  get open(): boolean {
    return this.#file !== null;
  }

  /** The next block of the file; empty (and the file closed) at its end. */
  more(): Uint8Array {
    const file = this.#file;
    if (file === null) return EMPTY;
    const buffer = new Uint8Array(this.#bufferSize);
    let count: number | null;
    try {
      count = file.readSync(buffer);
    } catch (error) {
      this.close();
      throw error;
    }
    if (count === null || count === 0) {
      this.close();
      return EMPTY;
    }
    return count === buffer.length ? buffer : buffer.subarray(0, count);
  }

  /** Closes the file, if still open; `more()` then returns nothing. */
  close(): void {
    const file = this.#file;
    this.#file = null;
    file?.close();
  }

  /** Closes the file: `using producer = new FileProducer(...)`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Produces the output of several producers, one after another: Medusa's
 * `composite_producer`.
 *
 * @example
 * ```ts
 * import { BufferListProducer, CompositeProducer, LinesProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * const producer = new CompositeProducer([
 *   new LinesProducer(["HTTP/1.1 200 OK", ""]),
 *   new BufferListProducer(["body"]),
 * ]);
 * const decoder = new TextDecoder();
 * assertEquals(decoder.decode(producer.more()), "HTTP/1.1 200 OK\r\n\r\n");
 * assertEquals(decoder.decode(producer.more()), "body");
 * assertEquals(producer.more().length, 0);
 * ```
 */
export class CompositeProducer implements Producer, Disposable {
  #producers: Producer[];
  #index = 0;

  /**
   * Makes a producer of the producers' output, in order.
   *
   * @param producers The producers.
   */
  constructor(producers: Iterable<Producer>) {
    if (
      producers === null || typeof producers !== "object" ||
      typeof (producers as { [Symbol.iterator]?: unknown })[
          Symbol.iterator
        ] !== "function"
    ) {
      throw new TypeError(
        `producers must be an iterable of producers, got ${
          describe(producers)
        }`,
      );
    }
    this.#producers = [...producers].map((p, i) =>
      checkProducer(`producers[${i}]`, p)
    );
  }

  /** The next piece of the first producer not yet exhausted. */
  more(): Uint8Array {
    while (this.#index < this.#producers.length) {
      const data = pull(this.#producers[this.#index]);
      if (data.length > 0) return data;
      // Exhausted: let go of it.
      (this.#producers as (Producer | null)[])[this.#index++] = null;
    }
    return EMPTY;
  }

  /** Disposes the producers not yet exhausted (those that can be); ends it. */
  [Symbol.dispose](): void {
    const rest = this.#producers.slice(this.#index);
    this.#index = this.#producers.length;
    disposeAll(rest);
  }
}

/**
 * Gathers the output of another producer into pieces of at least
 * `bufferSize` bytes (but the last), so a channel makes fewer, larger
 * sends: Medusa's `globbing_producer`.
 *
 * @example
 * ```ts
 * import { BufferListProducer, GlobbingProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * const producer = new GlobbingProducer(
 *   new BufferListProducer(["a", "b", "c", "d", "e"]),
 *   2,
 * );
 * const decoder = new TextDecoder();
 * assertEquals(decoder.decode(producer.more()), "ab");
 * assertEquals(decoder.decode(producer.more()), "cd");
 * assertEquals(decoder.decode(producer.more()), "e");
 * assertEquals(producer.more().length, 0);
 * ```
 */
export class GlobbingProducer implements Producer, Disposable {
  #producer: Producer | null;
  #bufferSize: number;

  /**
   * Makes a producer that gathers `producer`'s output.
   *
   * @param producer The producer to gather from.
   * @param bufferSize How many bytes to gather before returning.
   */
  constructor(producer: Producer, bufferSize = 65536) {
    this.#producer = checkProducer("producer", producer);
    this.#bufferSize = checkSize("bufferSize", bufferSize);
  }

  /** At least `bufferSize` bytes, unless the producer runs out first. */
  more(): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    while (total < this.#bufferSize && this.#producer !== null) {
      const data = pull(this.#producer);
      if (data.length === 0) {
        this.#producer = null;
      } else {
        parts.push(data);
        total += data.length;
      }
    }
    return concatBytes(parts, total);
  }

  /** Disposes the wrapped producer (if it can be); ends this one. */
  [Symbol.dispose](): void {
    const producer = this.#producer;
    this.#producer = null;
    disposeIfDisposable(producer);
  }
}

/**
 * Passes on the output of another producer and, once it is exhausted,
 * calls a function with the number of bytes it produced: Medusa's
 * `hooked_producer`, for logging.
 *
 * @example
 * ```ts
 * import { BufferListProducer, HookedProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * let sent = -1;
 * const producer = new HookedProducer(
 *   new BufferListProducer(["hello", " world"]),
 *   (bytes) => sent = bytes,
 * );
 * while (producer.more().length > 0) {
 *   // send it
 * }
 * assertEquals(sent, 11);
 * ```
 */
export class HookedProducer implements Producer, Disposable {
  #producer: Producer | null;
  #hook: (bytes: number) => void;
  #bytes = 0;

  /**
   * Makes a producer that reports what `producer` produced.
   *
   * @param producer The producer to pass on.
   * @param hook Called once, with the byte count, when it is exhausted.
   */
  constructor(producer: Producer, hook: (bytes: number) => void) {
    this.#producer = checkProducer("producer", producer);
    if (typeof hook !== "function") {
      throw new TypeError(`hook must be a function, got ${describe(hook)}`);
    }
    this.#hook = hook;
  }

  /** The producer's next piece; at its end, the hook is called. */
  more(): Uint8Array {
    if (this.#producer === null) return EMPTY;
    const data = pull(this.#producer);
    if (data.length === 0) {
      this.#producer = null;
      this.#hook(this.#bytes);
    } else {
      this.#bytes += data.length;
    }
    return data;
  }

  /**
   * Disposes the wrapped producer (if it can be) and ends this one, without
   * calling the hook.
   */
  [Symbol.dispose](): void {
    const producer = this.#producer;
    this.#producer = null;
    disposeIfDisposable(producer);
  }
}

/**
 * Encodes the output of another producer with HTTP/1.1's chunked transfer
 * coding: each piece becomes `<hex length>\r\n<piece>\r\n`, and the end is
 * the zero chunk, the trailer fields and an empty line. Medusa's
 * `chunked_producer`.
 *
 * @example
 * ```ts
 * import { BufferListProducer, ChunkedProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * const producer = new ChunkedProducer(
 *   new BufferListProducer(["hello world, this is long"]),
 *   ["Expires: never"],
 * );
 * const decoder = new TextDecoder();
 * assertEquals(decoder.decode(producer.more()), "19\r\nhello world, this is long\r\n");
 * assertEquals(decoder.decode(producer.more()), "0\r\nExpires: never\r\n\r\n");
 * assertEquals(producer.more().length, 0);
 * ```
 */
export class ChunkedProducer implements Producer, Disposable {
  #producer: Producer | null;
  #trailers: Uint8Array[];
  #done = false;

  /**
   * Makes a producer of `producer`'s output, chunked.
   *
   * @param producer The producer of the body.
   * @param trailers Trailer fields (`"Name: value"`, without line ends) sent
   *   after the last chunk.
   * @throws {RangeError} when a trailer holds CR or LF.
   */
  constructor(
    producer: Producer,
    trailers: readonly (Uint8Array | string)[] = [],
  ) {
    this.#producer = checkProducer("producer", producer);
    this.#trailers = checkArray("trailers", trailers).map((trailer, i) => {
      const bytes = toBytes(`trailers[${i}]`, trailer);
      if (bytes.includes(13) || bytes.includes(10)) {
        throw new RangeError(
          `trailers[${i}] must not hold CR or LF, got ${describe(trailer)}`,
        );
      }
      return bytes;
    });
  }

  /** The next chunk; after the last, the end of the body; then empty. */
  more(): Uint8Array {
    if (this.#done) return EMPTY;
    const data = this.#producer === null ? EMPTY : pull(this.#producer);
    if (data.length > 0) {
      // One array per chunk: the size line written in place, the data, CRLF.
      const size = data.length.toString(16);
      const out = new Uint8Array(size.length + 2 + data.length + 2);
      for (let i = 0; i < size.length; i++) out[i] = size.charCodeAt(i);
      out.set(CRLF, size.length);
      out.set(data, size.length + 2);
      out.set(CRLF, out.length - 2);
      return out;
    }
    this.#done = true;
    this.#producer = null;
    const parts: Uint8Array[] = [LAST_CHUNK];
    for (const trailer of this.#trailers) parts.push(trailer, CRLF);
    parts.push(CRLF);
    return concatBytes(parts);
  }

  /**
   * Disposes the wrapped producer (if it can be) and ends this one, without
   * the last chunk.
   */
  [Symbol.dispose](): void {
    const producer = this.#producer;
    this.#producer = null;
    this.#done = true;
    disposeIfDisposable(producer);
  }
}

/**
 * Replaces a byte sequence in the output of another producer, even where it
 * straddles two of its pieces: by default SMTP's and NNTP's dot-stuffing,
 * `\r\n.` to `\r\n..`. Medusa's `escaping_producer`; matches are replaced
 * left to right without overlapping, as `String.prototype.replaceAll` does.
 *
 * @example SMTP dot-stuffing
 * ```ts
 * import { BufferListProducer, EscapingProducer } from "@asyncore/asyncore/producers";
 * import { assertEquals } from "@std/assert";
 *
 * const producer = new EscapingProducer(
 *   new BufferListProducer(["line\r", "\n.starts with a dot\r\n"]),
 * );
 * let text = "";
 * for (let piece = producer.more(); piece.length > 0; piece = producer.more()) {
 *   text += new TextDecoder().decode(piece);
 * }
 * assertEquals(text, "line\r\n..starts with a dot\r\n");
 * ```
 */
export class EscapingProducer implements Producer, Disposable {
  #producer: Producer | null;
  #from: Uint8Array;
  #to: Uint8Array;
  /** Input held back because it may be the start of `from`. */
  #pending = EMPTY;

  /**
   * Makes a producer of `producer`'s output, escaped.
   *
   * @param producer The producer whose output to escape.
   * @param escapeFrom The sequence to replace; not empty.
   * @param escapeTo What to replace it with.
   */
  constructor(
    producer: Producer,
    escapeFrom: Uint8Array | string = "\r\n.",
    escapeTo: Uint8Array | string = "\r\n..",
  ) {
    this.#producer = checkProducer("producer", producer);
    this.#from = toBytes("escapeFrom", escapeFrom).slice();
    this.#to = toBytes("escapeTo", escapeTo).slice();
    if (this.#from.length === 0) {
      throw new RangeError(`escapeFrom must not be empty, got ${describe("")}`);
    }
  }

  /** The next piece, escaped; empty when exhausted. */
  more(): Uint8Array {
    while (this.#producer !== null) {
      const data = pull(this.#producer);
      if (data.length === 0) break;
      const buffer = this.#pending.length === 0
        ? data
        : concatBytes([this.#pending, data]);
      const from = this.#from;
      const parts: Uint8Array[] = [];
      let total = 0;
      let pos = 0;
      for (
        let at = indexOfBytes(buffer, from, 0);
        at >= 0;
        at = indexOfBytes(buffer, from, pos)
      ) {
        if (at > pos) parts.push(buffer.subarray(pos, at));
        parts.push(this.#to);
        total += at - pos + this.#to.length;
        pos = at + from.length;
      }
      const held = buffer.length - prefixAtEnd(buffer, from, pos);
      if (held > pos) {
        parts.push(buffer.subarray(pos, held));
        total += held - pos;
      }
      this.#pending = held < buffer.length ? buffer.slice(held) : EMPTY;
      if (total > 0) return concatBytes(parts, total);
    }
    // Exhausted: what was held back cannot be a match any more.
    this.#producer = null;
    const rest = this.#pending;
    this.#pending = EMPTY;
    return rest;
  }

  /** Disposes the wrapped producer (if it can be); ends this one. */
  [Symbol.dispose](): void {
    const producer = this.#producer;
    this.#producer = null;
    this.#pending = EMPTY;
    disposeIfDisposable(producer);
  }
}
