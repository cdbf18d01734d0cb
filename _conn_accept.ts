// The promise backend's listening side: one `Deno.Listener.accept()` in
// flight (Deno allows no more) while the backlog has room.

import type { ConnSource } from "./_conn_source.ts";

/** Connections taken in ahead of `accept()`, wrapped as `T`. */
export class AcceptPump<T extends { close(): void }> {
  /** Accepted connections waiting for `accept()`. */
  pending: T[] = [];
  /** How many may wait. */
  backlog = 0;
  /** The listener failed: `accept()` throws this once. */
  error: Error | null = null;

  #core: ConnSource;
  #listener: Deno.Listener;
  #wrap: (conn: Deno.Conn) => T;
  #accepting = false;

  constructor(
    core: ConnSource,
    listener: Deno.Listener,
    wrap: (conn: Deno.Conn) => T,
  ) {
    this.#core = core;
    this.#listener = listener;
    this.#wrap = wrap;
  }

  /** Starts an accept if none is in flight and the backlog has room. */
  start(): void {
    if (
      this.#accepting || this.error || this.#core.closed ||
      this.pending.length >= this.backlog
    ) return;
    this.#accepting = true;
    this.#listener.accept().then(
      (conn) => this.#onAccept(conn),
      (error) => this.#onAcceptError(error),
    );
  }

  /** Closes what waits: the socket is closed. */
  close(): void {
    for (const sock of this.pending) sock.close();
    this.pending = [];
  }

  #onAccept(conn: Deno.Conn): void {
    this.#accepting = false;
    if (this.#core.closed) {
      conn.close();
      return;
    }
    this.pending.push(this.#wrap(conn));
    this.#core.changed();
    this.start();
  }

  #onAcceptError(error: Error): void {
    this.#accepting = false;
    if (this.#core.closed) return;
    if (
      error instanceof Deno.errors.ConnectionAborted ||
      error instanceof Deno.errors.ConnectionReset ||
      error instanceof Deno.errors.NotConnected
    ) {
      // The peer reset before the accept was done (Deno then fails to read
      // its address): that connection is gone, the listener is fine. Skip
      // it, as a kernel's accept() does.
      this.start();
      return;
    }
    this.error = error;
    this.#core.changed();
  }
}
