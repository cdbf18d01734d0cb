// Linux epoll through libc: the epoll backend's readiness source, level-
// triggered, plus the two ways it waits without starving Deno's own event
// loop. When busy, `poll()` asks the kernel without blocking (epoll_wait with
// timeout 0, on the JS thread, into one reused buffer: no allocation per
// event). When idle, `idle()` awaits a `nonblocking` epoll_wait on a worker
// thread, which an eventfd (`wake()`) or a timeout ends. A loop that stays
// busy must still hand the thread to Deno now and then, or Deno's timers and
// other ops (a Deno.Conn, fetch) starve: `EventLoopShare` does that.

import {
  closeOwned,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EPOLL_CLOEXEC,
  EPOLL_EVENT_SIZE,
  lastError,
  libc,
  own,
  POLLIN,
} from "./libc.ts";
import { FdSocket, pollDescriptor } from "./fd_socket.ts";
import { checkSize, describe } from "../_validate.ts";

/** Readable (`EPOLLIN`). */
export const EPOLLIN = 0x001;
/** Urgent data (`EPOLLPRI`). */
export const EPOLLPRI = 0x002;
/** Writable (`EPOLLOUT`). */
export const EPOLLOUT = 0x004;
/** An error is pending (`EPOLLERR`); always reported. */
export const EPOLLERR = 0x008;
/** Hung up (`EPOLLHUP`): both directions are closed; always reported. */
export const EPOLLHUP = 0x010;
/** The peer shut its write side (`EPOLLRDHUP`). */
export const EPOLLRDHUP = 0x2000;

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const INTERESTS = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP;

// struct epoll_event { uint32_t events; uint64_t data; }: packed on x86_64
// (data at byte 4, 12 bytes in all), naturally aligned on aarch64 (data at
// byte 8, 16 bytes). Both little-endian, so it is read as u32 words: events,
// then data's low word (the token) and high word (1 marks the waker).
const STRIDE = EPOLL_EVENT_SIZE / 4;
const DATA = EPOLL_EVENT_SIZE === 12 ? 1 : 2;
const WAKER_MARK = 1;
const MAX_TIMEOUT = 0x7fffffff;

/** Checks that `value` is an integer from 0 to `max`. */
function checkUint(name: string, value: unknown, max: number): number {
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number, got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(
      `${name} must be an integer from 0 to ${max}, got ${value}`,
    );
  }
  return value;
}

/** Checks an fd number: an integer in 0..2^31-1. */
function checkFd(fd: unknown): number {
  return checkUint("fd", fd, 0x7fffffff);
}

function checkInterest(interest: unknown): number {
  if (typeof interest !== "number") {
    throw new TypeError(`interest must be a number, got ${describe(interest)}`);
  }
  if (!Number.isInteger(interest) || (interest & ~INTERESTS) !== 0) {
    throw new RangeError(
      `interest must be EPOLLIN, EPOLLPRI, EPOLLOUT and EPOLLRDHUP bits, got ${interest}`,
    );
  }
  return interest;
}

/**
 * An epoll instance (level-triggered) with its own waker. Sources are any
 * descriptors (registering one never closes it); events come back as
 * `(token, readiness)` pairs read with {@linkcode Epoll.token} and
 * {@linkcode Epoll.readiness} after {@linkcode Epoll.poll}.
 */
export class Epoll {
  #epfd: number;
  #wakeFd: number;
  readonly capacity: number;
  #events: Uint8Array;
  #words: Uint32Array;
  // One event for epoll_ctl, and one the worker thread of idle() writes to
  // (never the same memory as poll()'s, which may run while it waits).
  #ctl = new Uint8Array(16);
  #ctlWords = new Uint32Array(this.#ctl.buffer);
  #idleEvent = new Uint8Array(16);
  #drain = new Uint8Array(8);
  #timespec = new Int32Array(4);
  #timespecBytes = new Uint8Array(this.#timespec.buffer);
  #wakeValue = new Uint8Array(new BigUint64Array([1n]).buffer);
  #idling: Promise<void> | null = null;
  #closing = false;

  /**
   * Creates the instance and its eventfd.
   *
   * @param capacity The most events one {@linkcode Epoll.poll} returns.
   */
  constructor(capacity = 1024) {
    this.capacity = checkSize("capacity", capacity);
    if (capacity > 0x100000) {
      throw new RangeError(`capacity must be at most 1048576, got ${capacity}`);
    }
    const c = libc();
    this.#events = new Uint8Array(capacity * EPOLL_EVENT_SIZE);
    this.#words = new Uint32Array(this.#events.buffer);
    const epfd = c.epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) throw lastError("epoll_create1");
    this.#epfd = own(epfd);
    const wakeFd = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wakeFd < 0) {
      const error = lastError("eventfd");
      closeOwned(epfd);
      throw error;
    }
    this.#wakeFd = own(wakeFd);
    this.#ctlWords[DATA + 1] = WAKER_MARK;
    try {
      this.#control("add", EPOLL_CTL_ADD, wakeFd, EPOLLIN);
    } catch (error) {
      this.#release();
      throw error;
    }
  }

  /** Whether {@linkcode Epoll.close} has been called. */
  get closed(): boolean {
    return this.#closing;
  }

  /** The epoll descriptor (for diagnostics). */
  get fd(): number {
    return this.#epfd;
  }

  /** Watches `fd` for `interest` (EPOLLIN/EPOLLOUT... bits) as `token`. */
  add(fd: number, token: number, interest: number): void {
    this.#user("add", EPOLL_CTL_ADD, fd, token, interest);
  }

  /** Changes the token and interest `fd` is watched with. */
  modify(fd: number, token: number, interest: number): void {
    this.#user("modify", EPOLL_CTL_MOD, fd, token, interest);
  }

  /** Stops watching `fd`. Closing a descriptor also removes it. */
  delete(fd: number): void {
    checkFd(fd);
    this.#check("delete");
    this.#control("delete", EPOLL_CTL_DEL, fd, 0);
  }

  /**
   * Collects ready events (`epoll_wait` on this thread), hiding the waker's
   * own. With a timeout it blocks the JS thread, Deno's timers and ops
   * included, for up to that long: a busy loop's way to wait a moment for
   * the next event without the worker-thread hand-off of
   * {@linkcode Epoll.idle} (7–90 µs each).
   *
   * @param timeout Milliseconds to wait when nothing is ready, at most 1000.
   *   A fraction is honoured where libc has `epoll_pwait2` (glibc 2.35,
   *   Linux 5.11), else rounded down to whole milliseconds.
   * @returns How many events {@linkcode Epoll.token} and
   *   {@linkcode Epoll.readiness} can read (indices 0 to n - 1).
   */
  poll(timeout = 0): number {
    if (
      timeout !== 0 &&
      !(typeof timeout === "number" && timeout > 0 && timeout <= 1000)
    ) {
      throw new RangeError(
        `timeout must be a number from 0 to 1000 ms, got ${describe(timeout)}`,
      );
    }
    this.#check("poll");
    const c = libc();
    let count: number;
    if (Number.isInteger(timeout)) {
      count = c.epoll_wait(this.#epfd, this.#events, this.capacity, timeout);
    } else if (c.epoll_pwait2 !== null) {
      // struct timespec { time_t tv_sec; long tv_nsec; }, little-endian.
      const ns = Math.round(timeout * 1e6);
      this.#timespec[0] = Math.floor(ns / 1e9);
      this.#timespec[2] = ns % 1e9;
      count = c.epoll_pwait2(
        this.#epfd,
        this.#events,
        this.capacity,
        this.#timespecBytes,
        null,
      );
    } else {
      count = c.epoll_wait(
        this.#epfd,
        this.#events,
        this.capacity,
        Math.floor(timeout),
      );
    }
    // EINTR: nothing came in this call.
    if (count < 0) return 0;
    const words = this.#words;
    for (let i = 0; i < count; i++) {
      if (words[i * STRIDE + DATA + 1] !== WAKER_MARK) continue;
      this.#resetWaker();
      count--;
      for (let w = 0; w < STRIDE; w++) {
        words[i * STRIDE + w] = words[count * STRIDE + w];
      }
      i--;
    }
    return count;
  }

  /** The token of event `index` of the last {@linkcode Epoll.poll}. */
  token(index: number): number {
    return this.#words[index * STRIDE + DATA];
  }

  /** The readiness bits (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP...) of event `index`. */
  readiness(index: number): number {
    return this.#words[index * STRIDE];
  }

  /**
   * Waits on a worker thread until something is ready, {@linkcode Epoll.wake}
   * is called or `timeout` ms pass; then call {@linkcode Epoll.poll}. The JS
   * thread stays free meanwhile, but a pending wait keeps the process alive:
   * idle only with work registered, with the next timer as the timeout, and
   * `close()` (which wakes it) when done.
   *
   * @param timeout Milliseconds; `Infinity` (the default) waits for an event.
   * @throws {Deno.errors.Busy} when a wait is already pending.
   */
  idle(timeout = Infinity): Promise<void> {
    if (typeof timeout !== "number" || !(timeout >= 0)) {
      throw new TypeError(
        `timeout must be a non-negative number of ms, got ${describe(timeout)}`,
      );
    }
    this.#check("idle");
    if (this.#idling !== null) {
      throw new Deno.errors.Busy("idle: a wait is already pending");
    }
    const ms = timeout === Infinity
      ? -1
      : Math.min(Math.ceil(timeout), MAX_TIMEOUT);
    // The worker writes at most one event: it only signals readiness, and
    // poll() then reads every event on this thread.
    const waiting = libc().epoll_wait_blocking(
      this.#epfd,
      this.#idleEvent,
      1,
      ms,
    );
    const idling = waiting.then(() => {
      this.#idling = null;
      if (this.#closing) this.#release();
    });
    this.#idling = idling;
    return idling;
  }

  /**
   * Ends a pending {@linkcode Epoll.idle} (or the next one) at once. Does
   * nothing once closed, so a late wake-up from shutting down is harmless.
   */
  wake(): void {
    if (this.#wakeFd < 0) return;
    // Writing to a nonblocking eventfd fails only when its counter would
    // overflow 2^64 - 2, and then it is already readable: nothing to do.
    libc().write(this.#wakeFd, this.#wakeValue, 8n);
  }

  /**
   * Closes the instance. A pending {@linkcode Epoll.idle} is woken and the
   * descriptors are closed once it returns (closing them under a waiting
   * thread would not wake it); the promise it returned resolves after that.
   */
  close(): void {
    if (this.#closing) return;
    if (this.#idling !== null) {
      libc().write(this.#wakeFd, this.#wakeValue, 8n);
      this.#closing = true;
      return;
    }
    this.#closing = true;
    this.#release();
  }

  /** Closes the instance (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  #release(): void {
    closeOwned(this.#wakeFd);
    closeOwned(this.#epfd);
    this.#wakeFd = -1;
    this.#epfd = -1;
  }

  #resetWaker(): void {
    // Reading an eventfd returns its counter and zeroes it.
    libc().read(this.#wakeFd, this.#drain, 8n);
  }

  #check(operation: string): void {
    if (this.#closing) {
      throw new Deno.errors.BadResource(`${operation} on a closed epoll`);
    }
  }

  #user(
    operation: string,
    op: number,
    fd: number,
    token: number,
    interest: number,
  ): void {
    checkFd(fd);
    checkUint("token", token, 0xffffffff);
    checkInterest(interest);
    this.#check(operation);
    if (fd === this.#epfd || fd === this.#wakeFd) {
      throw new Deno.errors.PermissionDenied(
        `${operation}: fd ${fd} is this epoll's own descriptor`,
      );
    }
    this.#ctlWords[DATA] = token;
    this.#ctlWords[DATA + 1] = 0;
    this.#control(operation, op, fd, interest);
  }

  #control(operation: string, op: number, fd: number, interest: number): void {
    this.#ctlWords[0] = interest;
    if (libc().epoll_ctl(this.#epfd, op, fd, this.#ctl) < 0) {
      throw lastError(operation);
    }
  }
}

/** A byte for the ping. */
const PING = new Uint8Array([1]);
/** The most ms opening the pair waits for its loopback connection. */
const CONNECT_TIMEOUT = 1000;

let nodeNet: Promise<typeof import("node:net")> | null = null;

/** What {@linkcode EventLoopShare} reads the ping with: a `node:net` Socket. */
interface Reader {
  on(event: "data" | "error" | "close", listener: () => void): unknown;
  ref(): unknown;
  unref(): unknown;
  destroy(): unknown;
}

/**
 * Hands the JS thread to Deno's event loop from a busy epoll loop: a 1-byte
 * ping over a private loopback TCP connection, awaited. The connection is
 * made with libc (no permission beyond `--allow-ffi`; the `Deno.listen` pair
 * used before needed `--allow-net=127.0.0.1`, or prompted); Deno's event
 * loop reads its far end as a `node:net` Socket adopting the descriptor, so
 * each turn waits on Deno's own I/O reactor, and whatever else waits there
 * (a `Deno.Conn`, `fetch`) runs in it too. Measured with `deno task
 * bench:share` (epoll, alternating with the `Deno.listen` pair, two runs
 * each, on a 2-core host kept busy by other work): the same within the
 * noise, at 50 × 64 B timers 0.9–1.2 ms late at the median (the pair
 * 0.9), 107–112 fetches in 3 s (117), and at 1000 × 64 B 61–62 fetches
 * (41–49) and as many `Deno.Conn` round trips. A pipe or a Unix socket pair
 * adopted the same way let timers run but left `fetch` and `Deno.Conn`s
 * stalled for over a second at 1000 connections (5–10 fetches in 3 s);
 * `setTimeout(0)` costs 1–2 ms a turn (the echo alone fell to a third),
 * `setImmediate` and a `MessageChannel` starve `Deno.Conn`s, and a
 * `nonblocking` read (like epoll_wait(0)) left timers 150–660 ms late at
 * p99. Between turns the reader is unref'd, so the pair never keeps the
 * process alive; `close()` frees it.
 */
export class EventLoopShare {
  #writer: FdSocket;
  #reader: Reader;
  #arrived: (() => void) | null = null;
  #pending: Promise<void> | null = null;
  #last = performance.now();
  readonly interval: number;

  private constructor(writer: FdSocket, reader: Reader, interval: number) {
    this.#writer = writer;
    this.#reader = reader;
    this.interval = interval;
    const arrived = () => {
      this.#reader.unref();
      const resolve = this.#arrived;
      this.#arrived = null;
      resolve?.();
    };
    reader.on("data", arrived);
    // A connection only this object writes to does not fail; should it end
    // anyway, a pending turn ends rather than hanging.
    reader.on("error", arrived);
    reader.on("close", arrived);
  }

  /**
   * Opens the pair, and passes a first ping through it.
   *
   * @param interval The most milliseconds between turns that
   *   {@linkcode EventLoopShare.due} allows.
   */
  static async open(interval = 1): Promise<EventLoopShare> {
    if (typeof interval !== "number" || !(interval >= 0)) {
      throw new TypeError(
        `interval must be a non-negative number of ms, got ${
          describe(interval)
        }`,
      );
    }
    const { Socket } = await EventLoopShare.preload();
    const [readFd, writer] = loopbackPair();
    let reader: Reader;
    try {
      // The node socket owns the descriptor from here: destroy() closes it.
      reader = new Socket({ fd: readFd, readable: true, writable: false });
    } catch (error) {
      libc().close(readFd);
      writer.close();
      throw error;
    }
    reader.unref();
    const share = new EventLoopShare(writer, reader, interval);
    // The first read through a fresh socket sets up Deno's Node streams
    // (1.5–6 ms on a busy host); done here, no turn of a busy loop pays it.
    await share.turn();
    return share;
  }

  /**
   * Starts loading `node:net` (once), which {@linkcode EventLoopShare.open}
   * needs: Deno's Node compatibility takes tens of ms of the thread to load
   * (over 100 on a busy host), better spent before a loop is busy than at
   * its first turn.
   */
  static preload(): Promise<typeof import("node:net")> {
    return nodeNet ??= import("node:net");
  }

  /** Whether `interval` ms have passed since the last turn. */
  get due(): boolean {
    return performance.now() - this.#last >= this.interval;
  }

  /**
   * Lets Deno's event loop run one turn (timers, I/O, other ops); while one
   * is pending, that one.
   */
  turn(): Promise<void> {
    if (this.#writer.closed) {
      return Promise.reject(
        new Deno.errors.BadResource("turn on a closed EventLoopShare"),
      );
    }
    return this.#pending ??= new Promise<void>((resolve) => {
      this.#arrived = () => {
        this.#last = performance.now();
        this.#pending = null;
        resolve();
      };
      // Pending, the read keeps the process alive until the ping is in.
      this.#reader.ref();
      this.#writer.send(PING);
    });
  }

  /** Closes the pair; a pending turn ends. */
  close(): void {
    if (this.#writer.closed) return;
    this.#writer.close();
    this.#reader.destroy();
    const resolve = this.#arrived;
    this.#arrived = null;
    resolve?.();
  }

  /** Closes the pair (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A loopback TCP connection made with libc: the accepted end's descriptor
 * (for Deno to read) and the connecting end. The listener lives only until
 * the accept, which takes this connection only (by its port), not one
 * another local process raced in.
 */
function loopbackPair(): [number, FdSocket] {
  using listener = FdSocket.open("ipv4");
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen(1);
  const writer = FdSocket.open("ipv4");
  try {
    writer.connect(listener.getsockname() as Deno.NetAddr);
    const { port } = writer.getsockname() as Deno.NetAddr;
    for (;;) {
      if (
        (pollDescriptor(listener.fd, POLLIN, CONNECT_TIMEOUT) & POLLIN) === 0
      ) {
        throw new Deno.errors.TimedOut("the loopback connection never came");
      }
      const [accepted, peer] = listener.accept();
      if ((peer as Deno.NetAddr).port === port) {
        writer.setNoDelay(true);
        return [accepted.release(), writer];
      }
      accepted.close();
    }
  } catch (error) {
    writer.close();
    throw error;
  }
}
