// The backends, by kind: the one place above the backend folders that names
// them. socket.ts makes each socket's backend here; select() and Poll watch
// other descriptors here. Which backend a new socket uses: the option it was
// made with, else the process-wide default (set by the program, else
// ASYNCORE_BACKEND, read once), else Deno's own sockets. Asked for epoll
// where it cannot work, it throws an error naming the reason and the fix: it
// never falls back silently.

import { ConnSource } from "./_deno/source.ts";
import { DescriptorSource, EpollSource } from "./_epoll/source.ts";
import { Descriptors } from "./_epoll/descriptors.ts";
import { FdSocket, pollDescriptor } from "./_epoll/fd_socket.ts";
import { checkSupported, isSupported } from "./_epoll/libc.ts";
import { describe } from "./_validate.ts";
import type { Registry } from "./_readiness.ts";
import type {
  RawDescriptor,
  SocketBackend,
  SocketSource,
} from "./_backend_api.ts";
import type { Backend, TlsOptions } from "./_types.ts";

export type { Backend };

/** The environment variable that sets the default backend. */
const BACKEND_VARIABLE = "ASYNCORE_BACKEND";

let chosen: Backend | undefined;

/** Checks a backend name. */
export function checkBackend(name: string, value: unknown): Backend {
  if (value !== "deno" && value !== "epoll") {
    throw new TypeError(
      `${name} must be "deno" or "epoll", got ${describe(value)}`,
    );
  }
  return value;
}

/** Sets the default for sockets made from now on (see socket.ts). */
export function setDefault(backend: Backend): void {
  if (backend === "epoll") checkSupported();
  chosen = backend;
}

/**
 * The default: what the program set, else `ASYNCORE_BACKEND` (read on first
 * use; treated as unset when the env permission for it is not granted),
 * else `"deno"`.
 */
export function defaultBackend(): Backend {
  if (chosen !== undefined) return chosen;
  const { state } = Deno.permissions.querySync({
    name: "env",
    variable: BACKEND_VARIABLE,
  });
  const value = state === "granted" ? Deno.env.get(BACKEND_VARIABLE) ?? "" : "";
  chosen = value === "" ? "deno" : checkBackend(BACKEND_VARIABLE, value);
  return chosen;
}

/**
 * A new socket's backend. `given`: the buffer sizes were chosen (the epoll
 * backend then sets them on the kernel's socket).
 */
export function openSocket(
  kind: Backend,
  transport: "tcp" | "unix",
  recvLimit: number,
  sendLimit: number,
  given: boolean,
): SocketBackend {
  if (kind === "deno") return new ConnSource(recvLimit, sendLimit);
  checkSupported();
  const sock = FdSocket.open(transport === "unix" ? "unix" : "ipv4");
  return new EpollSource(sock, recvLimit, sendLimit, given);
}

/** The backend of a socket on `conn` (the promise backend's). */
export function connSocket(
  conn: Deno.Conn,
  recvLimit: number,
  sendLimit: number,
): SocketBackend {
  const handshake = typeof (conn as Deno.TlsConn).handshake === "function";
  return ConnSource.fromConn(conn, recvLimit, sendLimit, handshake);
}

/**
 * The backend of a socket on a duplicate of descriptor `fd` (a pipe, a
 * terminal, a file): the epoll backend's, which reads and writes any
 * descriptor.
 */
export function fileSocket(
  fd: number,
  recvLimit: number,
  sendLimit: number,
): SocketBackend {
  checkSupported();
  return new EpollSource(
    FdSocket.duplicate(fd),
    recvLimit,
    sendLimit,
    false,
    true,
  );
}

/**
 * Starts STARTTLS on `io`; returns the backend that carries the socket from
 * now on. A backend with no TLS engine (epoll) hands its connection over to
 * the promise backend, which runs Deno's over the same descriptor: the one
 * path from one backend to the other.
 */
export function startTls(
  io: SocketBackend,
  tls: TlsOptions,
  hostname: string,
): SocketBackend {
  const next = io.startTls(tls, hostname);
  if (!("handover" in next)) return next;
  return ConnSource.takeOver(next).startTls(tls, hostname);
}

/**
 * Whether select() and Poll can watch descriptors that are not sockets of
 * this module (a pipe, standard input): with epoll the default backend.
 */
export function descriptorsWatchable(): boolean {
  return defaultBackend() === "epoll" && isSupported();
}

/** A watch on descriptor `fd` for select() and Poll (see `descriptorsWatchable()`). */
export function watchDescriptor(fd: number): RawDescriptor {
  return new DescriptorSource(fd);
}

/** poll(2) of descriptor `fd` for `events` now: its `revents`. */
export function pollNow(fd: number, events: number): number {
  return pollDescriptor(fd, events);
}

/** Whether `source` waits on an OS descriptor (a registry's epoll instance). */
export function isDescriptor(source: SocketSource | RawDescriptor): boolean {
  return source instanceof EpollSource || source instanceof DescriptorSource;
}

/**
 * Keeps what `registry` needs to wait on descriptors (an epoll instance)
 * open across its waits, opening it now if `now`: a process out of
 * descriptors could not open one later, where select(2) needs none.
 */
export function keepDescriptorWaits(registry: Registry, now: boolean): void {
  const side = Descriptors.of(registry);
  side.keepOpen = true;
  if (now) side.open();
}

/** Stops keeping `registry`'s descriptor waits open (see `keepDescriptorWaits()`). */
export function releaseDescriptorWaits(registry: Registry): void {
  registry.existingSide(Descriptors)?.release();
}
