// The key of a channel's method that wakes the loop serving it: output
// queued from outside a pass must be waited on for writing now, not once the
// loop's wait times out. (AsyncChat calls it; the readiness layer itself is
// _selector.ts.)

/** See the file comment. */
export const kWakeLoop: unique symbol = Symbol("wakeLoop");
