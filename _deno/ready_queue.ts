// The promise backend's side of a registry (_readiness.ts): Deno has no
// readiness API, so each socket knows its own readiness (from its buffers)
// and reports every change to its registrations here. The queue keeps the
// registrations that may be ready (as a kernel keeps epoll's ready list), so
// a poll looks at what is ready, not at everything registered.

import {
  CLOSED,
  ERROR,
  type Events,
  HUP,
  type Interest,
  type ReadinessSide,
  type Registry,
  type Token,
} from "../_readiness.ts";
import { passWithoutWait } from "../_turns.ts";

/** What a source tells its registrations: its readiness now. */
export interface ReadySource {
  /** The readiness bits the source has now. */
  readiness(): number;
}

const LIVE = 0;
const CLOSING = 1;
const DEAD = 2;
const WOKEN = 3;

/**
 * A source's registration with one registry: the source keeps it and
 * reports each readiness change with {@linkcode ReadyQueue.changed}.
 */
export class Registration {
  /** The registry. */
  readonly registry: Registry;
  /** The registry's queue. */
  readonly queue: ReadyQueue;
  /** The source. */
  readonly source: ReadySource;
  /** The token events carry. */
  token: Token;
  /** What it asks for. */
  interest: Interest;
  /** Whether it is in the ready queue. */
  queued = false;
  /** LIVE, CLOSING (one CLOSED event to report), DEAD or WOKEN (one event of `wokenBits`). */
  state = LIVE;
  /** What a WOKEN registration reports. */
  wokenBits = 0;

  constructor(
    registry: Registry,
    source: ReadySource,
    token: Token,
    interest: Interest,
  ) {
    this.registry = registry;
    this.queue = registry.side(ReadyQueue);
    this.source = source;
    this.token = token;
    this.interest = interest;
  }
}

/** The registrations of one registry that may be ready. */
export class ReadyQueue implements ReadinessSide {
  readonly blocking = false;
  // The queued registrations are the first #readyLength: the array is never
  // shortened, so a queue that keeps emptying and filling keeps its storage.
  #ready: (Registration | null)[] = [];
  #readyLength = 0;

  /** Always: a queue has nothing to open or close. */
  get active(): boolean {
    return true;
  }

  /** Makes a registration for `source` with `registry`; queues it if ready now. */
  static track(
    registry: Registry,
    source: ReadySource,
    token: Token,
    interest: Interest,
  ): Registration {
    const registration = new Registration(registry, source, token, interest);
    registration.queue.changed(registration, source.readiness());
    return registration;
  }

  /**
   * The source's readiness (now `readiness`) or the registration's interest
   * changed: queued for the next drain if it is ready for what it asks.
   */
  changed(registration: Registration, readiness: number): void {
    if ((readiness & (registration.interest | ERROR)) === 0) return;
    this.#enqueue(registration);
  }

  /** The source was closed: one CLOSED event, then the registration is gone. */
  closed(registration: Registration): void {
    registration.state = CLOSING;
    this.#enqueue(registration);
  }

  /** One event of `bits` (SENT), then the registration is live again. */
  woken(registration: Registration, bits: number): void {
    if (registration.state !== LIVE) return;
    registration.state = WOKEN;
    registration.wokenBits = bits;
    this.#enqueue(registration);
  }

  /** The registration is withdrawn. */
  dropped(registration: Registration): void {
    registration.state = DEAD;
  }

  /** Queues `registration` for the next drain (once) and wakes the polls. */
  #enqueue(registration: Registration): void {
    if (!registration.queued) {
      registration.queued = true;
      this.#ready[this.#readyLength++] = registration;
    }
    // Every poll waiting on the registry waits on this queue too (it is
    // always active), so the registry's list of them serves: no list here.
    registration.registry.wakeWaiters();
  }

  /**
   * Moves what is ready into `events`. Level-triggered: a registration still
   * ready stays queued for the next poll; one no longer ready leaves.
   */
  drain(events: Events): void {
    const ready = this.#ready;
    const length = this.#readyLength;
    let kept = 0;
    for (let i = 0; i < length; i++) {
      const registration = ready[i]!;
      if (registration.state !== LIVE) {
        if (registration.state === CLOSING) {
          events.push(registration.token, CLOSED);
          registration.state = DEAD;
        } else if (registration.state === WOKEN) {
          events.push(registration.token, registration.wokenBits);
          registration.state = LIVE;
        }
        registration.queued = false;
        continue;
      }
      const readiness = registration.source.readiness();
      const bits = readiness & (registration.interest | ERROR);
      if (bits === 0) {
        registration.queued = false;
        continue;
      }
      events.push(registration.token, bits | (readiness & HUP));
      ready[kept++] = registration;
    }
    if (kept !== length) {
      // The registrations that left are not held past the drain. (A loop:
      // fill() is a C++ builtin, a call out of optimized code.)
      for (let i = kept; i < length; i++) ready[i] = null;
      this.#readyLength = kept;
    }
  }

  /** Nothing to start: `#enqueue()` wakes the registry's waiting polls. */
  idle(_timeout: number | undefined, _wake: () => void): null {
    return null;
  }

  stopIdle(_wake: () => void): void {}

  turn(now: number): Promise<void> | undefined {
    return passWithoutWait(now);
  }

  waited(): void {}
}
