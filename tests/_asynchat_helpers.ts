// Helpers for the asynchat and producers tests: bounded loops and waits,
// address families, byte helpers and seeded randomness.

import type { ChannelMap } from "../asyncore.ts";
import {
  runLoop as runLoopWithin,
  type RunLoopOptions,
  seeded,
} from "./_helpers.ts";

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

/** The seed for randomised tests: `$ASYNCHAT_SEED`, or a fresh one. */
export function testSeed(): number {
  const fixed = Deno.env.get("ASYNCHAT_SEED");
  return fixed ? Number(fixed) : Math.floor(Math.random() * 2 ** 31);
}

/** Runs `body(rand)`, printing the seed if it throws. */
export function withSeed<T>(name: string, body: (rand: () => number) => T): T {
  const seed = testSeed();
  try {
    return body(seeded(seed));
  } catch (error) {
    console.error(`${name} failed with seed ${seed} (ASYNCHAT_SEED=${seed})`);
    throw error;
  }
}

/** The shared bounded loop, with the longer bound these tests were written for. */
export function runLoop(
  map: ChannelMap,
  options: RunLoopOptions = {},
): Promise<void> {
  return runLoopWithin(map, { bound: 10_000, ...options });
}
