/**
 * Timers for asyncore loops: Twisted's `reactor.callLater`. A call scheduled
 * on a channel map runs from the loop that serves that map, which never
 * sleeps past it. Re-exported by `@asyncore/asyncore/asyncore`.
 *
 * @example Schedule a call, then cancel it
 * ```ts
 * import { callLater } from "@asyncore/asyncore/timers";
 * import { assertEquals } from "@std/assert";
 *
 * const call = callLater(1000, () => {}, { map: new Map() });
 * assertEquals(call.active, true);
 * call.cancel();
 * assertEquals(call.active, false);
 * ```
 *
 * @module
 */

import {
  defaultMap,
  type LoopMap,
  schedule,
  type TimerEntry,
} from "./_loop/loop_state.ts";
import { checkTimeout, describe } from "./_validate.ts";

/** Options for {@linkcode callLater}. */
export interface CallLaterOptions {
  /**
   * The channel map (asyncore's `ChannelMap`) whose loop runs the call;
   * asyncore's `socketMap` by default.
   */
  map?: ReadonlyMap<number, unknown>;
  /**
   * A channel (an asyncore `Dispatcher`) whose `handleError()` gets what the
   * call throws, as it gets what its handlers throw: should that throw too,
   * the failure goes to its `logInfo()` and the channel is closed.
   */
  channel?: {
    handleError(error: unknown): void;
    logInfo(message: string, type?: string): void;
    close(): void;
  };
}

/**
 * A call scheduled by {@linkcode callLater}: Twisted's `IDelayedCall`.
 *
 * @example
 * ```ts
 * import { callLater } from "@asyncore/asyncore/timers";
 * import { assertEquals } from "@std/assert";
 *
 * const call = callLater(1000, () => {}, { map: new Map() });
 * call.cancel();
 * assertEquals(call.active, false);
 * ```
 */
export class DelayedCall {
  #fn: () => void;
  #map: LoopMap;
  #channel: CallLaterOptions["channel"];
  #entry: TimerEntry;

  /**
   * Schedules `fn`; use {@linkcode callLater}.
   *
   * @param ms Delay in ms.
   * @param fn What to call.
   * @param options The map and the channel the call belongs to.
   */
  constructor(ms: number, fn: () => void, options: CallLaterOptions = {}) {
    if (typeof fn !== "function") {
      throw new TypeError(`fn must be a function, got ${describe(fn)}`);
    }
    this.#fn = fn;
    this.#map = options.map ?? defaultMap;
    this.#channel = options.channel;
    this.#entry = this.#schedule(ms);
  }

  /** Whether the call is still to run. */
  get active(): boolean {
    return !this.#entry.dead;
  }

  /** When it runs, on the `performance.now()` clock. */
  get due(): number {
    return this.#entry.due;
  }

  /** Stops the call from running; safe to call twice. */
  cancel(): void {
    this.#entry.dead = true;
  }

  /**
   * Runs the call `ms` from now instead.
   *
   * @throws {Deno.errors.BadResource} when it has run or been cancelled.
   */
  reset(ms: number): void {
    if (this.#entry.dead) {
      throw new Deno.errors.BadResource(
        "reset: the call has already run or been cancelled",
      );
    }
    const entry = this.#schedule(ms);
    this.#entry.dead = true;
    this.#entry = entry;
  }

  #schedule(ms: number): TimerEntry {
    const due = performance.now() + checkDelay(ms);
    return schedule(this.#map, due, this.#fn, this.#channel);
  }
}

function checkDelay(ms: unknown): number {
  const delay = checkTimeout("ms", ms);
  if (delay === undefined) {
    throw new RangeError(
      `ms must be a finite number of ms, got ${describe(ms)}`,
    );
  }
  return delay;
}

/**
 * Runs `fn` once, `ms` from now, from the loop that serves `options.map`:
 * Twisted's `reactor.callLater`. The loop never sleeps past a timer. What
 * `fn` throws goes to `options.channel.handleError()`, or is logged.
 *
 * @example Stop a loop after a while
 * ```ts
 * import { callLater } from "@asyncore/asyncore/timers";
 * import { closeAll, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
 * import { assert } from "@std/assert";
 *
 * const map = new Map();
 * const server = new Dispatcher(undefined, map);
 * server.createSocket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen(5);
 * let fired = false;
 * callLater(10, () => {
 *   fired = true;
 *   closeAll(map);
 * }, { map });
 * await loop({ map });
 * assert(fired);
 * ```
 *
 * @param ms Delay in ms.
 * @param fn What to call.
 * @param options The map whose loop runs it, and the channel it belongs to.
 * @returns A handle to cancel or reschedule the call.
 */
export function callLater(
  ms: number,
  fn: () => void,
  options: CallLaterOptions = {},
): DelayedCall {
  return new DelayedCall(ms, fn, options);
}
