// A non-blocking stream socket on an OS descriptor, through libc: the epoll
// backend's equivalent of mio's TcpStream/TcpListener/UnixStream in one class.
// Its methods mirror the public Socket's semantics (select.ts): recv returns
// an empty array at end of stream and throws Deno.errors.WouldBlock when
// nothing is there; send returns the count taken or throws WouldBlock;
// accept throws WouldBlock when none is pending. Errors are the classes
// Deno's own sockets throw for the same errno (libc.ts, _errors.ts).

import {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  closeOwned,
  disown,
  EAGAIN,
  EALREADY,
  ECONNABORTED,
  EINPROGRESS,
  EINTR,
  EISCONN,
  errno,
  F_DUPFD_CLOEXEC,
  F_GETFL,
  F_SETFL,
  IPPROTO_TCP,
  lastError,
  libc,
  MSG_NOSIGNAL,
  O_CLOEXEC,
  O_NONBLOCK,
  own,
  POLLIN,
  POLLOUT,
  SHUT_RD,
  SHUT_RDWR,
  SHUT_WR,
  SO_ERROR,
  SO_KEEPALIVE,
  SO_LINGER,
  SO_RCVBUF,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SO_SNDBUF,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOL_SOCKET,
  TCP_NODELAY,
} from "./libc.ts";
import { errnoError } from "../_errors.ts";
import { FdSet } from "../_fd_set.ts";
import {
  decodeAddress,
  encodeAddress,
  SOCKADDR_STORAGE_SIZE,
} from "./sockaddr.ts";
import type { Address } from "../_types.ts";
import { checkCount, checkSize, describe } from "../_validate.ts";
import { allocateRegion } from "../_read_arena.ts";
import { byteLengthOf, isUint8Array } from "../_view.ts";

/** The address family of an {@linkcode FdSocket}. */
export type Family = "ipv4" | "ipv6" | "unix";

/**
 * The descriptors whose last send took all it was given: their send buffer
 * had room then, so a loop that starts wanting to write one (an echo's next
 * reply) can be told it is writable without asking the kernel (see
 * descriptors.ts). A send that takes less or would block removes the number;
 * so do closing and moving it. A hint, not a promise: a send it misleads
 * says WouldBlock, and the loop then waits for writability as usual.
 */
export const sendRoom: FdSet = new FdSet();

const FAMILIES: Record<Family, number> = {
  ipv4: AF_INET,
  ipv6: AF_INET6,
  unix: AF_UNIX,
};

const EMPTY = new Uint8Array(0);
// What accept4(2) can fail with on Linux (EAGAIN, EBADF, ECONNABORTED,
// EFAULT, EINTR, EINVAL, EMFILE, ENFILE, ENOBUFS, ENOMEM, ENOTSOCK,
// EOPNOTSUPP, EPERM, EPROTO).
const ACCEPT_ERRORS: ReadonlySet<number> = new Set([
  11,
  9,
  103,
  14,
  4,
  22,
  24,
  23,
  105,
  12,
  88,
  95,
  1,
  71,
]);
// recv(bufsize) reads into this, then copies out only what came: one buffer
// for every socket, so an idle connection holds no receive memory at all.
const SHARED_RECV_SIZE = 65536;
let sharedRecv: Uint8Array | null = null;

// Scratch for address and option calls; used and read back synchronously, so
// one of each serves every socket.
const storage = new Uint8Array(SOCKADDR_STORAGE_SIZE);
const lengthCell = new Uint32Array(1);
const lengthBytes = new Uint8Array(lengthCell.buffer);
const optionCell = new Int32Array(1);
const optionBytes = new Uint8Array(optionCell.buffer);

// struct pollfd { int fd; short events; short revents; }
const pollCell = new Int32Array(2);
const pollBytes = new Uint8Array(pollCell.buffer);
const pollShorts = new Int16Array(pollCell.buffer);
const lingerCell = new Int32Array(2);
const lingerBytes = new Uint8Array(lingerCell.buffer);

/**
 * The poll(2) bits of any descriptor now (POLLIN, POLLOUT, POLLERR,
 * POLLHUP, POLLNVAL for a number that is not open), without waiting unless
 * `timeout` ms are given (the JS thread is blocked meanwhile). It only
 * looks: the descriptor is never read, written or closed.
 */
export function pollDescriptor(
  fd: number,
  events = POLLIN | POLLOUT,
  timeout = 0,
): number {
  pollCell[0] = fd;
  pollShorts[2] = events;
  pollShorts[3] = 0;
  const c = libc();
  // EINTR and ENOMEM leave revents 0: nothing is known to be ready.
  if (c.poll(pollBytes, 1n, timeout) <= 0) return 0;
  return pollShorts[3] & 0xffff;
}

function checkFamily(family: unknown): Family {
  if (family !== "ipv4" && family !== "ipv6" && family !== "unix") {
    throw new TypeError(
      `family must be "ipv4", "ipv6" or "unix", got ${describe(family)}`,
    );
  }
  return family;
}

function familyName(af: number): Family {
  return af === AF_INET ? "ipv4" : af === AF_INET6 ? "ipv6" : "unix";
}

/**
 * A non-blocking stream socket on a descriptor this code opened and owns:
 * it is closed exactly once, by {@linkcode FdSocket.close}. Also any other
 * descriptor's duplicate ({@linkcode FdSocket.duplicate}), read and written
 * through the same methods.
 */
export class FdSocket {
  #fd: number;
  // null: not a socket (a pipe, a terminal, a file), read with read(2) and
  // written with write(2).
  #family: Family | null;

  private constructor(fd: number, family: Family | null) {
    this.#fd = fd;
    this.#family = family;
  }

  /** The address family; `null` for a descriptor that is not a socket. */
  get family(): Family | null {
    return this.#family;
  }

  /**
   * Takes a duplicate of `fd`, any open descriptor (`F_DUPFD_CLOEXEC`), made
   * non-blocking: Python's `asyncore.file_wrapper`. The flag is on the open
   * file description, which the duplicate shares with `fd`, so `fd` turns
   * non-blocking too, as in Python. It is read and written with read(2) and
   * write(2), so a pipe or a terminal serves as a connected socket would.
   *
   * @throws {Deno.errors.BadResource} when `fd` is not open.
   */
  static duplicate(fd: number): FdSocket {
    const c = libc();
    const copy = c.fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) throw lastError(`duplicate of descriptor ${fd}`);
    const sock = new FdSocket(own(copy), null);
    const flags = c.fcntl(copy, F_GETFL, 0);
    if (flags < 0 || c.fcntl(copy, F_SETFL, flags | O_NONBLOCK) < 0) {
      const error = lastError(`non-blocking mode for descriptor ${fd}`);
      sock.close();
      throw error;
    }
    return sock;
  }

  /**
   * Opens a socket (`SOCK_NONBLOCK | SOCK_CLOEXEC`).
   *
   * @throws {Deno.errors.NotCapable} without `--allow-ffi`.
   * @throws {Error} with code `EMFILE`/`ENFILE` when out of descriptors.
   */
  static open(family: Family): FdSocket {
    const af = FAMILIES[checkFamily(family)];
    const fd = libc().socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw lastError("socket");
    return new FdSocket(own(fd), family);
  }

  /** The family an address needs: `"unix"` for `{ path }`, else by IP. */
  static familyOf(address: Address): Family {
    return familyName(encodeAddress("address", address).family);
  }

  /**
   * Replaces the descriptor with a new socket of `family` under the same
   * number (`dup3`), so that the number a caller holds stays valid. Options
   * set on the old socket are lost.
   */
  reopen(family: Family): void {
    const fd = this.#open("reopen");
    const fresh = FdSocket.open(family);
    const c = libc();
    if (c.dup3(fresh.#fd, fd, O_CLOEXEC) < 0) {
      const error = lastError("reopen");
      fresh.close();
      throw error;
    }
    fresh.close();
    this.#family = family;
  }

  /**
   * Moves the socket to the lowest free descriptor number from `min` up
   * (`F_DUPFD_CLOEXEC`), closing the old number.
   */
  renumber(min: number): void {
    const fd = this.#open("renumber");
    const moved = libc().fcntl(fd, F_DUPFD_CLOEXEC, min);
    if (moved < 0) throw lastError("renumber");
    this.#fd = own(moved);
    sendRoom.delete(fd);
    closeOwned(fd);
  }

  /** The poll(2) bits now (see {@linkcode pollDescriptor}). */
  readiness(): number {
    return pollDescriptor(this.#open("readiness"));
  }

  /**
   * An ioctl that reads a count: `FIONREAD` (bytes waiting to be received)
   * or `SIOCOUTQ` (bytes sent but not yet acknowledged).
   */
  queued(request: number): number {
    const fd = this.#open("queued");
    optionCell[0] = 0;
    if (libc().ioctl(fd, BigInt(request), optionBytes) < 0) return 0;
    return optionCell[0];
  }

  /** `SO_RCVBUF` or `SO_SNDBUF` (the kernel doubles the value it is given). */
  setBufferSize(which: "recv" | "send", size: number): void {
    const fd = this.#open("setBufferSize");
    optionCell[0] = Math.min(size, 0x7fffffff);
    const name = which === "recv" ? SO_RCVBUF : SO_SNDBUF;
    if (libc().setsockopt(fd, SOL_SOCKET, name, optionBytes, 4) < 0) {
      throw lastError("setBufferSize");
    }
  }

  /**
   * `SO_LINGER` on with a zero timeout: `close()` drops what is unsent and
   * resets the connection, without blocking.
   */
  setAbortiveClose(): void {
    const fd = this.#open("setAbortiveClose");
    lingerCell[0] = 1;
    lingerCell[1] = 0;
    if (libc().setsockopt(fd, SOL_SOCKET, SO_LINGER, lingerBytes, 8) < 0) {
      throw lastError("setAbortiveClose");
    }
  }

  /** The OS descriptor, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** Whether {@linkcode FdSocket.close} has run. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * Binds to `address`; for TCP, hostname defaults to `"0.0.0.0"` (`"::"` on
   * an IPv6 socket).
   */
  bind(address: Address): void {
    const fd = this.#open("bind");
    const sockaddr = this.#encode(
      address,
      this.#family === "ipv6" ? "::" : "0.0.0.0",
    );
    if (libc().bind(fd, sockaddr, byteLengthOf(sockaddr)) < 0) {
      throw lastError("bind");
    }
  }

  /** Listens with a queue of `backlog` (clamped to 1..65535, as Python's). */
  listen(backlog = 128): void {
    checkCount("backlog", backlog);
    const fd = this.#open("listen");
    if (libc().listen(fd, Math.max(1, Math.min(backlog, 65535))) < 0) {
      throw lastError("listen");
    }
  }

  /**
   * Takes a pending connection (`accept4`, non-blocking and close-on-exec).
   *
   * @returns The connected socket and the peer's address.
   * @throws {Deno.errors.WouldBlock} when none is pending.
   * @throws {Error} with code `EMFILE`/`ENFILE` when out of descriptors: the
   *   connection stays queued and this socket keeps working; the caller
   *   should stop asking until a descriptor is freed (level-triggered epoll
   *   keeps reporting the listener readable meanwhile).
   */
  accept(): [FdSocket, Deno.Addr] {
    const fd = this.#open("accept");
    const c = libc();
    let misread = 0;
    for (;;) {
      lengthCell[0] = SOCKADDR_STORAGE_SIZE;
      const conn = c.accept4(
        fd,
        storage,
        lengthBytes,
        SOCK_NONBLOCK | SOCK_CLOEXEC,
      );
      if (conn >= 0) {
        own(conn);
        return [
          new FdSocket(conn, this.#family),
          decodeAddress(storage, lengthCell[0]),
        ];
      }
      const code = errno();
      // A connection reset while queued, or a signal: try the next one.
      if (code === ECONNABORTED || code === EINTR) continue;
      // An errno accept4(2) never sets (ENOENT was seen once, as a loop was
      // interrupted with SIGINT): something on this thread changed errno
      // before it was read. Ask again rather than report it.
      if (!ACCEPT_ERRORS.has(code) && misread++ < 3) continue;
      throw code === EAGAIN
        ? new Deno.errors.WouldBlock("accept: no connection is pending")
        : errnoError("accept", code);
    }
  }

  /**
   * Starts connecting to `address` (hostname defaults to `"127.0.0.1"`, `"::1"`
   * on an IPv6 socket).
   *
   * @returns `true` when connected at once, `false` when in progress: then
   *   writability means done, and {@linkcode FdSocket.takeError} says how.
   */
  connect(address: Address): boolean {
    const fd = this.#open("connect");
    const sockaddr = this.#encode(
      address,
      this.#family === "ipv6" ? "::1" : "127.0.0.1",
    );
    const c = libc();
    if (c.connect(fd, sockaddr, byteLengthOf(sockaddr)) === 0) return true;
    let code = errno();
    if (code === EINPROGRESS) return false;
    if (code === EISCONN || code === EALREADY) {
      throw errnoError("connect", code);
    }
    // Asked again, a connect in progress says EALREADY and a failed one
    // its error again: under load, errno was once seen to hold another
    // call's value (ENOENT for a TCP connect), so a failure is confirmed.
    if (c.connect(fd, sockaddr, byteLengthOf(sockaddr)) === 0) return true;
    const again = errno();
    if (again === EALREADY || again === EINPROGRESS) return false;
    code = again;
    // A full Unix listen queue says EAGAIN: WouldBlock, as in Python.
    throw errnoError("connect", code);
  }

  /**
   * Reads and clears the socket's pending error (`SO_ERROR`): the outcome of
   * a connect in progress, or an asynchronous failure.
   *
   * @returns The error, or `null` when there is none.
   */
  takeError(): Error | null {
    const code = this.#getInt("takeError", SOL_SOCKET, SO_ERROR);
    return code === 0 ? null : errnoError("connect", code);
  }

  /**
   * Receives into `buffer`, straight from the kernel.
   *
   * @returns The count received; 0 at end of stream (or for an empty buffer).
   * @throws {Deno.errors.WouldBlock} when nothing is there.
   */
  recvInto(buffer: Uint8Array): number {
    if (!isUint8Array(buffer)) {
      throw new TypeError(
        `buffer must be a Uint8Array, got ${describe(buffer)}`,
      );
    }
    const fd = this.#open("recv");
    const size = byteLengthOf(buffer);
    if (size === 0) return 0;
    return this.#recv(fd, buffer, size);
  }

  /**
   * Receives up to `bufsize` bytes through a shared buffer.
   *
   * @returns A new array sized to what came; empty at end of stream.
   * @throws {Deno.errors.WouldBlock} when nothing is there.
   */
  recv(bufsize: number): Uint8Array {
    checkSize("bufsize", bufsize);
    const fd = this.#open("recv");
    if (bufsize > SHARED_RECV_SIZE) {
      const own = new Uint8Array(bufsize);
      const count = this.#recv(fd, own, bufsize);
      return count === bufsize ? own : own.slice(0, count);
    }
    sharedRecv ??= new Uint8Array(SHARED_RECV_SIZE);
    const count = this.#recv(fd, sharedRecv, bufsize);
    if (count === 0) return EMPTY;
    // Copied out into a region of a shared arena (_read_arena.ts) rather than
    // a buffer of its own: a typed array over a new ArrayBuffer per read costs
    // a malloc'd backing store and far more time than a view.
    const data = allocateRegion(count);
    data.set(
      count === SHARED_RECV_SIZE ? sharedRecv : sharedRecv.subarray(0, count),
    );
    return data;
  }

  /**
   * Sends from `data` (`MSG_NOSIGNAL`: a closed peer is `BrokenPipe`, never
   * SIGPIPE).
   *
   * @returns How many bytes the kernel took.
   * @throws {Deno.errors.WouldBlock} when the send buffer is full.
   */
  send(data: Uint8Array): number {
    if (!isUint8Array(data)) {
      throw new TypeError(`data must be a Uint8Array, got ${describe(data)}`);
    }
    const fd = this.#open("send");
    // The engine's length, never a property: libc reads this many bytes.
    const size = byteLengthOf(data);
    if (size === 0) return 0;
    const c = libc();
    for (;;) {
      // write(2) on a pipe whose reader is gone raises SIGPIPE, which Deno
      // ignores (as Rust programs do): it fails with EPIPE, as send does here.
      const count = this.#family === null
        ? c.write(fd, data, BigInt(size))
        : c.send(fd, data, BigInt(size), MSG_NOSIGNAL);
      if (count >= 0) {
        if (count === size) sendRoom.add(fd);
        else sendRoom.delete(fd);
        return count;
      }
      const code = errno();
      if (code === EINTR) continue;
      sendRoom.delete(fd);
      throw code === EAGAIN
        ? new Deno.errors.WouldBlock("send: the send buffer is full")
        : errnoError("send", code);
    }
  }

  /** Ends one or both directions. */
  shutdown(how: "read" | "write" | "both"): void {
    const flag = how === "read"
      ? SHUT_RD
      : how === "write"
      ? SHUT_WR
      : how === "both"
      ? SHUT_RDWR
      : null;
    if (flag === null) {
      throw new TypeError(
        `how must be "read", "write" or "both", got ${describe(how)}`,
      );
    }
    if (libc().shutdown(this.#open("shutdown"), flag) < 0) {
      throw lastError("shutdown");
    }
  }

  /**
   * Gives the descriptor up without closing it, to whatever takes the number
   * over (which closes it); this socket is closed from then on.
   */
  release(): number {
    const fd = this.#open("release");
    this.#fd = -1;
    sendRoom.delete(fd);
    disown(fd);
    return fd;
  }

  /** Closes the descriptor; later calls do nothing. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    sendRoom.delete(fd);
    closeOwned(fd);
  }

  /** Closes the socket (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** The local address. */
  getsockname(): Deno.Addr {
    return this.#address("getsockname");
  }

  /**
   * The peer's address.
   *
   * @throws {Deno.errors.NotConnected} when not connected.
   */
  getpeername(): Deno.Addr {
    return this.#address("getpeername");
  }

  /** Turns Nagle's algorithm off (`true`) or on (TCP only). */
  setNoDelay(noDelay = true): void {
    this.#setFlag("setNoDelay", IPPROTO_TCP, TCP_NODELAY, noDelay);
  }

  /** Turns TCP keep-alive on or off. */
  setKeepAlive(keepAlive = true): void {
    this.#setFlag("setKeepAlive", SOL_SOCKET, SO_KEEPALIVE, keepAlive);
  }

  /** `SO_REUSEADDR`: bind over connections in TIME_WAIT. Before `bind`. */
  setReuseAddr(reuse = true): void {
    this.#setFlag("setReuseAddr", SOL_SOCKET, SO_REUSEADDR, reuse);
  }

  /** `SO_REUSEPORT`: several sockets bound to one port. Before `bind`. */
  setReusePort(reuse = true): void {
    this.#setFlag("setReusePort", SOL_SOCKET, SO_REUSEPORT, reuse);
  }

  /** Reads a boolean or integer option back (for tests and diagnostics). */
  getOption(
    option: "noDelay" | "keepAlive" | "reuseAddr" | "reusePort",
  ): number {
    switch (option) {
      case "noDelay":
        return this.#getInt("getOption", IPPROTO_TCP, TCP_NODELAY);
      case "keepAlive":
        return this.#getInt("getOption", SOL_SOCKET, SO_KEEPALIVE);
      case "reuseAddr":
        return this.#getInt("getOption", SOL_SOCKET, SO_REUSEADDR);
      case "reusePort":
        return this.#getInt("getOption", SOL_SOCKET, SO_REUSEPORT);
    }
    throw new TypeError(`unknown option ${describe(option)}`);
  }

  #address(operation: "getsockname" | "getpeername"): Deno.Addr {
    const fd = this.#open(operation);
    lengthCell[0] = SOCKADDR_STORAGE_SIZE;
    if (libc()[operation](fd, storage, lengthBytes) < 0) {
      throw lastError(operation);
    }
    return decodeAddress(storage, lengthCell[0]);
  }

  // The kernel writes up to `size` bytes: never more than the engine says
  // `buffer` holds, whatever its properties say.
  #recv(fd: number, buffer: Uint8Array, wanted: number): number {
    const size = Math.min(wanted, byteLengthOf(buffer));
    const c = libc();
    for (;;) {
      const count = this.#family === null
        ? c.read(fd, buffer, BigInt(size))
        : c.recv(fd, buffer, BigInt(size), 0);
      if (count >= 0) return count;
      const code = errno();
      if (code === EINTR) continue;
      throw code === EAGAIN
        ? new Deno.errors.WouldBlock("recv: no data is there")
        : errnoError("recv", code);
    }
  }

  #open(operation: string): number {
    if (this.#fd < 0) {
      throw new Deno.errors.BadResource(`${operation} on a closed socket`);
    }
    return this.#fd;
  }

  #encode(address: Address, defaultHostname: string): Uint8Array {
    const sockaddr = encodeAddress("address", address, defaultHostname);
    const family = this.#family;
    if (family === null) {
      throw new Deno.errors.BadResource("the descriptor is not a socket");
    }
    if (sockaddr.family !== FAMILIES[family]) {
      throw new TypeError(
        `address is ${
          familyName(sockaddr.family)
        }, but the socket is ${family}`,
      );
    }
    return sockaddr.bytes;
  }

  #setFlag(operation: string, level: number, name: number, on: unknown): void {
    if (typeof on !== "boolean") {
      throw new TypeError(`${operation} takes a boolean, got ${describe(on)}`);
    }
    const fd = this.#open(operation);
    optionCell[0] = on ? 1 : 0;
    if (libc().setsockopt(fd, level, name, optionBytes, 4) < 0) {
      throw lastError(operation);
    }
  }

  #getInt(operation: string, level: number, name: number): number {
    const fd = this.#open(operation);
    optionCell[0] = 0;
    lengthCell[0] = 4;
    if (libc().getsockopt(fd, level, name, optionBytes, lengthBytes) < 0) {
      throw lastError(operation);
    }
    return optionCell[0];
  }
}
