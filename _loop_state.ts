// What each channel map's loop keeps from pass to pass: its selector, the
// waker that ends its wait when a channel or a timer is added from outside a
// pass, and its timer queue. Shared by asyncore.ts (the loop) and timers.ts
// (callLater), which must not import each other.

import { Heap } from "./_heap.ts";
import { Selector, Waker } from "./_readiness.ts";
import type { ChannelMap, Dispatcher } from "./asyncore.ts";

/** The default channel map (asyncore's `socketMap`). */
export const defaultMap: ChannelMap = new Map();

/** The token of a loop's waker: no socket has a negative number. */
const WAKER_TOKEN = -1;

/** A scheduled run of a call; cancelling or rescheduling kills it. */
export interface TimerEntry {
  due: number;
  seq: number;
  dead: boolean;
  fire(): void;
}

/** One map's loop state. */
export class LoopState {
  /** What the loop waits with; channels' sockets are registered by number. */
  readonly selector: Selector = new Selector();
  /** Ends a wait when the map or its timers change from outside a pass. */
  readonly waker: Waker = new Waker(this.selector.registry, WAKER_TOKEN);
  /** The timers, by due time then order of scheduling. */
  timers: Heap<TimerEntry> | null = null;
}

const states = new WeakMap<ChannelMap, LoopState>();
let timerSeq = 0;

/** The loop state of `map`, made on first use. */
export function loopStateOf(map: ChannelMap): LoopState {
  let state = states.get(map);
  if (state === undefined) {
    state = new LoopState();
    states.set(map, state);
  }
  return state;
}

/** Wakes `map`'s loop if it is waiting, so it serves what changed now. */
export function wakeLoop(map: ChannelMap): void {
  states.get(map)?.waker.wake();
}

/** Schedules `fire` at `due` on `map`'s loop. */
export function schedule(
  map: ChannelMap,
  due: number,
  fire: () => void,
): TimerEntry {
  const entry = { due, seq: timerSeq++, dead: false, fire };
  const state = loopStateOf(map);
  state.timers ??= new Heap((a, b) =>
    a.due < b.due || (a.due === b.due && a.seq < b.seq)
  );
  state.timers.push(entry);
  state.waker.wake();
  return entry;
}

/** When the next live timer of `map` is due; `Infinity` without one. */
export function nextTimer(map: ChannelMap): number {
  const queue = states.get(map)?.timers;
  if (queue == null) return Infinity;
  let top = queue.peek();
  while (top !== undefined && top.dead) {
    queue.pop();
    top = queue.peek();
  }
  return top?.due ?? Infinity;
}

/** Runs the timers of `map` that are due; ones they schedule wait for the next pass. */
export function runTimers(map: ChannelMap): void {
  const queue = states.get(map)?.timers;
  if (queue == null || queue.size === 0) return;
  const now = performance.now();
  const last = timerSeq;
  for (;;) {
    const top = queue.peek();
    if (top === undefined || top.due > now || top.seq >= last) return;
    queue.pop();
    if (!top.dead) top.fire();
  }
}

/**
 * How a timer's call runs; asyncore.ts sets it: what the call throws goes to
 * the channel's `handleError()`, or is logged (but `ExitNow` ends the loop).
 */
export const timerCalls: {
  run(fn: () => void, channel: Dispatcher | undefined): void;
} = {
  run(fn) {
    fn();
  },
};
