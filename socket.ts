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

import type { SocketBackend } from "./_backend_api.ts";
import { checkTlsOptions, isServerSide } from "./_tls.ts";
import { setSource, sockets } from "./_socket_table.ts";
import {
  checkBackend,
  connSocket,
  defaultBackend,
  fileSocket,
  openSocket,
  setDefault,
  startTls,
} from "./_backends.ts";
import type { Address, Backend, TlsOptions } from "./_types.ts";
import {
  checkAddress,
  checkBytes,
  checkCount,
  checkSize,
  checkTimeout,
  describe,
  toBytes,
} from "./_validate.ts";

export type { Address, Backend, TlsOptions } from "./_types.ts";

/**
 * Sets the backend of the sockets made from now on without a
 * `SocketOptions.backend` of their own (sockets made with `tls` always use
 * `"deno"`). Without a call, the default is the environment variable
 * `ASYNCORE_BACKEND` (`"deno"` or `"epoll"`), read once when the first socket
 * is made if the env permission for it is granted (treated as unset when it
 * is not), else `"deno"`.
 *
 * @example Make the default explicit
 * ```ts
 * import { getDefaultBackend, setDefaultBackend } from "@asyncore/asyncore/socket";
 * import { assertEquals } from "@std/assert";
 *
 * const before = getDefaultBackend();
 * setDefaultBackend("deno");
 * assertEquals(getDefaultBackend(), "deno");
 * setDefaultBackend(before);
 * ```
 *
 * @param backend `"deno"`, or `"epoll"` (Linux on x86_64 or aarch64, with
 *   `--allow-ffi`).
 * @throws {Deno.errors.NotCapable} for `"epoll"` without `--allow-ffi`.
 * @throws {Deno.errors.NotSupported} for `"epoll"` off Linux or on another
 *   CPU. Both name the reason and the fix; nothing falls back silently.
 */
export function setDefaultBackend(backend: Backend): void {
  setDefault(checkBackend("backend", backend));
}

/**
 * The backend sockets are made with when they do not choose one (see
 * {@linkcode setDefaultBackend}).
 *
 * @example Read it
 * ```ts
 * import { getDefaultBackend } from "@asyncore/asyncore/socket";
 * import { assert } from "@std/assert";
 *
 * assert(["deno", "epoll"].includes(getDefaultBackend()));
 * ```
 *
 * @returns `"deno"` or `"epoll"`.
 */
export function getDefaultBackend(): Backend {
  return defaultBackend();
}

/** Options for {@linkcode Socket}. */
export interface SocketOptions {
  /**
   * Where the socket lives. `"deno"`: Deno's own connections, which the
   * socket drives with promises, keeping the buffers a kernel would (Deno's
   * sandbox holds: `--allow-net` decides what it reaches). `"epoll"`: an OS
   * descriptor, non-blocking, waited on with epoll through FFI (Linux on
   * x86_64 or aarch64; needs `--allow-ffi`, which gives up Deno's sandbox for
   * the whole process). See the README's "Backends" section for the
   * differences.
   *
   * @default {the process-wide default: see setDefaultBackend()}
   */
  backend?: Backend;
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
   * only, on the `"deno"` backend (a socket with `tls` uses it whatever the
   * default); see {@linkcode Socket.startTls} to upgrade a plaintext
   * connection, which works on both.
   */
  tls?: TlsOptions;
}

/** How much of a connection {@linkcode Socket.shutdown} ends. */
export type ShutdownHow = "read" | "write" | "both";

const DEFAULT_BUFFER_SIZE = 65536;

/** The part of `buffer` a `recvInto(buffer, nbytes)` may fill, checked. */
function intoTarget(buffer: unknown, nbytes: unknown): Uint8Array {
  // Our own view of the caller's memory: its length is the engine's.
  const view = checkBytes("buffer", buffer);
  let size = view.length;
  if (nbytes !== undefined && nbytes !== 0) {
    size = checkSize("nbytes", nbytes);
    if (size > view.length) {
      throw new RangeError(
        `nbytes must be at most the buffer's length (${view.length}), got ${size}`,
      );
    }
  }
  if (size === 0) {
    throw new RangeError(
      "buffer must have room for at least one byte: 0 received means end of stream",
    );
  }
  return size === view.length ? view : view.subarray(0, size);
}

/** Whether a number is a live socket's (a descriptor must move past it). */
function isTaken(fd: number): boolean {
  return sockets.has(fd);
}

/** The buffer sizes `options` ask for, checked (the default where unset). */
function bufferSizes(
  options: Pick<SocketOptions, "recvBufferSize" | "sendBufferSize">,
): [recv: number, send: number] {
  return [
    checkSize(
      "options.recvBufferSize",
      options.recvBufferSize ?? DEFAULT_BUFFER_SIZE,
    ),
    checkSize(
      "options.sendBufferSize",
      options.sendBufferSize ?? DEFAULT_BUFFER_SIZE,
    ),
  ];
}

function closedError(operation: string): Deno.errors.BadResource {
  return new Deno.errors.BadResource(`${operation} on a closed socket`);
}

// The options objects this module makes for a Socket over a backend made
// elsewhere (accept(), fromConn(), FileWrapper), with that backend.
const adopted = new WeakMap<SocketOptions, SocketBackend>();

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
  readonly #transport: "tcp" | "unix";
  #fd: number;
  // The backend (_backends.ts makes it): all the socket does but checking.
  #io: SocketBackend;
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
    let io = adopted.get(options);
    if (io !== undefined) adopted.delete(options);
    else io = this.#makeBackend(options, transport);
    this.#io = io;
    if (io.descriptor >= 0) {
      // Its number is its descriptor, which must not be one the promise
      // backend has handed out.
      io.renumber(isTaken);
      this.#fd = io.descriptor;
      sockets.claim(this.#fd, this);
    } else {
      // With epoll the default, any other number may be a descriptor given
      // to select(): this socket's must not look like one.
      this.#fd = sockets.allocate(this, defaultBackend() === "epoll");
    }
    setSource(this, io);
  }

  /** Checks what `options` ask for beyond the transport; makes the backend. */
  #makeBackend(
    options: SocketOptions,
    transport: "tcp" | "unix",
  ): SocketBackend {
    const [recvBufferSize, sendBufferSize] = bufferSizes(options);
    if (options.tls !== undefined) {
      if (transport !== "tcp") {
        throw new TypeError(
          'options.tls needs the "tcp" transport; upgrade a Unix connection with startTls()',
        );
      }
      this.#tls = checkTlsOptions("options.tls", options.tls);
    }
    const backend = options.backend !== undefined
      ? checkBackend("options.backend", options.backend)
      : this.#tls !== null
      ? "deno"
      : defaultBackend();
    if (backend === "epoll" && this.#tls !== null) {
      throw new Deno.errors.NotSupported(
        'options.tls needs the "deno" backend; an "epoll" socket can use startTls()',
      );
    }
    return openSocket(
      backend,
      transport,
      recvBufferSize,
      sendBufferSize,
      options.recvBufferSize !== undefined ||
        options.sendBufferSize !== undefined,
    );
  }

  /** A Socket over `io`, a backend made elsewhere. */
  static #adopt(io: SocketBackend, transport: "tcp" | "unix"): Socket {
    const options: SocketOptions = { transport };
    adopted.set(options, io);
    return new Socket(options);
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
   *   completes. Deno gives no way to tell at once that a `Deno.Conn` was
   *   already closed: such a socket turns readable and writable with a
   *   pending {@linkcode Socket.error}, a `Deno.errors.BadResource` that says
   *   so, which `send()` and `recv()` then throw (as after any failure).
   * @param options Buffer sizes.
   * @returns A connected socket.
   * @throws {TypeError} when `conn` is not a `Deno.Conn`.
   */
  static fromConn(
    conn: Deno.Conn,
    options: Omit<SocketOptions, "transport" | "tls"> = {},
  ): Socket {
    if (
      conn === null || typeof conn !== "object" ||
      typeof conn.read !== "function" || typeof conn.close !== "function"
    ) {
      throw new TypeError(`conn must be a Deno.Conn, got ${describe(conn)}`);
    }
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        `options must be an object, got ${describe(options)}`,
      );
    }
    const [recvBufferSize, sendBufferSize] = bufferSizes(options);
    const transport = conn.localAddr.transport === "unix" ? "unix" : "tcp";
    return Socket.#adopt(
      connSocket(conn, recvBufferSize, sendBufferSize),
      transport,
    );
  }

  /**
   * The socket's number: unique among live sockets, -1 once closed. On the
   * `"epoll"` backend it is the OS descriptor.
   */
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

  /** The backend the socket lives on (see {@linkcode SocketOptions.backend}). */
  get backend(): Backend {
    return this.#io.kind;
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

  /**
   * The bound of the receive buffer, in bytes. On the `"epoll"` backend it
   * is the kernel's (`SO_RCVBUF`, which Linux doubles for its bookkeeping),
   * set only when given.
   */
  get recvBufferSize(): number {
    return this.#io.recvLimit;
  }
  set recvBufferSize(size: number) {
    this.#io.recvLimit = checkSize("recvBufferSize", size);
  }

  /**
   * The bound of the send buffer, in bytes (`SO_SNDBUF` on the `"epoll"`
   * backend, as for {@linkcode Socket.recvBufferSize}).
   */
  get sendBufferSize(): number {
    return this.#io.sendLimit;
  }
  set sendBufferSize(size: number) {
    this.#io.sendLimit = checkSize("sendBufferSize", size);
  }

  /**
   * How long, in ms, a closed socket keeps trying to deliver the bytes
   * `send()` accepted to a peer that does not read them, before it drops
   * them and closes the connection (`SO_LINGER`). While it tries, the
   * process stays alive; `0` drops them at `close()`. On the `"epoll"`
   * backend the kernel delivers them after `close()` on its own schedule
   * (the process need not stay alive), and `0` resets the connection
   * instead (`SO_LINGER` with a zero timeout).
   *
   * @default {30000}
   */
  get lingerTimeout(): number {
    return this.#io.lingerTimeout;
  }
  set lingerTimeout(ms: number) {
    const timeout = checkTimeout("lingerTimeout", ms);
    if (timeout === undefined) {
      throw new RangeError(
        `lingerTimeout must be a finite number of ms, got ${describe(ms)}`,
      );
    }
    this.#io.lingerTimeout = timeout;
  }

  /**
   * The number of received bytes waiting for `recv` (the kernel's count,
   * `FIONREAD`, on the `"epoll"` backend).
   */
  get recvBuffered(): number {
    return this.#io.recvBuffered;
  }

  /**
   * The number of bytes `send` accepted that the peer has not been sent yet.
   * Always 0 on the `"epoll"` backend, where `send()` hands them to the
   * kernel at once (and throws `WouldBlock` when the kernel's buffer is full),
   * as CPython's sockets do.
   */
  get sendBuffered(): number {
    return this.#io.sendBuffered;
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
   * @param backlog How many connections may wait to be accepted (besides
   *   the kernel's queue: Deno's 511; on the `"epoll"` backend the kernel's
   *   queue alone, the longest the system allows, `net.core.somaxconn`).
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
    const [io, address] = this.#io.accept();
    return [Socket.#adopt(io, this.#transport), address];
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
    const tls = this.#tls;
    if (tls !== null && isServerSide(tls)) {
      throw new Deno.errors.NotSupported(
        "connect: client certificates are not supported; options.tls.cert and key are for listening",
      );
    }
    this.#io.connect(options, tls);
    if (options.transport === "tcp") this.#peerName = options.hostname;
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
    this.#io = startTls(this.#io, tls, this.#peerName);
    setSource(this, this.#io);
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
    return this.#io.recv(bufsize);
  }

  /**
   * Receives into `buffer`, without allocating: Python's `recv_into()`. On
   * the epoll backend the kernel writes straight into it; on the default
   * backend the bytes are copied from the socket's receive buffer. A program
   * that reuses one buffer for its reads spends no memory per read, which
   * `recv()` (new memory for each, as Python's) cannot avoid.
   *
   * @example Reusing one buffer
   * ```ts
   * import { Socket } from "@asyncore/asyncore/socket";
   * import { select } from "@asyncore/asyncore/select";
   * import { assertEquals } from "@std/assert";
   *
   * using server = new Socket();
   * server.bind({ hostname: "127.0.0.1", port: 0 });
   * server.listen();
   * using client = new Socket();
   * client.connect(server.getsockname() as Deno.NetAddr);
   * await select([server], [], [], 5000);
   * using conn = server.accept()[0];
   * client.send("hello");
   * await select([conn], [], [], 5000);
   * const buffer = new Uint8Array(1024);
   * const count = conn.recvInto(buffer);
   * assertEquals(new TextDecoder().decode(buffer.subarray(0, count)), "hello");
   * ```
   *
   * @param buffer Where the bytes go.
   * @param nbytes The most bytes to receive: at most `buffer.length`;
   *   `buffer.length` when absent or 0, as in Python.
   * @returns How many bytes were received, at the start of `buffer`; 0 at
   *   end of stream.
   * @throws {TypeError} when `buffer` is not a real `Uint8Array` (a Proxy,
   *   an imitation, another typed array) or views no memory (its buffer is
   *   detached, or shrank below it). Its size is the engine's, whatever its
   *   properties say: only the memory it views is written.
   * @throws {RangeError} when `nbytes` is not a size up to `buffer.length`,
   *   or there is no room to receive into (0 would read as end of stream).
   * @throws {Deno.errors.WouldBlock} when nothing is buffered.
   * @throws {Deno.errors.ConnectionReset} (or another disconnect error), as
   *   {@linkcode Socket.recv} does.
   */
  recvInto(buffer: Uint8Array, nbytes?: number): number {
    const target = intoTarget(buffer, nbytes);
    this.#checkOpen("recvInto");
    return this.#io.recvInto(target);
  }

  /**
   * Copies as much of `data` as fits into the send buffer. The bytes are
   * delivered in order, even if {@linkcode Socket.close} follows at once.
   *
   * @param data The bytes to send (strings are UTF-8 encoded). Its size is
   *   the engine's, whatever its properties say: only the memory it views is
   *   read.
   * @returns How many bytes were accepted.
   * @throws {TypeError} when `data` is neither a string nor a real
   *   `Uint8Array` (a Proxy, an imitation), or views no memory (its buffer is
   *   detached, or shrank below it).
   * @throws {Deno.errors.WouldBlock} when the send buffer is full.
   */
  send(data: Uint8Array | string): number {
    const bytes = toBytes("data", data);
    this.#checkOpen("send");
    return this.#io.send(bytes);
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

  /**
   * Resolves once the socket is closed and has let go of its OS socket: for
   * a listening socket, once its address can be bound again; for a
   * connection, once the bytes `send()` accepted are delivered (or the
   * linger timeout dropped them).
   *
   * Python frees a listening port inside `close()`. The `"deno"` backend
   * cannot: the accept waiting on the listener holds the OS socket until that
   * accept is cancelled, in the next turn of the event loop (a timer or I/O
   * callback; awaiting a promise is not enough). Await this before binding
   * the same address again in the same process. On the `"epoll"` backend the
   * descriptor is closed within `close()`, and this resolves at once.
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
    return this.#io.waitReleased();
  }

  /** Closes the socket (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** The local address. */
  getsockname(): Deno.Addr {
    this.#checkOpen("getsockname");
    return this.#io.getsockname() ??
      (this.#transport === "unix"
        ? { transport: "unix", path: "" }
        : { transport: "tcp", hostname: "0.0.0.0", port: 0 });
  }

  /**
   * The peer's address.
   *
   * @throws {Deno.errors.NotConnected} when the socket is not connected.
   */
  getpeername(): Deno.Addr {
    this.#checkOpen("getpeername");
    return this.#io.getpeername();
  }

  /**
   * Turns Nagle's algorithm off (`true`) or on; applied once connected.
   * Ignored on Unix sockets, and on TLS connections once made by `connect()`
   * or accepted from a TLS listener (Deno's `TlsConn` has no such setting:
   * set it before `connect()`).
   */
  setNoDelay(noDelay = true): void {
    this.#checkOpen("setNoDelay");
    this.#io.setNoDelay(noDelay);
  }

  /**
   * Turns TCP keep-alive on or off; applied once connected. Ignored where
   * {@linkcode Socket.setNoDelay} is.
   */
  setKeepAlive(keepAlive = true): void {
    this.#checkOpen("setKeepAlive");
    this.#io.setKeepAlive(keepAlive);
  }

  #checkOpen(operation: string): void {
    if (this.#fd < 0) throw closedError(operation);
  }
}

/**
 * A descriptor that is not a socket (a pipe, a terminal, standard input, a
 * file), made to serve as a connected one: Python's `asyncore.file_wrapper`.
 * It holds a duplicate of the descriptor (`dup`), so the original can be
 * closed on its own, and sets it non-blocking (the flag lives on the open
 * file description, which the two share). `recv()` and `recvInto()` read
 * with read(2), `send()` writes with write(2); an empty read is end of
 * input, and a write to a pipe whose reader is gone throws
 * `Deno.errors.BrokenPipe`.
 *
 * It lives on the `"epoll"` backend whatever the default (`--allow-ffi`,
 * Linux; elsewhere the constructor throws, naming the reason and the fix),
 * and works in any loop, beside sockets of either backend. Its `fileno()`
 * is the duplicate's number. What only a socket can do (`bind()`,
 * `connect()`, `getpeername()`, `setNoDelay()`...) throws, and `transport`
 * reads `"unix"`: a local byte stream.
 *
 * @example Read what a pipe holds
 * ```ts
 * import { FileWrapper } from "@asyncore/asyncore/socket";
 *
 * // `fd`: the read end of a pipe this program was given.
 * function readPipe(fd: number): Uint8Array {
 *   using pipe = new FileWrapper(fd);
 *   return pipe.recv(4096); // WouldBlock while the pipe is empty
 * }
 * ```
 */
export class FileWrapper extends Socket {
  /**
   * Wraps a duplicate of `fd`.
   *
   * @param fd An open descriptor.
   * @throws {TypeError} when `fd` is not a non-negative integer.
   * @throws {Deno.errors.BadResource} when it is not open.
   * @throws {Deno.errors.NotSupported} off Linux; {Deno.errors.NotCapable}
   *   without `--allow-ffi`.
   */
  constructor(fd: number) {
    super(adoptFile(fd));
  }

  /** As {@linkcode FileWrapper.recv}: Python's `file_wrapper.read`. */
  read(bufsize: number): Uint8Array {
    return this.recv(bufsize);
  }

  /** As {@linkcode FileWrapper.send}: Python's `file_wrapper.write`. */
  write(data: Uint8Array | string): number {
    return this.send(data);
  }

  /**
   * Not for a descriptor that is not a socket.
   *
   * @throws {Deno.errors.NotSupported} always.
   */
  override startTls(_options?: TlsOptions): void {
    throw new Deno.errors.NotSupported(
      "startTls: a FileWrapper holds a descriptor that is not a socket",
    );
  }
}

/** Duplicates `fd` for the FileWrapper being made: its Socket options. */
function adoptFile(fd: number): SocketOptions {
  if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new TypeError(
      `fd must be a descriptor number (an integer from 0), got ${describe(fd)}`,
    );
  }
  const options: SocketOptions = { transport: "unix" };
  adopted.set(
    options,
    fileSocket(fd, DEFAULT_BUFFER_SIZE, DEFAULT_BUFFER_SIZE),
  );
  return options;
}
