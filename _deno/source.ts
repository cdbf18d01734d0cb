// The promise backend: a socket made of Deno's `Deno.Conn`/`Deno.Listener`
// promises. Deno has no readiness API, so this keeps the buffers a kernel
// would (receive side in read.ts, send side in write.ts, listening side in
// accept.ts, STARTTLS splice in tls.ts), derives readiness from them, and
// reports every change of it to the ready queues of the registries it is
// registered with (ready_queue.ts). It implements `SocketBackend`
// (_backend_api.ts), what the public `Socket` delegates to.

import {
  ERROR,
  HUP,
  Interest,
  READABLE,
  type Registry,
  SENT,
  type Token,
  WRITABLE,
} from "../_readiness.ts";
import { ReadyQueue, type Registration } from "./ready_queue.ts";
import { ReadPump } from "./read.ts";
import { WritePump } from "./write.ts";
import { AcceptPump } from "./accept.ts";
import { descriptorFreedNextTurn } from "../_descriptor_limit.ts";
import { clientHandshake, TlsSplice } from "./tls.ts";
import type { TlsOptions } from "../_types.ts";
import type { DenoAddressOptions } from "../_validate.ts";
import type { Handover, SocketBackend, State } from "../_backend_api.ts";
import type { ConnCore } from "./core.ts";
import { ECONNREFUSED, errnoError, restated } from "../_errors.ts";

const EMPTY = new Uint8Array(0);

/**
 * Lets the process exit while only this socket waits on `handle`: a socket
 * no poll waits on holds no process, as a kernel's does not (a waiting poll
 * keeps it alive instead: see `Selector.poll`). Its reads and accepts stop
 * counting; writes in flight still do. (A `FdConn` has nothing to let go.)
 */
function unref(handle: Deno.Conn | Deno.Listener): void {
  if (typeof handle.unref === "function") handle.unref();
}

// Deno.startTls() returns a connection whose addresses lack `transport`, and
// an unnamed Unix socket's path is null where the type (and the epoll
// backend, and Python) say "".
function tcpAddr(addr: Deno.Addr): Deno.Addr {
  if (addr.transport === "unix" && typeof addr.path !== "string") {
    return Object.assign(Object.create(null), addr, { path: "" });
  }
  return addr.transport === undefined
    // The same shape as Deno's own addresses: no prototype.
    ? Object.assign(Object.create(null), addr, { transport: "tcp" })
    : addr;
}

/** A socket on Deno's promise-based connections. */
export class ConnSource implements SocketBackend, ConnCore {
  get kind(): "deno" {
    return "deno";
  }
  /** No descriptor of its own: the socket's number is handed out above. */
  readonly descriptor = -1;
  state: State = "fresh";
  /** The pending error (`SO_ERROR`). */
  error: Error | null = null;
  /** The connection that carries the plaintext now. */
  conn: Deno.Conn | null = null;
  listener: Deno.Listener | null = null;
  /** The socket is closed (it may linger to deliver what it accepted). */
  closed = false;
  /** Grows whenever bytes move in or out (idle timeouts watch it). */
  activity = 0;
  /**
   * A TLS handshake is in progress on a connected socket (an accepted TLS
   * connection, or STARTTLS): nothing is read or written on `conn` yet.
   */
  securing = false;
  /** A TLS handshake has completed. */
  secure = false;
  /** STARTTLS: the plaintext connection under the TLS splice. */
  raw: Deno.Conn | null = null;
  splice: TlsSplice | null = null;
  #released: PromiseWithResolvers<void> | null = null;
  readonly reader: ReadPump;
  readonly writer: WritePump;
  acceptor: AcceptPump<ConnSource> | null = null;
  #noDelay: boolean | undefined;
  #keepAlive: boolean | undefined;

  // Usually one registration (the loop's); select() and Poll add their own
  // for the length of a wait.
  #registrations: Registration[] = [];

  constructor(recvBufferSize: number, sendBufferSize: number) {
    this.reader = new ReadPump(this, recvBufferSize);
    this.writer = new WritePump(this, sendBufferSize);
  }

  /**
   * A socket on `conn`, made elsewhere; `handshake`: a TLS connection whose
   * handshake is still to come.
   */
  static fromConn(
    conn: Deno.Conn,
    recvBufferSize: number,
    sendBufferSize: number,
    handshake: boolean,
  ): ConnSource {
    const io = new ConnSource(recvBufferSize, sendBufferSize);
    io.attach(conn, handshake);
    return io;
  }

  /**
   * Carries on a connection another backend hands over at STARTTLS (see
   * `Handover`): same settings, same registrations.
   */
  static takeOver(handover: Handover): ConnSource {
    const io = new ConnSource(handover.recvLimit, handover.sendLimit);
    io.lingerTimeout = handover.lingerTimeout;
    // The promise backend reads and writes a Deno.Conn; a RawConn is the
    // part of one it uses.
    io.attach(handover.raw as Deno.Conn);
    for (const { registry, token, interest } of handover.watches) {
      io.register(registry, token, interest);
    }
    return io;
  }

  /** Nothing to move: the number is not a descriptor. */
  renumber(_taken: (fd: number) => boolean): void {}

  // Source: registrations with registries.

  register(registry: Registry, token: Token, interest: Interest): void {
    this.reregister(registry, token, interest);
  }

  reregister(registry: Registry, token: Token, interest: Interest): void {
    const registrations = this.#registrations;
    for (let i = 0; i < registrations.length; i++) {
      const registration = registrations[i];
      if (registration.registry !== registry) continue;
      if (registration.token === token && registration.interest === interest) {
        return;
      }
      registration.token = token;
      registration.interest = interest;
      registration.queue.changed(registration, this.readiness());
      return;
    }
    if (this.closed) return;
    registrations.push(ReadyQueue.track(registry, this, token, interest));
  }

  deregister(registry: Registry): void {
    const registrations = this.#registrations;
    for (let i = 0; i < registrations.length; i++) {
      if (registrations[i].registry !== registry) continue;
      registrations[i].queue.dropped(registrations[i]);
      registrations.splice(i, 1);
      return;
    }
  }

  /** Bytes left the send buffer: tells the registrations that asked (OUTPUT). */
  sent(): void {
    const registrations = this.#registrations;
    for (let i = 0; i < registrations.length; i++) {
      const registration = registrations[i];
      if (registration.interest & Interest.OUTPUT) {
        registration.queue.woken(registration, SENT);
      }
    }
  }

  /**
   * Reports a change of readiness to every registry this is registered with:
   * `bits` it may have gained, as the pump that changed it knows (a read
   * completed: READABLE), else the readiness now. Each registry's drain then
   * asks `readiness()` once.
   */
  changed(gained?: number): void {
    const registrations = this.#registrations;
    if (registrations.length === 0) return;
    const bits = gained ?? this.readiness();
    for (let i = 0; i < registrations.length; i++) {
      registrations[i].queue.changed(registrations[i], bits);
    }
  }

  /** The readiness bits now: READABLE, WRITABLE, ERROR, HUP. */
  readiness(): number {
    if (this.closed) return 0;
    if (this.error) return READABLE | WRITABLE | ERROR | HUP;
    if (this.state === "connected") {
      if (this.securing) return 0;
      const reader = this.reader;
      const writer = this.writer;
      let bits = 0;
      if (reader.readable) bits |= READABLE;
      if (writer.shutWrite || !writer.full) bits |= WRITABLE;
      // The peer has ended its stream and nothing is left to read.
      if (
        reader.eof && reader.rx.length === 0 &&
        (writer.shutWrite || this.conn === null)
      ) bits |= HUP;
      return bits;
    }
    if (this.state === "listening") {
      const acceptor = this.acceptor!;
      return acceptor.pending.length > 0 || acceptor.error ? READABLE : 0;
    }
    return 0;
  }

  // Operations: the public Socket has checked the arguments.

  bind(options: DenoAddressOptions, tls: TlsOptions | null): void {
    const state = this.state;
    if (state !== "fresh") {
      throw new Deno.errors.AlreadyExists(
        `bind: the socket is already ${state}`,
      );
    }
    try {
      this.listener = options.transport === "unix"
        ? Deno.listen(options)
        : tls !== null
        ? Deno.listenTls({ ...options, cert: tls.cert!, key: tls.key! })
        : Deno.listen(options);
    } catch (error) {
      throw restated("bind", error);
    }
    unref(this.listener);
    this.state = "bound";
  }

  listen(backlog: number): void {
    const state = this.state;
    if (state !== "bound" && state !== "listening") {
      throw new Deno.errors.NotConnected(`listen: the socket is ${state}`);
    }
    this.state = "listening";
    this.acceptor ??= new AcceptPump(
      this,
      this.listener!,
      (conn) =>
        ConnSource.fromConn(
          conn,
          this.recvLimit,
          this.sendLimit,
          typeof (conn as Deno.TlsConn).handshake === "function",
        ),
    );
    this.acceptor.backlog = backlog;
    this.acceptor.start();
  }

  /** Takes a pending connection; the listener's error, once, if any. */
  accept(): [ConnSource, Deno.Addr] {
    if (this.state !== "listening") {
      throw new Deno.errors.NotConnected("accept: the socket is not listening");
    }
    const acceptor = this.acceptor!;
    const sock = acceptor.pending.shift();
    if (sock !== undefined) {
      acceptor.start();
      return [sock, sock.getpeername()];
    }
    const error = acceptor.error;
    if (error) {
      acceptor.error = null;
      acceptor.start();
      throw error;
    }
    throw new Deno.errors.WouldBlock("accept: no connection is pending");
  }

  connect(options: DenoAddressOptions, tls: TlsOptions | null): void {
    const state = this.state;
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
    this.state = "connecting";
    let connecting: Promise<Deno.Conn>;
    try {
      // Deno refuses port 0 itself; a kernel's connect() says ECONNREFUSED.
      connecting = options.transport === "tcp" && options.port === 0
        ? Promise.reject(errnoError("connect", ECONNREFUSED))
        : options.transport === "unix"
        ? Deno.connect(options)
        : Deno.connect(options);
    } catch (error) {
      connecting = Promise.reject(error);
    }
    if (options.transport === "tcp" && tls !== null) {
      connecting = connecting.then((conn) => {
        this.applyOptions(conn);
        return clientHandshake(conn as Deno.TcpConn, tls, options.hostname);
      });
    }
    connecting.then(
      (conn) => {
        if (this.closed) {
          conn.close();
        } else {
          this.secure = tls !== null;
          this.attach(conn);
        }
      },
      (error: Error) => {
        if (this.closed) return;
        this.error = restated("connect", error) as Error;
        this.changed();
      },
    );
  }

  /** Takes over a connection; `handshake`: a TlsConn whose handshake is to come. */
  attach(conn: Deno.Conn, handshake = false): void {
    this.conn = conn;
    unref(conn);
    this.state = "connected";
    this.activity++;
    this.applyOptions();
    if (handshake) {
      // Nothing shows until the handshake is over: an accepted TLS connection
      // is not ready before the peer has proved it speaks TLS.
      this.securing = true;
      (conn as Deno.TlsConn).handshake().then(
        () => this.#secured(conn),
        (error) => this.#insecure(error),
      );
      return;
    }
    this.reader.start();
    this.changed();
  }

  recv(max: number): Uint8Array {
    const data = this.reader.take(max);
    if (data !== null) return data;
    this.#nothingToRecv("recv");
    return EMPTY;
  }

  recvInto(buffer: Uint8Array): number {
    const count = this.reader.takeInto(buffer);
    if (count >= 0) return count;
    this.#nothingToRecv("recvInto");
    return 0;
  }

  /** With nothing buffered: returns at end of stream, else throws why. */
  #nothingToRecv(operation: string): void {
    if (this.error) throw this.error;
    if (this.reader.eof || this.reader.shutRead) return;
    const state = this.state;
    if (state !== "connected" && state !== "connecting") {
      throw new Deno.errors.NotConnected(
        `${operation}: the socket is not connected`,
      );
    }
    // While connecting, too: a kernel says EAGAIN then, not ENOTCONN.
    throw new Deno.errors.WouldBlock(`${operation}: no data is buffered`);
  }

  send(bytes: Uint8Array): number {
    if (this.error) throw this.error;
    const state = this.state;
    if (state === "connecting") {
      throw new Deno.errors.WouldBlock("send: the connect is in progress");
    }
    if (state !== "connected") {
      throw new Deno.errors.NotConnected("send: the socket is not connected");
    }
    const writer = this.writer;
    if (writer.shutWrite) {
      throw new Deno.errors.BrokenPipe("send: the socket is shut for writing");
    }
    if (bytes.length === 0) return 0;
    const room = writer.limit - writer.tx.length;
    if (room <= 0) {
      throw new Deno.errors.WouldBlock("send: the send buffer is full");
    }
    const count = Math.min(room, bytes.length);
    writer.append(count === bytes.length ? bytes : bytes.subarray(0, count));
    return count;
  }

  get recvLimit(): number {
    return this.reader.limit;
  }
  set recvLimit(size: number) {
    this.reader.limit = size;
    this.reader.start();
  }

  get sendLimit(): number {
    return this.writer.limit;
  }
  set sendLimit(size: number) {
    const wasFull = this.writer.full;
    this.writer.limit = size;
    if (wasFull && !this.writer.full) this.changed();
  }

  get lingerTimeout(): number {
    return this.writer.lingerTimeout;
  }
  set lingerTimeout(ms: number) {
    this.writer.lingerTimeout = ms;
  }

  get recvBuffered(): number {
    return this.reader.rx.length;
  }

  get sendBuffered(): number {
    return this.writer.tx.length;
  }

  getsockname(): Deno.Addr | null {
    const local = this.listener?.addr ?? (this.raw ?? this.conn)?.localAddr;
    return local === undefined ? null : tcpAddr(local);
  }

  getpeername(): Deno.Addr {
    const conn = this.raw ?? this.conn;
    if (conn === null) {
      throw new Deno.errors.NotConnected(
        "getpeername: the socket is not connected",
      );
    }
    return tcpAddr(conn.remoteAddr);
  }

  setNoDelay(noDelay: boolean): void {
    this.#noDelay = noDelay;
    this.applyOptions();
  }

  setKeepAlive(keepAlive: boolean): void {
    this.#keepAlive = keepAlive;
    this.applyOptions();
  }

  shutdown(read: boolean, write: boolean): void {
    if (this.state !== "connected") {
      throw new Deno.errors.NotConnected(
        "shutdown: the socket is not connected",
      );
    }
    if (read) {
      this.reader.shutRead = true;
      this.reader.rx.clear();
      this.changed();
    }
    if (write && !this.writer.shutWrite) {
      this.writer.shutWrite = true;
      this.writer.finish();
      this.changed(); // now writable: send() fails at once instead of blocking
    }
  }

  /**
   * Starts a STARTTLS upgrade. `hostname`: the name connected to, or "" for
   * the peer's address.
   */
  startTls(tls: TlsOptions, hostname: string): this {
    if (this.secure || this.securing) {
      throw new Deno.errors.AlreadyExists(
        "startTls: the connection already uses TLS",
      );
    }
    const raw = this.conn;
    if (this.state !== "connected" || raw === null) {
      throw new Deno.errors.NotConnected(
        "startTls: the socket is not connected",
      );
    }
    if (this.error) throw this.error;
    if (this.writer.shutWrite) {
      throw new Deno.errors.BrokenPipe(
        "startTls: the socket is shut for writing",
      );
    }
    const remote = raw.remoteAddr;
    hostname ||= remote.transport === "tcp" ? remote.hostname : "localhost";
    const reader = this.reader;
    const writer = this.writer;
    const splice = new TlsSplice({
      raw,
      tls,
      hostname,
      buffered: reader.rx.peek(reader.rx.length).slice(),
      readInFlight: reader.reading,
      onError: (error) => {
        if (!this.closed) this.fail(error);
      },
    });
    reader.rx.clear(); // handed to the TLS engine
    reader.eof = false; // the raw end of stream is the engine's to report
    this.raw = raw;
    this.conn = null;
    this.splice = splice;
    this.securing = true;
    reader.handoff = reader.reading;
    writer.plainTx = writer.tx.length;
    if (writer.plainTx === 0) splice.startOutput();
    splice.ready.then(
      (conn) => this.#secured(conn),
      (error) => this.#insecure(error),
    );
    return this;
  }

  /** Closes: stop reporting, deliver what was accepted, then release. */
  close(): void {
    this.closed = true;
    this.reader.release();
    // The accept it cancels ends in a later turn: waitReleased() waits for it.
    this.listener?.ref();
    this.listener?.close();
    this.listener = null;
    this.acceptor?.close();
    this.writer.linger();
    const registrations = this.#registrations;
    this.#registrations = [];
    for (const registration of registrations) {
      registration.queue.closed(registration);
    }
    this.checkReleased();
  }

  /** The connection failed: the first error is the cause. */
  fail(error: Error): void {
    // Later ones (a TLS read after the raw connection under it failed)
    // follow from it.
    this.error ??= error instanceof Deno.errors.BadResource
      ? closedOutside(error)
      : error;
    this.writer.clear();
    this.changed();
  }

  /** Closes the connection for good. */
  release(): void {
    this.writer.stopLinger();
    const conn = this.conn;
    this.conn = null;
    if (conn !== null) {
      try {
        conn.close();
      } catch {
        // Already closed by a failed operation.
      }
    }
    // A STARTTLS splice closes the raw connection once the TLS side is done.
    this.splice?.release();
    this.splice = null;
    if (conn !== null) descriptorFreedNextTurn();
    this.checkReleased();
  }

  /**
   * Resolves once closed and the OS socket is let go. Deno frees a
   * listener's port only once the accept waiting on it is cancelled, in the
   * next turn of the event loop, not within `close()`.
   */
  waitReleased(): Promise<void> {
    this.#released ??= Promise.withResolvers();
    this.checkReleased();
    return this.#released.promise;
  }

  /** Resolves `waitReleased()` once nothing holds the OS socket any more. */
  checkReleased(): void {
    if (
      this.closed && !this.acceptor?.accepting && this.conn === null &&
      this.splice === null
    ) this.#released?.resolve();
  }

  applyOptions(conn: Deno.Conn | null = this.raw ?? this.conn): void {
    const tcp = conn as Deno.TcpConn | null;
    // A TlsConn has no socket options; neither has a Unix connection.
    if (tcp === null || typeof tcp.setNoDelay !== "function") return;
    if (this.#noDelay !== undefined) tcp.setNoDelay(this.#noDelay);
    if (this.#keepAlive !== undefined) tcp.setKeepAlive(this.#keepAlive);
  }

  /** A handshake completed: `conn` carries the plaintext from now on. */
  #secured(conn: Deno.Conn): void {
    this.securing = false;
    this.secure = true;
    this.conn = conn;
    unref(conn);
    this.activity++;
    this.reader.start();
    this.writer.start();
    this.writer.finish();
    if (!this.closed) this.changed();
  }

  #insecure(error: Error): void {
    if (this.closed) {
      this.release();
      return;
    }
    this.fail(error);
  }
}

/**
 * The error for a `Deno.Conn` closed by its own `close()` rather than by
 * the socket (Deno says only "Bad resource ID"): given to
 * `Socket.fromConn()` closed, say, where Deno offers no way to tell at once.
 */
function closedOutside(error: Error): Deno.errors.BadResource {
  return new Deno.errors.BadResource(
    `the Deno.Conn under this socket was closed outside it (${error.message})`,
    { cause: error },
  );
}
