// Helpers for the epoll backend's tests: whether it can run here, bounded
// waits for readiness, and connected FdSocket pairs.

import { AssertionError } from "@std/assert";
import { type Epoll, EPOLLIN, EPOLLOUT } from "../_epoll/epoll.ts";
import { type Family as SocketFamily, FdSocket } from "../_epoll/fd_socket.ts";
import { IPPROTO_TCP, libc, unsupportedReason } from "../_epoll/libc.ts";
import { hasIPv6, unixEndpoint } from "./_helpers.ts";

/** Why the epoll tests cannot run here, or `null`. */
export const epollUnsupported: string | null = unsupportedReason();

/** A suffix for test names when they are skipped, saying why. */
export const skipNote: string = epollUnsupported === null
  ? ""
  : " (skipped: needs Linux x86_64/aarch64 and --allow-ffi)";

/** One address family the epoll tests run over. */
export interface EpollFamily {
  name: string;
  family: SocketFamily;
  ignore: boolean;
  /** A bind address and a cleanup. */
  endpoint(): { address: Deno.NetAddr | { path: string } } & Disposable;
}

/** IPv4, IPv6 (ignored without `::1`) and Unix. */
export const EPOLL_FAMILIES: readonly EpollFamily[] = [
  {
    name: "IPv4",
    family: "ipv4",
    ignore: epollUnsupported !== null,
    endpoint: () => ({
      address: { transport: "tcp", hostname: "127.0.0.1", port: 0 },
      [Symbol.dispose]() {},
    }),
  },
  {
    name: "IPv6",
    family: "ipv6",
    ignore: epollUnsupported !== null || !hasIPv6,
    endpoint: () => ({
      address: { transport: "tcp", hostname: "::1", port: 0 },
      [Symbol.dispose]() {},
    }),
  },
  {
    name: "Unix",
    family: "unix",
    ignore: epollUnsupported !== null,
    endpoint: () => {
      const unix = unixEndpoint();
      return {
        address: { path: unix.path },
        [Symbol.dispose]: () => unix[Symbol.dispose](),
      };
    },
  },
];

/** The address to connect to what `getsockname()` returned. */
export function target(addr: Deno.Addr): Deno.NetAddr | { path: string } {
  if (addr.transport === "unix") return { path: addr.path };
  if (addr.transport !== "tcp") throw new TypeError(addr.transport);
  return addr;
}

/**
 * Polls `epoll` until `token` shows any of `bits`, idling in between; fails
 * after `ms`.
 *
 * @returns The readiness bits seen.
 */
export async function readyWithin(
  epoll: Epoll,
  token: number,
  bits: number,
  ms = 5000,
): Promise<number> {
  const deadline = performance.now() + ms;
  for (;;) {
    const count = epoll.poll();
    for (let i = 0; i < count; i++) {
      if (epoll.token(i) === token && (epoll.readiness(i) & bits) !== 0) {
        return epoll.readiness(i);
      }
    }
    const left = deadline - performance.now();
    if (left <= 0) {
      throw new AssertionError(
        `token ${token} did not show bits ${bits} within ${ms} ms`,
      );
    }
    if (count === 0) await epoll.idle(left);
    else await epoll.idle(Math.min(left, 1));
  }
}

/** A listener, a client connected to it and the accepted end. */
export interface Pair extends Disposable {
  listener: FdSocket;
  client: FdSocket;
  server: FdSocket;
}

/** Tokens {@linkcode connectedPair} registers its sockets with. */
export const LISTENER = 1;
export const CLIENT = 2;
export const SERVER = 3;

/**
 * Connects an FdSocket pair over `family` and registers the three sockets in
 * `epoll` (listener: EPOLLIN, client and server: none yet).
 */
export async function connectedPair(
  epoll: Epoll,
  family: EpollFamily,
): Promise<Pair> {
  const endpoint = family.endpoint();
  const listener = FdSocket.open(family.family);
  const client = FdSocket.open(family.family);
  let server: FdSocket | null = null;
  const dispose = () => {
    for (const sock of [client, server, listener]) sock?.close();
    endpoint[Symbol.dispose]();
  };
  try {
    listener.bind(endpoint.address);
    listener.listen(16);
    epoll.add(listener.fd, LISTENER, EPOLLIN);
    const connected = client.connect(target(listener.getsockname()));
    epoll.add(client.fd, CLIENT, EPOLLOUT);
    if (!connected) await readyWithin(epoll, CLIENT, EPOLLOUT);
    const error = client.takeError();
    if (error !== null) throw error;
    await readyWithin(epoll, LISTENER, EPOLLIN);
    server = listener.accept()[0];
    epoll.modify(client.fd, CLIENT, 0);
    epoll.add(server.fd, SERVER, 0);
    return { listener, client, server, [Symbol.dispose]: dispose };
  } catch (error) {
    dispose();
    throw error;
  }
}

const TCP_INFO = 11;
const TCP_INFO_SIZE = 160;
// struct tcp_info (linux/tcp.h): tcpi_data_segs_in is the u32 at byte 152.
const DATA_SEGS_IN = 152;

/** How many segments with data a TCP socket on descriptor `fd` has received. */
export function dataSegmentsIn(fd: number): number {
  const info = new Uint8Array(TCP_INFO_SIZE);
  const length = new Uint32Array([TCP_INFO_SIZE]);
  const result = libc().getsockopt(
    fd,
    IPPROTO_TCP,
    TCP_INFO,
    info,
    new Uint8Array(length.buffer),
  );
  if (result < 0 || length[0] < DATA_SEGS_IN + 4) {
    throw new Error(`getsockopt(TCP_INFO) failed on descriptor ${fd}`);
  }
  return new DataView(info.buffer).getUint32(DATA_SEGS_IN, true);
}

// pipe2() and open() for the descriptor tests; the library has no use for
// them, so they are not in its symbol table.
let files: {
  pipe2(fds: Uint8Array, flags: number): number;
  open(path: Uint8Array, flags: number, mode: number): number;
} | null = null;

function fileCalls(): NonNullable<typeof files> {
  files ??= Deno.dlopen("libc.so.6", {
    pipe2: { parameters: ["buffer", "i32"], result: "i32" },
    // open(path, flags, mode) is variadic; Linux passes mode as a fixed int.
    open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  }).symbols;
  return files;
}

const O_CLOEXEC = 0o2000000;

/** A descriptor this test owns; closing it twice is harmless. */
export interface OwnedFd extends Disposable {
  readonly fd: number;
  close(): void;
}

function owned(fd: number): OwnedFd {
  let open = true;
  return {
    fd,
    close() {
      if (!open) return;
      open = false;
      libc().close(fd);
    },
    [Symbol.dispose]() {
      this.close();
    },
  };
}

/** A pipe: its read end and its write end (both blocking, close-on-exec). */
export function pipe(): { read: OwnedFd; write: OwnedFd } & Disposable {
  const fds = new Int32Array(2);
  if (fileCalls().pipe2(new Uint8Array(fds.buffer), O_CLOEXEC) < 0) {
    throw new Error("pipe2 failed");
  }
  const read = owned(fds[0]);
  const write = owned(fds[1]);
  return {
    read,
    write,
    [Symbol.dispose]() {
      read.close();
      write.close();
    },
  };
}

/** `open(2)` flags the tests use. */
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_APPEND = 0o2000;

/** Opens `path` with `open(2)`: a regular file's descriptor. */
export function openFd(path: string, flags: number): OwnedFd {
  const fd = fileCalls().open(
    new TextEncoder().encode(path + "\0"),
    flags | O_CLOEXEC,
    0o600,
  );
  if (fd < 0) throw new Error(`open(${path}) failed`);
  return owned(fd);
}
