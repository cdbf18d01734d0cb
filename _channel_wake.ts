// How the layers above asyncore.ts (AsyncChat, the stream bridge) wake the
// loop serving a channel when output is queued from outside a pass: through
// this function rather than a member of the public Dispatcher class, which
// asyncore.ts connects once.

import type { Dispatcher } from "./asyncore.ts";

let wake: ((channel: Dispatcher) => void) | undefined;

/** Wakes the loop serving `channel`, so it asks `writable()` again now. */
export function wakeChannelLoop(channel: Dispatcher): void {
  wake!(channel);
}

/** Called once by asyncore.ts with the way to wake a channel's loop. */
export function setChannelWaker(waker: (channel: Dispatcher) => void): void {
  wake = waker;
}
