// What socket.ts asks of a backend: the operations of a non-blocking stream
// socket, and readiness through the `Source` seam of _selector.ts. `Socket`
// checks arguments and state, then delegates here. The promise backend
// (_conn_source.ts) implements it on `Deno.Conn`. The epoll backend
// (_epoll_source.ts) does not yet: socket.ts calls it directly where the two
// differ, until it implements this interface too.

import type { Source } from "./_selector.ts";
import type { DenoAddressOptions } from "./_validate.ts";
import type { TlsOptions } from "./socket.ts";

/** Where a socket is in its life. */
export type State =
  | "fresh"
  | "bound"
  | "listening"
  | "connecting"
  | "connected";

/** A socket's backend; `T` is what `accept()` hands out (the public Socket). */
export interface SocketBackend<T> extends Source {
  /** Where the socket is in its life. */
  readonly state: State;
  /** The pending error (`SO_ERROR`). */
  readonly error: Error | null;
  /** A TLS handshake has completed. */
  readonly secure: boolean;
  /** A TLS handshake is in progress: nothing is read or written yet. */
  readonly securing: boolean;
  /** Grows whenever bytes move in or out (idle timeouts watch it). */
  readonly activity: number;
  /** The readiness bits now (_selector.ts: READABLE, WRITABLE, ERROR, HUP). */
  readiness(): number;
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
  /** Nothing more will arrive: end of stream, or shut for reading. */
  readonly readDone: boolean;
  /** Shut for writing. */
  readonly writeShut: boolean;
  /** The local address, once bound or connected. */
  localAddr(): Deno.Addr | null;
  /** The peer's address, once connected. */
  remoteAddr(): Deno.Addr | null;
  /** `TCP_NODELAY`, applied once connected. */
  setNoDelay(noDelay: boolean): void;
  /** `SO_KEEPALIVE`, applied once connected. */
  setKeepAlive(keepAlive: boolean): void;
  /** Binds and listens at the OS level; throws synchronously. */
  bind(options: DenoAddressOptions, tls: TlsOptions | null): void;
  /** Starts taking connections in, up to `backlog` ahead. */
  listen(backlog: number): void;
  /** A connection taken in, or `undefined`. */
  accept(): T | undefined;
  /** The listener's error, once; accepting resumes. */
  takeAcceptError(): Error | null;
  /** Starts connecting; completion shows as readiness. */
  connect(options: DenoAddressOptions, tls: TlsOptions | null): void;
  /** Up to `max` received bytes, or `null` when none are buffered. */
  read(max: number): Uint8Array | null;
  /** Takes as much of `bytes` as fits; 0 when the send buffer is full. */
  write(bytes: Uint8Array): number;
  /** Ends one or both directions. */
  shutdown(read: boolean, write: boolean): void;
  /** Upgrades the connection to TLS in place. */
  startTls(tls: TlsOptions, hostname: string): void;
  /** Closes: deliver what was accepted (lingering), stop reporting. */
  close(): void;
  /** Resolves once closed and the OS socket is let go (the port is free). */
  waitReleased(): Promise<void>;
}
