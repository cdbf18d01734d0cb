// The live sockets: their numbers (as POSIX descriptors, lowest free first;
// the epoll backend's are their OS descriptors) and, for the layers above
// socket.ts, each socket's backend source, reached through a private field
// rather than a public member.

import { FdTable } from "./_fd_table.ts";
import type { Source } from "./_readiness.ts";
import type { Socket } from "./socket.ts";

/** What the layers above see of a socket's backend (either one). */
export interface SocketSource extends Source {
  /** The readiness bits now: READABLE, WRITABLE, ERROR, HUP. */
  readiness(): number;
  /** Grows whenever bytes move in or out (idle timeouts watch it). */
  readonly activity: number;
}

/** Every live socket, by number. */
export const sockets: FdTable<Socket> = new FdTable<Socket>();

let accessor: ((sock: Socket) => SocketSource) | undefined;

/** The backend source behind `sock`: what registries and idle checks use. */
export function sourceOf(sock: Socket): SocketSource {
  return accessor!(sock);
}

/** Called once by socket.ts with the way to reach a socket's source. */
export function setSourceAccessor(get: (sock: Socket) => SocketSource): void {
  accessor = get;
}
