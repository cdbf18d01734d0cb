/**
 * Non-blocking sockets for Deno: Python's `socket` in non-blocking mode.
 *
 * Deno has no readiness API, so a {@linkcode Socket} keeps the buffers a
 * kernel would: it reads ahead into a bounded receive buffer and flushes a
 * bounded send buffer in the background, so that `recv`, `send` and
 * `accept` are synchronous and never block. Wait for readiness with
 * `select()` or `Poll` from `@asyncore/asyncore/select`, or serve sockets
 * with the loop of `@asyncore/asyncore/asyncore`. Sockets speak TLS too:
 * from the first byte with `SocketOptions.tls`, or after a plaintext start
 * with {@linkcode Socket.startTls} (STARTTLS).
 *
 * @example Bind, listen and connect
 * ```ts
 * import { Socket } from "@asyncore/asyncore/socket";
 * import { assertEquals } from "@std/assert";
 *
 * using server = new Socket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen();
 * using client = new Socket();
 * client.connect(server.getsockname() as Deno.NetAddr);
 * assertEquals(client.transport, "tcp");
 * ```
 *
 * @module
 */

import { ConnSource } from "./_conn_source.ts";
import { checkTlsOptions, isServerSide } from "./_tls.ts";
import { setSourceAccessor, sockets } from "./_sockets.ts";
import {
  checkAddress,
  checkCount,
  checkSize,
  checkTimeout,
  describe,
  toBytes,
} from "./_validate.ts";

/**
 * A network address: TCP host and port, or a Unix socket path.
 *
 * @example Either kind
 * ```ts
 * import type { Address } from "@asyncore/asyncore/socket";
 *
 * const tcp: Address = { hostname: "127.0.0.1", port: 8080 };
 * const unix: Address = { path: "/tmp/echo.sock" };
 * ```
 */
export type Address = { hostname?: string; port: number } | { path: string };

/**
 * TLS settings for a {@linkcode Socket}: `cert` and `key` for the server's
 * side of the handshake, `hostname` and `caCerts` for the client's.
 *
 * @example Options for each side
 * ```ts
 * import type { TlsOptions } from "@asyncore/asyncore/socket";
 *
 * const server: TlsOptions = {
 *   cert: "-----BEGIN CERTIFICATE-----\n…",
 *   key: "-----BEGIN PRIVATE KEY-----\n…",
 * };
 * const client: TlsOptions = {
 *   hostname: "localhost",
 *   caCerts: ["-----BEGIN CERTIFICATE-----\n…"],
 * };
 * ```
 */
export interface TlsOptions {
  /**
   * The server's certificate chain, PEM-encoded. With `key`, a listening
   * socket accepts TLS connections and `startTls()` takes the server's side.
   */
  cert?: string;
  /** The private key of `cert`, PEM-encoded (RSA, EC or PKCS #8). */
  key?: string;
  /**
   * The name the server's certificate must carry (and the name sent as SNI).
   *
   * @default {the hostname connected to}
   */
  hostname?: string;
  /**
   * Root certificates (PEM) trusted besides the default ones, e.g. the CA of
   * a self-signed test certificate.
   */
  caCerts?: string[];
}

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
const EMPTY = new Uint8Array(0);

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
 * import { Socket } from "@asyncore/asyncore/socket";
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
 * import { Socket } from "@asyncore/asyncore/socket";
 * import { select } from "@asyncore/asyncore/select";
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
  static {
    setSourceAccessor((sock) => sock.#io);
  }

  readonly #transport: "tcp" | "unix";
  #fd: number;
  #io: ConnSource<Socket>;
  #tls: TlsOptions | null = null;
  // The hostname connected to: the name a client's STARTTLS verifies.
  #peerName = "";

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
    const recvBufferSize = checkSize(
      "options.recvBufferSize",
      options.recvBufferSize ?? DEFAULT_BUFFER_SIZE,
    );
    const sendBufferSize = checkSize(
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
    this.#io = new ConnSource<Socket>(
      recvBufferSize,
      sendBufferSize,
      (conn) =>
        Socket.fromConn(conn, {
          recvBufferSize: this.#io.reader.limit,
          sendBufferSize: this.#io.writer.limit,
        }),
    );
    this.#fd = sockets.allocate(this);
  }

  /**
   * Wraps a connection Deno has already made; the socket is connected.
   *
   * @example Wrap a `Deno.Conn`
   * ```ts
   * import { Socket } from "@asyncore/asyncore/socket";
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
    sock.#io.attach(
      conn,
      typeof (conn as Deno.TlsConn).handshake === "function",
    );
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
    return this.#io.error;
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
    return this.#io.secure;
  }

  /** The bound of the receive buffer, in bytes. */
  get recvBufferSize(): number {
    return this.#io.reader.limit;
  }
  set recvBufferSize(size: number) {
    this.#io.setRecvLimit(checkSize("recvBufferSize", size));
  }

  /** The bound of the send buffer, in bytes. */
  get sendBufferSize(): number {
    return this.#io.writer.limit;
  }
  set sendBufferSize(size: number) {
    this.#io.setSendLimit(checkSize("sendBufferSize", size));
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
    return this.#io.writer.lingerTimeout;
  }
  set lingerTimeout(ms: number) {
    const timeout = checkTimeout("lingerTimeout", ms);
    if (timeout === undefined) {
      throw new RangeError(
        `lingerTimeout must be a finite number of ms, got ${describe(ms)}`,
      );
    }
    this.#io.writer.lingerTimeout = timeout;
  }

  /** The number of received bytes waiting for `recv`. */
  get recvBuffered(): number {
    return this.#io.reader.rx.length;
  }

  /** The number of bytes `send` accepted that the peer has not been sent yet. */
  get sendBuffered(): number {
    return this.#io.writer.tx.length;
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
    const state = this.#io.state;
    if (state !== "fresh") {
      throw new Deno.errors.AlreadyExists(
        `bind: the socket is already ${state}`,
      );
    }
    const tls = this.#tls;
    if (tls !== null && !isServerSide(tls)) {
      throw new TypeError("bind: options.tls needs cert and key to listen");
    }
    this.#io.bind(options, tls);
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
    if (this.#io.state === "fresh") {
      if (this.#transport === "unix") {
        throw new Deno.errors.NotConnected(
          "listen: a Unix socket must be bound first",
        );
      }
      this.bind({ port: 0 });
    }
    const state = this.#io.state;
    if (state !== "bound" && state !== "listening") {
      throw new Deno.errors.NotConnected(`listen: the socket is ${state}`);
    }
    this.#io.listen(Math.max(1, Math.min(backlog, 65535)));
  }

  /**
   * Takes a pending connection.
   *
   * @returns The connected socket and the peer's address.
   * @throws {Deno.errors.WouldBlock} when no connection is pending.
   */
  accept(): [Socket, Deno.Addr] {
    this.#checkOpen("accept");
    if (this.#io.state !== "listening") {
      throw new Deno.errors.NotConnected("accept: the socket is not listening");
    }
    const sock = this.#io.accept();
    if (sock === undefined) {
      const error = this.#io.takeAcceptError();
      if (error) throw error;
      throw new Deno.errors.WouldBlock("accept: no connection is pending");
    }
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
    const state = this.#io.state;
    if (state === "connecting") {
      throw new Deno.errors.Busy("connect: a connect is already in progress");
    }
    if (state === "bound" || state === "listening") {
      throw new Deno.errors.NotSupported(
        `connect: the socket is ${state}; Deno cannot connect from a bound address`,
      );
    }
    if (state !== "fresh") {
      throw new Deno.errors.AlreadyExists(
        `connect: the socket is already ${state}`,
      );
    }
    const tls = this.#tls;
    if (tls !== null && isServerSide(tls)) {
      throw new Deno.errors.NotSupported(
        "connect: client certificates are not supported; options.tls.cert and key are for listening",
      );
    }
    if (options.transport === "tcp") this.#peerName = options.hostname;
    this.#io.connect(options, tls);
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
   * import { Socket } from "@asyncore/asyncore/socket";
   * import { select } from "@asyncore/asyncore/select";
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
    const io = this.#io;
    if (io.secure || io.securing) {
      throw new Deno.errors.AlreadyExists(
        "startTls: the connection already uses TLS",
      );
    }
    if (io.state !== "connected" || io.conn === null) {
      throw new Deno.errors.NotConnected(
        "startTls: the socket is not connected",
      );
    }
    if (io.error) throw io.error;
    if (io.writer.shutWrite) {
      throw new Deno.errors.BrokenPipe(
        "startTls: the socket is shut for writing",
      );
    }
    const remote = io.conn.remoteAddr;
    io.startTls(
      tls,
      this.#peerName ||
        (remote.transport === "tcp" ? remote.hostname : "localhost"),
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
    const io = this.#io;
    const data = io.read(bufsize);
    if (data !== null) return data;
    if (io.error) throw io.error;
    if (io.reader.eof || io.reader.shutRead) return EMPTY;
    if (io.state !== "connected" && io.state !== "connecting") {
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
    const io = this.#io;
    if (io.error) throw io.error;
    if (io.state === "connecting") {
      throw new Deno.errors.WouldBlock("send: the connect is in progress");
    }
    if (io.state !== "connected") {
      throw new Deno.errors.NotConnected("send: the socket is not connected");
    }
    if (io.writer.shutWrite) {
      throw new Deno.errors.BrokenPipe("send: the socket is shut for writing");
    }
    if (bytes.length === 0) return 0;
    const count = io.write(bytes);
    if (count === 0) {
      throw new Deno.errors.WouldBlock("send: the send buffer is full");
    }
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
    if (this.#io.state !== "connected") {
      throw new Deno.errors.NotConnected(
        "shutdown: the socket is not connected",
      );
    }
    this.#io.shutdown(how !== "write", how !== "read");
  }

  /**
   * Closes the socket; safe to call twice. Bytes already accepted by `send`
   * are still delivered, then the connection is closed.
   */
  close(): void {
    if (this.closed) return;
    sockets.release(this.#fd);
    this.#fd = -1;
    this.#io.close();
  }

  /** Closes the socket (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** The local address. */
  getsockname(): Deno.Addr {
    this.#checkOpen("getsockname");
    const io = this.#io;
    const local = io.listener?.addr ?? (io.raw ?? io.conn)?.localAddr;
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
    const conn = this.#io.raw ?? this.#io.conn;
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
    this.#io.noDelay = noDelay;
    this.#io.applyOptions();
  }

  /**
   * Turns TCP keep-alive on or off; applied once connected. Ignored where
   * {@linkcode Socket.setNoDelay} is.
   */
  setKeepAlive(keepAlive = true): void {
    this.#checkOpen("setKeepAlive");
    this.#io.keepAlive = keepAlive;
    this.#io.applyOptions();
  }

  #checkOpen(operation: string): void {
    if (this.#fd < 0) throw closedError(operation);
  }
}
