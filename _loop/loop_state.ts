// What each channel map's loop keeps from pass to pass: its selector, the
// waker that ends its wait when a channel or a timer is added from outside a
// pass, and its timer queue. Shared by asyncore.ts (the loop), timers.ts
// (callLater) and channel_state.ts (a channel's own loop); it knows a map's
// channels by nothing but their numbers.

import { Heap } from "../_heap.ts";
import { Selector, Waker } from "../_readiness.ts";
import type { Channel } from "./faults.ts";

/** A channel map (asyncore's `ChannelMap`), as far as its loop state goes. */
export type LoopMap = ReadonlyMap<number, unknown>;

/**
 * The default channel map: asyncore's `socketMap`. Its channels' type is
 * asyncore's to give (`never` is assignable to any map of channels).
 */
export const defaultMap: Map<number, never> = new Map<number, never>();

/** The token of a loop's waker: no socket has a negative number. */
const WAKER_TOKEN = -1;

/** A scheduled run of a call; cancelling or rescheduling kills it. */
export interface TimerEntry {
  due: number;
  seq: number;
  dead: boolean;
  fn: () => void;
  /** The channel whose `handleError()` gets what `fn` throws. */
  channel: Channel | undefined;
}

/** One map's loop state. */
class LoopState {
  /** What the loop waits with; channels' sockets are registered by number. */
  readonly selector: Selector = new Selector();
  /** Ends a wait when the map or its timers change from outside a pass. */
  readonly waker: Waker = new Waker(this.selector.registry, WAKER_TOKEN);
  /** The timers, by due time then order of scheduling. */
  timers: Heap<TimerEntry> | null = null;
}

const states = new WeakMap<LoopMap, LoopState>();
let timerSeq = 0;

/** The loop state of `map`, made on first use. */
export function loopStateOf(map: LoopMap): LoopState {
  let state = states.get(map);
  if (state === undefined) {
    state = new LoopState();
    states.set(map, state);
  }
  return state;
}

/** Wakes `map`'s loop if it is waiting, so it serves what changed now. */
export function wakeLoop(map: LoopMap): void {
  states.get(map)?.waker.wake();
}

/** Schedules `fn` at `due` on `map`'s loop, on behalf of `channel`. */
export function schedule(
  map: LoopMap,
  due: number,
  fn: () => void,
  channel: Channel | undefined,
): TimerEntry {
  const entry = { due, seq: timerSeq++, dead: false, fn, channel };
  const state = loopStateOf(map);
  state.timers ??= new Heap((a, b) =>
    a.due < b.due || (a.due === b.due && a.seq < b.seq)
  );
  state.timers.push(entry);
  state.waker.wake();
  return entry;
}

/** When the next live timer of `map` is due; `Infinity` without one. */
export function nextTimer(map: LoopMap): number {
  const queue = states.get(map)?.timers;
  if (queue == null) return Infinity;
  let top = queue.peek();
  while (top !== undefined && top.dead) {
    queue.pop();
    top = queue.peek();
  }
  return top?.due ?? Infinity;
}

/**
 * Runs the timers of `map` that are due, each with `run` (the loop's, which
 * routes what a call throws); ones they schedule wait for the next pass.
 */
export function runTimers(
  map: LoopMap,
  run: (fn: () => void, channel: Channel | undefined) => void,
): void {
  const queue = states.get(map)?.timers;
  if (queue == null || queue.size === 0) return;
  const now = performance.now();
  const last = timerSeq;
  for (;;) {
    const top = queue.peek();
    if (top === undefined || top.due > now || top.seq >= last) return;
    queue.pop();
    if (top.dead) continue;
    top.dead = true;
    run(top.fn, top.channel);
  }
}
