// libc through Deno's FFI for the epoll backend: the symbol table, opened
// lazily (importing this module needs no --allow-ffi), errno, and errno mapped
// to the Deno.errors classes the default backend throws.
//
// Everything here is Linux-specific (x86_64 and aarch64 share the generic
// errno numbers and socket constants used below). Call costs, measured: an
// i32-only call 3–5 ns, buffer + i32 13 ns. `usize` parameters take the fast
// path only when passed as bigint (a number costs 60–88 ns), and `ssize_t`
// results are declared `i32`: Linux moves at most MAX_RW_COUNT (2^31 - 4096)
// bytes per call, so every count fits.

import { FdSet } from "../_fd_set.ts";
import { errnoError } from "../_errors.ts";

/**
 * Symbols this backend calls; every pointer is a buffer this code sized.
 * A size passed with a buffer is the engine's length of it (_view.ts), never
 * a property the buffer's owner could shadow.
 */
const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // (fd, sockaddr, socklen_t)
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  // (fd, sockaddr out, socklen_t* in/out, flags)
  accept4: {
    parameters: ["i32", "buffer", "buffer", "i32"],
    result: "i32",
  },
  // (fd, buf, size_t len, flags) -> ssize_t, declared i32 (see above)
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  // (fd, level, name, value, socklen_t) / (fd, level, name, value, socklen_t*)
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
  getsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "buffer"],
    result: "i32",
  },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // (struct pollfd*, nfds_t, timeout ms): one descriptor's readiness now.
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  // (oldfd, newfd, flags): moves a socket onto the number it replaces.
  dup3: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // fcntl(fd, cmd, int) (F_DUPFD_CLOEXEC, F_GETFL, F_SETFL) and ioctl(fd,
  // request, int*) are variadic; Linux on x86_64 and aarch64 passes these
  // arguments as it passes fixed ones.
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // (NUL-terminated path)
  unlink: { parameters: ["buffer"], result: "i32" },
  // (NUL-terminated node, service NULL, struct addrinfo* hints,
  // struct addrinfo** out): a host name's addresses (resolve.ts).
  getaddrinfo: {
    parameters: ["buffer", "pointer", "buffer", "buffer"],
    result: "i32",
  },
  freeaddrinfo: { parameters: ["pointer"], result: "void" },
  gai_strerror: { parameters: ["i32"], result: "pointer" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  // (epfd, op, fd, struct epoll_event*)
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // (epfd, events, maxevents, timeout ms)
  epoll_wait: {
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
  },
  // (epfd, events, maxevents, struct timespec*, sigmask NULL): epoll_wait
  // with a timeout finer than a millisecond (Linux 5.11, glibc 2.35).
  epoll_pwait2: {
    parameters: ["i32", "buffer", "i32", "buffer", "pointer"],
    result: "i32",
    optional: true,
  },
  // The same call on a worker thread: a promise, for the idle wait.
  epoll_wait_blocking: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened libc. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

// Socket constants (Linux, generic: the same on x86_64 and aarch64).
export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
// Without it a send to a peer that closed raises SIGPIPE and kills Deno.
export const MSG_NOSIGNAL = 0x4000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const SO_KEEPALIVE = 9;
export const SO_REUSEPORT = 15;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_LINGER = 13;
export const O_CLOEXEC = 0o2000000;
export const F_DUPFD_CLOEXEC = 1030;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const O_NONBLOCK = 0o4000;
// Bytes waiting to be read / not yet acknowledged by the peer.
export const FIONREAD = 0x541b;
export const SIOCOUTQ = 0x5411;
export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const EPOLL_CLOEXEC = 0o2000000;

// errno values this code tests for by number.
export const EINTR = 4;
export const EAGAIN = 11;
export const EINPROGRESS = 115;
export const EALREADY = 114;
export const EISCONN = 106;
export const ECONNABORTED = 103;

/** Why the epoll backend cannot run in this process, or `null` if it can. */
export function unsupportedReason(): string | null {
  if (Deno.build.os !== "linux") {
    return `the epoll backend needs Linux (epoll, accept4), not ${Deno.build.os}: use the default backend here`;
  }
  if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") {
    return `the epoll backend supports x86_64 and aarch64 Linux, not ${Deno.build.arch}: use the default backend here`;
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return "the epoll backend calls libc through FFI: run Deno with --allow-ffi (it lifts Deno's sandbox for this process), or use the default backend";
  }
  return null;
}

// Known once a check has passed: every accepted socket asks, and a
// permission query per socket was most of what accepting allocated.
let supported = false;

/** Whether the epoll backend can run in this process. */
export function isSupported(): boolean {
  return supported ||= unsupportedReason() === null;
}

/**
 * Throws unless the epoll backend can run in this process: an error naming
 * the reason and the fix.
 *
 * @throws {Deno.errors.NotSupported} off Linux or on another CPU.
 * @throws {Deno.errors.NotCapable} without the FFI permission.
 */
export function checkSupported(): void {
  if (isSupported()) return;
  const reason = unsupportedReason()!;
  throw reason.includes("--allow-ffi")
    ? new Deno.errors.NotCapable(reason)
    : new Deno.errors.NotSupported(reason);
}

/** `struct epoll_event`: 12 bytes packed on x86_64, 16 on aarch64. */
export const EPOLL_EVENT_SIZE: number = Deno.build.arch === "x86_64" ? 12 : 16;

let symbols: Libc | null = null;
let errnoCell: Int32Array | null = null;

/**
 * The libc symbols, opened on first use.
 *
 * @throws {Deno.errors.NotSupported} off Linux or on another CPU.
 * @throws {Deno.errors.NotCapable} without the FFI permission.
 */
export function libc(): Libc {
  if (symbols !== null) return symbols;
  checkSupported();
  const lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  // errno is thread-local: this address is the JS thread's, valid for every
  // synchronous call (never for `nonblocking` ones, which run elsewhere).
  const location = lib.__errno_location();
  if (location === null) {
    throw new Deno.errors.NotSupported("libc returned no errno location");
  }
  errnoCell = new Int32Array(
    Deno.UnsafePointerView.getArrayBuffer(location, 4),
  );
  symbols = lib;
  return lib;
}

/** errno after the last synchronous call that failed. */
export function errno(): number {
  return errnoCell![0];
}

/** The error for the last failed synchronous call of `operation`. */
export function lastError(operation: string): Error {
  return errnoError(operation, errno());
}

// Descriptors this code opened and has not closed. Closing any other number
// could close one of Deno's own (a stale number is reused at once).
const owned = new FdSet();

/** Records `fd`, just returned by libc, as this code's to close. */
export function own(fd: number): number {
  owned.add(fd);
  return fd;
}

/** Forgets `fd`: something else (which closes it) has taken it over. */
export function disown(fd: number): void {
  owned.delete(fd);
}

/** Whether `fd` was opened by this code and is still open. */
export function isOwned(fd: number): boolean {
  return owned.has(fd);
}

/**
 * Closes `fd` if this code owns it. Linux frees the number even when close
 * fails (EINTR included), so it is never retried.
 *
 * @returns Whether it was owned (and is now closed).
 */
export function closeOwned(fd: number): boolean {
  if (!owned.delete(fd)) return false;
  libc().close(fd);
  return true;
}
