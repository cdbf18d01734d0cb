// What the loop layer keeps of each channel beside the public Dispatcher
// class: the loop that serves it, what its socket is registered for, its
// idle clock, and where a STARTTLS upgrade stands. asyncore.ts keeps it;
// asynchat.ts and streams.ts wake a channel's loop and hold its reads
// through it. A record per channel object, made with it (by Dispatcher's
// constructor) or on first use.

import type { Interest, Registry } from "../_readiness.ts";
import { sourceOf } from "../_socket_table.ts";
import { type LoopMap, wakeLoop } from "./loop_state.ts";
import { checkTlsOptions, probeTlsEngine } from "../_tls.ts";
import type { Socket } from "../socket.ts";
import type { TlsOptions } from "../_types.ts";

/** A channel, as far as this module looks into it. */
interface Channel {
  socket: Socket | null;
  connected: boolean;
  idleTimeout: number;
}

/**
 * The socket's activity when the idle clock last saw it change, and when
 * (activity -1: no clock running).
 */
interface IdleClock {
  activity: number;
  since: number;
}

/** One channel's record. */
class ChannelState {
  /** The map the channel was last added to: the loop to wake. */
  loop: LoopMap | null = null;
  /** A STARTTLS upgrade waits for output: the loop does not read. */
  readsHeld = false;
  /** A `startTls()` handshake is under way: its end is `handleStartTls()`. */
  startingTls = false;
  // What the loop last registered the channel's socket for: a pass
  // re-registers only when that changes.
  #registry: Registry | null = null;
  #socket: Socket | null = null;
  #interest = 0;
  // The idle clock, made for a channel with an idleTimeout only: most have
  // none, and an idle connection's size is mostly its objects' fields.
  #clock: IdleClock | null = null;

  /** Registers `sock` with `registry` for `interest` (0: not at all). */
  register(registry: Registry, sock: Socket, interest: Interest): void {
    if (this.#socket === sock && this.#registry === registry) {
      if (this.#interest === interest) return;
      if (interest !== 0) {
        registry.reregister(sourceOf(sock), sock.fileno(), interest);
        this.#interest = interest;
        return;
      }
    }
    this.deregister();
    if (interest === 0) return;
    registry.register(sourceOf(sock), sock.fileno(), interest);
    this.#registry = registry;
    this.#socket = sock;
    this.#interest = interest;
  }

  /** Takes back the registration, if any. */
  deregister(): void {
    const sock = this.#socket;
    if (sock !== null) this.#registry!.deregister(sourceOf(sock));
    this.#registry = this.#socket = null;
    this.#interest = 0;
  }

  /**
   * When `obj`, idle since its socket last moved a byte, has been idle for
   * its `idleTimeout` (`Infinity`: never). Traffic is noticed once per pass,
   * so a channel is never timed out early, and at most one pass late; once
   * due, the clock starts over.
   */
  idleDue(obj: Channel, now: number): number {
    const sock = obj.socket;
    if (obj.idleTimeout === Infinity || sock === null || !obj.connected) {
      return Infinity;
    }
    const activity = sourceOf(sock).activity;
    const clock = this.#clock ??= { activity: -1, since: 0 };
    if (clock.activity !== activity) {
      clock.activity = activity;
      clock.since = now;
    }
    const due = clock.since + obj.idleTimeout;
    if (due <= now) clock.activity = -1;
    return due;
  }
}

// The record hangs off the channel under a symbol only this module knows,
// not in a WeakMap: the pass reads it for every channel on every pass, and a
// property read costs a fraction of a WeakMap lookup. It is not enumerable,
// so the channel's keys, spread and printing do not show it.
const STATE: unique symbol = Symbol("asyncore channel state");

interface Holder {
  [STATE]?: ChannelState;
}

/** The record of `channel`, made on first use. */
export function stateOf(channel: object): ChannelState {
  return (channel as Holder)[STATE] ?? attach(channel);
}

function attach(channel: object): ChannelState {
  const state = new ChannelState();
  Object.defineProperty(channel, STATE, { value: state });
  return state;
}

/** Wakes the loop serving `channel`, so it asks `writable()` again now. */
export function wakeChannelLoop(channel: object): void {
  const loop = (channel as Holder)[STATE]?.loop;
  if (loop != null) wakeLoop(loop);
}

/**
 * Stops (`held`: true) or resumes the loop's reading of `channel`: while a
 * STARTTLS upgrade waits for the channel's own queued output (AsyncChat's
 * queue, DispatcherWithSend's buffer) to go out in plaintext, what the peer
 * sends is the TLS handshake, the engine's input, not the channel's.
 */
export function holdReads(channel: object, held: boolean): void {
  stateOf(channel).readsHeld = held;
  if (!held) wakeChannelLoop(channel); // it reads again: re-register
}

/** The channel's socket, or the error a channel without one throws. */
export function requireSocket(
  channel: { socket: Socket | null },
  operation: string,
): Socket {
  if (channel.socket === null) {
    // A programming error, not a disconnect: it goes to handleError().
    throw new TypeError(
      `${operation}: the channel has no socket; call createSocket() first`,
    );
  }
  return channel.socket;
}

/**
 * Throws now what `Dispatcher.startTls(options)` would throw at once (no
 * socket, TLS already in use or starting, bad options, no permission, a bad
 * certificate), for an upgrade that is to wait for queued output; returns
 * the options to start it with.
 */
export function checkWaitingUpgrade(
  channel: { socket: Socket | null },
  options: unknown,
): TlsOptions {
  const sock = requireSocket(channel, "startTls");
  if (sock.secure || stateOf(channel).startingTls) {
    throw new Deno.errors.AlreadyExists(
      "startTls: the connection already uses TLS",
    );
  }
  const tls = checkTlsOptions("options", options === undefined ? {} : options);
  probeTlsEngine(tls);
  return tls;
}
