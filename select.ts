/**
 * Non-blocking sockets and readiness for Deno: Python's `socket` in
 * non-blocking mode plus `select.select()` and `select.poll()`.
 *
 * Deno has no readiness API, so {@linkcode Socket} keeps the buffers a kernel
 * would: it reads ahead into a bounded receive buffer and flushes a bounded
 * send buffer in the background, so that `recv`, `send` and `accept` are
 * synchronous and never block. {@linkcode select} and {@linkcode Poll} wait
 * until sockets are ready. Sockets speak TLS too: from the first byte with
 * `SocketOptions.tls`, or after a plaintext start with
 * {@linkcode Socket.startTls} (STARTTLS).
 *
 * @example Echo one message over loopback
 * ```ts
 * import { select, Socket } from "@asyncore/asyncore/select";
 * import { assertEquals } from "@std/assert";
 *
 * const server = new Socket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen();
 * const client = new Socket();
 * client.connect(server.getsockname() as Deno.NetAddr);
 * await select([server], [], [], 5000);
 * const [conn] = server.accept();
 * client.send(new TextEncoder().encode("ping"));
 * await select([conn], [], [], 5000);
 * assertEquals(new TextDecoder().decode(conn.recv(1024)), "ping");
 * conn.close();
 * client.close();
 * server.close();
 * ```
 *
 * @module
 */

import { ByteQueue } from "./_byte_queue.ts";
import { SendBuffer } from "./_send_buffer.ts";
import { FdTable } from "./_fd_table.ts";
import { allocateRegion } from "./_read_arena.ts";
import {
  EXCEPTIONAL,
  kActivity,
  kHangup,
  kInterestMask,
  kInterestOwner,
  kReadiness,
  type LoopInterest,
  notify,
  passWithoutWait,
  READABLE,
  type Source,
  waitFor,
  WRITABLE,
} from "./_readiness.ts";
import {
  checkTlsOptions,
  clientHandshake,
  isServerSide,
  type TlsOptions,
  TlsSplice,
} from "./_tls.ts";
import {
  type Address,
  checkAddress,
  checkCount,
  checkSize,
  checkTimeout,
  describe,
  toBytes,
} from "./_validate.ts";

export type { Address } from "./_validate.ts";
export type { TlsOptions } from "./_tls.ts";

/** Options for {@linkcode Socket}. */
export interface SocketOptions {
  /**
   * The transport: TCP (IPv4 or IPv6, chosen by the address) or a Unix
   * domain socket.
   *
   * @default {"tcp"}
   */
  transport?: "tcp" | "unix";
  /**
   * The most bytes read ahead and held until `recv` takes them. When the
   * buffer is full the socket stops reading, so the peer is pushed back.
   *
   * @default {65536}
   */
  recvBufferSize?: number;
  /**
   * The most bytes `send` accepts before they are written to the peer.
   *
   * @default {65536}
   */
  sendBufferSize?: number;
  /**
   * Makes the socket TLS: with `cert` and `key`, `bind()` listens with
   * `Deno.listenTls` and accepted sockets speak TLS from the first byte;
   * otherwise `connect()` runs the client's handshake (verifying
   * `hostname`, trusting `caCerts` too) before it reports completion. TCP
   * only; see {@linkcode Socket.startTls} to upgrade a plaintext connection.
   */
  tls?: TlsOptions;
}

/** How much of a connection {@linkcode Socket.shutdown} ends. */
export type ShutdownHow = "read" | "write" | "both";

const DEFAULT_BUFFER_SIZE = 65536;
const DEFAULT_LINGER_TIMEOUT = 30_000;
// Reads start small so an idle connection pins little memory, and double
// while the peer keeps filling them.
const MIN_READ_SIZE = 512;
const MAX_READ_SIZE = 65536;
// Reads land in a region of a shared arena (see _read_arena.ts) and are
// handed out as views of it. A socket reads into the rest of its region until
// that is too small for the next read; a streaming one takes large regions.
const MAX_REGION_SIZE = 65536;
const MIN_TAIL = 128;
const MAX_WRITE_SIZE = 65536;
const EMPTY = new Uint8Array(0);

const fds = new FdTable<Socket>();

type State = "fresh" | "bound" | "listening" | "connecting" | "connected";

// Deno.startTls() returns a connection whose addresses lack `transport`.
function tcpAddr(addr: Deno.Addr): Deno.Addr {
  return addr.transport === undefined
    // The same shape as Deno's own addresses: no prototype.
    ? Object.assign(Object.create(null), addr, { transport: "tcp" })
    : addr;
}

function closedError(operation: string): Deno.errors.BadResource {
  return new Deno.errors.BadResource(`${operation} on a closed socket`);
}

/**
 * A non-blocking stream socket (TCP over IPv4 or IPv6, or Unix) with
 * kernel-like receive and send buffers.
 *
 * Every method is synchronous. Operations that cannot complete at once throw
 * `Deno.errors.WouldBlock`; use {@linkcode select} or {@linkcode Poll} to
 * wait until they can.
 *
 * @example Bind, listen and read the chosen port
 * ```ts
 * import { Socket } from "@asyncore/asyncore/select";
 * import { assert } from "@std/assert";
 *
 * const server = new Socket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen(5);
 * assert((server.getsockname() as Deno.NetAddr).port > 0);
 * server.close();
 * ```
 *
 * @example Echo over TLS
 * ```ts
 * import { select, Socket } from "@asyncore/asyncore/select";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const dir = "tests/fixtures/tls";
 * using server = new Socket({
 *   tls: {
 *     cert: Deno.readTextFileSync(`${dir}/localhost.crt`),
 *     key: Deno.readTextFileSync(`${dir}/localhost.key`),
 *   },
 * });
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen();
 * using client = new Socket({
 *   tls: {
 *     hostname: "localhost",
 *     caCerts: [Deno.readTextFileSync(`${dir}/ca.crt`)],
 *   },
 * });
 * client.connect(server.getsockname() as Deno.NetAddr);
 * await select([], [client], [], 5000); // connected and handshake done
 * assert(client.secure);
 * client.send("secret");
 * await select([server], [], [], 5000);
 * using conn = server.accept()[0];
 * await select([conn], [], [], 5000);
 * assertEquals(new TextDecoder().decode(conn.recv(1024)), "secret");
 * ```
 */
export class Socket {
  readonly #transport: "tcp" | "unix";
  #fd: number;
  #state: State = "fresh";
  #error: Error | null = null;
  #conn: Deno.Conn | null = null;
  #listener: Deno.Listener | null = null;

  #rx = new ByteQueue();
  #rxLimit: number;
  #readSize = MIN_READ_SIZE;
  #region: Uint8Array | null = null;
  #regionUsed = 0;
  #readTarget: Uint8Array | null = null;
  #reading = false;
  #eof = false;
  #shutRead = false;

  #tx = new SendBuffer();
  #txLimit: number;
  #writing = false;
  #shutWrite = false;
  #lingering = false;
  #lingerTimeout = DEFAULT_LINGER_TIMEOUT;
  #lingerTimer: ReturnType<typeof setTimeout> | undefined;

  #pending: Socket[] = [];
  #writeQueued = false;
  #queuedWrite: (() => void) | undefined;
  #writeCallbacks:
    | [(count: number) => void, (error: Error) => void]
    | undefined;
  #backlog = 0;
  #acceptingNow = false;
  #acceptError: Error | null = null;
  #released: PromiseWithResolvers<void> | null = null;

  #activity = 0;
  #noDelay: boolean | undefined;
  #keepAlive: boolean | undefined;

  #tls: TlsOptions | null = null;
  #peerName = "";
  // A TLS handshake is in progress on a connected socket (an accepted TLS
  // connection, or STARTTLS): nothing is read or written on `#conn` yet.
  #securing = false;
  #secure = false;
  // STARTTLS: the plaintext connection under the TLS splice, and how many
  // bytes at the head of the send buffer still go out on it in plaintext.
  #raw: Deno.Conn | null = null;
  #splice: TlsSplice | null = null;
  #plainTx = 0;
  #handoff = false;

  /**
   * The loop interest this socket is registered with.
   *
   * @ignore
   */
  [kInterestOwner]: LoopInterest | null = null;
  /**
   * The bits that loop waits for.
   *
   * @ignore
   */
  [kInterestMask] = 0;

  /**
   * Creates an unconnected socket.
   *
   * @param options The transport and buffer sizes.
   */
  constructor(options: SocketOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        `options must be an object, got ${describe(options)}`,
      );
    }
    const { transport = "tcp" } = options;
    if (transport !== "tcp" && transport !== "unix") {
      throw new TypeError(
        `options.transport must be "tcp" or "unix", got ${describe(transport)}`,
      );
    }
    this.#transport = transport;
    this.#rxLimit = checkSize(
      "options.recvBufferSize",
      options.recvBufferSize ?? DEFAULT_BUFFER_SIZE,
    );
    this.#txLimit = checkSize(
      "options.sendBufferSize",
      options.sendBufferSize ?? DEFAULT_BUFFER_SIZE,
    );
    if (options.tls !== undefined) {
      if (transport !== "tcp") {
        throw new TypeError(
          'options.tls needs the "tcp" transport; upgrade a Unix connection with startTls()',
        );
      }
      this.#tls = checkTlsOptions("options.tls", options.tls);
    }
    this.#fd = fds.allocate(this);
  }

  /**
   * Wraps a connection Deno has already made; the socket is connected.
   *
   * @example Wrap a `Deno.Conn`
   * ```ts
   * import { Socket } from "@asyncore/asyncore/select";
   * import { assertEquals } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const conn = await Deno.connect({ port: listener.addr.port });
   * const sock = Socket.fromConn(conn);
   * assertEquals(sock.getpeername(), listener.addr);
   * sock.close();
   * (await listener.accept()).close();
   * ```
   *
   * @param conn The connection to take over; the socket closes it. A
   *   `Deno.TlsConn` is neither readable nor writable until its handshake
   *   completes.
   * @param options Buffer sizes.
   * @returns A connected socket.
   */
  static fromConn(
    conn: Deno.Conn,
    options: Omit<SocketOptions, "transport" | "tls"> = {},
  ): Socket {
    const transport = conn.localAddr.transport === "unix" ? "unix" : "tcp";
    const sock = new Socket({
      recvBufferSize: options.recvBufferSize,
      sendBufferSize: options.sendBufferSize,
      transport,
    });
    sock.#attach(conn, typeof (conn as Deno.TlsConn).handshake === "function");
    return sock;
  }

  /** The socket's number: unique among live sockets, -1 once closed. */
  fileno(): number {
    return this.#fd;
  }

  /** Whether the socket has been closed. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * The pending error, like `SO_ERROR`: a failed connect or a connection the
   * peer reset. A socket with an error is readable and writable.
   */
  get error(): Error | null {
    return this.#error;
  }

  /** The transport this socket was made for. */
  get transport(): "tcp" | "unix" {
    return this.#transport;
  }

  /**
   * Whether the connection is encrypted: a TLS handshake (on connect, on
   * accept from a TLS listener, or by {@linkcode Socket.startTls}) has
   * completed.
   */
  get secure(): boolean {
    return this.#secure;
  }

  /** The bound of the receive buffer, in bytes. */
  get recvBufferSize(): number {
    return this.#rxLimit;
  }
  set recvBufferSize(size: number) {
    this.#rxLimit = checkSize("recvBufferSize", size);
    this.#startRead();
  }

  /** The bound of the send buffer, in bytes. */
  get sendBufferSize(): number {
    return this.#txLimit;
  }
  set sendBufferSize(size: number) {
    const wasFull = this.#tx.length >= this.#txLimit;
    this.#txLimit = checkSize("sendBufferSize", size);
    if (wasFull && this.#tx.length < this.#txLimit) notify(this);
  }

  /**
   * How long, in ms, a closed socket keeps trying to deliver the bytes
   * `send()` accepted to a peer that does not read them, before it drops
   * them and closes the connection (`SO_LINGER`). While it tries, the
   * process stays alive; `0` drops them at `close()`.
   *
   * @default {30000}
   */
  get lingerTimeout(): number {
    return this.#lingerTimeout;
  }
  set lingerTimeout(ms: number) {
    const timeout = checkTimeout("lingerTimeout", ms);
    if (timeout === undefined) {
      throw new RangeError(
        `lingerTimeout must be a finite number of ms, got ${describe(ms)}`,
      );
    }
    this.#lingerTimeout = timeout;
  }

  /** The number of received bytes waiting for `recv`. */
  get recvBuffered(): number {
    return this.#rx.length;
  }

  /** The number of bytes `send` accepted that the peer has not been sent yet. */
  get sendBuffered(): number {
    return this.#tx.length;
  }

  /**
   * Binds the socket to a local address and starts listening at the OS level.
   * Errors (address in use, permission, a bad certificate or key) are thrown
   * here, synchronously. A socket made with `tls: { cert, key }` listens with
   * `Deno.listenTls`.
   *
   * @param address `{ hostname, port }` (hostname defaults to `"0.0.0.0"`)
   *   or `{ path }` for a Unix socket.
   */
  bind(address: Address): void {
    this.#checkOpen("bind");
    const options = checkAddress(
      "address",
      address,
      this.#transport,
      "0.0.0.0",
    );
    if (this.#state !== "fresh") {
      throw new Deno.errors.AlreadyExists(
        `bind: the socket is already ${this.#state}`,
      );
    }
    const tls = this.#tls;
    if (tls !== null && !isServerSide(tls)) {
      throw new TypeError("bind: options.tls needs cert and key to listen");
    }
    this.#listener = options.transport === "unix"
      ? Deno.listen(options)
      : tls !== null
      ? Deno.listenTls({ ...options, cert: tls.cert!, key: tls.key! })
      : Deno.listen(options);
    this.#state = "bound";
  }

  /**
   * Accepts connections: up to `backlog` of them are taken in ahead and wait
   * for {@linkcode Socket.accept}. An unbound TCP socket binds to an
   * ephemeral port first.
   *
   * @param backlog How many connections may wait to be accepted.
   */
  listen(backlog = 5): void {
    this.#checkOpen("listen");
    checkCount("backlog", backlog);
    if (this.#state === "fresh") {
      if (this.#transport === "unix") {
        throw new Deno.errors.NotConnected(
          "listen: a Unix socket must be bound first",
        );
      }
      this.bind({ port: 0 });
    }
    if (this.#state !== "bound" && this.#state !== "listening") {
      throw new Deno.errors.NotConnected(
        `listen: the socket is ${this.#state}`,
      );
    }
    this.#state = "listening";
    this.#backlog = Math.max(1, Math.min(backlog, 65535));
    this.#startAccept();
  }

  /**
   * Takes a pending connection.
   *
   * @returns The connected socket and the peer's address.
   * @throws {Deno.errors.WouldBlock} when no connection is pending.
   */
  accept(): [Socket, Deno.Addr] {
    this.#checkOpen("accept");
    if (this.#state !== "listening") {
      throw new Deno.errors.NotConnected("accept: the socket is not listening");
    }
    const sock = this.#pending.shift();
    if (sock === undefined) {
      const error = this.#acceptError;
      if (error) {
        this.#acceptError = null;
        this.#startAccept();
        throw error;
      }
      throw new Deno.errors.WouldBlock("accept: no connection is pending");
    }
    this.#startAccept();
    return [sock, sock.getpeername()];
  }

  /**
   * Starts connecting and returns at once. Completion shows as writability;
   * failure as {@linkcode Socket.error}, which makes the socket readable and
   * writable. A socket made with `tls` completes only once the TLS handshake
   * has; a failed handshake (an unknown CA, a wrong name) is Deno's error
   * (`InvalidData`) in {@linkcode Socket.error}.
   *
   * @param address `{ hostname, port }` (hostname defaults to
   *   `"127.0.0.1"`) or `{ path }` for a Unix socket.
   */
  connect(address: Address): void {
    this.#checkOpen("connect");
    const options = checkAddress(
      "address",
      address,
      this.#transport,
      "127.0.0.1",
    );
    if (this.#state === "connecting") {
      throw new Deno.errors.Busy("connect: a connect is already in progress");
    }
    if (this.#state === "bound" || this.#state === "listening") {
      throw new Deno.errors.NotSupported(
        `connect: the socket is ${this.#state}; Deno cannot connect from a bound address`,
      );
    }
    if (this.#state !== "fresh") {
      throw new Deno.errors.AlreadyExists(
        `connect: the socket is already ${this.#state}`,
      );
    }
    const tls = this.#tls;
    if (tls !== null && isServerSide(tls)) {
      throw new Deno.errors.NotSupported(
        "connect: client certificates are not supported; options.tls.cert and key are for listening",
      );
    }
    this.#state = "connecting";
    let connecting: Promise<Deno.Conn>;
    try {
      connecting = options.transport === "unix"
        ? Deno.connect(options)
        : Deno.connect(options);
    } catch (error) {
      connecting = Promise.reject(error);
    }
    if (options.transport === "tcp") {
      this.#peerName = options.hostname;
      if (tls !== null) {
        connecting = connecting.then((conn) => {
          this.#applyOptions(conn);
          return clientHandshake(conn as Deno.TcpConn, tls, options.hostname);
        });
      }
    }
    connecting.then(
      (conn) => {
        if (this.closed) {
          conn.close();
        } else {
          this.#secure = tls !== null;
          this.#attach(conn);
        }
      },
      (error: Error) => {
        if (this.closed) return;
        this.#error = error;
        notify(this);
      },
    );
  }

  /**
   * Upgrades the connection to TLS in place (STARTTLS) and returns at once.
   * With `cert` and `key` the socket takes the server's side of the
   * handshake, otherwise the client's. Call it at the point of the byte
   * stream where TLS starts: right after sending (server) or receiving
   * (client) the reply that announces the upgrade, in the same handler.
   *
   * The upgrade happens where the application has read and written up to:
   * bytes `send()` accepted before the call go out in plaintext first, and
   * bytes received but not yet taken by `recv()` are TLS input, as a
   * kernel's buffer is to Python's `ssl.wrap_socket()` (so plaintext a peer
   * injects after STARTTLS fails the handshake instead of passing for
   * encrypted input). Until the handshake completes the socket is neither
   * readable nor writable (`send()` still buffers, for after it);
   * completion shows as writability, failure as {@linkcode Socket.error}
   * (Deno's `InvalidData` for a certificate the client rejects).
   *
   * Deno upgrades only the client's side of a connection with no read in
   * flight, so the TLS engine runs on a private loopback connection
   * (127.0.0.1, an ephemeral port) that the socket splices onto this one:
   * `--allow-net` must cover 127.0.0.1 on any port.
   *
   * @example Upgrade both ends of a connection
   * ```ts
   * import { select, Socket } from "@asyncore/asyncore/select";
   * import { assert } from "@std/assert";
   *
   * const dir = "tests/fixtures/tls";
   * const cert = Deno.readTextFileSync(`${dir}/localhost.crt`);
   * const key = Deno.readTextFileSync(`${dir}/localhost.key`);
   * const caCert = Deno.readTextFileSync(`${dir}/ca.crt`);
   * using server = new Socket();
   * server.bind({ hostname: "127.0.0.1", port: 0 });
   * server.listen();
   * using client = new Socket();
   * client.connect(server.getsockname() as Deno.NetAddr);
   * await select([server], [], [], 5000);
   * using conn = server.accept()[0];
   * conn.startTls({ cert, key });
   * client.startTls({ hostname: "localhost", caCerts: [caCert] });
   * await select([], [conn], [], 5000);
   * await select([], [client], [], 5000);
   * assert(conn.secure && client.secure);
   * ```
   *
   * @param options `cert` and `key` for the server's side; `hostname` (by
   *   default the hostname connected to, else the peer's address) and
   *   `caCerts` for the client's.
   * @throws {Deno.errors.NotConnected} when the socket is not connected.
   * @throws {Deno.errors.AlreadyExists} when it already uses TLS.
   * @throws {Deno.errors.NotCapable} without permission for 127.0.0.1; and
   *   Deno's error for a bad certificate or key. The socket is unchanged.
   */
  startTls(options: TlsOptions = {}): void {
    this.#checkOpen("startTls");
    const tls = checkTlsOptions("options", options);
    if (this.#secure || this.#securing) {
      throw new Deno.errors.AlreadyExists(
        "startTls: the connection already uses TLS",
      );
    }
    if (this.#state !== "connected" || this.#conn === null) {
      throw new Deno.errors.NotConnected(
        "startTls: the socket is not connected",
      );
    }
    if (this.#error) throw this.#error;
    if (this.#shutWrite) {
      throw new Deno.errors.BrokenPipe(
        "startTls: the socket is shut for writing",
      );
    }
    const raw = this.#conn;
    const remote = raw.remoteAddr;
    const splice = new TlsSplice({
      raw,
      tls,
      hostname: this.#peerName ||
        (remote.transport === "tcp" ? remote.hostname : "localhost"),
      buffered: this.#rx.peek(this.#rx.length).slice(),
      readInFlight: this.#reading,
      onError: (error) => {
        if (this.#fd >= 0) this.#fail(error);
      },
    });
    this.#rx.clear(); // handed to the TLS engine
    this.#eof = false; // the raw end of stream is the engine's to report
    this.#raw = raw;
    this.#conn = null;
    this.#splice = splice;
    this.#securing = true;
    this.#handoff = this.#reading;
    this.#plainTx = this.#tx.length;
    if (this.#plainTx === 0) splice.startOutput();
    splice.ready.then(
      (conn) => this.#secured(conn),
      (error) => this.#insecure(error),
    );
  }

  /**
   * Returns up to `bufsize` bytes already received.
   *
   * @param bufsize The most bytes to return: a positive integer.
   * @returns The bytes; an empty array at end of stream. The array is the
   *   caller's to keep: the socket never writes to that memory again. A short
   *   read is a view of a 64 KiB arena that other reads share, and keeps that
   *   arena alive; copy it (`slice()`) to hold a little data for long.
   * @throws {Deno.errors.WouldBlock} when nothing is buffered.
   * @throws {Deno.errors.ConnectionReset} (or another disconnect error) once
   *   the peer is gone and the buffer is drained. Deno reports most resets
   *   seen by a read as end of stream, so a reset usually shows as an empty
   *   array here and as an error on the next `send()`.
   */
  recv(bufsize: number): Uint8Array {
    checkSize("bufsize", bufsize);
    this.#checkOpen("recv");
    if (this.#rx.length > 0) {
      const data = this.#rx.take(bufsize);
      this.#startRead();
      return data;
    }
    if (this.#error) throw this.#error;
    if (this.#eof || this.#shutRead) return EMPTY;
    if (this.#state !== "connected" && this.#state !== "connecting") {
      throw new Deno.errors.NotConnected("recv: the socket is not connected");
    }
    // While connecting, too: a kernel says EAGAIN then, not ENOTCONN.
    throw new Deno.errors.WouldBlock("recv: no data is buffered");
  }

  /**
   * Copies as much of `data` as fits into the send buffer. The bytes are
   * delivered in order, even if {@linkcode Socket.close} follows at once.
   *
   * @param data The bytes to send (strings are UTF-8 encoded).
   * @returns How many bytes were accepted.
   * @throws {Deno.errors.WouldBlock} when the send buffer is full.
   */
  send(data: Uint8Array | string): number {
    const bytes = toBytes("data", data);
    this.#checkOpen("send");
    if (this.#error) throw this.#error;
    if (this.#state === "connecting") {
      throw new Deno.errors.WouldBlock("send: the connect is in progress");
    }
    if (this.#state !== "connected") {
      throw new Deno.errors.NotConnected("send: the socket is not connected");
    }
    if (this.#shutWrite) {
      throw new Deno.errors.BrokenPipe("send: the socket is shut for writing");
    }
    if (bytes.length === 0) return 0;
    const room = this.#txLimit - this.#tx.length;
    if (room <= 0) {
      throw new Deno.errors.WouldBlock("send: the send buffer is full");
    }
    const count = Math.min(room, bytes.length);
    this.#tx.append(
      count === bytes.length ? bytes : bytes.subarray(0, count),
      this.#writing,
    );
    this.#scheduleWrite();
    return count;
  }

  /**
   * Ends one or both directions. Shutting the write side sends end of stream
   * once the send buffer is flushed; shutting the read side discards what is
   * buffered and makes `recv` return an empty array.
   *
   * @param how `"read"`, `"write"` or `"both"`.
   */
  shutdown(how: ShutdownHow): void {
    if (how !== "read" && how !== "write" && how !== "both") {
      throw new TypeError(
        `how must be "read", "write" or "both", got ${describe(how)}`,
      );
    }
    this.#checkOpen("shutdown");
    if (this.#state !== "connected") {
      throw new Deno.errors.NotConnected(
        "shutdown: the socket is not connected",
      );
    }
    if (how !== "write") {
      this.#shutRead = true;
      this.#rx.clear();
      notify(this);
    }
    if (how !== "read" && !this.#shutWrite) {
      this.#shutWrite = true;
      this.#finishWrites();
      notify(this); // now writable: send() fails at once instead of blocking
    }
  }

  /**
   * Closes the socket; safe to call twice. Bytes already accepted by `send`
   * are still delivered, then the connection is closed.
   */
  close(): void {
    if (this.closed) return;
    fds.release(this.#fd);
    this.#fd = -1;
    this.#rx.clear();
    this.#region = null;
    this.#listener?.close();
    this.#listener = null;
    for (const sock of this.#pending) sock.close();
    this.#pending = [];
    this.#lingering = true;
    this.#finishWrites();
    if (this.#conn !== null || this.#splice !== null) {
      // Still flushing: give up after the linger timeout, as a kernel does.
      this.#lingerTimer = setTimeout(() => {
        this.#tx.clear();
        this.#release();
      }, this.#lingerTimeout);
    }
    notify(this, true);
    this.#checkReleased();
  }

  /** Closes the socket (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Resolves once the socket is closed and has let go of its OS socket: for
   * a listening socket, once its address can be bound again; for a
   * connection, once the bytes `send()` accepted are delivered (or the
   * linger timeout dropped them).
   *
   * Python frees a listening port inside `close()`. Deno cannot: the accept
   * waiting on the listener holds the OS socket until that accept is
   * cancelled, in the next turn of the event loop (a timer or I/O callback;
   * awaiting a promise is not enough). Await this before binding the same
   * address again in the same process.
   *
   * @example Rebinding a port
   * ```ts
   * import { Socket } from "@asyncore/asyncore/select";
   * import { assertEquals } from "@std/assert";
   *
   * const server = new Socket();
   * server.bind({ hostname: "127.0.0.1", port: 0 });
   * server.listen(5);
   * const { port } = server.getsockname() as Deno.NetAddr;
   * server.close();
   * await server.waitClosed();
   * using again = new Socket();
   * again.bind({ hostname: "127.0.0.1", port });
   * assertEquals((again.getsockname() as Deno.NetAddr).port, port);
   * ```
   *
   * @returns A promise that resolves once the OS socket is released.
   */
  waitClosed(): Promise<void> {
    this.#released ??= Promise.withResolvers();
    this.#checkReleased();
    return this.#released.promise;
  }

  #checkReleased(): void {
    if (
      this.#fd < 0 && !this.#acceptingNow && this.#conn === null &&
      this.#splice === null
    ) this.#released?.resolve();
  }

  /** The local address. */
  getsockname(): Deno.Addr {
    this.#checkOpen("getsockname");
    const local = this.#listener?.addr ??
      (this.#raw ?? this.#conn)?.localAddr;
    if (local) return tcpAddr(local);
    return this.#transport === "unix"
      ? { transport: "unix", path: "" }
      : { transport: "tcp", hostname: "0.0.0.0", port: 0 };
  }

  /**
   * The peer's address.
   *
   * @throws {Deno.errors.NotConnected} when the socket is not connected.
   */
  getpeername(): Deno.Addr {
    this.#checkOpen("getpeername");
    const conn = this.#raw ?? this.#conn;
    if (conn === null) {
      throw new Deno.errors.NotConnected(
        "getpeername: the socket is not connected",
      );
    }
    return tcpAddr(conn.remoteAddr);
  }

  /**
   * Turns Nagle's algorithm off (`true`) or on; applied once connected.
   * Ignored on Unix sockets, and on TLS connections once made by `connect()`
   * or accepted from a TLS listener (Deno's `TlsConn` has no such setting:
   * set it before `connect()`).
   */
  setNoDelay(noDelay = true): void {
    this.#checkOpen("setNoDelay");
    this.#noDelay = noDelay;
    this.#applyOptions();
  }

  /**
   * Turns TCP keep-alive on or off; applied once connected. Ignored where
   * {@linkcode Socket.setNoDelay} is.
   */
  setKeepAlive(keepAlive = true): void {
    this.#checkOpen("setKeepAlive");
    this.#keepAlive = keepAlive;
    this.#applyOptions();
  }

  /**
   * The readiness bits (read, write, error) the socket has now.
   *
   * @ignore
   */
  get [kReadiness](): number {
    if (this.#fd < 0) return 0;
    let bits = 0;
    if (this.#error) return READABLE | WRITABLE | EXCEPTIONAL;
    switch (this.#state) {
      case "connected":
        if (this.#securing) return 0;
        if (this.#rx.length > 0 || this.#eof || this.#shutRead) {
          bits |= READABLE;
        }
        if (this.#shutWrite || this.#tx.length < this.#txLimit) {
          bits |= WRITABLE;
        }
        return bits;
      case "listening":
        return this.#pending.length > 0 || this.#acceptError ? READABLE : 0;
      default:
        return 0;
    }
  }

  /**
   * A count that grows whenever bytes move in or out.
   *
   * @ignore
   */
  get [kActivity](): number {
    return this.#activity;
  }

  /** Whether the peer has ended its stream and nothing is left to read. */
  get [kHangup](): boolean {
    return this.#error !== null ||
      (this.#eof && this.#rx.length === 0 &&
        (this.#shutWrite || this.#conn === null));
  }

  #checkOpen(operation: string): void {
    if (this.#fd < 0) throw closedError(operation);
  }

  #attach(conn: Deno.Conn, handshake = false): void {
    this.#conn = conn;
    this.#state = "connected";
    this.#activity++;
    this.#applyOptions();
    if (handshake) {
      // Nothing shows until the handshake is over: an accepted TLS connection
      // is not ready before the peer has proved it speaks TLS.
      this.#securing = true;
      (conn as Deno.TlsConn).handshake().then(
        () => this.#secured(conn),
        (error) => this.#insecure(error),
      );
      return;
    }
    this.#startRead();
    notify(this);
  }

  /** A handshake completed: `conn` carries the plaintext from now on. */
  #secured(conn: Deno.Conn): void {
    this.#securing = false;
    this.#secure = true;
    this.#conn = conn;
    this.#activity++;
    this.#startRead();
    this.#startWrite();
    this.#finishWrites();
    if (this.#fd >= 0) notify(this);
  }

  #insecure(error: Error): void {
    if (this.#fd < 0) {
      this.#release();
      return;
    }
    this.#fail(error);
  }

  #applyOptions(
    conn: Deno.Conn | null = this.#raw ?? this.#conn,
  ): void {
    const tcp = conn as Deno.TcpConn | null;
    // A TlsConn has no socket options; neither has a Unix connection.
    if (tcp === null || typeof tcp.setNoDelay !== "function") return;
    if (this.#noDelay !== undefined) tcp.setNoDelay(this.#noDelay);
    if (this.#keepAlive !== undefined) tcp.setKeepAlive(this.#keepAlive);
  }

  // Receive side: one read in flight while there is room in the buffer.

  #startRead(): void {
    if (
      this.#reading || this.#eof || this.#error || this.#conn === null ||
      this.#fd < 0 || this.#securing
    ) return;
    const size = Math.min(this.#readSize, this.#rxLimit - this.#rx.length);
    if (size <= 0) return;
    let region = this.#region;
    let used = this.#regionUsed;
    // A small reader reads into what is left of its region until too little
    // is, so one region serves several short messages.
    if (
      region === null || (region.length - used < size &&
        (region.length - used < MIN_TAIL || this.#readSize > MIN_READ_SIZE))
    ) {
      region = this.#region = allocateRegion(
        this.#readSize === MIN_READ_SIZE
          ? MIN_READ_SIZE
          : Math.min(Math.max(this.#readSize * 8, size), MAX_REGION_SIZE),
      );
      used = this.#regionUsed = 0;
    }
    const target = region.subarray(used, Math.min(used + size, region.length));
    this.#readTarget = target;
    this.#reading = true;
    this.#conn.read(target).then(this.#onRead, this.#onReadError);
  }

  #onRead = (count: number | null): void => {
    this.#reading = false;
    if (this.#fd < 0) return;
    this.#activity++;
    if (this.#handoff) {
      // The read in flight at a STARTTLS upgrade: its bytes are TLS records.
      this.#handoff = false;
      const target = this.#readTarget!;
      this.#readTarget = null;
      this.#splice?.feed(count === null ? null : target.slice(0, count));
      this.#startRead();
      return;
    }
    if (count === null) {
      this.#eof = true;
      this.#region = this.#readTarget = null;
      notify(this);
      return;
    }
    const target = this.#readTarget!;
    if (!this.#shutRead) {
      // A dropped read (shut for reading) leaves the region free for reuse.
      this.#regionUsed += count;
      this.#rx.push(
        count === target.length ? target : target.subarray(0, count),
      );
    }
    if (count === target.length) {
      this.#readSize = Math.min(this.#readSize * 2, MAX_READ_SIZE);
    } else if (count < this.#readSize >> 2 && this.#readSize > MIN_READ_SIZE) {
      this.#readSize >>= 1;
    }
    notify(this);
    this.#startRead();
  };

  #onReadError = (error: Error): void => {
    this.#reading = false;
    this.#handoff = false;
    if (this.#fd < 0) return;
    this.#fail(error);
  };

  // Send side: one write in flight while there is something to send.

  /**
   * Starts the write at the end of the current turn, so what several
   * `send()` calls in one handler (or one pass) accepted goes out in one
   * write instead of one each.
   */
  #scheduleWrite(): void {
    if (this.#writing || this.#writeQueued) return;
    this.#writeQueued = true;
    queueMicrotask(
      this.#queuedWrite ??= () => {
        this.#writeQueued = false;
        this.#startWrite();
      },
    );
  }

  #startWrite(): void {
    if (this.#writing || this.#tx.length === 0) return;
    // Before a STARTTLS upgrade completes, only the plaintext head goes out.
    const plain = this.#plainTx > 0;
    const conn = plain ? this.#raw : this.#securing ? null : this.#conn;
    if (conn === null) return;
    this.#writing = true;
    // Made on first use: an idle connection carries as few closures as it can.
    this.#writeCallbacks ??= [
      (count) => this.#onWrite(count),
      (error) => this.#onWriteError(error),
    ];
    conn.write(
      this.#tx.peek(
        plain ? Math.min(this.#plainTx, MAX_WRITE_SIZE) : MAX_WRITE_SIZE,
      ),
    ).then(...this.#writeCallbacks);
  }

  #onWrite(count: number): void {
    this.#writing = false;
    this.#activity++;
    const wasFull = this.#tx.length >= this.#txLimit;
    this.#tx.discard(count);
    if (this.#plainTx > 0) {
      this.#plainTx = Math.max(0, this.#plainTx - count);
      if (this.#plainTx === 0) this.#splice?.startOutput();
    }
    if (this.#tx.length > 0) this.#startWrite();
    else this.#finishWrites();
    if (wasFull && this.#tx.length < this.#txLimit && this.#fd >= 0) {
      notify(this);
    }
  }

  #onWriteError(error: Error): void {
    this.#writing = false;
    this.#tx.clear();
    this.#plainTx = 0;
    if (this.#fd < 0) this.#release();
    else this.#fail(error);
  }

  /** Ends the write side or closes once everything accepted has been written. */
  #finishWrites(): void {
    if (this.#writing || this.#tx.length > 0) return;
    if (this.#lingering) {
      this.#release();
    } else if (this.#shutWrite && this.#conn !== null && !this.#securing) {
      this.#conn.closeWrite().catch(() => {});
    }
  }

  #fail(error: Error): void {
    // The first error is the cause; later ones (a TLS read after the raw
    // connection under it failed) follow from it.
    this.#error ??= error;
    this.#tx.clear();
    this.#plainTx = 0;
    notify(this);
  }

  #release(): void {
    clearTimeout(this.#lingerTimer);
    const conn = this.#conn;
    this.#conn = null;
    if (conn !== null) {
      try {
        conn.close();
      } catch {
        // Already closed by a failed operation.
      }
    }
    // A STARTTLS splice closes the raw connection once the TLS side is done.
    this.#splice?.release();
    this.#splice = null;
    this.#checkReleased();
  }

  // Listening side: one accept in flight while the backlog has room.

  #startAccept(): void {
    if (
      this.#acceptingNow || this.#listener === null || this.#acceptError ||
      this.#state !== "listening" || this.#pending.length >= this.#backlog
    ) return;
    this.#acceptingNow = true;
    this.#listener.accept().then(
      (conn) => this.#onAccept(conn),
      (error) => this.#onAcceptError(error),
    );
  }

  #onAccept(conn: Deno.Conn): void {
    this.#acceptingNow = false;
    if (this.#fd < 0) {
      conn.close();
      this.#checkReleased();
      return;
    }
    this.#pending.push(
      Socket.fromConn(conn, {
        recvBufferSize: this.#rxLimit,
        sendBufferSize: this.#txLimit,
      }),
    );
    notify(this);
    this.#startAccept();
  }

  #onAcceptError(error: Error): void {
    this.#acceptingNow = false;
    if (this.#fd < 0) {
      this.#checkReleased();
      return;
    }
    if (
      error instanceof Deno.errors.ConnectionAborted ||
      error instanceof Deno.errors.ConnectionReset ||
      error instanceof Deno.errors.NotConnected
    ) {
      // The peer reset before the accept was done (Deno then fails to read
      // its address): that connection is gone, the listener is fine. Skip
      // it, as a kernel's accept() does.
      this.#startAccept();
      return;
    }
    this.#acceptError = error;
    notify(this);
  }
}

/** Anything {@linkcode select} and {@linkcode Poll} accept: a socket number or an object with `fileno()`. */
export type FileLike = number | { fileno(): number };

/** Options for {@linkcode select} and {@linkcode Poll.poll}. */
export interface WaitOptions {
  /** Ends the wait early, as if the timeout had passed. */
  signal?: AbortSignal;
}

function resolveSocket(name: string, item: FileLike): Socket {
  if (item instanceof Socket) {
    if (item.closed) throw closedError(`${name}: select`);
    return item;
  }
  let fd: unknown = item;
  if (typeof item === "object" && item !== null) {
    if (typeof item.fileno !== "function") {
      throw new TypeError(
        `${name} must hold sockets, numbers or objects with fileno(), got ${
          describe(item)
        }`,
      );
    }
    fd = item.fileno();
  }
  if (typeof fd !== "number") {
    throw new TypeError(
      `${name} must hold sockets, numbers or objects with fileno(), got ${
        describe(item)
      }`,
    );
  }
  const sock = fds.get(fd);
  if (sock === undefined) {
    throw new Deno.errors.BadResource(`${name}: ${fd} is not a live socket`);
  }
  return sock;
}

/**
 * Waits until some of the given sockets are ready: Python's
 * `select.select()`. `rlist` sockets are ready when `recv` or `accept` will
 * not block, `wlist` ones when `send` will not block (or a connect finished),
 * `xlist` ones when they are in an error state.
 *
 * @example Wait for a connection with a bound
 * ```ts
 * import { select, Socket } from "@asyncore/asyncore/select";
 * import { assertEquals } from "@std/assert";
 *
 * using server = new Socket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen();
 * assertEquals(await select([server], [], [], 0), [[], [], []]);
 * using client = new Socket();
 * client.connect(server.getsockname() as Deno.NetAddr);
 * const [readable] = await select([server], [], [], 5000);
 * assertEquals(readable, [server]);
 * server.accept()[0].close();
 * ```
 *
 * @param rlist Objects to wait on for reading.
 * @param wlist Objects to wait on for writing.
 * @param xlist Objects to wait on for an error state.
 * @param timeout The longest wait in ms; `undefined` waits until something
 *   is ready, `0` polls.
 * @param options An abort signal.
 * @returns The ready subsets of the three lists: the same objects.
 * @throws {Deno.errors.BadResource} when a socket is closed, before the call
 *   or while it waits.
 */
export async function select<
  R extends FileLike,
  W extends FileLike,
  X extends FileLike,
>(
  rlist: readonly R[],
  wlist: readonly W[],
  xlist: readonly X[],
  timeout?: number,
  options: WaitOptions = {},
): Promise<[R[], W[], X[]]> {
  for (
    const [name, list] of [["rlist", rlist], ["wlist", wlist], [
      "xlist",
      xlist,
    ]] as const
  ) {
    if (!Array.isArray(list)) {
      throw new TypeError(`${name} must be an array, got ${describe(list)}`);
    }
  }
  const limit = checkTimeout("timeout", timeout);
  const rs = rlist.map((item) => resolveSocket("rlist", item));
  const ws = wlist.map((item) => resolveSocket("wlist", item));
  const xs = xlist.map((item) => resolveSocket("xlist", item));
  const scan = (): [R[], W[], X[]] => [
    rlist.filter((_, i) => (rs[i][kReadiness] & READABLE) !== 0),
    wlist.filter((_, i) => (ws[i][kReadiness] & WRITABLE) !== 0),
    xlist.filter((_, i) => (xs[i][kReadiness] & EXCEPTIONAL) !== 0),
  ];
  const isEmpty = ([r, w, x]: [R[], W[], X[]]) =>
    r.length === 0 && w.length === 0 && x.length === 0;
  let result = scan();
  if (!isEmpty(result) || limit === 0) {
    const turn = passWithoutWait();
    return turn ? turn.then(scan) : result;
  }
  const interest = new Map<Source, number>();
  const watch = (socks: Socket[], bit: number) => {
    for (const sock of socks) {
      interest.set(sock, (interest.get(sock) ?? 0) | bit);
    }
  };
  watch(rs, READABLE);
  watch(ws, WRITABLE);
  watch(xs, EXCEPTIONAL);
  const deadline = limit === undefined ? Infinity : performance.now() + limit;
  const { signal } = options;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0 || signal?.aborted) return result;
    await waitFor(interest, left === Infinity ? undefined : left, signal);
    // As if select() were called again: a socket closed meanwhile is an
    // error, not something to wait on forever.
    for (const sock of interest.keys()) {
      if ((sock as Socket).closed) throw closedError("select");
    }
    result = scan();
    if (!isEmpty(result)) return result;
  }
}

/** There is data to read (or a connection to accept, or end of stream). */
export const POLLIN = 0x001;
/** There is urgent data to read; stream sockets here never have any. */
export const POLLPRI = 0x002;
/** Writing will not block. */
export const POLLOUT = 0x004;
/** The socket is in an error state; always reported. */
export const POLLERR = 0x008;
/** The connection is over: end of stream both ways, or an error; always reported. */
export const POLLHUP = 0x010;
/** The number names no live socket; always reported. */
export const POLLNVAL = 0x020;

function toFd(name: string, item: FileLike): number {
  const fd = typeof item === "object" && item !== null &&
      typeof item.fileno === "function"
    ? item.fileno()
    : item;
  if (typeof fd !== "number" || !Number.isInteger(fd) || fd < 0) {
    throw new TypeError(
      `${name} must be a socket number or an object with fileno(), got ${
        describe(item)
      }`,
    );
  }
  return fd;
}

/**
 * Python's `select.poll()`: a set of registered sockets and the events wanted
 * from each, waited on together.
 *
 * @example Poll a listening socket
 * ```ts
 * import { Poll, POLLIN, Socket } from "@asyncore/asyncore/select";
 * import { assertEquals } from "@std/assert";
 *
 * using server = new Socket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen();
 * const poller = new Poll();
 * poller.register(server, POLLIN);
 * using client = new Socket();
 * client.connect(server.getsockname() as Deno.NetAddr);
 * assertEquals(await poller.poll(5000), [[server.fileno(), POLLIN]]);
 * server.accept()[0].close();
 * ```
 */
export class Poll {
  #registered = new Map<number, number>();

  /**
   * Watches a socket for the events in `eventmask`; registering it again
   * replaces the mask.
   *
   * @param fd A socket number or an object with `fileno()`.
   * @param eventmask `POLLIN`, `POLLPRI` and `POLLOUT` bits.
   */
  register(fd: FileLike, eventmask: number = POLLIN | POLLPRI | POLLOUT): void {
    this.#registered.set(toFd("fd", fd), this.#checkMask(eventmask));
  }

  /**
   * Changes the mask of a registered socket.
   *
   * @throws {Deno.errors.NotFound} when it is not registered.
   */
  modify(fd: FileLike, eventmask: number): void {
    const key = toFd("fd", fd);
    if (!this.#registered.has(key)) {
      throw new Deno.errors.NotFound(`modify: ${key} is not registered`);
    }
    this.#registered.set(key, this.#checkMask(eventmask));
  }

  /**
   * Stops watching a socket.
   *
   * @throws {Deno.errors.NotFound} when it is not registered.
   */
  unregister(fd: FileLike): void {
    const key = toFd("fd", fd);
    if (!this.#registered.delete(key)) {
      throw new Deno.errors.NotFound(`unregister: ${key} is not registered`);
    }
  }

  /**
   * Waits for events on the registered sockets.
   *
   * @param timeout The longest wait in ms; `undefined` or a negative number
   *   waits until an event, `0` polls.
   * @param options An abort signal.
   * @returns `[fd, revents]` pairs for the sockets with events.
   */
  async poll(
    timeout?: number,
    options: WaitOptions = {},
  ): Promise<[number, number][]> {
    const limit = typeof timeout === "number" && timeout < 0
      ? undefined
      : checkTimeout("timeout", timeout);
    let result = this.#scan();
    if (result.length > 0 || limit === 0) {
      const turn = passWithoutWait();
      return turn ? turn.then(() => this.#scan()) : result;
    }
    const interest = new Map<Source, number>();
    for (const [fd, mask] of this.#registered) {
      const sock = fds.get(fd);
      if (sock === undefined) continue;
      interest.set(
        sock,
        EXCEPTIONAL | (mask & (POLLIN | POLLPRI) ? READABLE : 0) |
          (mask & POLLOUT ? WRITABLE : 0),
      );
    }
    const deadline = limit === undefined ? Infinity : performance.now() + limit;
    const { signal } = options;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0 || signal?.aborted) return result;
      await waitFor(interest, left === Infinity ? undefined : left, signal);
      result = this.#scan();
      if (result.length > 0) return result;
    }
  }

  #checkMask(eventmask: number): number {
    if (!Number.isInteger(eventmask) || eventmask < 0 || eventmask > 0xffff) {
      throw new RangeError(
        `eventmask must be an integer of POLL* bits, got ${
          describe(eventmask)
        }`,
      );
    }
    return eventmask;
  }

  #scan(): [number, number][] {
    const events: [number, number][] = [];
    for (const [fd, mask] of this.#registered) {
      const sock = fds.get(fd);
      if (sock === undefined) {
        events.push([fd, POLLNVAL]);
        continue;
      }
      const bits = sock[kReadiness];
      let revents = 0;
      if (bits & READABLE && mask & POLLIN) revents |= POLLIN;
      if (bits & WRITABLE && mask & POLLOUT) revents |= POLLOUT;
      if (bits & EXCEPTIONAL) revents |= POLLERR;
      if (sock[kHangup]) revents |= POLLHUP;
      if (revents !== 0) events.push([fd, revents]);
    }
    return events;
  }
}
