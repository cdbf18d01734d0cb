// The live sockets: their numbers (as POSIX descriptors, lowest free first)
// and, for the layers above socket.ts, each socket's backend source, reached
// through a private field rather than a public member.

import { FdTable } from "./_fd_table.ts";
import type { ConnSource } from "./_conn_source.ts";
import type { Socket } from "./socket.ts";

/** Every live socket, by number. */
export const sockets: FdTable<Socket> = new FdTable<Socket>();

let accessor: ((sock: Socket) => ConnSource<Socket>) | undefined;

/** The backend source behind `sock`: what registries and idle checks use. */
export function sourceOf(sock: Socket): ConnSource<Socket> {
  return accessor!(sock);
}

/** Called once by socket.ts with the way to reach a socket's source. */
export function setSourceAccessor(
  get: (sock: Socket) => ConnSource<Socket>,
): void {
  accessor = get;
}
