// The readiness layer, named after Rust's mio: a `Registry` where sources are
// registered with a `Token` and an `Interest`, a `Selector` (mio's `Poll`)
// whose `poll()` fills `Events` with `(token, readiness)` pairs, and a
// `Waker`. Semantics are level-triggered, like poll(2): a source is reported
// by every poll for as long as it is ready for what it was registered for.
// Errors, hang-ups and closure are always reported.
//
// The seam between backends is `Source` (mio's `event::Source`): each backend's
// socket source registers itself with a registry.
//
// - The promise backend (_conn_source.ts) keeps a `Registration` (selector,
//   token, interest) per registry and pushes every readiness change to it
//   with `Registry.changed()`. The registry keeps the registrations that are
//   ready in a queue (as a kernel keeps epoll's ready list), so a poll looks
//   at what is ready, not at everything registered.
// - The epoll backend (_epoll_source.ts), and any other OS descriptor
//   select() is given, registers descriptors on the registry's
//   `DescriptorSide` (_descriptors.ts): an epoll instance made with the first
//   descriptor. `Selector.poll()` then also runs `epoll_wait(0)`
//   synchronously when it drains; with nothing ready it waits a moment on
//   the JS thread (`DescriptorSide.linger()`, bounded by the share of the
//   thread Deno is owed), and then races an `epoll_wait` on a
//   worker thread against the promise side's wake-up; whichever ends first
//   wakes the poll (the other is ended before it returns, so no wait
//   outlives it), and both sides are drained into the same `Events`. A poll
//   that keeps finding descriptors ready hands the thread to Deno's event
//   loop about every millisecond instead of `passWithoutWait()`.
//   Nothing above this file changes: asyncore and select() only see tokens
//   and readiness.

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

/** A registry's OS descriptors (see the file comment; _descriptors.ts). */
export interface DescriptorSide {
  /** Whether a descriptor is registered (or a CLOSED event is pending). */
  readonly active: boolean;
  /** Moves what is ready into `events` (`again`: a second time in one poll). */
  drain(events: Events, again?: boolean): void;
  /** Waits until a descriptor is ready; `null` when none is registered. */
  idle(timeout: number | undefined): Promise<void> | null;
  /** drain(), for a poll with nothing else ready: it may wait a moment on this thread. */
  linger(events: Events, timeout: number | undefined): void;
  /** Ends a pending `idle()`. */
  wake(): void;
  /** A turn of Deno's event loop when a busy poll owes one. */
  turn(): Promise<void> | undefined;
  /** A wait has just ended. */
  waited(): void;
}

/** What a promise-side source tells its registrations: its readiness now. */
export interface PushSource {
  /** The readiness bits the source has now. */
  readiness(): number;
}

const LIVE = 0;
const CLOSING = 1;
const DEAD = 2;
const WOKEN = 3;

/**
 * A promise-side source's registration with one registry: the source keeps
 * it and reports each readiness change with {@linkcode Registry.changed}.
 */
export class Registration {
  /** The registry. */
  readonly registry: Registry;
  /** The source. */
  readonly source: PushSource;
  /** The token events carry. */
  token: Token;
  /** What it asks for. */
  interest: Interest;
  /** Whether it is in its registry's ready queue. */
  queued = false;
  /** LIVE, CLOSING (one CLOSED event to report), DEAD or WOKEN (one event of `wokenBits`). */
  state = LIVE;
  /** What a WOKEN registration reports. */
  wokenBits = 0;

  constructor(
    registry: Registry,
    source: PushSource,
    token: Token,
    interest: Interest,
  ) {
    this.registry = registry;
    this.source = source;
    this.token = token;
    this.interest = interest;
  }
}

/** Where sources are registered: mio's `Registry`. */
export class Registry {
  /** The registrations that may be ready (checked again when drained). */
  #ready: Registration[] = [];
  /** The polls waiting now: called when something is queued. */
  #waiters: (() => void)[] = [];
  /** The OS descriptors registered here, once there have been any. */
  descriptors: DescriptorSide | null = null;

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

  // The promise side: what PushSources call.

  /** Makes a registration for a promise-side source; reports it if ready now. */
  track(source: PushSource, token: Token, interest: Interest): Registration {
    const registration = new Registration(this, source, token, interest);
    this.changed(registration);
    return registration;
  }

  /** The source's readiness or the registration's interest changed. */
  changed(registration: Registration): void {
    if (
      (registration.source.readiness() & (registration.interest | ERROR)) === 0
    ) return;
    this.#enqueue(registration);
  }

  /** The source was closed: one CLOSED event, then the registration is gone. */
  closed(registration: Registration): void {
    registration.state = CLOSING;
    this.#enqueue(registration);
  }

  /** One event of `bits` (a waker's, or SENT), then the registration is live again. */
  woken(registration: Registration, bits: number): void {
    if (registration.state !== LIVE) return;
    registration.state = WOKEN;
    registration.wokenBits = bits;
    this.#enqueue(registration);
  }

  /** Queues `registration` for the next drain (once) and wakes the polls. */
  #enqueue(registration: Registration): void {
    if (!registration.queued) {
      registration.queued = true;
      this.#ready.push(registration);
    }
    this.#wake();
  }

  /** The registration is withdrawn. */
  dropped(registration: Registration): void {
    registration.state = DEAD;
  }

  /** Whether a poll is waiting on this registry now. */
  get waiting(): boolean {
    return this.#waiters.length > 0;
  }

  /**
   * Moves what is ready into `events`. Level-triggered: a registration still
   * ready stays queued for the next poll; one no longer ready leaves.
   */
  drain(events: Events): void {
    const ready = this.#ready;
    let kept = 0;
    for (let i = 0; i < ready.length; i++) {
      const registration = ready[i];
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
    ready.length = kept;
  }

  /** Adds a waiting poll's wake-up. */
  addWaiter(wake: () => void): void {
    this.#waiters.push(wake);
  }

  /** Removes a waiting poll's wake-up. */
  removeWaiter(wake: () => void): void {
    const index = this.#waiters.indexOf(wake);
    if (index >= 0) this.#waiters.splice(index, 1);
  }

  /**
   * Wakes the polls waiting now, for a change no event shows (a descriptor
   * source's lookup or connect failed before the kernel saw it).
   */
  wakeWaiters(): void {
    this.descriptors?.wake();
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    for (let i = 0; i < waiters.length; i++) waiters[i]();
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
   * and then first (see _turns.ts), so that a source that is always ready
   * cannot starve the others.
   *
   * @param alarm The caller's long-lived timer for `timeout`, instead of a
   *   timer per wait.
   */
  async poll(
    events: Events,
    timeout: number | undefined,
    signal?: AbortSignal,
    alarm?: Alarm,
  ): Promise<void> {
    const registry = this.registry;
    const descriptors = registry.descriptors;
    events.clear();
    registry.drain(events);
    if (descriptors?.active) {
      if (events.length > 0 || timeout === 0 || signal?.aborted) {
        descriptors.drain(events);
      } else {
        descriptors.linger(events, timeout);
      }
    }
    if (events.length > 0 || timeout === 0) {
      const turn = descriptors?.active ? descriptors.turn() : passWithoutWait();
      if (turn !== undefined) {
        await turn;
        events.clear();
        registry.drain(events);
        if (descriptors?.active) descriptors.drain(events, true);
      }
      return;
    }
    if (signal?.aborted) return;
    await waitOn(registry, timeout, signal, alarm);
    registry.drain(events);
    if (descriptors?.active) descriptors.drain(events);
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
): Promise<void> {
  return new Promise((resolve) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let woken = false;
    let idled = false;
    const descriptors = registry.descriptors;
    const idling = descriptors?.idle(timeout) ?? null;
    // A timeout's timer keeps the process alive by itself.
    if (timeout === undefined) holdProcess();
    // Resolves once; its continuation runs after every other completion that
    // arrived in the same turn, so one wake-up serves them all.
    const wake = (): void => {
      if (woken) return;
      woken = true;
      if (timeout === undefined) releaseProcess();
      registry.removeWaiter(wake);
      clearTimeout(timer);
      alarm?.detach(wake);
      signal?.removeEventListener("abort", wake);
      turned();
      if (idling === null) return resolve();
      // The descriptor wait on its worker thread ends before the poll does
      // (unless it is what ended, and needs no waking).
      if (!idled) descriptors!.wake();
      idling.then(() => {
        descriptors!.waited();
        resolve();
      });
    };
    idling?.then(() => {
      idled = true;
      wake();
    });
    registry.addWaiter(wake);
    if (timeout !== undefined) {
      if (alarm !== undefined) alarm.attach(wake, performance.now() + timeout);
      else timer = setTimeout(wake, timeout);
    }
    signal?.addEventListener("abort", wake, { once: true });
  });
}

/**
 * Wakes a selector's polls from another task: mio's `Waker`. A wake while no
 * poll waits is dropped: the next poll is about to look at everything anyway
 * (a loop gathers before it waits, with no await between).
 */
export class Waker implements PushSource {
  #registration: Registration;

  /** Makes a waker whose wake-ups show as one `(token, READABLE)` event each. */
  constructor(registry: Registry, token: Token) {
    this.#registration = registry.track(this, token, Interest.NONE);
  }

  /** Wakes the polls waiting on the registry now, if any. */
  wake(): void {
    const registration = this.#registration;
    if (registration.registry.waiting) {
      registration.registry.woken(registration, READABLE);
    }
  }

  /** A waker is never ready but when woken. */
  readiness(): number {
    return 0;
  }
}
