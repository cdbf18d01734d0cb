/**
 * Readiness for Deno: Python's `select.select()` and `select.poll()` over
 * {@linkcode Socket}s. A socket is readable when `recv` or `accept` will not
 * block, writable when `send` will not (or a connect finished).
 *
 * {@linkcode Socket} and its types live in `@asyncore/asyncore/socket` and
 * are re-exported here.
 *
 * @example Echo one message over loopback
 * ```ts
 * import { select, Socket } from "@asyncore/asyncore/select";
 * import { assertEquals } from "@std/assert";
 *
 * const server = new Socket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen();
 * const client = new Socket();
 * client.connect(server.getsockname() as Deno.NetAddr);
 * await select([server], [], [], 5000);
 * const [conn] = server.accept();
 * client.send(new TextEncoder().encode("ping"));
 * await select([conn], [], [], 5000);
 * assertEquals(new TextDecoder().decode(conn.recv(1024)), "ping");
 * conn.close();
 * client.close();
 * server.close();
 * ```
 *
 * @module
 */

import { Socket } from "./socket.ts";
import { type LiveSocket, sockets, sourceOf } from "./_socket_table.ts";
import type { RawDescriptor, SocketSource } from "./_backend_api.ts";
import {
  ERROR,
  Events,
  HUP,
  Interest,
  READABLE,
  Selector,
  WRITABLE,
} from "./_readiness.ts";
import { isOutOfDescriptors } from "./_descriptor_limit.ts";
import {
  descriptorsWatchable,
  isDescriptor,
  keepDescriptorWaits,
  pollNow,
  releaseDescriptorWaits,
  watchDescriptor,
} from "./_backends.ts";
import { passWithoutWait } from "./_turns.ts";
import { checkTimeout, describe } from "./_validate.ts";

export { getDefaultBackend, setDefaultBackend, Socket } from "./socket.ts";
export type {
  Address,
  Backend,
  ShutdownHow,
  SocketOptions,
  TlsOptions,
} from "./socket.ts";

function closedError(operation: string): Deno.errors.BadResource {
  return new Deno.errors.BadResource(`${operation} on a closed socket`);
}

/**
 * Anything {@linkcode select} and {@linkcode Poll} accept: a socket, a socket
 * number or an object with `fileno()`. When the default backend is epoll
 * (`setDefaultBackend("epoll")` or `ASYNCORE_BACKEND=epoll`), any other OS
 * descriptor too (a pipe, standard input), as Python's: it is only watched,
 * never read, written or closed.
 */
export type FileLike = number | { fileno(): number };

/** Something select() waits on: a socket's source, or another descriptor's. */
interface Watched {
  source: SocketSource | RawDescriptor;
  token: number;
  closed(): boolean;
}

/** Options for {@linkcode select} and {@linkcode Poll.poll}. */
export interface WaitOptions {
  /** Ends the wait early, as if the timeout had passed. */
  signal?: AbortSignal;
}

function watchSocket(sock: LiveSocket): Watched {
  return {
    source: sourceOf(sock),
    token: sock.fileno(),
    closed: () => sock.closed,
  };
}

function resolveSocket(name: string, item: FileLike): Watched {
  if (item instanceof Socket) {
    if (item.closed) throw closedError(`${name}: select`);
    return watchSocket(item);
  }
  let fd: unknown = item;
  if (typeof item === "object" && item !== null) {
    if (typeof item.fileno !== "function") {
      throw new TypeError(
        `${name} must hold sockets, numbers or objects with fileno(), got ${
          describe(item)
        }`,
      );
    }
    fd = item.fileno();
  }
  if (typeof fd !== "number") {
    throw new TypeError(
      `${name} must hold sockets, numbers or objects with fileno(), got ${
        describe(item)
      }`,
    );
  }
  const sock = sockets.get(fd);
  if (sock !== undefined) return watchSocket(sock);
  if (Number.isInteger(fd) && fd >= 0 && fd <= 0x7fffffff) {
    if (descriptorsWatchable()) {
      const source = watchDescriptor(fd);
      if (source.open) {
        return { source, token: fd, closed: () => !source.open };
      }
      throw new Deno.errors.BadResource(
        `${name}: ${fd} is not an open descriptor (EBADF)`,
      );
    }
  }
  throw new Deno.errors.BadResource(`${name}: ${fd} is not a live socket`);
}

/**
 * Waits until some of the given sockets are ready: Python's
 * `select.select()`. `rlist` sockets are ready when `recv` or `accept` will
 * not block, `wlist` ones when `send` will not block (or a connect finished),
 * `xlist` ones when they are in an error state.
 *
 * @example Wait for a connection with a bound
 * ```ts
 * import { select, Socket } from "@asyncore/asyncore/select";
 * import { assertEquals } from "@std/assert";
 *
 * using server = new Socket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen();
 * assertEquals(await select([server], [], [], 0), [[], [], []]);
 * using client = new Socket();
 * client.connect(server.getsockname() as Deno.NetAddr);
 * const [readable] = await select([server], [], [], 5000);
 * assertEquals(readable, [server]);
 * server.accept()[0].close();
 * ```
 *
 * @param rlist Objects to wait on for reading.
 * @param wlist Objects to wait on for writing.
 * @param xlist Objects to wait on for an error state.
 * @param timeout The longest wait in ms; `undefined` waits until something
 *   is ready, `0` polls.
 * @param options An abort signal.
 * @returns The ready subsets of the three lists: the same objects.
 * @throws {Deno.errors.BadResource} when a socket is closed, before the call
 *   or while it waits.
 */
export async function select<
  R extends FileLike,
  W extends FileLike,
  X extends FileLike,
>(
  rlist: readonly R[],
  wlist: readonly W[],
  xlist: readonly X[],
  timeout?: number,
  options: WaitOptions = {},
): Promise<[R[], W[], X[]]> {
  for (
    const [name, list] of [["rlist", rlist], ["wlist", wlist], [
      "xlist",
      xlist,
    ]] as const
  ) {
    if (!Array.isArray(list)) {
      throw new TypeError(`${name} must be an array, got ${describe(list)}`);
    }
  }
  const limit = checkTimeout("timeout", timeout);
  const rs = rlist.map((item) => resolveSocket("rlist", item));
  const ws = wlist.map((item) => resolveSocket("wlist", item));
  const xs = xlist.map((item) => resolveSocket("xlist", item));
  const scan = (): [R[], W[], X[]] => [
    rlist.filter((_, i) => (rs[i].source.readiness() & READABLE) !== 0),
    wlist.filter((_, i) => (ws[i].source.readiness() & WRITABLE) !== 0),
    xlist.filter((_, i) => (xs[i].source.readiness() & ERROR) !== 0),
  ];
  const isEmpty = ([r, w, x]: [R[], W[], X[]]) =>
    r.length === 0 && w.length === 0 && x.length === 0;
  const result = scan();
  if (
    [rs, ws, xs].some((list) => list.some(({ source }) => isDescriptor(source)))
  ) reserveSelector();
  if (!isEmpty(result) || limit === 0) {
    const turn = passWithoutWait();
    return turn ? turn.then(scan) : result;
  }
  // Errors are always reported, so an xlist socket asks for nothing more.
  const wanted = new Map<number, [Watched, number]>();
  const want = (watched: Watched, bits: number) => {
    const entry = wanted.get(watched.token);
    if (entry) entry[1] |= bits;
    else wanted.set(watched.token, [watched, bits]);
  };
  for (const watched of rs) want(watched, READABLE);
  for (const watched of ws) want(watched, WRITABLE);
  for (const watched of xs) want(watched, 0);
  const selector = borrowSelector();
  const { registry } = selector;
  const registered: Watched[] = [];
  try {
    for (const [token, [watched, interest]] of wanted) {
      registry.register(watched.source, token, interest as Interest);
      registered.push(watched);
    }
    return await pollUntil(selector, limit, options.signal, result, () => {
      // As if select() were called again: a socket closed meanwhile is an
      // error, not something to wait on forever.
      for (const watched of registered) {
        if (watched.closed()) throw closedError("select");
      }
      const found = scan();
      return isEmpty(found) ? undefined : found;
    });
  } finally {
    for (const watched of registered) registry.deregister(watched.source);
    returnSelector(selector);
  }
}

// The selectors of finished select() and Poll.poll() calls, kept with their
// epoll instance open for the next calls: out of descriptors, a call that
// needed a new one would fail where select(2) and poll(2) need none.
const spareSelectors: Selector[] = [];
const MAX_SPARE_SELECTORS = 8;

function borrowSelector(): Selector {
  const spare = spareSelectors.pop();
  if (spare !== undefined) return spare;
  const selector = new Selector();
  keepDescriptorWaits(selector.registry, false);
  return selector;
}

/**
 * Keeps a spare selector with its epoll instance open once descriptors are
 * in play, so that a select() that must wait has one even if every call
 * before it found something ready at once (and so never waited).
 */
function reserveSelector(): void {
  if (spareSelectors.length > 0) return;
  const selector = borrowSelector();
  try {
    keepDescriptorWaits(selector.registry, true);
  } catch (error) {
    // Out of descriptors already: a wait then says so.
    if (!isOutOfDescriptors(error)) throw error;
    return;
  }
  spareSelectors.push(selector);
}

function returnSelector(selector: Selector): void {
  if (spareSelectors.length < MAX_SPARE_SELECTORS) {
    spareSelectors.push(selector);
  } else {
    releaseDescriptorWaits(selector.registry);
  }
}

/**
 * Polls `selector` until `rescan()` finds something, `limit` ms pass or
 * `signal` aborts; then returns what it found, or else `nothing`.
 */
async function pollUntil<T>(
  selector: Selector,
  limit: number | undefined,
  signal: AbortSignal | undefined,
  nothing: T,
  rescan: () => T | undefined,
): Promise<T> {
  const events = new Events();
  const deadline = limit === undefined ? Infinity : performance.now() + limit;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0 || signal?.aborted) return nothing;
    await selector.poll(events, left === Infinity ? undefined : left, signal);
    const found = rescan();
    if (found !== undefined) return found;
  }
}

/** There is data to read (or a connection to accept, or end of stream). */
export const POLLIN = 0x001;
/** There is urgent data to read; stream sockets here never have any. */
export const POLLPRI = 0x002;
/** Writing will not block. */
export const POLLOUT = 0x004;
/** The socket is in an error state; always reported. */
export const POLLERR = 0x008;
/** The connection is over: end of stream both ways, or an error; always reported. */
export const POLLHUP = 0x010;
/** The number names no live socket; always reported. */
export const POLLNVAL = 0x020;

function toFd(name: string, item: FileLike): number {
  const fd = typeof item === "object" && item !== null &&
      typeof item.fileno === "function"
    ? item.fileno()
    : item;
  if (
    typeof fd !== "number" || !Number.isInteger(fd) || fd < 0 ||
    fd > 0x7fffffff
  ) {
    throw new TypeError(
      `${name} must be a socket number or an object with fileno(), got ${
        describe(item)
      }`,
    );
  }
  return fd;
}

/**
 * Python's `select.poll()`: a set of registered sockets and the events wanted
 * from each, waited on together.
 *
 * @example Poll a listening socket
 * ```ts
 * import { Poll, POLLIN, Socket } from "@asyncore/asyncore/select";
 * import { assertEquals } from "@std/assert";
 *
 * using server = new Socket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen();
 * const poller = new Poll();
 * poller.register(server, POLLIN);
 * using client = new Socket();
 * client.connect(server.getsockname() as Deno.NetAddr);
 * assertEquals(await poller.poll(5000), [[server.fileno(), POLLIN]]);
 * server.accept()[0].close();
 * ```
 */
export class Poll {
  #registered = new Map<number, number>();

  /** An empty set; on the epoll backend a waiting selector is kept ready. */
  constructor() {
    if (descriptorsWatchable()) reserveSelector();
  }

  /**
   * Watches a socket for the events in `eventmask`; registering it again
   * replaces the mask.
   *
   * @param fd A socket number or an object with `fileno()`.
   * @param eventmask `POLLIN`, `POLLPRI` and `POLLOUT` bits.
   */
  register(fd: FileLike, eventmask: number = POLLIN | POLLPRI | POLLOUT): void {
    this.#registered.set(toFd("fd", fd), this.#checkMask(eventmask));
  }

  /**
   * Changes the mask of a registered socket.
   *
   * @throws {Deno.errors.NotFound} when it is not registered.
   */
  modify(fd: FileLike, eventmask: number): void {
    const key = toFd("fd", fd);
    if (!this.#registered.has(key)) {
      throw new Deno.errors.NotFound(`modify: ${key} is not registered`);
    }
    this.#registered.set(key, this.#checkMask(eventmask));
  }

  /**
   * Stops watching a socket.
   *
   * @throws {Deno.errors.NotFound} when it is not registered.
   */
  unregister(fd: FileLike): void {
    const key = toFd("fd", fd);
    if (!this.#registered.delete(key)) {
      throw new Deno.errors.NotFound(`unregister: ${key} is not registered`);
    }
  }

  /**
   * Waits for events on the registered sockets.
   *
   * @param timeout The longest wait in ms; `undefined` or a negative number
   *   waits until an event, `0` polls.
   * @param options An abort signal.
   * @returns `[fd, revents]` pairs for the sockets with events.
   */
  async poll(
    timeout?: number,
    options: WaitOptions = {},
  ): Promise<[number, number][]> {
    const limit = typeof timeout === "number" && timeout < 0
      ? undefined
      : checkTimeout("timeout", timeout);
    const result = this.#scan();
    if (result.length > 0 || limit === 0) {
      const turn = passWithoutWait();
      return turn ? turn.then(() => this.#scan()) : result;
    }
    const selector = borrowSelector();
    const { registry } = selector;
    const watched: (SocketSource | RawDescriptor)[] = [];
    const watchable = descriptorsWatchable();
    for (const [fd, mask] of this.#registered) {
      const sock = sockets.get(fd);
      if (sock === undefined && !watchable) continue;
      const source = sock === undefined ? watchDescriptor(fd) : sourceOf(sock);
      // POLLPRI never shows on a stream socket: it asks for nothing.
      try {
        registry.register(
          source,
          fd,
          Interest.of((mask & POLLIN) !== 0, (mask & POLLOUT) !== 0),
        );
      } catch {
        // Not open (the scan reports POLLNVAL) or a regular file (always
        // ready): nothing to wait on.
        continue;
      }
      watched.push(source);
    }
    try {
      return await pollUntil(selector, limit, options.signal, result, () => {
        const found = this.#scan();
        return found.length > 0 ? found : undefined;
      });
    } finally {
      for (const source of watched) registry.deregister(source);
      returnSelector(selector);
    }
  }

  #checkMask(eventmask: number): number {
    if (!Number.isInteger(eventmask) || eventmask < 0 || eventmask > 0xffff) {
      throw new RangeError(
        `eventmask must be an integer of POLL* bits, got ${
          describe(eventmask)
        }`,
      );
    }
    return eventmask;
  }

  #scan(): [number, number][] {
    const events: [number, number][] = [];
    const watchable = descriptorsWatchable();
    for (const [fd, mask] of this.#registered) {
      const sock = sockets.get(fd);
      if (sock === undefined) {
        const revents = watchable
          ? pollNow(fd, mask & (POLLIN | POLLPRI | POLLOUT))
          : POLLNVAL;
        if (revents !== 0) events.push([fd, revents]);
        continue;
      }
      const bits = sourceOf(sock).readiness();
      let revents = 0;
      if (bits & READABLE && mask & POLLIN) revents |= POLLIN;
      if (bits & WRITABLE && mask & POLLOUT) revents |= POLLOUT;
      if (bits & ERROR) revents |= POLLERR;
      if (bits & HUP) revents |= POLLHUP;
      if (revents !== 0) events.push([fd, revents]);
    }
    return events;
  }
}
