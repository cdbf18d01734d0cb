// The epoll side of a Registry (_selector.ts): OS descriptors (the epoll
// backend's sockets, and any other descriptor select() is given) registered
// on an epoll instance that the registry opens with its first descriptor and
// closes with its last, so that a registry with nothing on it holds nothing
// and an idle wait never outlives its work. Also the process-wide share of
// the JS thread with Deno's event loop for a loop that stays busy (_epoll.ts,
// EventLoopShare): its loopback pair is open only while some registry has a
// descriptor.

import {
  Epoll,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EventLoopShare,
} from "./_epoll.ts";
import {
  CLOSED,
  type DescriptorSide,
  ERROR,
  type Events,
  HUP,
  type Interest,
  READABLE,
  type Registry,
  type Token,
  WRITABLE,
} from "./_selector.ts";
import { turned } from "./_turns.ts";

function epollInterest(interest: Interest): number {
  return ((interest & READABLE) !== 0 ? EPOLLIN : 0) |
    ((interest & WRITABLE) !== 0 ? EPOLLOUT : 0);
}

/** Readiness bits from epoll's: an error is readable and writable too. */
export function readinessOf(bits: number): number {
  let readiness = 0;
  if (bits & EPOLLIN) readiness |= READABLE;
  if (bits & EPOLLOUT) readiness |= WRITABLE;
  if (bits & EPOLLERR) readiness |= ERROR | READABLE | WRITABLE;
  // A hang-up is reported whatever the interest; it shows as readable (a
  // read says end of stream), as HUP never comes alone.
  if (bits & EPOLLHUP) readiness |= HUP | READABLE;
  return readiness;
}

/** The descriptors of one registry, on one epoll instance. */
export class Descriptors implements DescriptorSide {
  /** The registry's descriptor side, made on first use. */
  static of(registry: Registry): Descriptors {
    return (registry.descriptors ??= new Descriptors()) as Descriptors;
  }

  #epoll: Epoll | null = null;
  #count = 0;
  #closed: Token[] = [];
  #idling: Promise<void> | null = null;
  // linger(): how many of its waits in a row found nothing, and how many
  // polls to let pass before the next.
  #lingerMisses = 0;
  #lingerSkips = 0;

  /** Whether any descriptor is registered. */
  get active(): boolean {
    return this.#count > 0 || this.#closed.length > 0;
  }

  /** Watches `fd`. */
  add(fd: number, token: Token, interest: Interest): void {
    this.#epoll ??= new Epoll();
    this.#epoll.add(fd, token, epollInterest(interest));
    this.#count++;
    share.added();
  }

  /** Changes what `fd` is watched for. */
  modify(fd: number, token: Token, interest: Interest): void {
    this.#epoll!.modify(fd, token, epollInterest(interest));
  }

  /** Stops watching `fd` (still open). */
  delete(fd: number): void {
    try {
      this.#epoll!.delete(fd);
    } finally {
      this.#removed();
    }
  }

  /** `fd` was closed by its owner (which removed it from epoll): one CLOSED event. */
  closed(token: Token): void {
    this.#closed.push(token);
    this.#removed();
    this.#epoll?.wake();
  }

  /** Moves what is ready into `events`. */
  drain(events: Events): void {
    const closed = this.#closed;
    for (let i = 0; i < closed.length; i++) events.push(closed[i], CLOSED);
    closed.length = 0;
    const epoll = this.#epoll;
    if (epoll === null || this.#count === 0) return;
    const count = epoll.poll(0);
    for (let i = 0; i < count; i++) {
      events.push(epoll.token(i), readinessOf(epoll.readiness(i)));
    }
  }

  /**
   * Before the worker-thread hand-off of {@linkcode Descriptors.idle} (7–90
   * µs of CPU each, more than a whole round trip of the bare epoll loop),
   * waits a moment on this thread: under load the next event usually comes
   * within it. The JS thread is blocked meanwhile, Deno's timers and ops
   * included, so the wait lasts at most until a busy loop would owe Deno's
   * event loop its turn anyway (`Share.remaining()`, under a millisecond
   * since the last turn), never past `timeout`: the share of the thread
   * Deno gets is the one the busy path already guarantees. A wait that finds
   * nothing means the next event hangs on something else (an idle peer, or
   * one in this program, which cannot run while the thread is blocked), so
   * the next 1, 3, 7 ... 63 polls skip it; one that finds an event resets
   * that.
   */
  linger(events: Events, timeout: number | undefined): void {
    const epoll = this.#epoll;
    if (epoll === null || this.#count === 0) return;
    if (this.#lingerSkips > 0) {
      this.#lingerSkips--;
      return;
    }
    const ms = Math.min(share.remaining(), timeout ?? Infinity);
    if (!(ms >= MIN_LINGER)) return;
    const count = epoll.poll(ms);
    if (count === 0) {
      this.#lingerMisses = Math.min(this.#lingerMisses + 1, MAX_LINGER_MISSES);
      this.#lingerSkips = (1 << this.#lingerMisses) - 1;
      return;
    }
    this.#lingerMisses = 0;
    for (let i = 0; i < count; i++) {
      events.push(epoll.token(i), readinessOf(epoll.readiness(i)));
    }
  }

  /**
   * Waits on a worker thread until a descriptor is ready, `timeout` ms pass
   * or {@linkcode Descriptors.wake}; `null` when nothing is registered.
   */
  idle(timeout: number | undefined): Promise<void> | null {
    const epoll = this.#epoll;
    if (epoll === null || this.#count === 0) return null;
    if (this.#idling === null) {
      this.#idling = epoll.idle(timeout ?? Infinity).finally(() => {
        this.#idling = null;
      });
    }
    return this.#idling;
  }

  /** Ends a pending {@linkcode Descriptors.idle}. */
  wake(): void {
    this.#epoll?.wake();
  }

  /** A turn of Deno's event loop when a busy loop owes one, else `undefined`. */
  turn(): Promise<void> | undefined {
    return share.turn();
  }

  /** A wait has just ended: the event loop turned. */
  waited(): void {
    share.waited();
  }

  #removed(): void {
    this.#count--;
    share.removed();
    if (this.#count === 0) {
      // Closing wakes a pending idle(); its promise resolves after that.
      this.#epoll?.close();
      this.#epoll = null;
    }
  }
}

/**
 * The process-wide share of the thread: a loop that keeps finding
 * descriptors ready hands the thread to Deno's event loop every `INTERVAL` ms.
 */
class Share {
  #live = 0;
  #share: EventLoopShare | null = null;
  #opening: Promise<void> | null = null;
  #turning = false;
  #current: Promise<void> | null = null;
  #last = performance.now();

  added(): void {
    this.#live++;
  }

  removed(): void {
    if (--this.#live === 0 && !this.#turning) this.#close();
  }

  /** A wait ended on an event: the event loop has just turned. */
  waited(): void {
    this.#last = performance.now();
  }

  /** Ms until a turn is due (0 when due, or under way). */
  remaining(): number {
    if (this.#current !== null) return 0;
    return Math.max(0, INTERVAL - (performance.now() - this.#last));
  }

  /** A turn when one is due, else `undefined`; loops due at once share one. */
  turn(): Promise<void> | undefined {
    if (this.#current !== null) return this.#current;
    if (performance.now() - this.#last < INTERVAL) return undefined;
    return this.#current = this.#turn();
  }

  async #turn(): Promise<void> {
    this.#turning = true;
    try {
      if (this.#share === null) {
        this.#opening ??= EventLoopShare.open(0).then(
          (share) => {
            this.#share = share;
          },
          () => {}, // no network permission for 127.0.0.1: timers below
        );
        await this.#opening;
        this.#opening = null;
      }
      if (this.#share !== null) await this.#share.turn();
      else await new Promise((resolve) => setTimeout(resolve, 0));
    } finally {
      this.#current = null;
      this.#turning = false;
      this.#last = performance.now();
      turned();
      if (this.#live === 0) this.#close();
    }
  }

  #close(): void {
    this.#share?.close();
    this.#share = null;
  }
}

const INTERVAL = 1;
// linger() waits at least this long (ms), or not at all: a shorter wait
// would rarely pay for its system call.
const MIN_LINGER = 0.05;
const MAX_LINGER_MISSES = 6;
const share = new Share();
