/**
 * The reactor: Python's `asyncore`. A {@linkcode Dispatcher} wraps a socket
 * and gets `handle*` calls; {@linkcode loop} asks every channel in a map
 * whether it wants to read or write, waits for readiness, and dispatches.
 *
 * @example An echo server on an explicit map
 * ```ts
 * import {
 *   type ChannelMap,
 *   closeAll,
 *   Dispatcher,
 *   loop,
 * } from "@asyncore/asyncore/asyncore";
 * import type { Socket } from "@asyncore/asyncore/select";
 * import { assertEquals } from "@std/assert";
 *
 * const map: ChannelMap = new Map();
 *
 * class EchoHandler extends Dispatcher {
 *   override handleRead(): void {
 *     this.send(this.recv(8192));
 *   }
 * }
 *
 * class EchoServer extends Dispatcher {
 *   constructor() {
 *     super(undefined, map);
 *     this.createSocket();
 *     this.bind({ hostname: "127.0.0.1", port: 0 });
 *     this.listen(5);
 *   }
 *   override handleAccepted(sock: Socket): void {
 *     new EchoHandler(sock, map);
 *   }
 * }
 *
 * class Client extends Dispatcher {
 *   reply = "";
 *   constructor(port: number) {
 *     super(undefined, map);
 *     this.createSocket();
 *     this.connect({ hostname: "127.0.0.1", port });
 *   }
 *   override handleConnect(): void {
 *     this.send("hello");
 *   }
 *   override writable(): boolean {
 *     return !this.connected;
 *   }
 *   override handleRead(): void {
 *     this.reply += new TextDecoder().decode(this.recv(8192));
 *     if (this.reply === "hello") closeAll(map);
 *   }
 * }
 *
 * const server = new EchoServer();
 * const client = new Client((server.getsockname() as Deno.NetAddr).port);
 * await loop({ map, timeout: 5000 });
 * assertEquals(client.reply, "hello");
 * ```
 *
 * @module
 */

import {
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
  POLLPRI,
} from "./select.ts";
import {
  type Address,
  FileWrapper,
  Socket,
  type SocketOptions,
  type TlsOptions,
} from "./socket.ts";
import { checkCount, checkTimeout, describe, toBytes } from "./_validate.ts";
import { ByteQueue } from "./_byte_queue.ts";
import { compactTraceback } from "./_traceback.ts";
import { EMPTY } from "./_bytes.ts";
import {
  ERROR,
  Events,
  HUP,
  Interest,
  READABLE,
  type Registry,
  WRITABLE,
} from "./_readiness.ts";
import { Alarm, passWithoutWait } from "./_turns.ts";
import { isOutOfDescriptors } from "./_descriptor_limit.ts";
import { type DebugSession, debugSession } from "./_loop/debug.ts";
import { ExitNow, faultRouting, isDisconnect } from "./_loop/faults.ts";
import { className, formatAddr, formatBytes } from "./_loop/repr.ts";
import {
  defaultMap,
  loopStateOf,
  nextTimer,
  runTimers,
  wakeLoop,
} from "./_loop/loop_state.ts";
import {
  checkWaitingUpgrade,
  holdReads,
  requireSocket,
  stateOf,
  wakeChannelLoop,
} from "./_loop/channel_state.ts";

export { callLater, type CallLaterOptions, DelayedCall } from "./timers.ts";

export { type CompactTraceback, compactTraceback } from "./_traceback.ts";

export { ExitNow } from "./_loop/faults.ts";

export { FileWrapper } from "./socket.ts";

/** The channels one loop serves, keyed by {@linkcode Dispatcher.fileno}. */
export type ChannelMap = Map<number, Dispatcher>;

/**
 * The default channel map, used wherever a `map` argument is omitted.
 *
 * @example
 * ```ts
 * import { socketMap } from "@asyncore/asyncore/asyncore";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(socketMap.size, 0);
 * ```
 */
export const socketMap: ChannelMap = defaultMap;

// The socket handleAccepted() is being given, and whether a channel took it
// with setSocket(): if none did when it throws, the socket is closed. (Not a
// set of every socket ever taken: that held an entry per connection.)
let accepted: Socket | null = null;
let acceptedTaken = false;
const DEFAULT_IGNORED_LOG_TYPES: ReadonlySet<string> = new Set(["warning"]);

/**
 * A channel: a socket and the handlers the loop calls when it is ready.
 * Python's `asyncore.dispatcher`; subclass it and override the `handle*`
 * methods, `readable()` and `writable()`.
 *
 * @example A client that connects and reports it
 * ```ts
 * import { Dispatcher, loop, type ChannelMap } from "@asyncore/asyncore/asyncore";
 * import { assert } from "@std/assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const map: ChannelMap = new Map();
 * class Client extends Dispatcher {
 *   ok = false;
 *   override handleConnect(): void {
 *     this.ok = true;
 *     this.close();
 *   }
 * }
 * const client = new Client(undefined, map);
 * client.createSocket();
 * client.connect(listener.addr as Deno.NetAddr);
 * await loop({ map, timeout: 5000 });
 * assert(client.ok);
 * (await listener.accept()).close();
 * ```
 */
export class Dispatcher {
  // debug, ignoreLogTypes and idleTimeout are class attributes, as in
  // Python: their defaults live on the prototype (see the static block), and
  // a channel holds its own only once it assigns one, so that every channel
  // does not carry three fields (and a boxed Infinity) it never changes.
  /** Whether `send` on this channel logs what it sends. */
  declare debug: boolean;
  /** Whether the socket is connected. */
  connected = false;
  /** Whether the socket is listening. */
  accepting = false;
  /** Whether a connect is in progress. */
  connecting = false;
  /** Whether the channel is closing (used by subclasses such as AsyncChat). */
  closing = false;
  /** The address bound to or connected to. */
  addr: Deno.Addr | null = null;
  /**
   * Message types `logInfo` leaves out; shared by default, so assign a new
   * set to change it for one channel.
   */
  declare ignoreLogTypes: ReadonlySet<string>;
  /** The socket, once there is one. */
  socket: Socket | null = null;
  /**
   * Ms without a byte in or out after which the loop calls
   * `handleTimeout()`; `Infinity` turns it off.
   */
  declare idleTimeout: number;

  #map: ChannelMap;
  #fileno: number | null = null;
  #outOfDescriptors = false;

  static {
    Dispatcher.prototype.debug = false;
    Dispatcher.prototype.ignoreLogTypes = DEFAULT_IGNORED_LOG_TYPES;
    Dispatcher.prototype.idleTimeout = Infinity;
  }

  /**
   * Creates a channel; with a socket (or a `Deno.Conn`) it is connected and
   * registered in `map` at once.
   *
   * @param sock A connected socket to serve.
   * @param map The map to register in; {@linkcode socketMap} by default.
   */
  constructor(sock?: Socket | Deno.Conn, map?: ChannelMap) {
    if (map !== undefined && !(map instanceof Map)) {
      throw new TypeError(`map must be a Map, got ${describe(map)}`);
    }
    this.#map = map ?? socketMap;
    stateOf(this); // what the loop keeps of the channel, made with it
    if (sock === undefined || sock === null) return;
    const socket = sock instanceof Socket
      ? sock
      : typeof (sock as Deno.Conn).read === "function"
      ? Socket.fromConn(sock as Deno.Conn)
      : null;
    if (socket === null) {
      throw new TypeError(
        `sock must be a Socket or a Deno.Conn, got ${describe(sock)}`,
      );
    }
    this.setSocket(socket, map);
    this.connected = true;
    try {
      this.addr = socket.getpeername();
    } catch (error) {
      if (error instanceof Deno.errors.NotConnected) {
        this.connected = false;
      } else {
        this.delChannel(map);
        throw error;
      }
    }
  }

  /** Describes the channel, like Python's `repr()`. */
  toString(): string {
    const status = [className(this)];
    if (this.accepting && this.addr) status.push("listening");
    else if (this.connected) status.push("connected");
    if (this.addr) status.push(formatAddr(this.addr));
    return `<${status.join(" ")} at #${this.fileno()}>`;
  }

  /**
   * Makes a new socket for this channel and registers it.
   *
   * @param options The transport and buffer sizes.
   */
  createSocket(options?: SocketOptions): void {
    this.setSocket(new Socket(options));
  }

  /**
   * Adopts `sock` and registers the channel in `map`.
   *
   * @param sock The socket to serve.
   * @param map The map to register in; the channel's own by default.
   */
  setSocket(sock: Socket, map?: ChannelMap): void {
    if (!(sock instanceof Socket)) {
      throw new TypeError(`sock must be a Socket, got ${describe(sock)}`);
    }
    this.socket = sock;
    this.#fileno = sock.fileno();
    if (sock === accepted) acceptedTaken = true;
    this.addChannel(map);
  }

  /** Registers the channel in `map` (its own map by default). */
  addChannel(map?: ChannelMap): void {
    if (this.#fileno === null) {
      throw new Deno.errors.BadResource(
        "addChannel: the channel has no socket",
      );
    }
    const channels = map ?? this.#map;
    channels.set(this.#fileno, this);
    stateOf(this).loop = channels;
    wakeLoop(channels);
  }

  /** Removes the channel from `map` (its own map by default). */
  delChannel(map?: ChannelMap): void {
    const fd = this.#fileno;
    if (fd === null) return;
    const channels = map ?? this.#map;
    stateOf(this).deregister();
    if (channels.get(fd) === this) {
      channels.delete(fd);
      // A loop waiting on this map must see it change (it may now be empty).
      wakeLoop(channels);
    }
    this.#fileno = null;
  }

  /** Kept for Python compatibility: Deno's listeners always reuse addresses. */
  setReuseAddr(): void {}

  /**
   * The bytes queued on this channel and not yet sent: the socket's send
   * buffer plus whatever the channel itself holds back.
   */
  get sendBuffered(): number {
    return this.socket?.sendBuffered ?? 0;
  }

  /** The channel's key in its map: its socket's number, or -1 without one. */
  fileno(): number {
    return this.#fileno ?? this.socket?.fileno() ?? -1;
  }

  /** Whether the loop should wait for this channel to be readable. */
  readable(): boolean {
    return true;
  }

  /** Whether the loop should wait for this channel to be writable. */
  writable(): boolean {
    return true;
  }

  /**
   * Starts accepting connections.
   *
   * @param backlog How many connections may wait to be accepted.
   */
  listen(backlog = 5): void {
    this.accepting = true;
    requireSocket(this, "listen").listen(backlog);
  }

  /**
   * Binds the socket; errors are thrown synchronously.
   *
   * @param address `{ hostname?, port }` or `{ path }`.
   */
  bind(address: Address): void {
    const sock = requireSocket(this, "bind");
    sock.bind(address);
    this.addr = sock.getsockname();
  }

  /**
   * Starts connecting; `handleConnect()` is called once it completes (after
   * the TLS handshake, for a socket made with `createSocket({ tls })`).
   *
   * @param address `{ hostname?, port }` or `{ path }`.
   */
  connect(address: Address): void {
    const sock = requireSocket(this, "connect");
    this.connected = false;
    this.connecting = true;
    sock.connect(address);
    this.addr = "path" in address
      ? { transport: "unix", path: address.path }
      : {
        transport: "tcp",
        hostname: address.hostname ?? "127.0.0.1",
        port: address.port,
      };
  }

  /**
   * Upgrades the connection to TLS in place (STARTTLS), as
   * {@linkcode Socket.startTls} does: call it right after sending (server)
   * or receiving (client) the reply that announces the upgrade. Until the
   * handshake is over the channel is `connecting` and not `connected`, so
   * output it queues waits; then `handleStartTls()` is called. A failed
   * handshake reaches `handleError()` with Deno's error, as a failed connect
   * does. Bytes a channel has already taken with `recv()` stay plaintext: a
   * server should drop them, as RFC 3207 asks, since a client may not
   * pipeline past STARTTLS (an `AsyncChat` drops the rest of its read).
   *
   * What `send()` has given the socket goes out in plaintext first. A
   * channel that queues output of its own (`AsyncChat`,
   * `DispatcherWithSend`) sends that first too: until it has all gone to
   * the socket the upgrade waits, and the channel reads nothing (what the
   * peer sends then is the handshake, for the TLS engine).
   *
   * @example A client that upgrades after the server's go-ahead
   * ```ts
   * import { Dispatcher } from "@asyncore/asyncore/asyncore";
   *
   * class StartTlsClient extends Dispatcher {
   *   override handleRead(): void {
   *     const reply = new TextDecoder().decode(this.recv(512));
   *     if (reply.startsWith("220 ")) {
   *       this.startTls({ hostname: "mail.example.com" });
   *     }
   *   }
   *   override handleStartTls(): void {
   *     this.send("EHLO client.example.com\r\n"); // encrypted
   *   }
   * }
   * new StartTlsClient(undefined, new Map());
   * ```
   *
   * @param options `cert` and `key` for the server's side; `hostname` and
   *   `caCerts` for the client's.
   */
  startTls(options?: TlsOptions): void {
    requireSocket(this, "startTls").startTls(options);
    this.connected = false;
    this.connecting = true;
    stateOf(this).startingTls = true;
  }

  /**
   * Accepts a pending connection.
   *
   * Out of descriptors (`EMFILE`, `ENFILE`), it logs one error line for the
   * episode (`logInfo`) and returns `null`, where Python's raises and its default
   * `handle_error()` closes the listener: the socket stops reporting
   * readability until a descriptor may be free (a socket closes, or a
   * second passes), open connections go on being served, and the waiting
   * connections are accepted then.
   *
   * @returns The new socket and its peer's address, or `null` when none is
   *   pending (or none can be taken now).
   */
  accept(): [Socket, Deno.Addr] | null {
    let pair: [Socket, Deno.Addr];
    try {
      pair = requireSocket(this, "accept").accept();
    } catch (error) {
      if (
        error instanceof Deno.errors.WouldBlock ||
        error instanceof Deno.errors.ConnectionAborted
      ) return null;
      if (!isOutOfDescriptors(error)) throw error;
      // No stack is formatted here: Deno 2.9 panics formatting one while no
      // descriptor is free.
      if (!this.#outOfDescriptors) {
        this.#outOfDescriptors = true;
        this.logInfo(
          `out of descriptors (${
            (error as { code?: string }).code
          }): not accepting until one is free`,
          "error",
        );
      }
      return null;
    }
    this.#outOfDescriptors = false;
    return pair;
  }

  /**
   * Sends what the socket's send buffer takes.
   *
   * @param data Bytes, or a string sent as UTF-8.
   * @returns The number of bytes taken: 0 when the buffer is full, or after
   *   a disconnect (which calls `handleClose()`).
   */
  send(data: Uint8Array | string): number {
    // The socket checks `data`: once, as each check makes a view of it.
    let sock = this.socket;
    if (sock === null) {
      toBytes("data", data); // bad data is still the first error
      sock = requireSocket(this, "send");
    }
    try {
      return sock.send(data);
    } catch (error) {
      if (error instanceof Deno.errors.WouldBlock) return 0;
      this.#closeOnDisconnect(error);
      return 0;
    }
  }

  /**
   * Takes up to `bufsize` received bytes.
   *
   * @param bufsize The most bytes to return: a positive integer.
   * @returns The bytes; an empty array at end of stream or after a
   *   disconnect, both of which call `handleClose()`.
   */
  recv(bufsize: number): Uint8Array {
    let data: Uint8Array;
    try {
      data = requireSocket(this, "recv").recv(bufsize);
    } catch (error) {
      this.#closeOnDisconnect(error);
      return EMPTY;
    }
    if (data.length === 0) this.handleClose();
    return data;
  }

  /**
   * Receives into `buffer` without allocating: the socket's
   * {@linkcode Socket.recvInto} (Python's `recv_into()`), with `recv()`'s
   * handling of the end: end of stream and a disconnect call
   * `handleClose()` and return 0. A channel that moves much data can reuse
   * one buffer for all its reads this way.
   *
   * @example An echo channel that reads into its own buffer
   * ```ts
   * import { Dispatcher } from "@asyncore/asyncore/asyncore";
   *
   * // Bytes land in the buffer's free end and go back from its front; it
   * // stays readable (its interest unchanged from pass to pass) until full.
   * class Echo extends Dispatcher {
   *   #buffer = new Uint8Array(65536);
   *   #start = 0;
   *   #end = 0;
   *   override readable(): boolean {
   *     return this.#end < this.#buffer.length;
   *   }
   *   override writable(): boolean {
   *     return this.#end > this.#start;
   *   }
   *   override handleRead(): void {
   *     this.#end += this.recvInto(this.#buffer.subarray(this.#end));
   *   }
   *   override handleWrite(): void {
   *     this.#start += this.send(this.#buffer.subarray(this.#start, this.#end));
   *     if (this.#start === this.#end) this.#start = this.#end = 0;
   *   }
   * }
   * new Echo(undefined, new Map());
   * ```
   *
   * @param buffer Where the bytes go.
   * @param nbytes The most bytes to receive (at most `buffer.length`, which
   *   is the default).
   * @returns How many bytes were received, at the start of `buffer`; 0 at
   *   end of stream or after a disconnect.
   */
  recvInto(buffer: Uint8Array, nbytes?: number): number {
    let count: number;
    try {
      count = requireSocket(this, "recvInto").recvInto(buffer, nbytes);
    } catch (error) {
      this.#closeOnDisconnect(error);
      return 0;
    }
    if (count === 0) this.handleClose();
    return count;
  }

  /** Leaves the map and closes the socket; safe to call twice. */
  close(): void {
    this.connected = false;
    this.accepting = false;
    this.connecting = false;
    this.delChannel();
    this.socket?.close();
  }

  /** The socket's local address. */
  getsockname(): Deno.Addr {
    return requireSocket(this, "getsockname").getsockname();
  }

  /** The peer's address. */
  getpeername(): Deno.Addr {
    return requireSocket(this, "getpeername").getpeername();
  }

  /** Writes a debugging message to standard error. */
  log(message: string): void {
    console.error(`log: ${message}`);
  }

  /**
   * Prints `message` tagged with `type`, unless `type` is in
   * `ignoreLogTypes`.
   */
  logInfo(message: string, type = "info"): void {
    if (!this.ignoreLogTypes.has(type)) console.log(`${type}: ${message}`);
  }

  /** Translates readability into `handleAccept`, `handleConnectEvent` and `handleRead`. */
  handleReadEvent(): void {
    if (this.accepting) {
      this.handleAccept();
    } else if (!this.connected) {
      if (this.connecting) this.handleConnectEvent();
      this.handleRead();
    } else {
      this.handleRead();
    }
  }

  /**
   * Completes a connect: throws its error, or calls `handleConnect()` (or
   * `handleStartTls()`, for a STARTTLS upgrade).
   */
  handleConnectEvent(): void {
    const error = this.socket?.error;
    if (error) throw error;
    const state = stateOf(this);
    if (state.startingTls) {
      state.startingTls = false;
      this.handleStartTls();
    } else {
      this.handleConnect();
    }
    this.connected = true;
    this.connecting = false;
  }

  /** Translates writability into `handleConnectEvent` and `handleWrite`. */
  handleWriteEvent(): void {
    if (this.accepting) return;
    if (!this.connected && this.connecting) this.handleConnectEvent();
    this.handleWrite();
  }

  /** Translates an error state into `handleClose`, anything else into `handleExpt`. */
  handleExptEvent(): void {
    if (this.socket?.error) this.handleClose();
    else this.handleExpt();
  }

  /**
   * Called with any error a handler throws. By default it logs a compact
   * traceback and calls `handleClose()`.
   */
  handleError(error: unknown): void {
    const { type, value, info } = compactTraceback(error);
    let self: string;
    try {
      self = String(this);
    } catch {
      self = `<${this.constructor.name}>`;
    }
    this.logInfo(
      `uncaptured exception, closing channel ${self} (${type}:${value} ${info})`,
      "error",
    );
    this.handleClose();
  }

  /** Called for urgent data; logs a warning by default. */
  handleExpt(): void {
    this.logInfo("unhandled incoming priority event", "warning");
  }

  /** Called when the socket is readable; logs a warning by default. */
  handleRead(): void {
    this.logInfo("unhandled read event", "warning");
  }

  /** Called when the socket is writable; logs a warning by default. */
  handleWrite(): void {
    this.logInfo("unhandled write event", "warning");
  }

  /** Called once a connect succeeds; logs a warning by default. */
  handleConnect(): void {
    this.logInfo("unhandled connect event", "warning");
  }

  /**
   * Called once a `startTls()` handshake succeeds; logs a warning by
   * default.
   */
  handleStartTls(): void {
    this.logInfo("unhandled starttls event", "warning");
  }

  /**
   * Called when a listening channel is readable: accepts every pending
   * connection (Python takes one per event) and calls `handleAccepted` with
   * each, while the channel is still listening.
   */
  handleAccept(): void {
    while (this.accepting) {
      const pair = this.accept();
      if (pair === null) return;
      const outer = accepted;
      const outerTaken = acceptedTaken;
      accepted = pair[0];
      acceptedTaken = false;
      try {
        this.handleAccepted(pair[0], pair[1]);
      } catch (error) {
        // No channel took the socket: close it rather than leak it.
        if (!acceptedTaken) pair[0].close();
        throw error;
      } finally {
        accepted = outer;
        acceptedTaken = outerTaken;
      }
    }
  }

  /** Called with each accepted socket; closes it and logs a warning by default. */
  handleAccepted(sock: Socket, _addr: Deno.Addr): void {
    sock.close();
    this.logInfo("unhandled accepted event", "warning");
  }

  /** Called after `idleTimeout` ms without traffic; closes by default. */
  handleTimeout(): void {
    this.close();
  }

  /** Called when the connection ends; logs a warning and closes by default. */
  handleClose(): void {
    this.logInfo("unhandled close event", "warning");
    this.close();
  }

  /** A disconnect calls `handleClose()`, as Python's send and recv do; any other error is thrown. */
  #closeOnDisconnect(error: unknown): void {
    if (!isDisconnect(error)) throw error;
    this.handleClose();
  }
}

/**
 * A dispatcher whose `send()` buffers everything it is given and writes it as
 * the socket takes it: Python's `asyncore.dispatcher_with_send`.
 *
 * @example
 * ```ts
 * import { DispatcherWithSend } from "@asyncore/asyncore/asyncore";
 * import { assertEquals } from "@std/assert";
 *
 * const channel = new DispatcherWithSend(undefined, new Map());
 * assertEquals(channel.writable(), true); // not connected yet
 * ```
 */
export class DispatcherWithSend extends Dispatcher {
  // Made by the first send() the socket does not take whole: most channels
  // never need one.
  #out: ByteQueue | null = null;
  /** A `startTls()` waiting for the output buffered before it. */
  #tls: TlsOptions | null = null;
  /** How many bytes of the output buffer go before that upgrade. */
  #plainLeft = 0;

  /** The socket's send buffer plus this channel's output buffer. */
  override get sendBuffered(): number {
    return super.sendBuffered + (this.#out?.length ?? 0);
  }

  /**
   * Sends as much of the output buffer as the socket takes now; starts a
   * waiting `startTls()` once what was buffered before it has gone.
   */
  initiateSend(): void {
    const out = this.#out;
    if (out === null) return;
    const tls = this.#tls;
    const chunk = out.peek(
      tls === null ? 65536 : Math.min(65536, this.#plainLeft),
    );
    if (chunk.length === 0) return;
    const sent = super.send(chunk);
    out.discard(sent);
    if (tls === null) return;
    this.#plainLeft -= sent;
    if (this.#plainLeft > 0) return;
    this.#tls = null;
    holdReads(this, false);
    super.startTls(tls);
  }

  /**
   * Upgrades to TLS, as {@linkcode Dispatcher.startTls} does, once the
   * output buffered before the call has been sent in plaintext: at once
   * when there is none; else the channel goes on sending it and meanwhile
   * reads nothing (what the peer sends then is the TLS handshake). What
   * `send()` buffers after the call goes out encrypted, after the
   * handshake. What makes the upgrade fail at once is thrown here; a
   * failure when a waiting upgrade starts reaches `handleError()`.
   *
   * @param options As for {@linkcode Dispatcher.startTls}.
   * @throws {Deno.errors.AlreadyExists} when TLS is in use, starting, or
   *   waiting to start; and what {@linkcode Dispatcher.startTls} throws.
   */
  override startTls(options?: TlsOptions): void {
    if (this.#tls !== null) {
      throw new Deno.errors.AlreadyExists(
        "startTls: an upgrade already waits for the output buffered before it",
      );
    }
    const ahead = this.#out?.length ?? 0;
    if (ahead === 0) {
      super.startTls(options);
      return;
    }
    this.#tls = checkWaitingUpgrade(this, options);
    this.#plainLeft = ahead;
    holdReads(this, true);
  }

  /** Sends more of the output buffer. */
  override handleWrite(): void {
    this.initiateSend();
  }

  /** True while connecting or while the output buffer holds bytes. */
  override writable(): boolean {
    return !this.connected || (this.#out !== null && this.#out.length > 0);
  }

  /**
   * Buffers all of `data` and starts sending it.
   *
   * @returns The number of bytes buffered: all of them.
   */
  override send(data: Uint8Array | string): number {
    const bytes = toBytes("data", data);
    if (this.debug) this.logInfo(`sending ${formatBytes(bytes)}`);
    let offset = 0;
    const idle = this.#out === null || this.#out.length === 0;
    if (idle && this.connected) offset = super.send(bytes);
    if (offset < bytes.length) {
      (this.#out ??= new ByteQueue()).push(bytes.slice(offset));
      // writable() turned true: a loop waiting without it must know.
      if (idle) wakeChannelLoop(this);
    }
    return bytes.length;
  }
}

/**
 * A channel on a descriptor that is not a socket (a pipe, a terminal,
 * standard input, a file): Python's `asyncore.file_dispatcher`. It serves a
 * {@linkcode FileWrapper} (a non-blocking duplicate of the descriptor) in
 * the loop as a connected socket: `handleRead()` when there is input to
 * `recv()` (an empty read is end of input), `handleWrite()` when `send()`
 * can write. As in Python, `readable()` and `writable()` are both true
 * until overridden: a channel that only reads says `writable()` is false.
 *
 * It needs the `"epoll"` backend's system calls, whatever the default
 * backend (`--allow-ffi`, Linux; elsewhere the constructor throws, naming
 * the reason and the fix), and works in any loop. Epoll cannot watch a
 * regular file: one is always readable and writable, as poll(2) reports it.
 *
 * @example Read standard input in the loop
 * ```ts
 * import { FileDispatcher } from "@asyncore/asyncore/asyncore";
 *
 * class Input extends FileDispatcher {
 *   override writable(): boolean {
 *     return false;
 *   }
 *   override handleRead(): void {
 *     const line = new TextDecoder().decode(this.recv(4096));
 *     if (line === "") this.close(); // end of input
 *     else console.log(`> ${line.trimEnd()}`);
 *   }
 * }
 *
 * // In a program run with --allow-ffi: `new Input(0); await loop();`
 * function readInput(): Input {
 *   return new Input(0);
 * }
 * ```
 */
export class FileDispatcher extends Dispatcher {
  /**
   * Wraps a duplicate of `fd` and registers the channel, connected.
   *
   * @param fd A descriptor, or an object with a `fileno()` method.
   * @param map The map to register in; {@linkcode socketMap} by default.
   */
  constructor(fd: number | { fileno(): number }, map?: ChannelMap) {
    super(undefined, map);
    this.connected = true;
    const number = typeof fd === "object" && fd !== null &&
        typeof fd.fileno === "function"
      ? fd.fileno()
      : fd;
    this.setFile(number as number);
  }

  /**
   * Serves a duplicate of `fd` and registers the channel.
   *
   * @param fd An open descriptor.
   */
  setFile(fd: number): void {
    this.setSocket(new FileWrapper(fd));
  }
}

// What a handler throws goes to its channel's handleError(); should that and
// the channel's close() throw too, Dispatcher's own close() closes it.
const { guard, fault, runTimer } = faultRouting(Dispatcher.prototype.close);

/**
 * Dispatches a read event to `obj`, as Python's `asyncore.read()`: what a
 * handler throws goes to `obj.handleError()`.
 *
 * @example A handler's error goes to handleError()
 * ```ts
 * import { Dispatcher, read } from "@asyncore/asyncore/asyncore";
 * import { assertEquals } from "@std/assert";
 *
 * class Channel extends Dispatcher {
 *   caught: unknown = null;
 *   override handleRead(): void {
 *     throw new RangeError("bad record");
 *   }
 *   override handleError(error: unknown): void {
 *     this.caught = error;
 *   }
 * }
 * const channel = new Channel(undefined, new Map());
 * channel.connected = true;
 * read(channel);
 * assertEquals((channel.caught as Error).message, "bad record");
 * ```
 *
 * @param obj The channel that is readable.
 */
export function read(obj: Dispatcher): void {
  guard(obj, obj.handleReadEvent);
}

/**
 * Dispatches a write event to `obj`, as Python's `asyncore.write()`: a
 * channel still connecting completes its connect first.
 *
 * @example A connecting channel hears of its connect, then writes
 * ```ts
 * import { Dispatcher, write } from "@asyncore/asyncore/asyncore";
 * import { assertEquals } from "@std/assert";
 *
 * class Channel extends Dispatcher {
 *   calls: string[] = [];
 *   override handleConnect(): void {
 *     this.calls.push("connect");
 *   }
 *   override handleWrite(): void {
 *     this.calls.push("write");
 *   }
 * }
 * const channel = new Channel(undefined, new Map());
 * channel.connecting = true;
 * write(channel);
 * assertEquals(channel.calls, ["connect", "write"]);
 * assertEquals(channel.connected, true);
 * ```
 *
 * @param obj The channel that is writable.
 */
export function write(obj: Dispatcher): void {
  guard(obj, obj.handleWriteEvent);
}

function exception(obj: Dispatcher): void {
  guard(obj, obj.handleExptEvent);
}

/**
 * Dispatches `poll()` flags to `obj`, as Python's `asyncore.readwrite()`.
 * Disconnect errors go to `handleClose()`, other errors to `handleError()`.
 *
 * @example Readable and hung up: read, then close
 * ```ts
 * import { Dispatcher, readwrite } from "@asyncore/asyncore/asyncore";
 * import { POLLHUP, POLLIN } from "@asyncore/asyncore/select";
 * import { assertEquals } from "@std/assert";
 *
 * class Channel extends Dispatcher {
 *   calls: string[] = [];
 *   override handleRead(): void {
 *     this.calls.push("read");
 *   }
 *   override handleClose(): void {
 *     this.calls.push("close");
 *   }
 * }
 * const channel = new Channel(undefined, new Map());
 * channel.connected = true;
 * readwrite(channel, POLLIN | POLLHUP);
 * assertEquals(channel.calls, ["read", "close"]);
 * ```
 *
 * @param obj The channel with events.
 * @param flags `POLL*` bits.
 */
export function readwrite(obj: Dispatcher, flags: number): void {
  try {
    try {
      if (flags & POLLIN) obj.handleReadEvent();
      if (flags & POLLOUT && isOpen(obj)) obj.handleWriteEvent();
      if (flags & POLLPRI && isOpen(obj)) obj.handleExptEvent();
      if (flags & (POLLHUP | POLLERR | POLLNVAL) && isOpen(obj)) {
        obj.handleClose();
      }
    } catch (error) {
      if (isDisconnect(error)) obj.handleClose();
      else throw error;
    }
  } catch (error) {
    fault(obj, error);
  }
}

function isOpen(obj: Dispatcher): boolean {
  return !obj.socket?.closed;
}

/**
 * What a loop reuses from pass to pass: the events, their channels, and its
 * debug session (`null` when debug is off).
 */
class PassBuffers {
  readonly events: Events = new Events();
  readonly channels: (Dispatcher | undefined)[] = [];
  debug: DebugSession | null = null;
}

/**
 * One pass, as CPython's `poll()` and `poll2()`: ask every channel what it
 * wants, wait until a channel is ready, `timeout` passes or the next timer
 * is due, dispatch, and run the timers that are due. `usePoll` only picks
 * the dispatch (see {@linkcode dispatch}); the wait is the same.
 *
 * A pass that need not wait (something was ready) is over when it returns
 * `undefined`; one that waits returns a promise.
 */
function pass(
  usePoll: boolean,
  timeout: number | undefined,
  map: ChannelMap,
  signal?: AbortSignal,
  alarm?: Alarm,
  buffers: PassBuffers = new PassBuffers(),
): Promise<void> | undefined {
  if (map.size === 0) {
    // Nothing to serve: return at once, as Python's poll() does (letting the
    // event loop turn now and then, so polling an empty map cannot starve it).
    runTimers(map, runTimer);
    return passWithoutWait();
  }
  const { selector } = loopStateOf(map);
  // One clock reading serves the whole pass: each costs 0.14–0.2 µs here, a
  // good part of a busy pass.
  const now = performance.now();
  const until = ask(map, selector.registry, timeout, now);
  // With nothing registered this only sleeps, unless the waker fires.
  const waiting = selector.poll(
    buffers.events,
    until === Infinity ? undefined : Math.max(0, until - now),
    signal,
    alarm,
    now,
  );
  if (waiting !== undefined) {
    return waiting.then(() => endPass(usePoll, map, buffers));
  }
  endPass(usePoll, map, buffers);
}

/** The rest of a pass once its poll is done: dispatch, then the timers. */
function endPass(
  usePoll: boolean,
  map: ChannelMap,
  buffers: PassBuffers,
): void {
  dispatch(usePoll, map, buffers);
  // Debug mode's one hook: it runs the timers itself, timing each.
  if (buffers.debug === null) runTimers(map, runTimer);
  else buffers.debug.endPass(map, buffers.events, runTimer);
}

/**
 * Asks every channel in `map` what it wants, after its idle check, and
 * registers what changed with `registry`; returns when the wait must end:
 * `timeout` ms from `now`, or sooner for a timer or an idle timeout.
 */
function ask(
  map: ChannelMap,
  registry: Registry,
  timeout: number | undefined,
  now: number,
): number {
  let until = Math.min(
    timeout === undefined ? Infinity : now + timeout,
    nextTimer(map),
  );
  // forEach rather than for-of, whose iterator results may cost an
  // allocation per channel per pass.
  map.forEach((obj) => {
    const state = stateOf(obj);
    if (obj.idleTimeout !== Infinity) {
      const due = state.idleDue(obj, now);
      if (due > now) until = Math.min(until, due);
      else guard(obj, obj.handleTimeout);
      if (map.get(obj.fileno()) !== obj) return;
    }
    let isR: boolean;
    let isW: boolean;
    try {
      isR = !state.readsHeld && obj.readable();
      // Listening channels are never waited on for writing.
      isW = obj.writable() && !obj.accepting;
    } catch (error) {
      // A faulty predicate is a handler fault: it must not end the loop.
      fault(obj, error);
      if (map.get(obj.fileno()) !== obj) return;
      isR = isW = false;
    }
    const sock = obj.socket;
    if (sock === null) return;
    if ((isR || isW) && sock.closed) {
      // Python's select() would fail on the stale descriptor; close instead.
      guard(obj, obj.handleClose);
    } else {
      // A channel that wants nothing while its socket still holds output
      // (a readable() waiting for sendBuffered to fall) is asked again each
      // time some of it goes.
      state.register(
        registry,
        sock,
        isR || isW || sock.sendBuffered === 0
          ? Interest.of(isR, isW)
          : Interest.OUTPUT,
      );
    }
  });
  return until;
}

/**
 * Dispatches the events of a wait, each to the channel that held its token
 * when it came (and still does when its turn comes): with `usePoll`, as
 * `poll2()` does, one `readwrite()` per channel with `POLL*` flags;
 * otherwise as `poll()` does, `read()` on the readable channels, `write()`
 * on the writable ones, then the exceptional ones.
 */
function dispatch(
  usePoll: boolean,
  map: ChannelMap,
  buffers: PassBuffers,
): void {
  const { events, channels } = buffers;
  const count = events.length;
  for (let i = 0; i < count; i++) channels[i] = map.get(events.token(i));
  if (usePoll) {
    for (let i = 0; i < count; i++) {
      const obj = channels[i];
      const bits = events.readiness(i);
      if (obj === undefined || (bits & (READABLE | WRITABLE | ERROR)) === 0) {
        continue; // a closed socket: the next pass sees it
      }
      let flags = 0;
      if (bits & READABLE) flags |= POLLIN;
      if (bits & WRITABLE) flags |= POLLOUT;
      if (bits & ERROR) flags |= POLLERR;
      if (bits & HUP) flags |= POLLHUP;
      if (map.get(obj.fileno()) === obj) readwrite(obj, flags);
    }
  } else {
    dispatchEach(READABLE, read, map, buffers, count);
    dispatchEach(WRITABLE, write, map, buffers, count);
    dispatchEach(ERROR, exception, map, buffers, count);
  }
  // A loop, not fill(): fill() is a C++ builtin, a call out of optimized
  // code, and here it also made a runtime call (0.2 µs a pass in all).
  for (let i = 0; i < count; i++) channels[i] = undefined;
}

/** Calls `handle` on each channel whose event has `bit`, still in `map`. */
function dispatchEach(
  bit: number,
  handle: (obj: Dispatcher) => void,
  map: ChannelMap,
  { events, channels }: PassBuffers,
  count: number,
): void {
  for (let i = 0; i < count; i++) {
    const obj = channels[i];
    if (
      obj !== undefined && (events.readiness(i) & bit) !== 0 &&
      map.get(obj.fileno()) === obj
    ) handle(obj);
  }
}

/**
 * One pass over `map`, dispatching as Python's `asyncore.poll()` does: ask
 * every channel what it wants, wait up to `timeout` ms for one to be ready,
 * then call `read()` on the readable channels, `write()` on the writable
 * ones, and `handleExptEvent()` on those in an error state. It waits as
 * {@linkcode poll2} does, on the map's own selector (not with `select()`);
 * only the dispatch differs.
 *
 * @example
 * ```ts
 * import { poll } from "@asyncore/asyncore/asyncore";
 *
 * await poll(0, new Map()); // nothing to wait on: returns at once
 * ```
 *
 * @param timeout The longest wait in ms.
 * @param map The channels; {@linkcode socketMap} by default.
 */
export async function poll(
  timeout = 0,
  map: ChannelMap = socketMap,
): Promise<void> {
  // Async, so a bad timeout rejects the promise instead of throwing.
  await pass(false, checkTimeout("timeout", timeout), map);
}

/**
 * One pass over `map`, dispatching as Python's `asyncore.poll2()` does: it
 * waits as {@linkcode poll} does (not with `Poll`), then makes one
 * {@linkcode readwrite} call per ready channel, with its `POLL*` flags.
 *
 * @example
 * ```ts
 * import { poll2 } from "@asyncore/asyncore/asyncore";
 *
 * await poll2(0, new Map());
 * ```
 *
 * @param timeout The longest wait in ms.
 * @param map The channels; {@linkcode socketMap} by default.
 */
export async function poll2(
  timeout = 0,
  map: ChannelMap = socketMap,
): Promise<void> {
  // Async, so a bad timeout rejects the promise instead of throwing.
  await pass(true, checkTimeout("timeout", timeout), map);
}

/** Options for {@linkcode loop}. */
export interface LoopOptions {
  /**
   * The longest wait of one pass, in ms.
   *
   * @default {30000}
   */
  timeout?: number;
  /**
   * Dispatch as {@linkcode poll2} does (one `readwrite()` per ready channel,
   * with `POLL*` flags) instead of as {@linkcode poll} does (`read()`,
   * `write()`, then the channels in an error state). Both wait the same way.
   *
   * @default {false}
   */
  usePoll?: boolean;
  /** The channels to serve; {@linkcode socketMap} by default. */
  map?: ChannelMap;
  /** Stop after this many passes; no limit by default. */
  count?: number;
  /** Stop when this signal aborts. */
  signal?: AbortSignal;
  /**
   * Debug mode, as asyncio's: `true` (or {@linkcode DebugOptions}) warns of
   * slow handlers and of channels left open, and can trace each pass;
   * `false` turns it off even when the `ASYNCORE_DEBUG` environment
   * variable asks for it.
   *
   * @default {undefined} (on when `ASYNCORE_DEBUG` is set, non-empty and
   * not `0`, and the program may read it)
   */
  debug?: boolean | DebugOptions;
}

/**
 * What {@linkcode loop}'s debug mode reports, and where. Each warning or
 * trace is one call of `log`.
 *
 * @example Catch a slow timer in a test
 * ```ts
 * import { callLater, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
 * import { assertMatch } from "@std/assert";
 *
 * const map = new Map();
 * const server = new Dispatcher(undefined, map);
 * server.createSocket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen(5);
 * callLater(0, function slowTimer() {
 *   const start = performance.now();
 *   while (performance.now() - start < 10); // busy for 10 ms
 *   server.close();
 * }, { map });
 * const messages: string[] = [];
 * await loop({ map, debug: { slowHandlerMs: 5, log: (m) => messages.push(m) } });
 * assertMatch(messages[0], /^timer callback slowTimer took \d/);
 * ```
 */
export interface DebugOptions {
  /**
   * Warn when one call of a handler (`handle*()`, `readable()`,
   * `writable()`, a timer's callback) runs at least this many ms, naming
   * the channel and the handler: asyncio's `slow_callback_duration`.
   *
   * @default {100}
   */
  slowHandlerMs?: number;
  /**
   * Log each pass: the channels asked to read (the read set) and to write
   * (the write set), which were ready, and the handlers that ran, with
   * their times.
   *
   * @default {false}
   */
  trace?: boolean;
  /**
   * Where warnings and traces go.
   *
   * @default {(message) => console.warn(`asyncore debug: ${message}`)}
   */
  log?: (message: string) => void;
}

/**
 * Serves the channels in a map until it is empty, `count` passes are done,
 * or `signal` aborts. Rejects with {@linkcode ExitNow} when a handler throws
 * it.
 *
 * While channels keep being ready, one pass follows another without an
 * `await` between them, as in Python's loop: the rest of the program (timers,
 * other I/O, code awaiting a promise a handler settled) runs whenever the
 * loop waits, and on a loop that never has to wait, every 16 passes or 2 ms
 * (default backend) or every millisecond (epoll).
 *
 * @example
 * ```ts
 * import { loop } from "@asyncore/asyncore/asyncore";
 *
 * await loop({ map: new Map() }); // an empty map: returns at once
 * ```
 *
 * @example Debug mode: trace each pass
 * ```ts
 * import { Dispatcher, loop } from "@asyncore/asyncore/asyncore";
 * import { assertMatch } from "@std/assert";
 *
 * const map = new Map();
 * const server = new Dispatcher(undefined, map);
 * server.createSocket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen(5);
 * const messages: string[] = [];
 * await loop({
 *   map,
 *   count: 1,
 *   timeout: 0,
 *   debug: { trace: true, log: (m) => messages.push(m) },
 * });
 * server.close();
 * assertMatch(messages[0], /read set: \[<Dispatcher listening/);
 * assertMatch(messages[1], /still open: <Dispatcher listening/);
 * ```
 *
 * @param options Timeout, map, pass count, poll flavour, abort signal and
 *   debug mode.
 */
export async function loop(options: LoopOptions = {}): Promise<void> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  const timeout = checkTimeout("options.timeout", options.timeout ?? 30_000);
  const map = options.map ?? socketMap;
  let count = checkCount("options.count", options.count ?? Infinity);
  const { signal } = options;
  const usePoll = options.usePoll ?? false;
  const debug = debugSession(options.debug);
  const alarm = new Alarm();
  const buffers = new PassBuffers();
  buffers.debug = debug;
  debug?.start(map);
  try {
    while (map.size > 0 && count > 0 && !signal?.aborted) {
      const waiting = pass(usePoll, timeout, map, signal, alarm, buffers);
      if (waiting !== undefined) await waiting;
      count--;
    }
    debug?.exited(map, count === 0 ? "count reached" : "signal aborted");
  } finally {
    alarm.dispose();
    debug?.stop(map);
  }
}

/**
 * Closes every channel in `map` and empties it.
 *
 * @example
 * ```ts
 * import { closeAll, Dispatcher } from "@asyncore/asyncore/asyncore";
 * import { assertEquals } from "@std/assert";
 *
 * const map = new Map();
 * const channel = new Dispatcher(undefined, map);
 * channel.createSocket();
 * closeAll(map);
 * assertEquals(map.size, 0);
 * ```
 *
 * @param map The channels; {@linkcode socketMap} by default.
 * @param ignoreAll Swallow every error `close()` throws, not just
 *   `BadResource`.
 */
export function closeAll(map: ChannelMap = socketMap, ignoreAll = false): void {
  for (const obj of [...map.values()]) {
    try {
      obj.close();
    } catch (error) {
      if (error instanceof ExitNow) throw error;
      if (!(error instanceof Deno.errors.BadResource) && !ignoreAll) {
        throw error;
      }
    }
  }
  map.clear();
  wakeLoop(map);
}
