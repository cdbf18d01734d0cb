// The epoll backend: a socket on an OS descriptor (FdSocket, through libc),
// registered with a registry's descriptor side (descriptors.ts). It keeps no
// buffers: recv and send go straight to the kernel, whose buffers are the
// socket's. It implements `SocketBackend` (_backend_api.ts), what the
// public Socket (socket.ts) delegates to; the state errors are the public
// API's wherever the kernel's differ (accept() on a socket that is not
// listening is NotConnected, not EINVAL), so that both backends behave
// alike. Also the source for any other descriptor select() and Poll are
// given (DescriptorSource), which is only ever watched: never read, written
// or closed.

import { Descriptors, readinessOf } from "./descriptors.ts";
import {
  descriptorFreed,
  isOutOfDescriptors,
  stopWaiting,
  waitForDescriptor,
} from "../_descriptor_limit.ts";
import { FdSocket, pollDescriptor } from "./fd_socket.ts";
import {
  FIONREAD,
  libc,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
} from "./libc.ts";
import {
  ERROR,
  HUP,
  type Interest,
  READABLE,
  type Registry,
  type Token,
  WRITABLE,
} from "../_readiness.ts";
import { encodeAddress } from "./sockaddr.ts";
import { resolveHost } from "./resolve.ts";
import type {
  Handover,
  RawDescriptor,
  SocketBackend,
  State,
} from "../_backend_api.ts";
import { FdConn } from "./fd_conn.ts";
import { probeTlsEngine } from "../_tls.ts";
import type { TlsOptions } from "../_types.ts";
import type { DenoAddressOptions } from "../_validate.ts";

const EMPTY = new Uint8Array(0);
// The listen queue asked for: the kernel caps it at net.core.somaxconn (4096
// on Linux 5.4 and later), the longest it allows.
const MAX_BACKLOG = 65535;

// EpollSource's #flags.
const SHUT_READ = 1;
const SHUT_WRITE = 2;
const CLOSED = 4;
/** accept() ran out of descriptors: not asking for readability. */
const PAUSED = 8;
/** A host name is being looked up (the socket stays off epoll). */
const RESOLVING = 16;
/** Buffer sizes were given: set again on a socket made anew. */
const BUFFERS_SET = 32;
// setNoDelay()/setKeepAlive() ran (and what they set): set again likewise.
const NO_DELAY_SET = 64;
const NO_DELAY = 128;
const KEEP_ALIVE_SET = 256;
const KEEP_ALIVE = 512;

interface Watch {
  registry: Registry;
  token: Token;
  interest: Interest;
  /** On the registry's epoll (not while a host name is being looked up). */
  added: boolean;
}

// A socket's watches beyond its first are replaced, never changed in place
// (an array literal is sized to fit, where a push would hold room for 17).
const NO_WATCHES: readonly Watch[] = [];

/** Whether `hostname` needs resolving (not an IP literal nor "localhost"). */
function needsLookup(hostname: string): boolean {
  if (hostname === "localhost") return false;
  try {
    encodeAddress("address", { hostname, port: 0 });
    return false;
  } catch {
    return true;
  }
}

// getaddrinfo's texts (gai_strerror) for node:dns's codes, so that a failed
// lookup reads as on the promise backend, whose Deno.connect reports them.
const LOOKUP_FAILURES: Readonly<Record<string, string>> = {
  ENOTFOUND: "Name or service not known",
  EAI_AGAIN: "Temporary failure in name resolution",
  ENODATA: "No address associated with hostname",
  EAI_FAIL: "Non-recoverable failure in name resolution",
};

async function lookup(hostname: string): Promise<string> {
  const dns = await import("node:dns/promises");
  try {
    const { address } = await dns.lookup(hostname);
    return address;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const reason = typeof code === "string" ? LOOKUP_FAILURES[code] : undefined;
    if (reason === undefined) throw error;
    throw new Error(`failed to lookup address information: ${reason}`);
  }
}

/** A socket on an OS descriptor. */
export class EpollSource implements SocketBackend {
  get kind(): "epoll" {
    return "epoll";
  }
  state: State = "fresh";
  /** Grows whenever bytes move in or out (idle timeouts watch it). */
  activity = 0;
  /** Never: TLS sockets use the promise backend (see socket.ts). */
  get secure(): boolean {
    return false;
  }
  lingerTimeout = 30000;
  #recvLimit: number;
  #sendLimit: number;
  readonly sock: FdSocket;
  #released: PromiseWithResolvers<void> | null = null;
  #error: Error | null = null;
  // The booleans below (SHUT_READ...), in one field: an idle connection's
  // size is mostly its objects' fields (issue 12).
  #flags = 0;
  // The first registry's watch (a socket is nearly always in one loop's map)
  // on its own, without an array around it; any others in #others.
  #watch: Watch | null = null;
  #others: readonly Watch[] = NO_WATCHES;
  /** A Unix socket path this socket bound: removed at close, as Deno does. */
  #boundPath: string | null = null;

  /**
   * Wraps `sock` (a fresh socket, or a connected one: accepted, or a file's
   * descriptor). The buffer sizes are set on the kernel only when `apply`
   * says so.
   */
  constructor(
    sock: FdSocket,
    recvLimit: number,
    sendLimit: number,
    apply: boolean,
    connected = false,
  ) {
    this.sock = sock;
    this.#recvLimit = recvLimit;
    this.#sendLimit = sendLimit;
    if (connected) this.state = "connected";
    if (apply) {
      this.#flags |= BUFFERS_SET;
      sock.setBufferSize("recv", recvLimit);
      sock.setBufferSize("send", sendLimit);
    }
  }

  /** The descriptor: the socket's number. */
  get descriptor(): number {
    return this.sock.fd;
  }

  /**
   * Moves the descriptor up past the numbers `taken` says are in use (the
   * promise backend's); closes it if that fails.
   */
  renumber(taken: (fd: number) => boolean): void {
    const sock = this.sock;
    try {
      while (taken(sock.fd)) sock.renumber(sock.fd + 1);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  // Source: registrations with registries' descriptor sides.

  register(registry: Registry, token: Token, interest: Interest): void {
    this.reregister(registry, token, interest);
  }

  reregister(registry: Registry, token: Token, interest: Interest): void {
    if ((this.#flags & CLOSED) !== 0) return;
    const watch = this.#find(registry);
    if (watch === null) {
      const created = { registry, token, interest, added: false };
      if (this.#watch === null) this.#watch = created;
      else this.#others = [...this.#others, created];
      this.#add(created);
      return;
    }
    if (watch.token === token && watch.interest === interest) return;
    watch.token = token;
    watch.interest = interest;
    if (watch.added) {
      Descriptors.of(registry).modify(
        this.descriptor,
        token,
        this.#effective(interest),
      );
    }
  }

  deregister(registry: Registry): void {
    const watch = this.#find(registry);
    if (watch === null) return;
    const others = this.#others;
    if (watch === this.#watch) {
      this.#watch = others.length === 0 ? null : others[0];
      this.#others = others.length <= 1 ? NO_WATCHES : others.slice(1);
    } else {
      this.#others = others.length === 1
        ? NO_WATCHES
        : others.filter((other) => other !== watch);
    }
    if (watch.added) Descriptors.of(registry).delete(this.descriptor);
  }

  #find(registry: Registry): Watch | null {
    const watch = this.#watch;
    if (watch === null || watch.registry === registry) return watch;
    const others = this.#others;
    for (let i = 0; i < others.length; i++) {
      if (others[i].registry === registry) return others[i];
    }
    return null;
  }

  /** Every watch, in a new array (for what changes all of them). */
  #watches(): readonly Watch[] {
    const watch = this.#watch;
    if (watch === null) return NO_WATCHES;
    const others = this.#others;
    return others.length === 0 ? [watch] : [watch, ...others];
  }

  /** Drops every watch; returns them. */
  #takeWatches(): readonly Watch[] {
    const watches = this.#watches();
    this.#watch = null;
    this.#others = NO_WATCHES;
    return watches;
  }

  /** Removes every registration, leaving the descriptor open; returns them. */
  #detach(): readonly Watch[] {
    const watches = this.#takeWatches();
    for (const { registry, added } of watches) {
      if (added) Descriptors.of(registry).delete(this.descriptor);
    }
    return watches;
  }

  // An unconnected TCP socket is reported hung up (EPOLLHUP) by epoll, so a
  // socket waiting for a host name's lookup stays off epoll until it connects.
  #add(watch: Watch): void {
    if ((this.#flags & RESOLVING) !== 0 || watch.added) return;
    Descriptors.of(watch.registry).add(
      this.descriptor,
      watch.token,
      this.#effective(watch.interest),
    );
    watch.added = true;
  }

  /** The readiness bits now (READABLE, WRITABLE, ERROR, HUP), asking the kernel. */
  readiness(): number {
    if ((this.#flags & CLOSED) !== 0) return 0;
    this.#settle();
    if (this.#error) return READABLE | WRITABLE | ERROR | HUP;
    const state = this.state;
    if (state !== "connected" && state !== "listening") return 0;
    const bits = pollDescriptor(this.descriptor);
    let readiness = 0;
    if (
      bits & (POLLIN | POLLHUP | POLLERR) || (this.#flags & SHUT_READ) !== 0
    ) {
      if ((this.#flags & PAUSED) === 0) readiness |= READABLE;
    }
    if (
      state === "connected" &&
      (bits & POLLOUT || (this.#flags & SHUT_WRITE) !== 0)
    ) {
      readiness |= WRITABLE;
    }
    if (bits & POLLERR) readiness |= ERROR;
    if (bits & POLLHUP) readiness |= HUP;
    return readiness;
  }

  /** The pending error (`SO_ERROR`, kept once seen). */
  get error(): Error | null {
    this.#settle();
    return this.#error;
  }

  /** Bytes waiting to be received (0 once closed). */
  get recvBuffered(): number {
    return this.state === "connected" &&
        (this.#flags & (SHUT_READ | CLOSED)) === 0
      ? this.sock.queued(FIONREAD)
      : 0;
  }

  /**
   * Always 0: `send()` hands its bytes to the kernel at once, so the socket
   * holds none of its own (the kernel's queue, `SIOCOUTQ`, drains as the peer
   * acknowledges, which wakes no one: a loop waiting for it would sleep).
   */
  get sendBuffered(): number {
    return 0;
  }

  /** The kernel's receive buffer size (`SO_RCVBUF`), set only when given. */
  get recvLimit(): number {
    return this.#recvLimit;
  }
  set recvLimit(size: number) {
    this.#flags |= BUFFERS_SET;
    this.#recvLimit = size;
    this.sock.setBufferSize("recv", size);
  }

  /** The kernel's send buffer size (`SO_SNDBUF`), set only when given. */
  get sendLimit(): number {
    return this.#sendLimit;
  }
  set sendLimit(size: number) {
    this.#flags |= BUFFERS_SET;
    this.#sendLimit = size;
    this.sock.setBufferSize("send", size);
  }

  // Operations: the public Socket has checked the arguments.

  /** Binds; TLS never reaches this backend (`tls` is always null). */
  bind(options: DenoAddressOptions, _tls: TlsOptions | null): void {
    const state = this.state;
    if (state !== "fresh") {
      throw new Deno.errors.AlreadyExists(
        `bind: the socket is already ${state}`,
      );
    }
    if (options.transport === "tcp" && needsLookup(options.hostname)) {
      // Synchronously, as Deno's own bind and Python's do.
      options = { ...options, hostname: resolveHost(options.hostname) };
    }
    this.#family(options);
    if (options.transport === "tcp") {
      // As Deno.listen (and Rust's TcpListener) does.
      this.sock.setReuseAddr(true);
      this.sock.bind({ hostname: options.hostname, port: options.port });
    } else {
      this.sock.bind({ path: options.path });
      // An abstract name (a leading NUL) has no file to remove.
      if (!options.path.startsWith("\0")) this.#boundPath = options.path;
    }
    this.state = "bound";
  }

  listen(_backlog: number): void {
    const state = this.state;
    if (state !== "bound" && state !== "listening") {
      throw new Deno.errors.NotConnected(`listen: the socket is ${state}`);
    }
    // The kernel's queue is the backlog here. Python's listen(5) would drop
    // the connections of a burst that the promise backend takes in ahead
    // (besides Deno's own listen queue, 511 deep), and a burst beyond the
    // queue waits for SYN retries (1 s, 3 s ...): it is the longest the
    // kernel allows, whatever the backlog asked for (at least 511 then).
    this.sock.listen(MAX_BACKLOG);
    this.state = "listening";
  }

  /**
   * Takes a pending connection.
   *
   * @throws {Error} with code `EMFILE`/`ENFILE` when out of descriptors:
   *   then the socket stops reporting readability until one of this
   *   backend's descriptors is closed (or accept() is called again).
   */
  accept(): [EpollSource, Deno.Addr] {
    if (this.state !== "listening") {
      throw new Deno.errors.NotConnected("accept: the socket is not listening");
    }
    if ((this.#flags & PAUSED) !== 0) this.#resume();
    let accepted: [FdSocket, Deno.Addr];
    try {
      accepted = this.sock.accept();
    } catch (error) {
      if (isOutOfDescriptors(error)) this.#pause();
      throw error;
    }
    this.activity++;
    const [sock, address] = accepted;
    return [
      new EpollSource(sock, this.#recvLimit, this.#sendLimit, false, true),
      address,
    ];
  }

  /** Connects; TLS never reaches this backend (`tls` is always null). */
  connect(options: DenoAddressOptions, _tls: TlsOptions | null): void {
    const state = this.state;
    if (state === "connecting") {
      throw new Deno.errors.Busy("connect: a connect is already in progress");
    }
    if (state === "listening") {
      throw new Deno.errors.NotSupported(
        "connect: the socket is listening",
      );
    }
    if (state === "connected") {
      throw new Deno.errors.AlreadyExists(
        "connect: the socket is already connected",
      );
    }
    this.state = "connecting";
    if (options.transport === "tcp" && needsLookup(options.hostname)) {
      // Resolved off the thread; then connected as an address.
      this.#flags |= RESOLVING;
      lookup(options.hostname).then(
        (address) => {
          this.#flags &= ~RESOLVING;
          if ((this.#flags & CLOSED) !== 0) return;
          this.#start({ ...options, hostname: address });
          this.#notify();
        },
        (error: Error) => {
          this.#flags &= ~RESOLVING;
          if ((this.#flags & CLOSED) !== 0) return;
          this.#error = error;
          this.#notify();
        },
      );
      return;
    }
    this.#start(options);
  }

  recv(bufsize: number): Uint8Array {
    if (this.#error) throw this.#error;
    if ((this.#flags & SHUT_READ) !== 0) return EMPTY;
    this.#checkConnected("recv");
    try {
      const data = this.sock.recv(bufsize);
      if (data.length > 0) this.activity++;
      return data;
    } catch (error) {
      throw this.#failed(error);
    }
  }

  recvInto(buffer: Uint8Array): number {
    if (this.#error) throw this.#error;
    if ((this.#flags & SHUT_READ) !== 0) return 0;
    this.#checkConnected("recvInto");
    try {
      const count = this.sock.recvInto(buffer);
      if (count > 0) this.activity++;
      return count;
    } catch (error) {
      throw this.#failed(error);
    }
  }

  /** Keeps an I/O error (but WouldBlock) for every later call; returns it. */
  #failed(error: unknown): unknown {
    if (!(error instanceof Deno.errors.WouldBlock)) {
      this.#error = error as Error;
    }
    return error;
  }

  send(bytes: Uint8Array): number {
    if (this.#error) throw this.#error;
    this.#checkConnected("send");
    if ((this.#flags & SHUT_WRITE) !== 0) {
      throw new Deno.errors.BrokenPipe("send: the socket is shut for writing");
    }
    if (bytes.length === 0) return 0;
    try {
      const count = this.sock.send(bytes);
      this.activity++;
      return count;
    } catch (error) {
      throw this.#failed(error);
    }
  }

  shutdown(read: boolean, write: boolean): void {
    if (this.state !== "connected") {
      throw new Deno.errors.NotConnected(
        "shutdown: the socket is not connected",
      );
    }
    // Only flagged: Linux resets a connection whose read side is shut when
    // data comes in once its write side is shut too, which would fail the
    // peer's sends although it closed nothing. What comes in stays in the
    // kernel's buffer (pushing the peer back) and is dropped at close.
    if (read) this.#flags |= SHUT_READ;
    if (write && (this.#flags & SHUT_WRITE) === 0) {
      this.#flags |= SHUT_WRITE;
      try {
        this.sock.shutdown("write");
      } catch {
        // As above: the connection is over.
      }
    }
  }

  /**
   * STARTTLS: this backend has no TLS engine, so from now on the socket is
   * driven by the promise backend over its descriptor (fd_conn.ts), which
   * the TLS splice feeds; the number and the registrations stay. Returns
   * what that backend takes over (see _backends.ts).
   */
  startTls(tls: TlsOptions, _hostname: string): Handover {
    // Reading the error first notices a connect that has completed.
    const error = this.error;
    if (error) throw error;
    if (this.state !== "connected") {
      throw new Deno.errors.NotConnected(
        "startTls: the socket is not connected",
      );
    }
    if ((this.#flags & SHUT_WRITE) !== 0) {
      throw new Deno.errors.BrokenPipe(
        "startTls: the socket is shut for writing",
      );
    }
    // What makes the upgrade fail at once (no permission for 127.0.0.1, a
    // bad certificate or key) is thrown while the socket is unchanged.
    probeTlsEngine(tls);
    return {
      handover: true,
      raw: new FdConn(this.sock),
      recvLimit: this.#recvLimit,
      sendLimit: this.#sendLimit,
      lingerTimeout: this.lingerTimeout,
      watches: this.#detach(),
    };
  }

  /**
   * Closes the descriptor. The kernel delivers what send() accepted in the
   * background, unless `lingerTimeout` is 0 (then the connection is reset).
   */
  close(): void {
    if ((this.#flags & CLOSED) !== 0) return;
    this.#flags |= CLOSED;
    if (this.#resumeAccepting !== null) stopWaiting(this.#resumeAccepting);
    const watches = this.#takeWatches();
    if (this.lingerTimeout === 0 && this.state === "connected") {
      try {
        this.sock.setAbortiveClose();
      } catch {
        // Not a TCP connection, or already reset.
      }
    }
    this.sock.close();
    for (const { registry, token, added } of watches) {
      if (added) Descriptors.of(registry).closed(token);
      else registry.wakeWaiters();
    }
    if (this.#boundPath !== null) unlinkQuietly(this.#boundPath);
    descriptorFreed();
    this.#released?.resolve();
  }

  /** Resolves once closed: the descriptor is closed within `close()`. */
  waitReleased(): Promise<void> {
    this.#released ??= Promise.withResolvers();
    if ((this.#flags & CLOSED) !== 0) this.#released.resolve();
    return this.#released.promise;
  }

  getsockname(): Deno.Addr {
    return this.sock.getsockname();
  }

  getpeername(): Deno.Addr {
    if (this.state !== "connected") {
      this.#settle();
      if ((this.state as State) !== "connected") {
        throw new Deno.errors.NotConnected(
          "getpeername: the socket is not connected",
        );
      }
    }
    return this.sock.getpeername();
  }

  setNoDelay(noDelay: boolean): void {
    this.#flags |= noDelay ? NO_DELAY_SET | NO_DELAY : NO_DELAY_SET;
    if (!noDelay) this.#flags &= ~NO_DELAY;
    if (this.sock.family !== "unix") this.sock.setNoDelay(noDelay);
  }

  setKeepAlive(keepAlive: boolean): void {
    this.#flags |= keepAlive ? KEEP_ALIVE_SET | KEEP_ALIVE : KEEP_ALIVE_SET;
    if (!keepAlive) this.#flags &= ~KEEP_ALIVE;
    if (this.sock.family !== "unix") this.sock.setKeepAlive(keepAlive);
  }

  // Made on the first pause only: a closure per socket (and the context it
  // keeps) would be a tenth of an idle connection's memory.
  #resumeAccepting: (() => void) | null = null;

  /** Asks for readability again after accept() ran out of descriptors. */
  #resume(): void {
    if ((this.#flags & PAUSED) === 0) return;
    this.#flags &= ~PAUSED;
    stopWaiting(this.#resumeAccepting!);
    this.#rewatch();
  }

  #pause(): void {
    this.#flags |= PAUSED;
    waitForDescriptor(this.#resumeAccepting ??= () => this.#resume());
    this.#rewatch();
  }

  #rewatch(): void {
    for (const { registry, token, interest, added } of this.#watches()) {
      if (added) {
        Descriptors.of(registry).modify(
          this.descriptor,
          token,
          this.#effective(interest),
        );
      }
    }
  }

  #effective(interest: Interest): Interest {
    return ((this.#flags & PAUSED) !== 0
      ? interest & ~READABLE
      : interest) as Interest;
  }

  /** A TCP socket made for IPv4 is made again for IPv6 (same number). */
  #family(options: DenoAddressOptions): void {
    if (options.transport !== "tcp") return;
    const family = FdSocket.familyOf({ hostname: options.hostname, port: 0 });
    if (family === this.sock.family) return;
    // The watches are on the old socket: off epoll, then on again.
    const watches = this.#detach();
    this.sock.reopen(family);
    if ((this.#flags & BUFFERS_SET) !== 0) {
      this.sock.setBufferSize("recv", this.#recvLimit);
      this.sock.setBufferSize("send", this.#sendLimit);
    }
    const flags = this.#flags;
    if (flags & NO_DELAY_SET) this.sock.setNoDelay((flags & NO_DELAY) !== 0);
    if (flags & KEEP_ALIVE_SET) {
      this.sock.setKeepAlive((flags & KEEP_ALIVE) !== 0);
    }
    for (const { registry, token, interest } of watches) {
      this.register(registry, token, interest);
    }
  }

  #start(options: DenoAddressOptions): void {
    try {
      if (this.state === "connecting" && options.transport === "tcp") {
        this.#family(options);
      }
      const done = options.transport === "tcp"
        ? this.sock.connect({ hostname: options.hostname, port: options.port })
        : this.sock.connect({ path: options.path });
      if (done) this.#connected();
    } catch (error) {
      // As the promise backend: a failed connect shows in `error`.
      this.#error = error as Error;
      this.#notify();
    }
  }

  /**
   * Throws unless connected: WouldBlock while a connect is in progress (as a
   * kernel says EAGAIN then), its error once it failed, else NotConnected.
   */
  #checkConnected(operation: string): void {
    if (this.state === "connected") return;
    if (this.state !== "connecting") {
      throw new Deno.errors.NotConnected(
        `${operation}: the socket is not connected`,
      );
    }
    this.#settle();
    if (this.#error) throw this.#error;
    if ((this.state as State) !== "connected") {
      throw new Deno.errors.WouldBlock(
        `${operation}: the connect is in progress`,
      );
    }
  }

  /** A connect in progress: has it finished? (writable, or an error) */
  #settle(): void {
    if (this.state !== "connecting" || this.#error) return;
    // Not connecting yet: poll(2) calls an unconnected socket writable.
    if ((this.#flags & RESOLVING) !== 0) return;
    const bits = pollDescriptor(this.descriptor, POLLOUT);
    if ((bits & (POLLOUT | POLLERR | POLLHUP)) === 0) return;
    if (bits & POLLNVAL) return;
    const error = this.sock.takeError();
    if (error) this.#error = error;
    else this.#connected();
  }

  #connected(): void {
    this.state = "connected";
    this.activity++;
  }

  /** Puts the watches on epoll, and wakes their polls: the state changed. */
  #notify(): void {
    for (const watch of this.#watches()) {
      this.#add(watch);
      watch.registry.wakeWaiters();
    }
  }
}

const encoder = new TextEncoder();

/** Removes a Unix socket's path (libc's unlink: no --allow-write needed). */
function unlinkQuietly(path: string): void {
  // Gone already, or not ours to remove: as Deno's listener, leave it.
  libc().unlink(encoder.encode(path + "\0"));
}

/**
 * Any other descriptor given to select() or Poll (a pipe, standard input):
 * watched through epoll, never read, written or closed.
 */
export class DescriptorSource implements RawDescriptor {
  readonly fd: number;
  #registries: Registry[] = [];

  constructor(fd: number) {
    this.fd = fd;
  }

  register(registry: Registry, token: Token, interest: Interest): void {
    this.reregister(registry, token, interest);
  }

  reregister(registry: Registry, token: Token, interest: Interest): void {
    const side = Descriptors.of(registry);
    if (this.#registries.includes(registry)) {
      side.modify(this.fd, token, interest);
      return;
    }
    side.add(this.fd, token, interest);
    this.#registries.push(registry);
  }

  deregister(registry: Registry): void {
    const index = this.#registries.indexOf(registry);
    if (index < 0) return;
    this.#registries.splice(index, 1);
    try {
      Descriptors.of(registry).delete(this.fd);
    } catch {
      // Closed by its owner meanwhile: epoll has dropped it already.
    }
  }

  /** Whether the number is an open descriptor. */
  get open(): boolean {
    return (pollDescriptor(this.fd) & POLLNVAL) === 0;
  }

  /** The readiness bits now (poll(2)'s, as epoll's: the same values). */
  readiness(): number {
    const bits = pollDescriptor(this.fd);
    return bits & POLLNVAL ? 0 : readinessOf(bits);
  }
}
