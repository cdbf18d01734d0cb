// What the promise backend's pumps (read.ts, write.ts, accept.ts) share with
// the socket they serve (source.ts): its connection and state, and what they
// tell it. An interface here, so that the pumps and the socket do not import
// each other.

import type { RawConn } from "../_backend_api.ts";
import type { TlsSplice } from "./tls.ts";

/** The socket a pump serves. */
export interface ConnCore {
  /** The connection plaintext is read from and written to, once connected. */
  readonly conn: Deno.Conn | null;
  /** The connection under a STARTTLS splice (its plaintext before the upgrade). */
  readonly raw: RawConn | null;
  /** The STARTTLS splice, during and after an upgrade. */
  readonly splice: TlsSplice | null;
  /** A handshake is under way: nothing is read or written meanwhile. */
  readonly securing: boolean;
  /** The socket was closed. */
  readonly closed: boolean;
  /** The connection failed. */
  readonly error: Error | null;
  /** Grows whenever bytes move in or out. */
  activity: number;
  /**
   * Its readiness changed: `bits` it may have gained (the pump knows), else
   * the socket works them out.
   */
  changed(bits?: number): void;
  /** Bytes left the send buffer. */
  sent(): void;
  /** The connection failed with `error`. */
  fail(error: Error): void;
  /** Closes the connection for good. */
  release(): void;
  /** The OS socket may be let go now. */
  checkReleased(): void;
}
