// How waits share Deno's event loop: the fairness rule that lets I/O
// completions in while a waiter keeps finding something ready, and the timer
// a loop keeps across its waits (timers are costly in Deno).

// Completions reach JavaScript only when the event loop turns. A waiter that
// finds sources ready at once never lets it turn, so a channel that is always
// ready would starve every other socket and timer: after a few such waits, or
// a couple of milliseconds, the next one yields a turn first.
const BUSY_PASSES = 16;
const BUSY_MS = 2;
let busyPasses = 0;
// When the first wait that found something ready after the last turn did.
// The clock is read there rather than at the turn: a loop that serves one
// message per wake-up reads it once per round trip instead of twice (each
// read is an op, 0.14–0.2 µs here).
let busySince = 0;

/** Records that the event loop has just turned (a wait was woken by it). */
export function turned(): void {
  busyPasses = 0;
}

/**
 * Calls `fn` once the event loop has turned (after the I/O completions that
 * are ready now); a fresh channel, so nothing outlives the call.
 */
export function afterTurn(fn: () => void): void {
  const { port1, port2 } = new MessageChannel();
  port1.onmessage = () => {
    port1.close();
    fn();
  };
  port2.postMessage(null);
  port2.close();
}

/** Lets the event loop run once. */
function yieldTurn(): Promise<void> {
  return new Promise((resolve) =>
    afterTurn(() => {
      turned();
      resolve();
    })
  );
}

/**
 * Called when a waiter found something ready without waiting. Resolves at
 * once (`undefined`), except when the waiters have kept finding something
 * ready since the event loop last turned: for `BUSY_PASSES` waits, or for
 * `BUSY_MS` since the first of them.
 *
 * @param now The waiter's `performance.now()`, read once for its whole pass
 *   (the clock costs 0.14–0.2 µs a read here).
 */
export function passWithoutWait(
  now: number = performance.now(),
): Promise<void> | undefined {
  const passes = ++busyPasses;
  if (passes === 1) {
    busySince = now;
    return undefined;
  }
  if (passes < BUSY_PASSES && now - busySince < BUSY_MS) {
    return undefined;
  }
  return yieldTurn();
}

/**
 * The timer a loop keeps across its waits. Each wait arms it for its own
 * deadline, but a timer already set for an earlier time is kept (firing
 * early, it re-arms), so a loop whose waits end on I/O makes about one timer
 * per timeout rather than one per wait.
 */
export class Alarm {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedFor = Infinity;
  #wake: (() => void) | null = null;
  #due = Infinity;
  #fire = (): void => {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const wake = this.#wake;
    if (wake === null) return;
    if (performance.now() >= this.#due) wake();
    else this.#arm(this.#due);
  };

  /** Calls `wake` at `due` (on the `performance.now()` clock). */
  attach(wake: () => void, due: number): void {
    this.#wake = wake;
    this.#due = due;
    if (due < this.#armedFor) this.#arm(due);
  }

  /** Stops calling `wake`; the timer stays for the next wait. */
  detach(wake: () => void): void {
    if (this.#wake === wake) this.#wake = null;
  }

  /** Cancels the timer: the loop is over. */
  dispose(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
    this.#wake = null;
  }

  #arm(due: number): void {
    clearTimeout(this.#timer);
    this.#armedFor = due;
    this.#timer = setTimeout(this.#fire, Math.max(0, due - performance.now()));
  }
}
