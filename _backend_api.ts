// What socket.ts asks of a backend: the operations of a non-blocking stream
// socket with the public API's semantics (its state checks and errors
// included), and readiness through the `Source` seam of _selector.ts.
// `Socket` checks its arguments, then delegates here. Two backends implement
// it: the promise backend on `Deno.Conn` (_conn_source.ts) and the epoll
// backend on OS descriptors (_epoll_source.ts).

import type { DenoAddressOptions } from "./_validate.ts";
import type { SocketSource } from "./_socket_table.ts";
import type { TlsOptions } from "./socket.ts";

/** Where a socket is in its life. */
export type State =
  | "fresh"
  | "bound"
  | "listening"
  | "connecting"
  | "connected";

/** A listener's buffer sizes, which the sockets it accepts start with. */
export interface BufferLimits {
  readonly recvLimit: number;
  readonly sendLimit: number;
}

/** A socket's backend; `T` is what `accept()` hands out (the public Socket). */
export interface SocketBackend<T> extends SocketSource {
  /** Where the socket is in its life. */
  readonly state: State;
  /** The pending error (`SO_ERROR`). */
  readonly error: Error | null;
  /** A TLS handshake has completed. */
  readonly secure: boolean;
  /** The bound of the receive buffer. */
  recvLimit: number;
  /** The bound of the send buffer. */
  sendLimit: number;
  /** How long a closed socket keeps trying to deliver what it accepted. */
  lingerTimeout: number;
  /** Received bytes not yet taken. */
  readonly recvBuffered: number;
  /** Accepted bytes not yet written. */
  readonly sendBuffered: number;
  /** Binds (and, on the promise backend, listens at the OS level). */
  bind(options: DenoAddressOptions, tls: TlsOptions | null): void;
  /** Starts taking connections in, up to `backlog` ahead; bound first. */
  listen(backlog: number): void;
  /** A connection taken in; throws `WouldBlock` when none is pending. */
  accept(): [T, Deno.Addr];
  /** Starts connecting; completion shows as readiness. */
  connect(options: DenoAddressOptions, tls: TlsOptions | null): void;
  /** Up to `max` received bytes; empty at end of stream; else throws. */
  recv(max: number): Uint8Array;
  /** Fills `buffer` (not empty) from what was received; 0 at end of stream; else throws. */
  recvInto(buffer: Uint8Array): number;
  /** Takes as much of `bytes` as fits; throws `WouldBlock` when none does. */
  send(bytes: Uint8Array): number;
  /** Ends one or both directions. */
  shutdown(read: boolean, write: boolean): void;
  /**
   * Upgrades the connection to TLS in place; returns the backend that
   * carries the socket from now on (this one, or a promise backend that
   * took its descriptor over).
   */
  startTls(tls: TlsOptions, hostname: string): SocketBackend<T>;
  /** Closes: deliver what was accepted (lingering), stop reporting. */
  close(): void;
  /** Resolves once closed and the OS socket is let go (the port is free). */
  waitReleased(): Promise<void>;
  /** The local address, or `null` before the socket is bound. */
  getsockname(): Deno.Addr | null;
  /** The peer's address; throws `NotConnected` before it is connected. */
  getpeername(): Deno.Addr;
  /** `TCP_NODELAY`, applied once connected. */
  setNoDelay(noDelay: boolean): void;
  /** `SO_KEEPALIVE`, applied once connected. */
  setKeepAlive(keepAlive: boolean): void;
}
