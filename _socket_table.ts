// The live sockets: their numbers (as POSIX descriptors, lowest free first;
// the epoll backend's are their OS descriptors), and each socket's backend
// as the readiness layer sees it, which socket.ts records here for the
// layers above it (asyncore's loop, select()) rather than exposing it as a
// public member.

import { FdTable } from "./_fd_table.ts";
import type { SocketSource } from "./_backend_api.ts";

/** What the table knows of a socket. */
export interface LiveSocket {
  /** Whether the socket has been closed. */
  readonly closed: boolean;
  /** Its number. */
  fileno(): number;
}

/** Every live socket, by number. */
export const sockets: FdTable<LiveSocket> = new FdTable<LiveSocket>();

// The backend hangs off its socket under a symbol only this module knows,
// not in a WeakMap: a table entry per socket costs memory an idle connection
// should not pay, and the loop reads it often. Not enumerable, so the
// socket's keys and printing do not show it.
const SOURCE: unique symbol = Symbol("asyncore socket source");

interface Holder {
  [SOURCE]?: SocketSource;
}

/** Records `source` as the backend behind `sock` (socket.ts does). */
export function setSource(sock: LiveSocket, source: SocketSource): void {
  const holder = sock as Holder;
  if (holder[SOURCE] === undefined) {
    Object.defineProperty(sock, SOURCE, { value: source, writable: true });
  } else {
    holder[SOURCE] = source;
  }
}

/** The backend behind `sock`: what registries and idle checks use. */
export function sourceOf(sock: LiveSocket): SocketSource {
  return (sock as Holder)[SOURCE]!;
}
