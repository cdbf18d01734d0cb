/**
 * Protocols made of terminated messages: Python's `asynchat`. An
 * {@linkcode AsyncChat} channel splits what it reads on a terminator (a byte
 * sequence, a byte count, or none) and queues what it writes as byte
 * arrays and {@linkcode Producer}s, sent as the socket takes them.
 *
 * @example A line protocol over loopback
 * ```ts
 * import { AsyncChat } from "@asyncore/asyncore/asynchat";
 * import { type ChannelMap, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
 * import type { Socket } from "@asyncore/asyncore/select";
 * import { assertEquals } from "@std/assert";
 *
 * const map: ChannelMap = new Map();
 * const decoder = new TextDecoder();
 *
 * // Answers each line in upper case; "QUIT" closes once the answers are sent.
 * class LineHandler extends AsyncChat {
 *   constructor(sock: Socket) {
 *     super(sock, map);
 *     this.setTerminator("\r\n");
 *   }
 *   override foundTerminator(): void {
 *     const line = decoder.decode(this.getData());
 *     if (line === "QUIT") this.closeWhenDone();
 *     else this.push(line.toUpperCase() + "\r\n");
 *   }
 * }
 *
 * class Server extends Dispatcher {
 *   constructor() {
 *     super(undefined, map);
 *     this.createSocket();
 *     this.bind({ hostname: "127.0.0.1", port: 0 });
 *     this.listen(5);
 *   }
 *   override handleAccepted(sock: Socket): void {
 *     new LineHandler(sock);
 *     this.close(); // one client is enough
 *   }
 * }
 *
 * class Client extends AsyncChat {
 *   lines: string[] = [];
 *   override foundTerminator(): void {
 *     this.lines.push(decoder.decode(this.getData()));
 *   }
 * }
 *
 * const server = new Server();
 * const client = new Client(undefined, map);
 * client.createSocket();
 * client.connect({
 *   hostname: "127.0.0.1",
 *   port: (server.getsockname() as Deno.NetAddr).port,
 * });
 * client.setTerminator("\r\n");
 * client.push("hello\r\nworld\r\nQUIT\r\n");
 * await loop({ map, timeout: 5000 });
 * assertEquals(client.lines, ["HELLO", "WORLD"]);
 * ```
 *
 * @module
 */

import { type ChannelMap, Dispatcher } from "./asyncore.ts";
import type { Socket, TlsOptions } from "./select.ts";
import { checkBytes, checkSize, describe, toBytes } from "./_validate.ts";
import {
  checkWaitingUpgrade,
  holdReads,
  wakeChannelLoop,
} from "./_loop/channel_state.ts";
import { concatBytes, EMPTY, prefixAtEnd } from "./_bytes.ts";
import { allocateRegion } from "./_read_arena.ts";
import { type RecordHandler, Splitter } from "./_terminator.ts";
import { disposeAll } from "./_dispose.ts";
import type { AsyncProducer } from "./producers.ts";

export {
  type AsyncProducer,
  type Producer,
  SimpleProducer,
} from "./producers.ts";

/** What {@linkcode AsyncChat.setTerminator} takes. */
export type Terminator = string | Uint8Array | number | null;

/**
 * A `startTls()` waiting in the output queue: the upgrade starts when the
 * send reaches it, that is once everything queued before it has gone.
 */
class TlsMark {
  constructor(readonly options: TlsOptions) {}
}

/**
 * An entry of the output queue: bytes, a producer, a waiting upgrade, or
 * close-when-done.
 */
type Outgoing = Uint8Array | AsyncProducer | TlsMark | null;

let recordTooLarge: (chat: AsyncChat) => void;

/**
 * What a channel's splitter calls: one small object per channel, where four
 * closures (and their context and options object) cost ten times as much.
 */
class ChatRecords implements RecordHandler {
  readonly #chat: AsyncChat;

  constructor(chat: AsyncChat) {
    this.#chat = chat;
  }

  maxRecordSize(): number {
    return this.#chat.maxRecordSize;
  }

  collectIncomingData(data: Uint8Array): void {
    this.#chat.collectIncomingData(data);
  }

  foundTerminator(): void {
    this.#chat.foundTerminator();
  }

  recordTooLarge(): void {
    recordTooLarge(this.#chat);
  }
}

// The bytes of the last string terminator set: channels of one protocol set
// the same one, and share its bytes (which nothing writes to).
let lastTerm = "";
let lastTermBytes = EMPTY;

// Until a channel first collects or queues something it shares these (frozen,
// so a push on them would throw rather than leak between channels).
const NO_INCOMING: Uint8Array[] = Object.freeze([]) as unknown as Uint8Array[];
const NO_OUTPUT: Outgoing[] = Object.freeze([]) as unknown as Outgoing[];
// Arrays queued together (pushed while a read was handled, or while the
// socket was full) are copied into one buffer and sent together: one send()
// for many push()es, of arrays of any size up to GATHER_ALL bytes in all (a
// 16 KiB line and its newline go in one send, one system call and one TCP
// segment on the epoll backend, not two: at 10 x 16 KiB that took the line
// echo from 39 to 28 us of CPU per round trip).
//
// AsyncChat's own send() hands the buffer to the socket, which is done with
// it when send() returns (the kernel or the socket's own buffer has copied
// it), so one buffer serves every channel and stays in cache. An overridden
// send() may keep what it is given: it gets a region of a shared arena, never
// reused, and only small arrays are copied for it (fresh arena memory for
// every 16 KiB line cost more than the send it saved).
const GATHER_SIZE = 16384;
const GATHER_PIECE = 1024;
const GATHER_ALL = 65536;
let gatherBuffer = new Uint8Array(0);

function termBytes(term: string): Uint8Array {
  if (term !== lastTerm) {
    lastTermBytes = toBytes("term", term);
    lastTerm = term;
  }
  return lastTermBytes;
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null &&
    typeof (value as { then?: unknown }).then === "function";
}

function isProducer(value: unknown): value is AsyncProducer {
  return typeof value === "object" && value !== null &&
    typeof (value as { more?: unknown }).more === "function";
}

/**
 * Finds how much of a terminator a buffer ends with: the length of the
 * longest proper prefix of `needle` that is a suffix of `haystack`. Strings
 * are compared as UTF-8, and the result counts bytes.
 *
 * @example
 * ```ts
 * import { findPrefixAtEnd } from "@asyncore/asyncore/asynchat";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(findPrefixAtEnd("qwerty\r", "\r\n"), 1);
 * assertEquals(findPrefixAtEnd("qwertydkjf", "\r\n"), 0);
 * assertEquals(findPrefixAtEnd("data\r\n--bou", "\r\n--boundary"), 7);
 * ```
 *
 * @param haystack The bytes received so far.
 * @param needle The terminator.
 * @returns A byte count from 0 to `needle.length - 1`.
 */
export function findPrefixAtEnd(
  haystack: Uint8Array | string,
  needle: Uint8Array | string,
): number {
  const hay = toBytes("haystack", haystack);
  const term = toBytes("needle", needle);
  return term.length === 0 ? 0 : prefixAtEnd(hay, term);
}

/**
 * A channel for protocols made of terminated messages: Python's
 * `asynchat.async_chat`.
 *
 * Input: each read (at most `acInBufferSize` bytes) is split on the
 * terminator. The bytes before it go to `collectIncomingData()` and, at the
 * terminator, `foundTerminator()` is called. A terminator set inside
 * `foundTerminator()` applies at once to the rest of the data already read,
 * so pipelined requests are each handled under the terminator in force when
 * they are reached. Only a possible start of the terminator is held back
 * between reads.
 *
 * Output: `push()` and `pushWithProducer()` queue bytes and producers, sent
 * in order, at most `acOutBufferSize` bytes per send, and only while the
 * socket takes more: a producer is pulled lazily, as room appears.
 *
 * @example Splitting pipelined input without a socket
 * ```ts
 * import { AsyncChat } from "@asyncore/asyncore/asynchat";
 * import { assertEquals } from "@std/assert";
 *
 * // A header line, then a body of the length the header gives.
 * class Reader extends AsyncChat {
 *   messages: string[] = [];
 *   #inBody = false;
 *   override foundTerminator(): void {
 *     const text = new TextDecoder().decode(this.getData());
 *     if (this.#inBody) {
 *       this.messages.push(text);
 *       this.setTerminator("\n");
 *     } else {
 *       this.setTerminator(Number(text));
 *     }
 *     this.#inBody = !this.#inBody;
 *   }
 *   // Feeds bytes as if the socket had read them.
 *   #input = new Uint8Array(0);
 *   override recv(): Uint8Array {
 *     return this.#input;
 *   }
 *   feed(text: string): void {
 *     this.#input = new TextEncoder().encode(text);
 *     this.handleRead();
 *   }
 * }
 *
 * const reader = new Reader(undefined, new Map());
 * reader.setTerminator("\n");
 * reader.feed("5\nhello3\nab");
 * reader.feed("c");
 * assertEquals(reader.messages, ["hello", "abc"]);
 * ```
 */
export class AsyncChat extends Dispatcher {
  /**
   * The most bytes taken from the socket per read.
   *
   * @default {65536}
   */
  declare acInBufferSize: number;
  /**
   * The most bytes handed to the socket per send.
   *
   * @default {65536}
   */
  declare acOutBufferSize: number;
  /**
   * The most bytes one record may reach before its terminator, while the
   * terminator is a byte sequence; past it {@linkcode
   * AsyncChat.handleRecordTooLarge} is called instead of collecting more, so
   * a peer that never sends the terminator cannot grow memory. `Infinity`
   * turns the check off. (A byte-count terminator is a bound the program
   * chose; `null` collects without records.)
   *
   * @default {65536}
   */
  declare maxRecordSize: number;

  // Input: the splitter, and what the default collectIncomingData() keeps.
  #input = new Splitter(new ChatRecords(this));
  #incoming: Uint8Array[] = NO_INCOMING;
  #incomingLength = 0;

  // Output: the bytes being sent, then the queue (a deque: array + head).
  #front: Uint8Array | null = null;
  #queue: Outgoing[] = NO_OUTPUT;
  #head = 0;
  #queuedBytes = 0;
  /** The promise of the producer at the head that has nothing yet. */
  #waitingOn: PromiseLike<unknown> | null = null;
  /** What that promise rejected with, thrown by the next `initiateSend()`. */
  #producerFailure: { error: unknown } | null = null;
  /** Inside handleRead(): pushes queue, and it sends when it returns. */
  #holding = false;
  /** The `startTls()` waiting in the queue for the output ahead of it. */
  #tlsMark: TlsMark | null = null;

  // The three sizes above are class attributes, as in Python: defaults on
  // the prototype, a channel's own once assigned (see Dispatcher).
  static {
    AsyncChat.prototype.acInBufferSize = 65536;
    AsyncChat.prototype.acOutBufferSize = 65536;
    AsyncChat.prototype.maxRecordSize = 65536;
    recordTooLarge = (chat) => chat.#recordTooLarge();
  }

  /**
   * Creates a channel; with a socket (or a `Deno.Conn`) it is connected and
   * registered in `map` at once.
   *
   * @param sock A connected socket to serve.
   * @param map The map to register in; `socketMap` by default.
   */
  constructor(sock?: Socket | Deno.Conn, map?: ChannelMap) {
    super(sock, map);
  }

  /**
   * Receives the bytes read before the terminator, possibly in several
   * pieces; never called with an empty array. By default it keeps them for
   * {@linkcode AsyncChat.getData}.
   *
   * The array is a view of the channel's read buffer, which is not reused,
   * so it may be kept.
   *
   * @param data Bytes of the current message.
   */
  collectIncomingData(data: Uint8Array): void {
    if (this.#incoming === NO_INCOMING) this.#incoming = [data];
    else this.#incoming.push(data);
    this.#incomingLength += data.length;
  }

  /**
   * Called when the terminator is reached (for a byte count: when that many
   * bytes have been collected). Override it; by default it logs a warning
   * and drops the collected data.
   */
  foundTerminator(): void {
    this.logInfo("unhandled found terminator", "warning");
    this.getData();
  }

  /**
   * Called when a record grows past `maxRecordSize` bytes without its
   * terminator. By default it logs an error and calls
   * {@linkcode AsyncChat.handleClose}, so the channel ends the way every
   * other end reaches its owner. An
   * override that keeps the channel open (say, to push an error reply) may:
   * the rest of that record, up to and including its terminator, is dropped
   * without a `foundTerminator()` call, and the next record is read as usual.
   * What the default `collectIncomingData()` kept of the record is dropped
   * before the call.
   */
  handleRecordTooLarge(): void {
    this.logInfo(
      `record longer than ${this.maxRecordSize} bytes, closing channel ${this}`,
      "error",
    );
    this.handleClose();
  }

  /**
   * Returns the bytes the default {@linkcode AsyncChat.collectIncomingData}
   * kept, as one array, and forgets them.
   *
   * @returns The collected bytes; empty when there are none.
   */
  getData(): Uint8Array {
    const data = concatBytes(this.#incoming, this.#incomingLength);
    this.#incoming = NO_INCOMING;
    this.#incomingLength = 0;
    return data;
  }

  /**
   * Sets what ends a message: a byte sequence (a string is UTF-8), a byte
   * count, or `null` to pass everything to `collectIncomingData()` with no
   * `foundTerminator()` calls. A count of 0 acts as `null`; a count counts
   * down across reads and is 0 once reached.
   *
   * @example
   * ```ts
   * import { AsyncChat } from "@asyncore/asyncore/asynchat";
   * import { assertEquals, assertThrows } from "@std/assert";
   *
   * const chat = new AsyncChat(undefined, new Map());
   * chat.setTerminator("\r\n");
   * assertEquals(chat.getTerminator(), "\r\n");
   * assertThrows(() => chat.setTerminator(-1), RangeError);
   * assertThrows(() => chat.setTerminator(""), RangeError);
   * ```
   *
   * @param term The terminator.
   * @throws {RangeError} for an empty sequence or a negative or fractional
   *   count.
   * @throws {TypeError} for any other type.
   */
  setTerminator(term: Terminator): void {
    let bytes = EMPTY;
    if (typeof term === "number") {
      if (!Number.isSafeInteger(term) || term < 0) {
        throw new RangeError(
          `term must be a non-negative integer byte count, got ${term}`,
        );
      }
    } else if (typeof term === "string" || term instanceof Uint8Array) {
      // A private copy: changing the caller's array changes nothing here.
      bytes = typeof term === "string" ? termBytes(term) : checkBytes(
        "term",
        term,
        "a string, a Uint8Array, a number or null",
      ).slice();
      if (bytes.length === 0) {
        throw new RangeError(
          `term must not be empty, got ${
            typeof term === "string" ? '""' : "an empty Uint8Array"
          }`,
        );
      }
    } else if (term !== null) {
      throw new TypeError(
        `term must be a string, a Uint8Array, a number or null, got ${
          describe(term)
        }`,
      );
    }
    this.#input.setTerminator(term, bytes);
  }

  /**
   * The terminator in force: as set (a byte count is what is left of it),
   * `null` until one is set.
   */
  getTerminator(): Terminator {
    return this.#input.terminator;
  }

  /**
   * Reads up to `acInBufferSize` bytes and splits them on the terminator.
   */
  override handleRead(): void {
    // An upgrade waits for output: what the peer sends now is TLS.
    if (this.#tlsMark !== null) return;
    let data: Uint8Array;
    try {
      data = this.recv(this.acInBufferSize);
    } catch (error) {
      if (error instanceof Deno.errors.WouldBlock) return;
      throw error;
    }
    if (data.length === 0) return;
    // What the records of this read push, in as many pieces as they like,
    // goes out together when they are handled: one send, not one per push
    // (each would be a TCP segment of its own on the epoll backend). Also
    // when a handler throws: what it pushed before still goes.
    this.#holding = true;
    try {
      this.#input.feed(data);
    } finally {
      this.#holding = false;
      this.initiateSend();
    }
  }

  /** Sends what pushes held back (see handleRead()) ahead of anything else. */
  #sendHeld(): void {
    if (!this.#holding) return;
    this.#holding = false;
    try {
      this.initiateSend();
    } finally {
      this.#holding = true;
    }
  }

  /**
   * Sends `data` at once, as {@linkcode Dispatcher.send} does, after what
   * the channel's handlers pushed during the current read.
   *
   * @param data Bytes, or a string sent as UTF-8.
   * @returns How many bytes the socket took.
   */
  override send(data: Uint8Array | string): number {
    this.#sendHeld();
    return super.send(data);
  }

  /**
   * Upgrades to TLS, as {@linkcode Dispatcher.startTls} does, once
   * everything queued before the call (a "220 ready" reply, byte arrays and
   * producers alike) has been sent in plaintext.
   *
   * When the socket has taken it all already (the usual case: a short
   * reply) the upgrade starts at once. Otherwise it waits in the output
   * queue: the channel goes on sending what is ahead of it, in plaintext,
   * and meanwhile reads nothing, since what the peer sends once it has the
   * reply is the TLS handshake, which must reach the TLS engine; the
   * upgrade starts when the last of that output has gone to the socket.
   * What is pushed after the call is sent encrypted, after the handshake.
   * Either way, input the channel has read but not handed to its handlers
   * yet (the rest of the read that held the command, a held-back start of
   * the terminator) is dropped: a peer may not pipeline past STARTTLS (RFC
   * 3207), and plaintext injected there must not pass for what came over
   * TLS (CVE-2011-0411). What `getData()` would return is kept.
   *
   * What makes the upgrade fail at once (bad options, TLS already in use
   * or waiting, no permission for 127.0.0.1, a bad certificate or key) is
   * thrown here. A failure when a waiting upgrade starts (the connection
   * broke meanwhile) reaches `handleError()`, as a failed handshake does.
   * `close()` and `discardBuffers()` drop the output ahead of a waiting
   * upgrade; after `discardBuffers()` it starts at the next write event.
   *
   * @example A server's STARTTLS: the reply goes in plaintext, then TLS
   * ```ts
   * import { AsyncChat } from "@asyncore/asyncore/asynchat";
   *
   * const dir = "tests/fixtures/tls";
   * const tls = {
   *   cert: Deno.readTextFileSync(`${dir}/localhost.crt`),
   *   key: Deno.readTextFileSync(`${dir}/localhost.key`),
   * };
   *
   * class Session extends AsyncChat {
   *   override foundTerminator(): void {
   *     const line = new TextDecoder().decode(this.getData());
   *     if (line === "STARTTLS") {
   *       this.push("220 Ready to start TLS\r\n");
   *       this.startTls(tls); // after the 220, however long the queue
   *     } else {
   *       this.push(`250 ${line}\r\n`);
   *     }
   *   }
   *   override handleStartTls(): void {
   *     // The handshake is done: the client speaks again, encrypted.
   *   }
   * }
   * new Session(undefined, new Map()).setTerminator("\r\n");
   * ```
   *
   * @param options As for {@linkcode Dispatcher.startTls}.
   * @throws {Deno.errors.AlreadyExists} when TLS is in use, starting, or
   *   waiting to start; and what {@linkcode Dispatcher.startTls} throws.
   */
  override startTls(options?: TlsOptions): void {
    this.#sendHeld();
    if (this.#tlsMark !== null) {
      throw new Deno.errors.AlreadyExists(
        "startTls: an upgrade already waits for the output queued before it",
      );
    }
    if (this.#front === null && this.#head === this.#queue.length) {
      super.startTls(options);
    } else {
      const mark = new TlsMark(checkWaitingUpgrade(this, options));
      this.#enqueue(mark);
      this.#holdFor(mark);
    }
    this.#input.discard();
  }

  /** Holds reads while `mark` waits in the queue (`null`: none waits). */
  #holdFor(mark: TlsMark | null): void {
    if (this.#tlsMark === mark) return;
    this.#tlsMark = mark;
    holdReads(this, mark !== null);
  }

  /** Sends what the socket takes now: calls `initiateSend()`. */
  override handleWrite(): void {
    this.initiateSend();
  }

  /** Closes the channel. */
  override handleClose(): void {
    this.close();
  }

  /**
   * Closes the channel and drops the output still queued. Queued producers
   * that hold resources (those with `[Symbol.dispose]`, such as a
   * `FileProducer`) are disposed, since nothing will pull them any more.
   */
  override close(): void {
    // What the current read's handlers pushed goes first, as it would have
    // gone at its push (Python's push() sends at once).
    this.#sendHeld();
    super.close();
    this.#dropOutput();
  }

  /**
   * Always true: the channel always reads (except while a `startTls()`
   * waits for output, when the loop does not ask).
   */
  override readable(): boolean {
    return true;
  }

  /**
   * True while output is queued (and not waiting on a producer that has
   * nothing yet), or until connected.
   */
  override writable(): boolean {
    return this.#front !== null ||
      (this.#head < this.#queue.length && this.#waitingOn === null) ||
      !this.connected;
  }

  /**
   * The bytes queued and not yet sent: the socket's send buffer plus the
   * byte arrays queued here (what producers will yield is not known).
   */
  override get sendBuffered(): number {
    return super.sendBuffered + this.#queuedBytes;
  }

  /**
   * Queues `data` and starts sending. The array is sent as it is, without a
   * copy, so it must not be changed until sent.
   *
   * Pushed while {@linkcode AsyncChat.handleRead} handles a read (from
   * `foundTerminator()` or `collectIncomingData()`), it is sent when that
   * read has been handled, with everything else pushed meanwhile: a reply
   * pushed in pieces leaves in one send. `send()`, `close()` and
   * `startTls()` send what waits first, so nothing overtakes it.
   *
   * @example A reply pushed in pieces waits for the end of the read
   * ```ts
   * import { AsyncChat } from "@asyncore/asyncore/asynchat";
   *
   * class Greeter extends AsyncChat {
   *   override foundTerminator(): void {
   *     const name = new TextDecoder().decode(this.getData());
   *     this.push("hello, ");
   *     this.push(name);
   *     this.push("\r\n"); // the three go out in one send
   *   }
   * }
   * new Greeter(undefined, new Map()).setTerminator("\r\n");
   * ```
   *
   * @param data Bytes, or a string sent as UTF-8.
   */
  push(data: Uint8Array | string): void {
    const bytes = toBytes("data", data);
    if (bytes.length === 0) return;
    this.#enqueue(bytes);
    if (!this.#holding) this.initiateSend();
  }

  /**
   * Queues a producer (or bytes, like `push()`) and starts sending (from
   * inside a read's handling, once it is done, as `push()` does). Its
   * `more()` is called only when the socket can take more; an
   * {@linkcode AsyncProducer}'s may say there is nothing yet.
   *
   * @param producer What to send.
   */
  pushWithProducer(producer: AsyncProducer | Uint8Array | string): void {
    if (typeof producer === "string" || producer instanceof Uint8Array) {
      this.push(producer);
      return;
    }
    if (!isProducer(producer)) {
      throw new TypeError(
        `producer must have a more() method, got ${describe(producer)}`,
      );
    }
    this.#enqueue(producer);
    if (!this.#holding) this.initiateSend();
  }

  /**
   * Closes the channel (through `handleClose()`) once everything queued
   * before this call has been sent.
   */
  closeWhenDone(): void {
    this.#enqueue(null);
  }

  /**
   * Sends from the queue while the socket takes more, at most
   * `acOutBufferSize` bytes per send; reaching a `closeWhenDone()` mark
   * calls `handleClose()`. While a producer has nothing yet, it returns;
   * if that producer's promise rejected, it throws the reason.
   */
  initiateSend(): void {
    while (this.connected) {
      let data = this.#front;
      if (data === null) {
        if (this.#head === this.#queue.length) return;
        if (this.#waitingOn !== null) return;
        const failure = this.#producerFailure;
        if (failure !== null) {
          this.#producerFailure = null;
          throw failure.error;
        }
        const first = this.#queue[this.#head];
        if (first === null) {
          this.#dequeue();
          this.handleClose();
          return;
        }
        if (first instanceof TlsMark) {
          // All that was queued before startTls() is with the socket, which
          // sends it in plaintext ahead of the handshake.
          this.#dequeue();
          this.#holdFor(null);
          super.startTls(first.options); // not connected until it is done
          continue;
        }
        if (first instanceof Uint8Array) {
          const gathered = this.#sendGathered(first);
          if (gathered === true) continue;
          if (gathered === false) return; // the socket is full, or closed
          this.#dequeue();
          data = first;
        } else {
          const result = first.more();
          if (this.#queue[this.#head] !== first) { // discarded
            if (isPromiseLike(result)) result.then(undefined, () => {});
            continue;
          }
          if (isPromiseLike(result)) {
            this.#waitFor(result);
            return;
          }
          const more = toBytes("producer.more() result", result);
          if (more.length === 0) {
            this.#dequeue();
            continue;
          }
          data = more;
          this.#queuedBytes += data.length;
        }
        this.#front = data;
      }
      const size = checkSize(
        "acOutBufferSize",
        this.acOutBufferSize,
      );
      const chunk = data.length > size ? data.subarray(0, size) : data;
      const sent = this.send(chunk);
      if (this.#front !== data) return; // discardBuffers() from handleClose()
      this.#queuedBytes -= sent;
      if (sent === data.length) {
        this.#front = null;
      } else {
        if (sent > 0) this.#front = data.subarray(sent);
        if (sent < chunk.length) return; // the socket is full
      }
    }
  }

  /**
   * Sends `first`, the array at the head of the queue, together with the
   * arrays queued after it when they are all small enough to copy into one
   * send.
   *
   * @returns `null`, having done nothing, when none are; else whether all
   *   of them went (false: the socket is full, or the channel was closed).
   */
  #sendGathered(first: Uint8Array): boolean | null {
    const queue = this.#queue;
    const head = this.#head;
    const outSize = checkSize("acOutBufferSize", this.acOutBufferSize);
    const reuse = this.send === AsyncChat.prototype.send;
    if (!reuse && first.length > GATHER_PIECE) return null;
    const limit = Math.min(reuse ? GATHER_ALL : GATHER_SIZE, outSize);
    const maxPiece = reuse ? limit : GATHER_PIECE;
    let total = first.length;
    let end = head + 1;
    while (end < queue.length) {
      const next = queue[end];
      if (
        !(next instanceof Uint8Array) || next.length > maxPiece ||
        total + next.length > limit
      ) break;
      total += next.length;
      end++;
    }
    if (end === head + 1) return null;
    let buffer: Uint8Array;
    if (reuse) {
      if (gatherBuffer.length < total) {
        gatherBuffer = new Uint8Array(Math.max(total, GATHER_SIZE));
      }
      buffer = gatherBuffer.subarray(0, total);
    } else {
      buffer = allocateRegion(total);
    }
    for (let i = head, at = 0; i < end; i++) {
      const piece = queue[i] as Uint8Array;
      buffer.set(piece, at);
      at += piece.length;
    }
    const sent = this.send(buffer);
    // handleClose() from a disconnect dropped the queue.
    if (this.#queue !== queue || this.#head !== head) return false;
    this.#queuedBytes -= sent;
    let left = sent;
    while (left > 0) {
      const piece = this.#queue[this.#head] as Uint8Array;
      if (left < piece.length) {
        // The rest of a piece the socket took part of goes out next.
        this.#dequeue();
        this.#front = piece.subarray(left);
        break;
      }
      left -= piece.length;
      this.#dequeue();
    }
    return sent === total;
  }

  /**
   * Drops all buffered input and queued output (an emergency measure);
   * a split under way stops, and queued producers with `[Symbol.dispose]`
   * are disposed.
   */
  discardBuffers(): void {
    this.#input.discard();
    this.#incoming = NO_INCOMING;
    this.#incomingLength = 0;
    const mark = this.#tlsMark;
    this.#dropOutput();
    // A waiting upgrade stays: with nothing ahead of it, the next write
    // event starts it.
    if (mark !== null) {
      this.#enqueue(mark);
      this.#holdFor(mark);
    }
  }

  /** Empties the output queue, disposing the producers in it. */
  #dropOutput(): void {
    const queue = this.#queue;
    const head = this.#head;
    this.#front = null;
    this.#queue = NO_OUTPUT;
    this.#head = 0;
    this.#queuedBytes = 0;
    this.#waitingOn = null;
    this.#producerFailure = null;
    this.#holdFor(null);
    disposeAll(queue.slice(head));
  }

  /**
   * Sends nothing more until `ready` settles, then wakes the loop, which
   * calls `initiateSend()` again (a rejection is thrown there, so it
   * reaches `handleError()`).
   */
  #waitFor(ready: PromiseLike<unknown>): void {
    this.#waitingOn = ready;
    const resume = (failure: { error: unknown } | null) => {
      if (this.#waitingOn !== ready) return; // the output was dropped
      this.#waitingOn = null;
      this.#producerFailure = failure;
      wakeChannelLoop(this);
    };
    ready.then(() => resume(null), (error) => resume({ error }));
  }

  #enqueue(entry: Outgoing): void {
    const idle = this.#front === null && this.#head === this.#queue.length;
    if (this.#queue === NO_OUTPUT) this.#queue = [entry];
    else this.#queue.push(entry);
    if (entry instanceof Uint8Array) this.#queuedBytes += entry.length;
    // writable() turned true: a loop waiting without it must know.
    if (idle) wakeChannelLoop(this);
  }

  #dequeue(): void {
    const queue = this.#queue;
    queue[this.#head++] = null;
    if (this.#head === queue.length) {
      queue.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= queue.length) {
      this.#queue = queue.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * Drops what the default `collectIncomingData()` kept of the record and
   * calls `handleRecordTooLarge()`; if that closed the channel, the rest of
   * the input goes too.
   */
  #recordTooLarge(): void {
    this.#incoming = NO_INCOMING;
    this.#incomingLength = 0;
    this.handleRecordTooLarge();
    if (this.socket?.closed) this.#input.discard();
  }
}
