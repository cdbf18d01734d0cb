// Where what a handler or a timer throws goes: to its channel's
// `handleError()`, so that nothing a channel does can end the loop but
// `ExitNow`. asyncore.ts (the pass) and debug.ts (the timed timers) route
// through here.

import { compactTraceback } from "../_traceback.ts";

/**
 * Thrown by a handler to end {@linkcode loop} at once: the loop rejects with
 * it instead of passing it to `handleError()`.
 *
 * @example
 * ```ts
 * import { ExitNow } from "@asyncore/asyncore/asyncore";
 * import { assertInstanceOf } from "@std/assert";
 *
 * assertInstanceOf(new ExitNow("done"), Error);
 * ```
 */
export class ExitNow extends Error {
  /**
   * Makes the error.
   *
   * @param message Why the loop ends.
   */
  constructor(message?: string) {
    super(message);
    this.name = "ExitNow";
  }
}

/** What the routing calls on a channel (asyncore's `Dispatcher` has it all). */
export interface Channel {
  handleError(error: unknown): void;
  logInfo(message: string, type?: string): void;
  close(): void;
}

/** The disconnects a channel's `send()` and `recv()` turn into `handleClose()`. */
export function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.BadResource;
}

/** How handlers and timers are run, made by {@linkcode faultRouting}. */
interface FaultRouting {
  /** Runs `handle` on `obj`, sending what it throws to `fault()`. */
  guard(obj: Channel, handle: (this: Channel) => void): void;
  /**
   * Sends `error` to `obj.handleError()`. If that throws too, the failure is
   * logged and the channel closed; should the channel's own `logInfo()` or
   * `close()` throw as well, the plain ones are used.
   */
  fault(obj: Channel, error: unknown): void;
  /**
   * Runs a timer's call: what it throws goes to its channel as a handler's
   * would, or is logged when it has none.
   */
  runTimer(fn: () => void, channel: Channel | undefined): void;
}

/**
 * The routing of faults, closing a channel whose own `close()` throws with
 * `plainClose` (Dispatcher's).
 */
export function faultRouting(
  plainClose: (this: Channel) => void,
): FaultRouting {
  function guard(obj: Channel, handle: (this: Channel) => void): void {
    try {
      // Called on `obj`: a handler method is passed as it is
      // (obj.handleClose), no closure made per call.
      handle.call(obj);
    } catch (error) {
      fault(obj, error);
    }
  }

  function fault(obj: Channel, error: unknown): void {
    if (error instanceof ExitNow) throw error;
    try {
      obj.handleError(error);
    } catch (inner) {
      if (inner instanceof ExitNow) throw inner;
      const message = `handleError failed, closing channel: ${
        compactTraceback(inner).value
      }`;
      try {
        obj.logInfo(message, "error");
      } catch {
        console.log(`error: ${message}`);
      }
      try {
        obj.close();
      } catch {
        plainClose.call(obj);
      }
    }
  }

  function runTimer(fn: () => void, channel: Channel | undefined): void {
    if (channel !== undefined) {
      guard(channel, fn);
      return;
    }
    try {
      fn();
    } catch (error) {
      if (error instanceof ExitNow) throw error;
      const { type, value, info } = compactTraceback(error);
      console.log(
        `error: uncaptured exception in a timer (${type}:${value} ${info})`,
      );
    }
  }

  return { guard, fault, runTimer };
}
