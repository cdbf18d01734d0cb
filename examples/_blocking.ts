/**
 * Python's blocking socket calls, written on `select()` for the clients of
 * the examples: wait until ready, send everything, receive an exact count.
 *
 * @module
 */

import { select, type Socket } from "@asyncore/asyncore/select";

/** Thrown when the signal (Ctrl-C) ends a wait. */
export class Interrupted extends Error {}

/** The blocking calls, each ended early by `signal`. */
export interface BlockingCalls {
  /** Waits until `sock` is ready to read (`"r"`) or write (`"w"`). */
  waitFor(sock: Socket, what: "r" | "w"): Promise<void>;
  /** Python's `sock.sendall()`: sends every byte, waiting when the buffer is full. */
  sendall(sock: Socket, bytes: Uint8Array): Promise<void>;
  /** Receives exactly `n` bytes; fails if the server closes first. */
  recvExactly(sock: Socket, n: number): Promise<Uint8Array>;
}

/** Makes the blocking calls, each ended early by `signal`. */
export function blockingCalls(signal: AbortSignal): BlockingCalls {
  /** Waits until `sock` is ready to read (`"r"`) or write (`"w"`). */
  async function waitFor(sock: Socket, what: "r" | "w"): Promise<void> {
    const [r, w, x] = await select(
      what === "r" ? [sock] : [],
      what === "w" ? [sock] : [],
      [sock],
      undefined,
      { signal },
    );
    if (signal.aborted) throw new Interrupted();
    if (x.length > 0 && sock.error) throw sock.error;
    if (r.length + w.length + x.length === 0) throw new Interrupted();
  }

  /** Python's `sock.sendall()`: sends every byte, waiting when the buffer is full. */
  async function sendall(sock: Socket, bytes: Uint8Array): Promise<void> {
    while (bytes.length > 0) {
      await waitFor(sock, "w");
      try {
        bytes = bytes.subarray(sock.send(bytes));
      } catch (error) {
        if (!(error instanceof Deno.errors.WouldBlock)) throw error;
      }
    }
  }

  /** Receives exactly `n` bytes; fails if the server closes first. */
  async function recvExactly(sock: Socket, n: number): Promise<Uint8Array> {
    const response = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      await waitFor(sock, "r");
      let chunk: Uint8Array;
      try {
        chunk = sock.recv(n - got);
      } catch (error) {
        if (error instanceof Deno.errors.WouldBlock) continue;
        throw error;
      }
      if (chunk.length === 0) {
        throw new Error(
          `the server closed the connection after ${got} of ${n} bytes`,
        );
      }
      response.set(chunk, got);
      got += chunk.length;
    }
    return response;
  }
  return { waitFor, sendall, recvExactly };
}
