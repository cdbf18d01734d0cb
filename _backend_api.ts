// What socket.ts asks of a backend: the operations of a non-blocking stream
// socket with the public API's semantics (its state checks and errors
// included), and readiness through the `Source` seam of _readiness.ts.
// `Socket` checks its arguments, then delegates here. Two backends implement
// it: the promise backend on `Deno.Conn` (_deno/source.ts) and the epoll
// backend on OS descriptors (_epoll/source.ts); _backends.ts makes them.

import type { DenoAddressOptions } from "./_validate.ts";
import type { Interest, Registry, Source, Token } from "./_readiness.ts";
import type { Backend, TlsOptions } from "./_types.ts";

/** What the layers above see of a socket's backend (either one). */
export interface SocketSource extends Source {
  /** The readiness bits now: READABLE, WRITABLE, ERROR, HUP. */
  readiness(): number;
  /** Grows whenever bytes move in or out (idle timeouts watch it). */
  readonly activity: number;
}

/** Where a socket is in its life. */
export type State =
  | "fresh"
  | "bound"
  | "listening"
  | "connecting"
  | "connected";

/**
 * Any other descriptor given to select() or Poll (a pipe, standard input):
 * watched, never read, written or closed.
 */
export interface RawDescriptor extends Source {
  /** Whether the number is an open descriptor. */
  readonly open: boolean;
  /** The readiness bits now. */
  readiness(): number;
}

/** The part of `Deno.Conn` the promise backend and its TLS splice use. */
export interface RawConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
  readonly localAddr: Deno.Addr;
  readonly remoteAddr: Deno.Addr;
}

/** One registration of a socket: its registry, token and interest. */
export interface Watch {
  readonly registry: Registry;
  readonly token: Token;
  readonly interest: Interest;
}

/**
 * A connection a backend with no TLS engine (epoll) hands over at STARTTLS
 * to one that has one (the promise backend): the connection, the socket's
 * settings and its registrations, carried on under the same number.
 */
export interface Handover {
  /** Tells a handover from a backend. */
  readonly handover: true;
  readonly raw: RawConn;
  readonly recvLimit: number;
  readonly sendLimit: number;
  readonly lingerTimeout: number;
  readonly watches: readonly Watch[];
}

/** A socket's backend. */
export interface SocketBackend extends SocketSource {
  /** Which backend this is. */
  readonly kind: Backend;
  /** The OS descriptor the socket's number is (epoll), or -1 (none of its own). */
  readonly descriptor: number;
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
  /**
   * A connection taken in, with this socket's buffer sizes; throws
   * `WouldBlock` when none is pending.
   */
  accept(): [SocketBackend, Deno.Addr];
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
   * Moves the descriptor to the lowest number from `fd` up that `taken`
   * says is free (a backend with no descriptor does nothing).
   */
  renumber(taken: (fd: number) => boolean): void;
  /**
   * Starts a STARTTLS upgrade in place and returns this backend; a backend
   * with no TLS engine checks what it can and hands its connection over
   * instead (see _backends.ts).
   */
  startTls(tls: TlsOptions, hostname: string): SocketBackend | Handover;
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
