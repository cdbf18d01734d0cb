/**
 * Web Streams on channels: a {@linkcode StreamProducer} sends a
 * `ReadableStream` (a file, a `fetch()` body) through
 * `AsyncChat.pushWithProducer()`, and a {@linkcode StreamChannel} shows its
 * connection as a `ReadableStream` and a `WritableStream`, as `Deno.Conn`
 * does. Both push back: a peer that does not read stops the pulling of the
 * stream, and a consumer that does not read stops the reading of the socket.
 *
 * @example Relaying a stream to a peer
 * ```ts
 * import { StreamProducer } from "@asyncore/asyncore/streams";
 * import { AsyncChat } from "@asyncore/asyncore/asynchat";
 * import { loop } from "@asyncore/asyncore/asyncore";
 * import { assertEquals } from "@std/assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr as Deno.NetAddr;
 * const map = new Map();
 * const channel = new AsyncChat(
 *   await Deno.connect({ hostname: "127.0.0.1", port }),
 *   map,
 * );
 * const source = ReadableStream.from(["hello, ", "world"])
 *   .pipeThrough(new TextEncoderStream());
 * channel.pushWithProducer(new StreamProducer(source));
 * channel.closeWhenDone();
 *
 * const peer = await listener.accept();
 * const [received] = await Promise.all([
 *   new Response(peer.readable).text(),
 *   loop({ map }),
 * ]);
 * assertEquals(received, "hello, world");
 * ```
 *
 * @module
 */

import { AsyncChat, type AsyncProducer } from "./asynchat.ts";
import type { ChannelMap } from "./asyncore.ts";
import type { Socket } from "./select.ts";
import { wakeChannelLoop } from "./_loop/channel_state.ts";
import { checkBytes, checkSize, describe } from "./_validate.ts";
import { EMPTY } from "./_bytes.ts";

const DEFAULT_HIGH_WATER_MARK = 65536;

/** Options for {@linkcode StreamProducer}. */
export interface StreamProducerOptions {
  /**
   * The most bytes read from the stream ahead of the channel; reading
   * stops at this mark (one chunk may cross it) until the channel takes
   * more.
   *
   * @default {65536}
   */
  highWaterMark?: number;
}

/**
 * A producer of the bytes of a `ReadableStream<Uint8Array>`, for
 * `AsyncChat.pushWithProducer()`. It reads ahead into a buffer of at most
 * `highWaterMark` bytes (plus one chunk) and wakes the channel's loop when
 * data arrives. The channel pulls it only while its socket takes more, so a
 * peer that does not read stops the stream being read: what is held is
 * bounded by the socket's `sendBufferSize`, one chunk and the read-ahead.
 *
 * Bytes read before the stream errors are sent first; then `more()` throws
 * the stream's error, which reaches the channel's `handleError()`. A
 * channel that closes with the producer still queued disposes it, which
 * cancels the stream.
 *
 * @example A file sent through a channel
 * ```ts
 * import { StreamProducer } from "@asyncore/asyncore/streams";
 * import { assertEquals } from "@std/assert";
 *
 * const path = Deno.makeTempFileSync();
 * Deno.writeTextFileSync(path, "hello");
 * const file = await Deno.open(path);
 * const producer = new StreamProducer(file.readable);
 *
 * // Outside a channel: more() gives a promise until data has arrived.
 * const first = producer.more();
 * if (first instanceof Promise) await first;
 * assertEquals(new TextDecoder().decode(producer.more() as Uint8Array), "hello");
 * await producer.more(); // the end of the file
 * assertEquals(producer.more(), new Uint8Array(0));
 * assertEquals(producer.bytesRead, 5);
 * Deno.removeSync(path);
 * ```
 */
export class StreamProducer implements AsyncProducer, Disposable {
  #reader: ReadableStreamDefaultReader<Uint8Array> | null;
  #highWaterMark: number;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #bytesRead = 0;
  #reading = false;
  #done = false;
  #failure: { error: unknown } | null = null;
  #arrival: PromiseWithResolvers<void> | null = null;

  /**
   * Makes a producer of `stream` and starts reading it.
   *
   * @param stream The bytes to send; the producer locks it.
   * @param options The read-ahead bound.
   * @throws {TypeError} if `stream` is not a `ReadableStream` or is locked.
   */
  constructor(
    stream: ReadableStream<Uint8Array>,
    options: StreamProducerOptions = {},
  ) {
    if (!(stream instanceof ReadableStream)) {
      throw new TypeError(
        `stream must be a ReadableStream, got ${describe(stream)}`,
      );
    }
    if (stream.locked) {
      throw new TypeError("stream must not be locked, got a locked stream");
    }
    this.#highWaterMark = checkSize(
      "options.highWaterMark",
      options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK,
    );
    this.#reader = stream.getReader();
    this.#fill();
  }

  /** The bytes read from the stream and not yet handed to the channel. */
  get buffered(): number {
    return this.#buffered;
  }

  /** The bytes read from the stream so far: how far it has been pulled. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /**
   * The next chunk read; empty once the stream has ended and all was
   * handed on; otherwise, while nothing has arrived, a promise that
   * resolves when something has (data, the end, or an error).
   *
   * @throws The stream's error, once, after the bytes read before it.
   */
  more(): Uint8Array | Promise<void> {
    const chunk = this.#chunks.shift();
    if (chunk !== undefined) {
      this.#buffered -= chunk.length;
      this.#fill();
      return chunk;
    }
    const failure = this.#failure;
    if (failure !== null) {
      this.#failure = null;
      throw failure.error;
    }
    if (this.#done) return EMPTY;
    this.#arrival ??= Promise.withResolvers<void>();
    return this.#arrival.promise;
  }

  /**
   * Stops reading and cancels the stream; what was read and not handed on
   * is dropped, and `more()` then returns nothing.
   *
   * @param reason Passed to the stream's `cancel()`.
   */
  cancel(reason?: unknown): void {
    const reader = this.#reader;
    this.#chunks = [];
    this.#buffered = 0;
    this.#failure = null;
    this.#done = true;
    this.#arrival?.resolve();
    this.#arrival = null;
    if (reader === null) return;
    this.#reader = null;
    reader.cancel(reason).catch(() => {});
  }

  /** Cancels the stream: `using producer = new StreamProducer(...)`. */
  [Symbol.dispose](): void {
    this.cancel();
  }

  #fill(): void {
    const reader = this.#reader;
    if (
      reader === null || this.#reading || this.#buffered >= this.#highWaterMark
    ) return;
    this.#reading = true;
    reader.read().then(
      (result) => this.#received(reader, result),
      (error) => this.#failed(reader, error),
    );
  }

  #received(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    result: ReadableStreamReadResult<Uint8Array>,
  ): void {
    this.#reading = false;
    if (this.#reader !== reader) return; // cancelled meanwhile
    if (result.done) {
      this.#reader = null;
      this.#done = true;
      reader.releaseLock();
      this.#wake();
      return;
    }
    let chunk: Uint8Array;
    try {
      // Our own view of it: sizes from the engine, not from the chunk.
      chunk = checkBytes("stream chunks", result.value, "Uint8Arrays");
    } catch (error) {
      reader.cancel(error).catch(() => {});
      this.#failed(reader, error);
      return;
    }
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      this.#bytesRead += chunk.length;
    }
    this.#fill();
    this.#wake();
  }

  #failed(reader: ReadableStreamDefaultReader<Uint8Array>, error: unknown) {
    this.#reading = false;
    if (this.#reader !== reader) return;
    this.#reader = null;
    this.#done = true;
    this.#failure = { error };
    this.#wake();
  }

  #wake(): void {
    const arrival = this.#arrival;
    this.#arrival = null;
    arrival?.resolve();
  }
}

/** Options for {@linkcode StreamChannel}. */
export interface StreamChannelOptions {
  /**
   * The most received bytes `readableStream` holds for its reader; past
   * it the channel stops reading its socket, which pushes the peer back.
   *
   * @default {65536}
   */
  highWaterMark?: number;
}

/**
 * A channel whose connection is a pair of Web Streams, like `Deno.Conn`'s
 * `readable` and `writable`: `readableStream` yields what the peer sends,
 * and what is written to `writableStream` is sent, so a protocol can be a
 * pipe through `TextLineStream`, `CompressionStream` and the like.
 *
 * Backpressure goes both ways: the channel reads its socket only while
 * `readableStream` holds less than `highWaterMark` bytes, and a write to
 * `writableStream` resolves once its bytes are in the socket's send buffer
 * (they may be sent after bytes queued with `push()` earlier).
 *
 * When the peer ends its side, `readableStream` closes; closing
 * `writableStream` ends ours (a half-close) once its bytes are sent. The
 * channel closes when both are over, or at once on the peer's end when
 * `writableStream` is not in use (not locked). An error in a handler, or
 * `close()`, errors both streams.
 *
 * @example Upper-casing lines through streams
 * ```ts
 * import { StreamChannel } from "@asyncore/asyncore/streams";
 * import { loop } from "@asyncore/asyncore/asyncore";
 * import { TextLineStream } from "@std/streams";
 * import { assertEquals } from "@std/assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr as Deno.NetAddr;
 * const map = new Map();
 * const channel = new StreamChannel(
 *   await Deno.connect({ hostname: "127.0.0.1", port }),
 *   map,
 * );
 * const served = channel.readableStream
 *   .pipeThrough(new TextDecoderStream())
 *   .pipeThrough(new TextLineStream())
 *   .pipeThrough(
 *     new TransformStream<string, string>({
 *       transform: (line, out) => out.enqueue(line.toUpperCase() + "\n"),
 *     }),
 *   )
 *   .pipeThrough(new TextEncoderStream())
 *   .pipeTo(channel.writableStream);
 *
 * const peer = await listener.accept();
 * await peer.write(new TextEncoder().encode("hello\nworld\n"));
 * await peer.closeWrite(); // a half-close: the peer still reads
 * const [received] = await Promise.all([
 *   new Response(peer.readable).text(),
 *   loop({ map }),
 *   served,
 * ]);
 * assertEquals(received, "HELLO\nWORLD\n");
 * ```
 */
export class StreamChannel extends AsyncChat {
  /**
   * The bytes received from the peer (views of memory that is not written
   * again, so they may be kept).
   */
  readonly readableStream: ReadableStream<Uint8Array<ArrayBuffer>>;
  /** The bytes to send to the peer. */
  readonly writableStream: WritableStream<Uint8Array>;

  #controller!: ReadableStreamDefaultController<Uint8Array<ArrayBuffer>>;
  #readEnded = false;
  #writeEnded = false;
  #peerEnded = false;
  #failure: { error: unknown } | null = null;
  #drain: PromiseWithResolvers<void> | null = null;

  /**
   * Creates a channel; with a socket (or a `Deno.Conn`) it is connected and
   * registered in `map` at once.
   *
   * @param sock A connected socket to serve.
   * @param map The map to register in; `socketMap` by default.
   * @param options The read-ahead bound of `readableStream`.
   */
  constructor(
    sock?: Socket | Deno.Conn,
    map?: ChannelMap,
    options: StreamChannelOptions = {},
  ) {
    const highWaterMark = checkSize(
      "options.highWaterMark",
      options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK,
    );
    super(sock, map);
    this.readableStream = new ReadableStream<Uint8Array<ArrayBuffer>>({
      start: (controller) => {
        this.#controller = controller;
      },
      // The reader made room: the loop must ask readable() again.
      pull: () => wakeChannelLoop(this),
      cancel: () => this.#cancelRead(),
    }, { highWaterMark, size: (chunk) => chunk.length });
    this.writableStream = new WritableStream<Uint8Array>({
      write: (chunk) => this.#write(chunk),
      close: () => this.#closeWrite(),
      abort: () => this.close(),
    });
  }

  /** True while `readableStream` has room for more. */
  override readable(): boolean {
    return !this.#readEnded && (this.#controller.desiredSize ?? 0) > 0;
  }

  /** Reads what `readableStream` has room for and hands it on. */
  override handleRead(): void {
    if (this.#readEnded) return;
    const room = this.#controller.desiredSize ?? 0;
    if (room <= 0) return;
    let data: Uint8Array;
    try {
      data = this.recv(Math.min(room, this.acInBufferSize));
    } catch (error) {
      if (error instanceof Deno.errors.WouldBlock) return;
      throw error;
    }
    // Received bytes are views of ArrayBuffers (not shared memory), so they
    // go to CompressionStream and the like, which take no other kind.
    if (data.length > 0 && !this.#readEnded) {
      this.#controller.enqueue(data as Uint8Array<ArrayBuffer>);
    }
  }

  /** Sends what the socket takes, then resolves a write waiting on it. */
  override initiateSend(): void {
    super.initiateSend();
    if (this.#drain !== null && this.#drained()) {
      const drain = this.#drain;
      this.#drain = null;
      drain.resolve();
    }
  }

  /**
   * The peer ended the connection: `readableStream` closes, and so does
   * the channel unless `writableStream` is still in use. A second call, or
   * a connection in error, closes the channel.
   */
  override handleClose(): void {
    if (this.#peerEnded || this.socket?.error) {
      this.close();
      return;
    }
    this.#peerEnded = true;
    if (!this.#readEnded) {
      this.#readEnded = true;
      this.#controller.close();
    }
    this.#closeIfDone();
  }

  /**
   * Errors both streams with `error`, then does what `AsyncChat` does (by
   * default: logs it and closes the channel).
   */
  override handleError(error: unknown): void {
    this.#fail(error);
    super.handleError(error);
  }

  /** Closes the channel; streams still open are errored. */
  override close(): void {
    this.#fail(new Deno.errors.BadResource("the channel is closed"));
    super.close();
  }

  /** Errors what is still open of both streams with `error`. */
  #fail(error: unknown): void {
    this.#failure ??= { error };
    if (!this.#readEnded) {
      this.#readEnded = true;
      this.#controller.error(error);
    }
    this.#writeEnded = true;
    const drain = this.#drain;
    this.#drain = null;
    drain?.reject(error);
  }

  /**
   * Whether all that was queued is in the socket's send buffer: nothing is
   * left on the channel itself (and it is connected, so that a half-close
   * can follow).
   */
  #drained(): boolean {
    return this.connected &&
      this.sendBuffered === (this.socket?.sendBuffered ?? 0);
  }

  #write(chunk: Uint8Array): Promise<void> | undefined {
    if (this.#failure !== null) throw this.#failure.error;
    this.push(checkBytes("chunk", chunk));
    if (this.#drained()) return;
    this.#drain = Promise.withResolvers<void>();
    return this.#drain.promise;
  }

  async #closeWrite(): Promise<void> {
    if (this.#failure !== null) throw this.#failure.error;
    if (!this.#drained()) {
      this.#drain = Promise.withResolvers<void>();
      await this.#drain.promise;
    }
    this.#writeEnded = true;
    if (!this.#peerEnded) this.socket?.shutdown("write");
    this.#closeIfDone();
  }

  #cancelRead(): void {
    if (this.#readEnded) return;
    this.#readEnded = true;
    if (this.connected && !this.#peerEnded) this.socket?.shutdown("read");
    this.#closeIfDone();
  }

  #closeIfDone(): void {
    if (!this.#readEnded) return;
    if (this.writableStream.locked && !this.#writeEnded) return;
    this.close();
  }
}
