/**
 * Baseline (the floor): a bare epoll echo server on libc sockets through
 * Deno's FFI, no library layer: level-triggered, one shared 64 KiB receive
 * buffer, each read echoed at once from it. What any layer on the epoll
 * backend costs is measured against this.
 *
 * ```sh
 * deno run --allow-ffi bench/servers/epoll_echo.ts PORT
 * ```
 *
 * `PORT` 0 picks a free port; the server prints
 * `listening on 127.0.0.1:PORT` once it accepts connections. Linux only
 * (x86_64, aarch64). Nothing else runs in this process, so the loop never
 * hands the thread to Deno while busy; it idles on a worker-thread
 * `epoll_wait` when nothing is ready.
 *
 * @module
 */

import { Epoll, EPOLLIN, EPOLLOUT } from "../../_epoll/epoll.ts";
import { FdSocket } from "../../_epoll/fd_socket.ts";

const BUFFER_SIZE = 64 * 1024;
const MAX_ACCEPTS_PER_EVENT = 64;
const LISTENER = 0xffffffff;

interface Connection {
  sock: FdSocket;
  // Bytes the kernel did not take yet; reading stops until they are sent.
  pending: Uint8Array | null;
}

const port = Number(Deno.args[0] ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new RangeError(`PORT must be an integer in 0..65535, got ${port}`);
}

const listener = FdSocket.open("ipv4");
listener.setReuseAddr(true);
listener.bind({ hostname: "127.0.0.1", port });
listener.listen(1024);
const epoll = new Epoll(1024);
epoll.add(listener.fd, LISTENER, EPOLLIN);
// Indexed by fd: the token of a connection is its descriptor.
const connections: (Connection | undefined)[] = [];
const buffer = new Uint8Array(BUFFER_SIZE);
let accepting = true;

function close(fd: number): void {
  const conn = connections[fd];
  if (conn === undefined) return;
  connections[fd] = undefined;
  conn.sock.close();
  if (!accepting) {
    // A descriptor is free again: accept once more.
    accepting = true;
    epoll.modify(listener.fd, LISTENER, EPOLLIN);
  }
}

function acceptSome(): void {
  for (let i = 0; i < MAX_ACCEPTS_PER_EVENT; i++) {
    let sock: FdSocket;
    try {
      [sock] = listener.accept();
    } catch (error) {
      if (error instanceof Deno.errors.WouldBlock) return;
      // EMFILE/ENFILE: the connection stays queued; wait for a close.
      accepting = false;
      epoll.modify(listener.fd, LISTENER, 0);
      return;
    }
    sock.setNoDelay(true);
    connections[sock.fd] = { sock, pending: null };
    epoll.add(sock.fd, sock.fd, EPOLLIN);
  }
}

function flush(fd: number, conn: Connection, data: Uint8Array): void {
  let sent = 0;
  try {
    sent = conn.sock.send(data);
  } catch (error) {
    if (!(error instanceof Deno.errors.WouldBlock)) return close(fd);
  }
  if (sent === data.length) {
    if (conn.pending !== null) {
      conn.pending = null;
      epoll.modify(fd, fd, EPOLLIN);
    }
  } else {
    const rest = data.subarray(sent);
    if (conn.pending === null) epoll.modify(fd, fd, EPOLLOUT);
    conn.pending = rest.buffer === buffer.buffer ? rest.slice() : rest;
  }
}

function handle(fd: number, readiness: number): void {
  const conn = connections[fd];
  if (conn === undefined) return;
  if (conn.pending !== null) return flush(fd, conn, conn.pending);
  if ((readiness & ~EPOLLOUT) === 0) return;
  let count: number;
  try {
    count = conn.sock.recvInto(buffer);
  } catch (error) {
    if (error instanceof Deno.errors.WouldBlock) return;
    return close(fd);
  }
  if (count === 0) return close(fd);
  flush(fd, conn, buffer.subarray(0, count));
}

console.log(
  `listening on 127.0.0.1:${(listener.getsockname() as Deno.NetAddr).port}`,
);
for (;;) {
  // Nothing ready: wait a moment here before the costlier worker-thread
  // hand-off (nothing else runs in this process to be held up).
  const count = epoll.poll() || epoll.poll(1);
  if (count === 0) {
    await epoll.idle();
    continue;
  }
  for (let i = 0; i < count; i++) {
    const token = epoll.token(i);
    if (token === LISTENER) acceptSome();
    else handle(token, epoll.readiness(i));
  }
}
