// Helpers for the asynchat and producers tests: bounded loops and waits,
// address families and byte helpers.

import type { ChannelMap } from "../asyncore.ts";
import { runLoop as runLoopWithin, type RunLoopOptions } from "./_helpers.ts";

export {
  bytes,
  connectAddress,
  type Endpoint,
  FAMILIES,
  type Family,
  hasIPv6,
  pattern,
  text,
  within,
} from "./_helpers.ts";

/** The shared bounded loop, with the longer bound these tests were written for. */
export function runLoop(
  map: ChannelMap,
  options: RunLoopOptions = {},
): Promise<void> {
  return runLoopWithin(map, { bound: 10_000, ...options });
}
