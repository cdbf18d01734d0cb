// The epoll side of a Registry (_readiness.ts): OS descriptors (the epoll
// backend's sockets, and any other descriptor select() is given) registered
// on an epoll instance that the registry opens with its first descriptor and
// closes with its last, so that a registry with nothing on it holds nothing
// and an idle wait never outlives its work. Also the process-wide share of
// the JS thread with Deno's event loop for a loop that stays busy (epoll.ts,
// EventLoopShare): its loopback pair is open only while some registry has a
// descriptor.

import {
  Epoll,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EventLoopShare,
} from "./epoll.ts";
import {
  CLOSED,
  ERROR,
  type Events,
  HUP,
  type Interest,
  READABLE,
  type ReadinessSide,
  type Registry,
  type Token,
  WRITABLE,
} from "../_readiness.ts";
import { turned } from "../_turns.ts";
import { libc, POLLNVAL, POLLOUT } from "./libc.ts";
import { sendRoom } from "./fd_socket.ts";

// What epoll has for a descriptor (an entry of Descriptors' table, indexed
// by descriptor), for the write probe (see Descriptors.modify).
const KERNEL_IN = 1;
const KERNEL_OUT = 2;
/** Registered with its own number as the token. */
const TOKEN_IS_FD = 4;
/** Wants writability that epoll is not watching for: probe at the next drain. */
const PROBE = 8;
/** Probed once; still wanting writability at the next drain, epoll watches it. */
const PROBED = 16;
/** In the probe list. */
const LISTED = 32;

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
export class Descriptors implements ReadinessSide {
  /** The registry's descriptor side, made on first use. */
  static of(registry: Registry): Descriptors {
    return registry.side(Descriptors);
  }

  /** Its drain may wait on this thread (see `drain()`). */
  readonly blocking = true;

  #epoll: Epoll | null = null;
  /**
   * Keep the epoll instance open with no descriptor registered, for a
   * selector that is used again and again (select()'s): a process out of
   * descriptors could not open another, where select(2) needs none.
   */
  keepOpen = false;
  #count = 0;
  #closed: Token[] = [];
  #idling: Promise<void> | null = null;
  // linger(): how many of its waits in a row found nothing, and how many
  // polls to let pass before the next.
  #lingerMisses = 0;
  #lingerSkips = 0;
  #table = new Uint8Array(64);
  #probes: number[] = [];
  // One poll(2) for every probe of a drain: its struct pollfd array, and
  // what the last probe of each descriptor found (indexed as #table).
  #pollFds = new Int32Array(32);
  #pollBytes = new Uint8Array(this.#pollFds.buffer);
  #found = new Uint8Array(64);
  // Descriptors epoll refuses (EPERM: a regular file, /dev/null), by number:
  // poll(2) reports them always ready for what they are watched for, so
  // every drain does.
  #always: Map<number, { token: Token; bits: number }> | null = null;

  /** Whether any descriptor is registered. */
  get active(): boolean {
    return this.#count > 0 || this.#closed.length > 0;
  }

  /** Watches `fd`. */
  add(fd: number, token: Token, interest: Interest): void {
    this.#epoll ??= new Epoll();
    const bits = epollInterest(interest);
    try {
      this.#epoll.add(fd, token, bits);
      this.#record(fd, token, bits);
    } catch (error) {
      if ((error as { code?: string }).code !== "EPERM") throw error;
      (this.#always ??= new Map()).set(fd, { token, bits });
    }
    this.#count++;
    share.added();
  }

  /**
   * Changes what `fd` is watched for. A channel that starts wanting to write
   * usually wants it for one pass (an echo: read in one, write in the next),
   * and its socket is usually writable: instead of two epoll_ctl calls (add
   * EPOLLOUT now, remove it after the write), the next drain probes it (see
   * `#probeAll()`): a socket whose last send took everything is taken as
   * writable without a system call (`sendRoom`), any other is asked with
   * one poll(2) for every probe of the drain. Only a descriptor still
   * wanting to write a pass later, or not writable when probed, is watched
   * for it by epoll.
   */
  modify(fd: number, token: Token, interest: Interest): void {
    const bits = epollInterest(interest);
    const always = this.#always?.get(fd);
    if (always !== undefined) {
      always.token = token;
      always.bits = bits;
      return;
    }
    const state = fd < this.#table.length ? this.#table[fd] : 0;
    if (token === fd && (state & TOKEN_IS_FD) !== 0) {
      const kernelIn = (state & KERNEL_IN) !== 0 ? EPOLLIN : 0;
      if ((bits & EPOLLIN) === kernelIn && (state & KERNEL_OUT) === 0) {
        if ((bits & EPOLLOUT) !== 0) {
          if ((state & (PROBE | PROBED)) === 0) {
            this.#table[fd] = state | PROBE | LISTED;
            if ((state & LISTED) === 0) this.#probes.push(fd);
          }
        } else {
          this.#table[fd] = state & ~(PROBE | PROBED);
        }
        return;
      }
    }
    this.#epoll!.modify(fd, token, bits);
    this.#record(fd, token, bits);
  }

  /** Stops watching `fd` (still open). */
  delete(fd: number): void {
    if (this.#always?.delete(fd)) return this.#removed();
    if (fd < this.#table.length) this.#table[fd] &= LISTED;
    try {
      this.#epoll!.delete(fd);
    } finally {
      this.#removed();
    }
  }

  /** `fd` was closed by its owner (which removed it from epoll): one CLOSED event. */
  closed(token: Token): void {
    if (this.#always !== null) {
      for (const [fd, entry] of this.#always) {
        if (entry.token === token) this.#always.delete(fd);
      }
    }
    // A token that is a descriptor's number with TOKEN_IS_FD is that one.
    if (token < this.#table.length && (this.#table[token] & TOKEN_IS_FD)) {
      this.#table[token] &= LISTED;
    }
    this.#closed.push(token);
    this.#removed();
    this.#epoll?.wake();
  }

  /**
   * Moves what is ready into `events`. With `linger` > 0 (nothing else is
   * ready), it may first wait a moment for epoll on this thread (see
   * `#linger()`). `again` for a second drain in one poll (after a turn of
   * Deno's event loop), which probes again what the first probed instead of
   * handing it to epoll.
   */
  drain(events: Events, linger: number, again: boolean, now: number): void {
    if (linger > 0) this.#linger(events, linger, now);
    else this.#collect(events, again, 0);
  }

  /** drain(), waiting up to `wait` ms for epoll when nothing else is ready. */
  #collect(events: Events, again: boolean, wait: number): number {
    const closed = this.#closed;
    if (closed.length > 0) {
      for (let i = 0; i < closed.length; i++) events.push(closed[i], CLOSED);
      // Only when there were some: a store to an array's length is a call
      // into the engine even in optimized code.
      closed.length = 0;
    }
    const epoll = this.#epoll;
    if (epoll === null || this.#count === 0) return 0;
    const probes = this.#probes;
    const table = this.#table;
    if (probes.length > 0) {
      // Probed at the last drain and still wanting to write: epoll watches.
      for (let i = 0; i < probes.length; i++) {
        const fd = probes[i];
        if ((table[fd] & PROBED) === 0) continue;
        if (again) table[fd] ^= PROBED | PROBE;
        else this.#watchOutput(epoll, fd);
      }
      // What a probe finds is ready now: no waiting then.
      if (this.#probeAll() > 0) wait = 0;
    }
    if (this.#always !== null) {
      for (const { token, bits } of this.#always.values()) {
        const readiness = readinessOf(bits & (EPOLLIN | EPOLLOUT));
        if (readiness !== 0) events.push(token, readiness);
      }
    }
    const count = epoll.poll(events.length > 0 ? 0 : wait);
    for (let i = 0; i < count; i++) {
      const token = epoll.token(i);
      let readiness = readinessOf(epoll.readiness(i));
      if (token < table.length && (table[token] & PROBE) !== 0) {
        // Probed too: one event with both.
        table[token] ^= PROBE | PROBED;
        readiness |= this.#found[token];
      }
      events.push(token, readiness);
    }
    if (probes.length > 0) {
      let kept = 0;
      for (let i = 0; i < probes.length; i++) {
        const fd = probes[i];
        if ((table[fd] & PROBE) !== 0) {
          table[fd] ^= PROBE | PROBED;
          const readiness = this.#found[fd];
          if (readiness !== 0) events.push(fd, readiness);
          else this.#watchOutput(epoll, fd);
        }
        if ((table[fd] & PROBED) !== 0) probes[kept++] = fd;
        else table[fd] &= ~LISTED;
      }
      if (kept !== probes.length) probes.length = kept;
    }
    return count;
  }

  /**
   * Finds out whether each descriptor to probe is writable: one whose last
   * send took everything it was given is taken as writable (`sendRoom`);
   * poll(2) asks about the others at once. `#found` gets each one's
   * readiness bits (0: not writable).
   *
   * @returns How many are.
   */
  #probeAll(): number {
    const probes = this.#probes;
    const table = this.#table;
    const found = this.#found;
    if (this.#pollFds.length < probes.length * 2) {
      this.#pollFds = new Int32Array(probes.length * 4);
      this.#pollBytes = new Uint8Array(this.#pollFds.buffer);
    }
    const fds = this.#pollFds;
    // struct pollfd { int fd; short events; short revents; }, little-endian:
    // the second word is events, with revents (0 until poll sets it) above.
    let n = 0;
    let ready = 0;
    for (let i = 0; i < probes.length; i++) {
      const fd = probes[i];
      if ((table[fd] & PROBE) === 0) continue;
      if (sendRoom.has(fd)) {
        // Its last send took everything: writable, without asking.
        found[fd] = WRITABLE;
        ready++;
        continue;
      }
      fds[n * 2] = fd;
      fds[n * 2 + 1] = POLLOUT;
      n++;
    }
    if (n === 0) return ready;
    // EINTR and ENOMEM leave every revents 0: none is known writable.
    libc().poll(this.#pollBytes, BigInt(n), 0);
    for (let k = 0; k < n; k++) {
      const fd = fds[k * 2];
      const revents = fds[k * 2 + 1] >>> 16;
      found[fd] = revents & POLLNVAL ? 0 : readinessOf(revents);
      if (found[fd] !== 0) ready++;
    }
    return ready;
  }

  /** Puts EPOLLOUT on epoll for `fd`, a probed descriptor (token `fd`). */
  #watchOutput(epoll: Epoll, fd: number): void {
    const state = this.#table[fd];
    const bits = ((state & KERNEL_IN) !== 0 ? EPOLLIN : 0) | EPOLLOUT;
    this.#table[fd] = state & LISTED;
    epoll.modify(fd, fd, bits);
    this.#record(fd, fd, bits);
  }

  /** Records what epoll has for `fd`, keeping its place in the probe list. */
  #record(fd: number, token: Token, bits: number): void {
    let table = this.#table;
    if (fd >= table.length) {
      let size = table.length;
      while (size <= fd) size *= 2;
      table = new Uint8Array(size);
      table.set(this.#table);
      this.#table = table;
      const found = new Uint8Array(size);
      found.set(this.#found);
      this.#found = found;
    }
    table[fd] = (table[fd] & LISTED) | (token === fd ? TOKEN_IS_FD : 0) |
      ((bits & EPOLLIN) !== 0 ? KERNEL_IN : 0) |
      ((bits & EPOLLOUT) !== 0 ? KERNEL_OUT : 0);
  }

  /**
   * {@linkcode Descriptors.drain}, for a poll that found nothing else ready:
   * before the worker-thread hand-off of {@linkcode Descriptors.idle} (7–90
   * µs of CPU each, more than a whole round trip of the bare epoll loop),
   * it waits a moment for epoll on this thread (the same system call as the
   * drain's): under load the next event usually comes within it. The JS
   * thread is blocked meanwhile, Deno's timers and ops included, so the wait
   * lasts at most until a busy loop would owe Deno's event loop its turn
   * anyway (`Share.remaining()`, under a millisecond since the last turn),
   * never past `timeout`: the share of the thread Deno gets is the one the
   * busy path already guarantees. A wait that finds nothing means the next
   * event hangs on something else (an idle peer, or one in this program,
   * which cannot run while the thread is blocked), so the next 1, 3, 7 ...
   * 63 polls do not wait; one that finds an event resets that.
   */
  #linger(events: Events, timeout: number, now: number): void {
    let ms = 0;
    if (this.#lingerSkips > 0) this.#lingerSkips--;
    else ms = Math.min(share.remaining(now), timeout);
    if (!(ms >= MIN_LINGER)) ms = 0;
    const count = this.#collect(events, false, ms);
    if (ms === 0) return;
    if (count === 0 && events.length === 0) {
      this.#lingerMisses = Math.min(this.#lingerMisses + 1, MAX_LINGER_MISSES);
      this.#lingerSkips = (1 << this.#lingerMisses) - 1;
    } else {
      this.#lingerMisses = 0;
    }
  }

  /**
   * Waits on a worker thread until a descriptor is ready, `timeout` ms pass
   * or {@linkcode Descriptors.stopIdle}, then calls `wake`; `null` when
   * nothing is registered.
   */
  idle(
    timeout: number | undefined,
    wake: () => void,
  ): Promise<void> | null {
    const epoll = this.#epoll;
    if (epoll === null || this.#count === 0) return null;
    if (this.#idling === null) {
      this.#idling = epoll.idle(timeout ?? Infinity).finally(() => {
        this.#idling = null;
      });
    }
    this.#idling.then(wake);
    return this.#idling;
  }

  /** Ends a pending {@linkcode Descriptors.idle} (the wait on its thread). */
  stopIdle(_wake: () => void): void {
    if (this.#idling !== null) this.#epoll?.wake();
  }

  /** A turn of Deno's event loop when a busy loop owes one, else `undefined`. */
  turn(now: number): Promise<void> | undefined {
    return share.turn(now);
  }

  /** A wait has just ended: the event loop turned. */
  waited(): void {
    share.waited();
  }

  /** Opens the epoll instance now, ahead of the first descriptor. */
  open(): void {
    this.#epoll ??= new Epoll();
  }

  /** Stops keeping the epoll instance open (`keepOpen`); closes it if unused. */
  release(): void {
    this.keepOpen = false;
    if (this.#count === 0) this.#closeEpoll();
  }

  #removed(): void {
    this.#count--;
    share.removed();
    if (this.#count === 0 && !this.keepOpen) this.#closeEpoll();
  }

  #closeEpoll(): void {
    // Closing wakes a pending idle(); its promise resolves after that.
    this.#epoll?.close();
    this.#epoll = null;
  }
}

/**
 * The process-wide share of the thread: a loop that keeps finding
 * descriptors ready hands the thread to Deno's event loop every `INTERVAL` ms.
 */
class Share {
  #live = 0;
  #preloading = false;
  #share: EventLoopShare | null = null;
  #opening: Promise<void> | null = null;
  #turning = false;
  #current: Promise<void> | null = null;
  #last = performance.now();

  added(): void {
    if (this.#live++ === 0 && !this.#preloading) {
      this.#preloading = true;
      EventLoopShare.preload().catch(() => {}); // open() reports it
    }
  }

  removed(): void {
    if (--this.#live === 0 && !this.#turning) this.#close();
  }

  /** A wait ended on an event: the event loop has just turned. */
  waited(): void {
    this.#last = performance.now();
  }

  /** Ms from `now` until a turn is due (0 when due, or under way). */
  remaining(now: number): number {
    if (this.#current !== null) return 0;
    return Math.max(0, INTERVAL - (now - this.#last));
  }

  /** A turn when one is due at `now`, else `undefined`; loops due at once share one. */
  turn(now: number): Promise<void> | undefined {
    if (this.#current !== null) return this.#current;
    if (now - this.#last < INTERVAL) return undefined;
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
          () => {}, // out of descriptors (EMFILE), or no loopback: a timer
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
