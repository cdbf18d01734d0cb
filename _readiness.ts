// The readiness engine: sockets report every state change here, and waiters
// (one per select()/Poll.poll() call in progress) are woken when a socket they
// watch becomes ready for what they asked.

/** Readiness bits. */
export const READABLE = 1;
/** Readiness bits. */
export const WRITABLE = 2;
/** Readiness bits: the socket is in an error state. */
export const EXCEPTIONAL = 4;

/** The key under which a source reports its current readiness bits. */
export const kReadiness: unique symbol = Symbol("readiness");

/** The key under which a socket says the connection is over (`POLLHUP`). */
export const kHangup: unique symbol = Symbol("hangup");

/** The key under which a socket counts the times bytes moved in or out. */
export const kActivity: unique symbol = Symbol("activity");

/**
 * The key of a channel's method that wakes the loop serving it: output
 * queued from outside a pass must be waited on for writing now, not once the
 * loop's wait times out.
 */
export const kWakeLoop: unique symbol = Symbol("wakeLoop");

/** Anything whose readiness can be waited for. */
export interface Source {
  readonly [kReadiness]: number;
}

/** What a wait watches: the bits wanted from each source it watches. */
export interface Interest {
  /** The bits wanted from `source`; `undefined` when it is not watched. */
  get(source: Source): number | undefined;
}

/** The keys under which a loop keeps its interest on the source itself. */
export const kInterestOwner: unique symbol = Symbol("interestOwner");
/** See {@linkcode kInterestOwner}. */
export const kInterestMask: unique symbol = Symbol("interestMask");

/** A source a {@linkcode LoopInterest} can watch. */
export interface Watchable extends Source {
  [kInterestOwner]: LoopInterest | null;
  [kInterestMask]: number;
}

/**
 * A loop's interest, kept on each source as two fields rather than in a map:
 * a pass sets every channel's mask, and a field write is much cheaper than a
 * hash-map lookup (mio keeps the token in the registration the same way).
 * A source moved to another loop's interest leaves this one.
 */
export class LoopInterest implements Interest {
  /** The bits wanted from `source`, if this interest watches it. */
  get(source: Source): number | undefined {
    const watched = source as Partial<Watchable>;
    return watched[kInterestOwner] === this
      ? watched[kInterestMask]
      : undefined;
  }

  /** Watches `source` for `mask` (0: watched only for being closed). */
  set(source: Watchable, mask: number): void {
    source[kInterestOwner] = this;
    source[kInterestMask] = mask;
  }
}

class Wait {
  readonly interest: Interest;
  /** The watched sources that became ready, in the order they did. */
  readonly fired = new Set<Source>();
  readonly promise: Promise<void>;
  #resolve!: () => void;
  #woken = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #signal: AbortSignal | undefined;
  #onAbort = () => this.wake();

  #alarm: Alarm | undefined;

  constructor(
    interest: Interest,
    timeout: number | undefined,
    signal: AbortSignal | undefined,
    alarm: Alarm | undefined,
  ) {
    this.interest = interest;
    this.promise = new Promise((resolve) => this.#resolve = resolve);
    if (timeout !== undefined) {
      if (alarm) {
        this.#alarm = alarm;
        alarm.attach(this, performance.now() + timeout);
      } else {
        this.#timer = setTimeout(this.#onAbort, timeout);
      }
    }
    if (signal) {
      this.#signal = signal;
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /**
   * Resolves the wait. It keeps collecting until its waiter runs, which is
   * after every other completion that arrived in the same turn.
   */
  wake(): void {
    if (this.#woken) return;
    this.#woken = true;
    turned();
    this.#resolve();
  }

  dispose(): void {
    waits.delete(this);
    clearTimeout(this.#timer);
    this.#alarm?.detach(this);
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }
}

const waits = new Set<Wait>();

/**
 * The timer a loop keeps across its passes. Each wait arms it for its own
 * deadline, but a timer already set for an earlier time is kept (firing
 * early, it re-arms), so a loop whose passes end on I/O makes about one timer
 * per timeout rather than one per pass: timers are costly in Deno.
 */
export class Alarm {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedFor = Infinity;
  #wait: Wait | null = null;
  #due = Infinity;
  #fire = (): void => {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const wait = this.#wait;
    if (wait === null) return;
    if (performance.now() >= this.#due) wait.wake();
    else this.#arm(this.#due);
  };

  /** Wakes `wait` at `due` (on the `performance.now()` clock). */
  attach(wait: Wait, due: number): void {
    this.#wait = wait;
    this.#due = due;
    if (due < this.#armedFor) this.#arm(due);
  }

  /** Stops waking `wait`; the timer stays for the next one. */
  detach(wait: Wait): void {
    if (this.#wait === wait) this.#wait = null;
  }

  /** Cancels the timer: the loop is over. */
  dispose(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
    this.#wait = null;
  }

  #arm(due: number): void {
    clearTimeout(this.#timer);
    this.#armedFor = due;
    this.#timer = setTimeout(this.#fire, Math.max(0, due - performance.now()));
  }
}

// Completions reach JavaScript only when the event loop turns. A waiter that
// finds sockets ready at once never lets it turn, so a channel that is always
// ready would starve every other socket and timer: after a few such passes, or
// a couple of milliseconds, the next one yields a turn first.
const BUSY_PASSES = 16;
const BUSY_MS = 2;
let busyPasses = 0;
let lastTurn = performance.now();

function turned(): void {
  busyPasses = 0;
  lastTurn = performance.now();
}

/** Lets the event loop run once; a fresh channel, so nothing outlives the call. */
function yieldTurn(): Promise<void> {
  return new Promise((resolve) => {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = () => {
      port1.close();
      turned();
      resolve();
    };
    port2.postMessage(null);
    port2.close();
  });
}

/**
 * Called when a waiter found something ready without waiting. Resolves at
 * once, except when the event loop has not turned for a while.
 */
export function passWithoutWait(): Promise<void> | undefined {
  if (++busyPasses < BUSY_PASSES && performance.now() - lastTurn < BUSY_MS) {
    return undefined;
  }
  return yieldTurn();
}

/**
 * Tells the engine that `source` changed state. Waiters watching it for a bit
 * it now has are woken; their continuations run after the completions that
 * arrived in the same turn, so one wake-up serves them all. A source that was
 * `closed` wakes every waiter watching it, so a loop whose channels all went
 * away stops waiting.
 */
export function notify(source: Source, closed = false): void {
  if (waits.size === 0) return;
  for (const wait of waits) {
    const mask = wait.interest.get(source);
    if (mask !== undefined && (closed || (source[kReadiness] & mask) !== 0)) {
      wait.fired.add(source);
      wait.wake();
    }
  }
}

/**
 * Waits until one of the sources in `interest` has one of the bits asked for,
 * `timeout` ms pass (`undefined`: no limit), or `signal` aborts.
 *
 * @returns The sources that became ready while waiting (none on timeout).
 */
export async function waitFor(
  interest: Interest,
  timeout: number | undefined,
  signal?: AbortSignal,
  alarm?: Alarm,
): Promise<Set<Source>> {
  const wait = new Wait(interest, timeout, signal, alarm);
  waits.add(wait);
  if (signal?.aborted) wait.wake();
  try {
    await wait.promise;
  } finally {
    wait.dispose();
  }
  return wait.fired;
}
