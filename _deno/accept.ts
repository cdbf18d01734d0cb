// The promise backend's listening side: one `Deno.Listener.accept()` in
// flight (Deno allows no more) while the backlog has room.
//
// Deno completes an accept at once when the kernel holds a connection, so a
// burst of connections is taken in by a chain of microtasks. Readiness is
// reported once the chain stops (after the event loop turns) or the backlog
// is full, not per connection: a loop then serves the whole burst in one pass
// instead of asking every channel what it wants once per connection.

import type { ConnCore } from "./core.ts";
import {
  isOutOfDescriptors,
  stopWaiting,
  waitForDescriptor,
} from "../_descriptor_limit.ts";
import { afterTurn } from "../_turns.ts";
import { restated } from "../_errors.ts";

/** Connections taken in ahead of `accept()`, wrapped as `T`. */
export class AcceptPump<T extends { close(): void }> {
  /** Accepted connections waiting for `accept()`. */
  pending: T[] = [];
  /** How many may wait. */
  backlog = 0;
  /** The listener failed: `accept()` throws this once. */
  error: Error | null = null;

  #core: ConnCore;
  #listener: Deno.Listener;
  #wrap: (conn: Deno.Conn) => T;
  #accepting = false;
  // Out of descriptors: no accept until one may be free. Another try now
  // would fail at once, and the connection waits in the kernel's queue.
  #starved = false;
  #resume = (): void => {
    this.#starved = false;
    this.start();
  };
  #reportQueued = false;
  #report = (): void => {
    this.#reportQueued = false;
    if (!this.#core.closed) this.#core.changed();
  };

  constructor(
    core: ConnCore,
    listener: Deno.Listener,
    wrap: (conn: Deno.Conn) => T,
  ) {
    this.#core = core;
    this.#listener = listener;
    this.#wrap = wrap;
  }

  /** Whether an accept is in flight (it holds the listener's OS socket). */
  get accepting(): boolean {
    return this.#accepting;
  }

  /** Starts an accept if none is in flight and the backlog has room. */
  start(): void {
    if (
      this.#accepting || this.error || this.#core.closed || this.#starved ||
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
    stopWaiting(this.#resume);
    for (const sock of this.pending) sock.close();
    this.pending = [];
  }

  #onAccept(conn: Deno.Conn): void {
    this.#accepting = false;
    if (this.#core.closed) {
      conn.close();
      this.#core.checkReleased();
      return;
    }
    this.pending.push(this.#wrap(conn));
    if (this.pending.length >= this.backlog) {
      this.#core.changed();
    } else if (!this.#reportQueued) {
      this.#reportQueued = true;
      afterTurn(this.#report);
    }
    this.start();
  }

  #onAcceptError(error: Error): void {
    this.#accepting = false;
    if (this.#core.closed) {
      this.#core.checkReleased();
      return;
    }
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
    if (isOutOfDescriptors(error)) {
      this.#starved = true;
      waitForDescriptor(this.#resume);
    }
    this.error = restated("accept", error) as Error;
    this.#core.changed();
  }
}
