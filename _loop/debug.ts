// Debug mode, as asyncio's: a loop started with `debug` (or with
// ASYNCORE_DEBUG set) times every handler call and warns of slow ones, warns
// of channels left open at its exit or garbage-collected while open, and can
// trace each pass. None of it costs anything when off: a debug loop hands
// its pass a `DebugSession`, the pass's only hook is one check of it at its
// end, and the handlers are timed by wrappers installed on each channel the
// session serves (own properties over the prototype's methods, taken off
// again when the loop ends), so a loop without debug runs the very code it
// runs without this file.

import { runTimers } from "./loop_state.ts";
import type { Channel as TimerChannel } from "./faults.ts";
import { ERROR, type Events, READABLE, WRITABLE } from "../_readiness.ts";
import type { Socket } from "../socket.ts";
import { describe } from "../_validate.ts";

/** The handlers a debug loop times, as the loop (or a handler) calls them. */
const TIMED = [
  "readable",
  "writable",
  "handleRead",
  "handleWrite",
  "handleAccept",
  "handleConnect",
  "handleStartTls",
  "handleClose",
  "handleError",
  "handleExpt",
  "handleTimeout",
] as const;

type Timed = typeof TIMED[number];
type Method = (this: Channel, ...args: unknown[]) => unknown;

/** A channel (asyncore's `Dispatcher`), as far as debug mode looks into it. */
interface Channel {
  socket: Socket | null;
  accepting: boolean;
  fileno(): number;
}

/** The channels a loop serves: asyncore's `ChannelMap`. */
type ChannelMap = ReadonlyMap<number, Channel>;

/** `loop()`'s `debug` option as an object: asyncore's `DebugOptions`. */
interface DebugOptions {
  slowHandlerMs?: number;
  trace?: boolean;
  log?: (message: string) => void;
}

/** What the finalizer of a channel needs: nothing that holds the channel. */
export interface Held {
  /** The channel's socket, to tell whether it is still open. */
  socket: Socket | null;
  /** The channel as last seen. */
  repr: string;
  /** Where the warning goes. */
  log: (message: string) => void;
}

/**
 * Called when a channel a debug loop served is garbage-collected: warns if
 * its socket is still open. Exported as the seam tests use to check the
 * message without forcing a collection.
 */
export function finalized(held: Held): void {
  if (held.socket !== null && !held.socket.closed) {
    safeLog(
      held.log,
      `channel ${held.repr} was garbage-collected while its socket was still open; close() it`,
    );
  }
}

const finalizer = new FinalizationRegistry<Held>(finalized);

/** A channel's instrumentation: which session times it now. */
interface Instrumented {
  session: DebugSession;
  held: Held;
  /** The wrappers, and what each replaced on the channel itself (if anything). */
  wrapped: [Timed, Method, PropertyDescriptor | undefined][];
}

const instrumented = new WeakMap<Channel, Instrumented>();

/** Calls of timed handlers in progress, in any session: only the outermost is timed. */
let depth = 0;

/** The channel as `repr()` shows it; never throws. */
function reprOf(obj: object): string {
  try {
    return String(obj);
  } catch {
    return `<${obj.constructor.name}>`;
  }
}

function defaultLog(message: string): void {
  console.warn(`asyncore debug: ${message}`);
}

/** Calls `log`; if it throws, says so on the console rather than fail a handler. */
function safeLog(log: (message: string) => void, message: string): void {
  try {
    log(message);
  } catch (error) {
    defaultLog(message);
    const why = error instanceof Error
      ? `${error.name}: ${error.message}`
      : String(error);
    defaultLog(`options.debug.log threw ${why}`);
  }
}

/** What a traced pass saw of one channel. */
interface Seen {
  repr: string;
  fd: number;
  /** Bits: 1 asked to read, 2 asked to write, 4 readable() answered, 8 writable() answered. */
  asked: number;
}

/** One debug loop's state: its options, and what the current pass saw. */
export class DebugSession {
  readonly slowHandlerMs: number;
  readonly trace: boolean;
  readonly log: (message: string) => void;
  #active = true;
  #passes = 0;
  /** Per traced pass: the channels asked, by object, and the calls that ran. */
  #seen = new Map<Channel, Seen>();
  /** The channels traced so far, by number: to name a token after its channel left. */
  #names = new Map<number, string>();
  #ran: string[] = [];

  constructor(options: Required<DebugOptions>) {
    this.slowHandlerMs = options.slowHandlerMs;
    this.trace = options.trace;
    this.log = options.log;
  }

  /** Starts serving `map`: instruments the channels in it. */
  start(map: ChannelMap): void {
    map.forEach((obj) => this.#adopt(obj));
  }

  /**
   * The end of a pass (the pass's one hook): runs the timers that are due
   * with `run` (the loop's), timing each, writes the pass's trace, and
   * instruments the channels that joined the map during the pass before the
   * next one asks them.
   */
  endPass(
    map: ChannelMap,
    events: Events,
    run: (fn: () => void, channel: TimerChannel | undefined) => void,
  ): void {
    runTimers(map, (fn, channel) => {
      const label = `timer callback ${fn.name || "(anonymous)"}${
        channel === undefined ? "" : ` of ${reprOf(channel)}`
      }`;
      this.#callTimer(label, () => run(fn, channel));
    });
    this.#passes++;
    if (this.trace) this.#writeTrace(events);
    map.forEach((obj) => this.#adopt(obj));
  }

  /** The loop ended after `count` passes or an abort: names the channels left open. */
  exited(map: ChannelMap, reason: string): void {
    if (map.size === 0) return;
    const names: string[] = [];
    map.forEach((obj) => names.push(reprOf(obj)));
    safeLog(
      this.log,
      `loop exited (${reason}) with ${map.size} channel(s) still open: ${
        names.join(", ")
      }`,
    );
  }

  /**
   * The loop is over: the channels still in `map` lose their wrappers (and
   * are no longer watched for collection); those that left it keep theirs,
   * which now call straight through.
   */
  stop(map: ChannelMap): void {
    this.#active = false;
    map.forEach((obj) => {
      const record = instrumented.get(obj);
      if (record === undefined || record.session !== this) return;
      instrumented.delete(obj);
      finalizer.unregister(record);
      for (const [name, wrapper, own] of record.wrapped) {
        // Unless the program has put its own handler there since.
        if (Object.getOwnPropertyDescriptor(obj, name)?.value !== wrapper) {
          continue;
        }
        if (own === undefined) {
          delete (obj as unknown as Record<Timed, Method>)[name];
        } else Object.defineProperty(obj, name, own);
      }
    });
  }

  /** Runs handler `name` of `obj`, timed unless nested in a timed call. */
  call(
    record: Instrumented,
    obj: Channel,
    name: Timed,
    method: Method,
    args: unknown[],
  ): unknown {
    if (!this.#active || depth > 0) return method.apply(obj, args);
    const asking = name === "readable" || name === "writable";
    // A handler may close its channel: name it as it was when called. The
    // predicates, asked of every channel every pass, are named after, and
    // only when reported.
    if (!asking) record.held.repr = reprOf(obj);
    let result: unknown;
    let answered = false;
    depth++;
    const start = performance.now();
    try {
      result = method.apply(obj, args);
      answered = true;
      return result;
    } finally {
      depth--;
      const took = performance.now() - start;
      if (asking) {
        if (took >= this.slowHandlerMs) {
          this.#report(`${reprOf(obj)}.${name}()`, took, false);
        }
        if (this.trace) this.#asked(obj, name, answered && result === true);
      } else {
        this.#report(`${record.held.repr}.${name}()`, took, this.trace);
      }
    }
  }

  /** Runs a timer's callback, timed (timers run outside any handler). */
  #callTimer(what: string, run: () => void): void {
    depth++;
    const start = performance.now();
    try {
      run();
    } finally {
      depth--;
      this.#report(what, performance.now() - start, this.trace);
    }
  }

  /** Warns if a call was slow; traced, records that it ran. */
  #report(what: string, took: number, traced: boolean): void {
    if (took >= this.slowHandlerMs) {
      safeLog(
        this.log,
        `${what} took ${
          took.toFixed(1)
        } ms (slowHandlerMs: ${this.slowHandlerMs})`,
      );
    }
    if (traced) this.#ran.push(`${what} ${took.toFixed(2)} ms`);
  }

  /** Records the first answer of `readable()`/`writable()` this pass: the gather's. */
  #asked(obj: Channel, name: Timed, yes: boolean): void {
    let seen = this.#seen.get(obj);
    if (seen === undefined) {
      seen = { repr: reprOf(obj), fd: obj.fileno(), asked: 0 };
      this.#seen.set(obj, seen);
    }
    if (name === "readable") {
      if (seen.asked & 4) return;
      seen.asked |= 4 | (yes ? 1 : 0);
    } else {
      if (seen.asked & 8) return;
      // The loop never waits on a listening channel for writing.
      seen.asked |= 8 | (yes && !obj.accepting ? 2 : 0);
    }
  }

  #writeTrace(events: Events): void {
    const reading: string[] = [];
    const writing: string[] = [];
    const names = this.#names;
    this.#seen.forEach((seen) => {
      names.set(seen.fd, seen.repr);
      if (seen.asked & 1) reading.push(seen.repr);
      if (seen.asked & 2) writing.push(seen.repr);
    });
    const ready: string[] = [];
    for (let i = 0; i < events.length; i++) {
      const token = events.token(i);
      const bits = events.readiness(i);
      const kinds = [
        bits & READABLE ? "r" : "",
        bits & WRITABLE ? "w" : "",
        bits & ERROR ? "e" : "",
      ].join("") || "closed";
      ready.push(
        `${names.get(token) ?? (token < 0 ? "waker" : `#${token}`)} ${kinds}`,
      );
    }
    safeLog(
      this.log,
      [
        `pass ${this.#passes}:`,
        `  read set: [${reading.join(", ")}]`,
        `  write set: [${writing.join(", ")}]`,
        `  ready: [${ready.join(", ")}]`,
        `  ran: [${this.#ran.join(", ")}]`,
      ].join("\n"),
    );
    this.#seen.clear();
    this.#ran = [];
  }

  /** Instruments `obj` for this session (once per channel; later sessions take it over). */
  #adopt(obj: Channel): void {
    const known = instrumented.get(obj);
    if (known !== undefined) {
      known.session = this;
      known.held.socket = obj.socket;
      known.held.log = this.log;
      return;
    }
    const held: Held = { socket: obj.socket, repr: reprOf(obj), log: this.log };
    const record: Instrumented = { session: this, held, wrapped: [] };
    instrumented.set(obj, record);
    finalizer.register(obj, held, record);
    const methods = obj as unknown as Record<Timed, Method>;
    for (const name of TIMED) {
      const method = methods[name];
      const own = Object.getOwnPropertyDescriptor(obj, name);
      const wrapper = function (this: Channel, ...args: unknown[]): unknown {
        return record.session.call(record, this, name, method, args);
      };
      record.wrapped.push([name, wrapper, own]);
      Object.defineProperty(obj, name, {
        configurable: true,
        enumerable: false,
        writable: true,
        value: wrapper,
      });
    }
  }
}

let fromEnv: boolean | undefined;

/**
 * Whether `ASYNCORE_DEBUG` asks for debug mode: set, non-empty and not `0`.
 * Read once, and only with permission to read it, so that a program run
 * without `--allow-env` neither throws nor prompts.
 */
function debugFromEnv(): boolean {
  if (fromEnv === undefined) {
    fromEnv = false;
    try {
      const { state } = Deno.permissions.querySync({
        name: "env",
        variable: "ASYNCORE_DEBUG",
      });
      if (state === "granted") {
        const value = Deno.env.get("ASYNCORE_DEBUG");
        fromEnv = value !== undefined && value !== "" && value !== "0";
      }
    } catch {
      // No permission API (or a stripped-down runtime): debug stays off.
    }
  }
  return fromEnv;
}

/** A session for `loop()`'s `debug` option, or `null` when debug is off. */
export function debugSession(
  debug: boolean | DebugOptions | undefined,
): DebugSession | null {
  if (debug === undefined) debug = debugFromEnv();
  if (debug === false) return null;
  if (debug === true) debug = {};
  if (typeof debug !== "object" || debug === null) {
    throw new TypeError(
      `options.debug must be a boolean or an object, got ${describe(debug)}`,
    );
  }
  const { slowHandlerMs = 100, trace = false, log = defaultLog } = debug;
  if (typeof slowHandlerMs !== "number") {
    throw new TypeError(
      `options.debug.slowHandlerMs must be a number, got ${
        describe(slowHandlerMs)
      }`,
    );
  }
  if (!(slowHandlerMs >= 0)) {
    throw new RangeError(
      `options.debug.slowHandlerMs must be a non-negative number of ms, got ${
        describe(slowHandlerMs)
      }`,
    );
  }
  if (typeof trace !== "boolean") {
    throw new TypeError(
      `options.debug.trace must be a boolean, got ${describe(trace)}`,
    );
  }
  if (typeof log !== "function") {
    throw new TypeError(
      `options.debug.log must be a function, got ${describe(log)}`,
    );
  }
  return new DebugSession({ slowHandlerMs, trace, log });
}
