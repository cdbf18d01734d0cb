// A STARTTLS upgrade that waits for a channel's own queued output
// (AsyncChat's queue, DispatcherWithSend's buffer) to go out in plaintext
// first. Meanwhile the loop does not read the channel: what the peer sends
// now is the TLS handshake, the engine's input, not the channel's. Both
// hooks reach private state of the public Dispatcher class, which
// asyncore.ts connects here once (as it connects _channel_wake.ts's waker).

import type { Dispatcher } from "./asyncore.ts";
import type { TlsOptions } from "./socket.ts";

/** What asyncore.ts gives this module. */
export interface UpgradeHooks {
  /** Stops (`true`) or resumes the loop's reading of `channel`. */
  holdReads(channel: Dispatcher, held: boolean): void;
  /**
   * Throws now what `Dispatcher.startTls(options)` would throw at once (no
   * socket, TLS already in use or starting, bad options, no permission, a
   * bad certificate); returns the checked options.
   */
  check(channel: Dispatcher, options: unknown): TlsOptions;
}

let hooks: UpgradeHooks | undefined;

/** Stops (`held`: true) or resumes the loop's reading of `channel`. */
export function holdChannelReads(channel: Dispatcher, held: boolean): void {
  hooks!.holdReads(channel, held);
}

/**
 * Checks a `startTls()` that is to wait for queued output, as far as it can
 * be checked before the upgrade starts; returns the options to start with.
 */
export function checkWaitingUpgrade(
  channel: Dispatcher,
  options: unknown,
): TlsOptions {
  return hooks!.check(channel, options);
}

/** Called once by asyncore.ts. */
export function setUpgradeHooks(given: UpgradeHooks): void {
  hooks = given;
}
