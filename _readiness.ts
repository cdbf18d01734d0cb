// The readiness layer, named after Rust's mio: a `Registry` where sources are
// registered with a `Token` and an `Interest`, a `Selector` (mio's `Poll`)
// whose `poll()` fills `Events` with `(token, readiness)` pairs, and a
// `Waker`. Semantics are level-triggered, like poll(2): a source is reported
// by every poll for as long as it is ready for what it was registered for.
// Errors, hang-ups and closure are always reported.
//
// This is the seam between the layers above (asyncore, select) and the
// backends below (_deno/, _epoll/). A backend's sockets are `Source`s; each
// backend keeps its registrations on its own `ReadinessSide` of the registry
// (`Registry.side(Kind)`, made on first use): the promise backend a queue of
// what is ready in user space, the epoll backend an epoll instance. A poll
// asks every side the same three things: drain what is ready, wait until
// something may be, and stop waiting. Nothing here knows which backends
// exist.

import { type Alarm, passWithoutWait, turned } from "./_turns.ts";

/** What identifies a registration in the events of a poll; asyncore uses the socket's number. */
export type Token = number;

declare const interestBrand: unique symbol;

/**
 * The readiness a registration asks for: readable, writable, both or
 * neither. Errors and closure are reported whatever it says, as poll(2)
 * reports `POLLERR`/`POLLNVAL`.
 */
export type Interest = number & { readonly [interestBrand]: true };

/** The interests, and how to make one from two flags. */
export const Interest = {
  /** Only errors and closure. */
  NONE: 0 as Interest,
  /** Reading (or accepting) will not block. */
  READABLE: 1 as Interest,
  /** Writing will not block (or a connect finished). */
  WRITABLE: 2 as Interest,
  /** Both. */
  BOTH: 3 as Interest,
  /**
   * One `SENT` event each time bytes leave the socket's send buffer: for a
   * loop whose channel wants nothing now but may once its output has gone
   * (a `readable()` that waits for `sendBuffered` to fall). An epoll source
   * can give it with `EPOLLOUT | EPOLLET`.
   */
  OUTPUT: 64 as Interest,
  /** The interest in reading and/or writing. */
  of(readable: boolean, writable: boolean): Interest {
    return ((readable ? 1 : 0) | (writable ? 2 : 0)) as Interest;
  },
} as const;

/** Readiness bits: `recv`/`accept` will not block (data, end of stream, a connection). */
export const READABLE = 1;
/** Readiness bits: `send` will not block, or a connect finished. */
export const WRITABLE = 2;
/** Readiness bits: the socket is in an error state (then readable and writable too). */
export const ERROR = 4;
/**
 * Readiness bits: the connection is over both ways, or failed (`POLLHUP`).
 * It never triggers an event by itself: it comes with READABLE or ERROR.
 */
export const HUP = 8;
/** Readiness bits: the source was closed while registered (`POLLNVAL`); reported once. */
export const CLOSED = 16;
/** Readiness bits: bytes left the send buffer (for `Interest.OUTPUT`); reported once each time. */
export const SENT = 32;

/**
 * The events of one poll, reused from poll to poll so that a busy loop does
 * not allocate per event: `token(i)` and `readiness(i)` for `i < length`.
 */
export class Events {
  #tokens: Token[] = [];
  #readiness: number[] = [];
  #length = 0;

  /** The number of events. */
  get length(): number {
    return this.#length;
  }

  /** The token of event `i`. */
  token(i: number): Token {
    return this.#tokens[i];
  }

  /** The readiness bits of event `i`. */
  readiness(i: number): number {
    return this.#readiness[i];
  }

  /** Adds an event (selectors do this). */
  push(token: Token, readiness: number): void {
    this.#tokens[this.#length] = token;
    this.#readiness[this.#length++] = readiness;
  }

  /** Forgets the events. */
  clear(): void {
    this.#length = 0;
  }
}

/**
 * A socket source: mio's `event::Source`. Each backend implements it; the
 * registry's methods call these. Registering again with the same registry
 * replaces the registration, and deregistering what is not registered does
 * nothing: a loop cannot know whether a socket it registered has been
 * closed (which drops its registrations) since.
 */
export interface Source {
  /** Registers with `registry` under `token` for `interest`. */
  register(registry: Registry, token: Token, interest: Interest): void;
  /** Changes the token or interest of the registration with `registry`. */
  reregister(registry: Registry, token: Token, interest: Interest): void;
  /** Removes the registration with `registry`. */
  deregister(registry: Registry): void;
}

/**
 * One backend's part of a registry: where its sources' registrations live
 * and how readiness is found for them (mio's `sys::Selector`). Every poll
 * asks each side the same way: `drain()` (waiting a moment if the side can
 * and nothing else is ready), then, with nothing found, `idle()` until any
 * side calls its `wake`, then `drain()` again.
 */
export interface ReadinessSide {
  /**
   * Whether `drain()` may wait on this thread: such a side is drained after
   * the others, so that it waits only when they have nothing.
   */
  readonly blocking: boolean;
  /** Whether anything is registered here (or an event is pending). */
  readonly active: boolean;
  /**
   * Moves what is ready into `events`. With nothing ready, a blocking side
   * may wait up to `linger` ms for something (0: not at all). `again`: the
   * second drain of one poll, after a turn of the event loop. `now`: the
   * poll's `performance.now()`, read when it started (a drain after a wait
   * or a turn is given that reading too: it does not linger, so it has no
   * use for the time, and the clock costs 0.14–0.2 µs a read here).
   */
  drain(events: Events, linger: number, again: boolean, now: number): void;
  /**
   * Starts waiting until something may be ready or `timeout` ms pass, and
   * then calls `wake`. Returns what must settle before the poll returns (a
   * wait on another thread), or `null`.
   */
  idle(timeout: number | undefined, wake: () => void): Promise<void> | null;
  /** Ends the wait `idle()` started for `wake`; `wake` is not called after. */
  stopIdle(wake: () => void): void;
  /**
   * A poll found something ready without waiting: a turn of Deno's event
   * loop if a busy loop owes one at `now` (the poll's `performance.now()`),
   * else `undefined`.
   */
  turn(now: number): Promise<void> | undefined;
  /** A wait this side took part in has ended. */
  waited(): void;
}

const NOOP = (): void => {};

/**
 * The wake-ups of the polls waiting now. It allocates nothing once it has
 * held as many as it holds: a loop adds and removes one on every wait, where
 * an array's `splice()` would make an array of the removed and shrinking to
 * empty would drop its storage.
 */
class WakeList {
  #items: (() => void)[] = [];
  #length = 0;

  /** The number of wake-ups. */
  get length(): number {
    return this.#length;
  }

  /** Adds `wake`. */
  add(wake: () => void): void {
    this.#items[this.#length++] = wake;
  }

  /** Removes `wake`, if present. */
  remove(wake: () => void): void {
    const items = this.#items;
    const last = this.#length - 1;
    for (let i = last; i >= 0; i--) {
      if (items[i] !== wake) continue;
      for (let j = i; j < last; j++) items[j] = items[j + 1];
      items[last] = NOOP; // not held past its wait
      this.#length = last;
      return;
    }
  }

  /**
   * Calls every wake-up, the last added first; each may remove itself (only
   * itself) meanwhile.
   */
  wakeAll(): void {
    const items = this.#items;
    for (let i = this.#length - 1; i >= 0; i--) items[i]();
  }
}

/** What makes a side: a class with a constructor of no arguments. */
export type SideKind<T extends ReadinessSide> = new () => T;

/** Where sources are registered: mio's `Registry`. */
export class Registry {
  // The sides, non-blocking ones first; by kind.
  #sides: ReadinessSide[] = [];
  #kinds = new Map<SideKind<ReadinessSide>, ReadinessSide>();
  /** The polls waiting now: called to end their wait. */
  #waiters: WakeList = new WakeList();
  /** The tokens of the wakers woken since the last drain. */
  #woken: Token[] = [];

  /** Registers `source` under `token` for `interest`. */
  register(source: Source, token: Token, interest: Interest): void {
    source.register(this, token, interest);
  }

  /** Changes the token or interest `source` is registered with. */
  reregister(source: Source, token: Token, interest: Interest): void {
    source.reregister(this, token, interest);
  }

  /** Stops reporting `source`. */
  deregister(source: Source): void {
    source.deregister(this);
  }

  /** The side of kind `kind` (a backend's), made on first use. */
  side<T extends ReadinessSide>(kind: SideKind<T>): T {
    let side = this.#kinds.get(kind) as T | undefined;
    if (side === undefined) {
      side = new kind();
      this.#kinds.set(kind, side);
      if (side.blocking) this.#sides.push(side);
      else this.#sides.unshift(side);
    }
    return side;
  }

  /** The side of kind `kind` if it has been made. */
  existingSide<T extends ReadinessSide>(kind: SideKind<T>): T | undefined {
    return this.#kinds.get(kind) as T | undefined;
  }

  /** The sides, in the order they are drained. */
  get sides(): readonly ReadinessSide[] {
    return this.#sides;
  }

  /**
   * Moves what is ready into `events`: the woken wakers, then each side's
   * (the blocking side may wait up to `linger` ms when none has anything).
   */
  drain(events: Events, linger: number, again: boolean, now: number): void {
    const woken = this.#woken;
    if (woken.length > 0) {
      for (let i = 0; i < woken.length; i++) events.push(woken[i], READABLE);
      woken.length = 0;
    }
    const sides = this.#sides;
    for (let i = 0; i < sides.length; i++) {
      const side = sides[i];
      if (side.active) {
        side.drain(events, events.length === 0 ? linger : 0, again, now);
      }
    }
  }

  /**
   * A turn of Deno's event loop when a poll that found something ready owes
   * one: the side drained last says when (a side that blocks the thread
   * knows best when the event loop last turned).
   */
  turn(now: number): Promise<void> | undefined {
    const sides = this.#sides;
    for (let i = sides.length - 1; i >= 0; i--) {
      if (sides[i].active) return sides[i].turn(now);
    }
    return passWithoutWait(now);
  }

  /** Adds a waiting poll's wake-up. */
  addWaiter(wake: () => void): void {
    this.#waiters.add(wake);
  }

  /** Removes a waiting poll's wake-up. */
  removeWaiter(wake: () => void): void {
    this.#waiters.remove(wake);
  }

  /**
   * Ends the waits of the polls waiting now: a side's source became ready
   * (the promise backend's queue wakes its polls this way), or something
   * changed that no event shows (a descriptor source's lookup or connect
   * failed before the kernel saw it).
   */
  wakeWaiters(): void {
    this.#waiters.wakeAll();
  }

  /** A waker's wake-up: one `(token, READABLE)` event, if a poll waits. */
  wakeWith(token: Token): void {
    if (this.#waiters.length === 0) return;
    if (!this.#woken.includes(token)) this.#woken.push(token);
    this.wakeWaiters();
  }
}

/**
 * Waits for readiness: mio's `Poll`. Several polls may wait on one selector
 * at once; each sees every event.
 */
export class Selector {
  /** Where sources are registered for this selector. */
  readonly registry: Registry = new Registry();

  /**
   * Fills `events` with what is ready. When nothing is, waits until
   * something is, `timeout` ms pass (`undefined`: no limit; `0` does not
   * wait), `signal` aborts, or a {@linkcode Waker} wakes it. A wait may end
   * with no events (timeout, abort, wake).
   *
   * Finding something ready without waiting, it lets the event loop turn now
   * and then first (see `Registry.turn()`), so that a source that is always
   * ready cannot starve the others.
   *
   * A poll that neither waits nor turns the event loop is done when it
   * returns (`undefined`), with no promise to await: a busy loop's passes
   * then cost no trip through the microtask queue.
   *
   * @param alarm The caller's long-lived timer for `timeout`, instead of a
   *   timer per wait.
   * @param now The caller's `performance.now()`, if it has just read it:
   *   `timeout` counts from then.
   * @returns A promise when it must wait or turn the event loop, else
   *   `undefined`: `events` is filled.
   */
  poll(
    events: Events,
    timeout: number | undefined,
    signal?: AbortSignal,
    alarm?: Alarm,
    now: number = performance.now(),
  ): Promise<void> | undefined {
    const registry = this.registry;
    events.clear();
    registry.drain(
      events,
      timeout === undefined ? Infinity : signal?.aborted ? 0 : timeout,
      false,
      now,
    );
    if (events.length > 0 || timeout === 0) {
      const turn = registry.turn(now);
      if (turn === undefined) return undefined;
      return turn.then(() => {
        events.clear();
        registry.drain(events, 0, true, now);
      });
    }
    if (signal?.aborted) return undefined;
    return waitOn(registry, timeout, signal, alarm, now).then(() => {
      registry.drain(events, 0, false, now);
    });
  }
}

// Sockets hold no process (the promise backend's reads and accepts are
// unref'd, as the epoll backend's descriptors are never waited on by Deno), so
// a poll with no timeout (which has no timer of its own) keeps the process
// alive while it waits, as a blocking select() does: one timer for all the
// polls waiting at once.
let waitingWithoutTimer = 0;
let keepAlive: ReturnType<typeof setInterval> | undefined;
const KEEP_ALIVE_INTERVAL = 0x3fffffff;

function holdProcess(): void {
  if (waitingWithoutTimer++ === 0) {
    keepAlive = setInterval(() => {}, KEEP_ALIVE_INTERVAL);
  }
}

function releaseProcess(): void {
  if (--waitingWithoutTimer === 0) clearInterval(keepAlive);
}

function waitOn(
  registry: Registry,
  timeout: number | undefined,
  signal: AbortSignal | undefined,
  alarm: Alarm | undefined,
  start: number,
): Promise<void> {
  return new Promise((resolve) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let woken = false;
    // The sides waiting, and what the first of them to return one must
    // settle (a wait on another thread) before the poll returns.
    const sides = registry.sides;
    let idling: Promise<void> | null = null;
    // A timeout's timer keeps the process alive by itself.
    if (timeout === undefined) holdProcess();
    // Resolves once; its continuation runs after every other completion that
    // arrived in the same turn, so one wake-up serves them all.
    const wake = (): void => {
      if (woken) return;
      woken = true;
      if (timeout === undefined) releaseProcess();
      registry.removeWaiter(wake);
      if (timer !== undefined) clearTimeout(timer);
      alarm?.detach(wake);
      signal?.removeEventListener("abort", wake);
      turned();
      for (let i = 0; i < sides.length; i++) sides[i].stopIdle(wake);
      if (idling === null) return resolve();
      idling.then(() => {
        for (let i = 0; i < sides.length; i++) sides[i].waited();
        resolve();
      });
    };
    registry.addWaiter(wake);
    for (let i = 0; i < sides.length && !woken; i++) {
      const side = sides[i];
      if (!side.active) continue;
      const settles = side.idle(timeout, wake);
      if (settles !== null) {
        idling = idling === null ? settles : Promise.all([idling, settles])
          .then(() => {});
      }
    }
    if (woken) return;
    if (timeout !== undefined) {
      if (alarm !== undefined) alarm.attach(wake, start + timeout);
      else {
        timer = setTimeout(
          wake,
          Math.max(0, start + timeout - performance.now()),
        );
      }
    }
    signal?.addEventListener("abort", wake, { once: true });
  });
}

/**
 * Wakes a selector's polls from another task: mio's `Waker`. A wake while no
 * poll waits is dropped: the next poll is about to look at everything anyway
 * (a loop gathers before it waits, with no await between).
 */
export class Waker {
  #registry: Registry;
  #token: Token;

  /** Makes a waker whose wake-ups show as one `(token, READABLE)` event each. */
  constructor(registry: Registry, token: Token) {
    this.#registry = registry;
    this.#token = token;
  }

  /** Wakes the polls waiting on the registry now, if any. */
  wake(): void {
    this.#registry.wakeWith(this.#token);
  }
}
