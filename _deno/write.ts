// The promise backend's send side: one `Deno.Conn.write()` in flight while
// there is something to send, everything waiting (what one turn's `send()`
// calls accepted, up to the buffer's bound) coalesced into one write, and
// lingering after close.

import { SendBuffer } from "./send_buffer.ts";
import type { ConnCore } from "./core.ts";
import { restated } from "../_errors.ts";

const DEFAULT_LINGER_TIMEOUT = 30_000;

/** A socket's send buffer and the write that drains it. */
export class WritePump {
  /** Bytes `send` accepted that are not written yet. */
  readonly tx: SendBuffer = new SendBuffer();
  /** The bound of `tx`. */
  limit: number;
  /** A write is in flight. */
  writing = false;
  /** The socket was shut for writing: end of stream once `tx` is out. */
  shutWrite = false;
  /** STARTTLS: how many bytes at the head of `tx` still go out in plaintext. */
  plainTx = 0;
  /** How long a closed socket keeps trying to deliver `tx`. */
  lingerTimeout: number = DEFAULT_LINGER_TIMEOUT;

  #core: ConnCore;
  #lingering = false;
  #lingerTimer: ReturnType<typeof setTimeout> | undefined;
  #queued = false;
  #onWritten: ((count: number) => void) | undefined;
  #onWriteFailed: ((error: Error) => void) | undefined;

  constructor(core: ConnCore, limit: number) {
    this.#core = core;
    this.limit = limit;
  }

  /** Whether `tx` is full. */
  get full(): boolean {
    return this.tx.length >= this.limit;
  }

  /** Takes `bytes` (which fit) into the send buffer and schedules the write. */
  append(bytes: Uint8Array): void {
    this.tx.append(bytes, this.writing);
    this.schedule();
  }

  /**
   * Starts the write at the end of the current turn, so what several
   * `send()` calls in one handler (or one pass) accepted goes out in one
   * write instead of one each.
   */
  schedule(): void {
    if (this.writing || this.#queued) return;
    this.#queued = true;
    WritePump.#scheduled[WritePump.#count++] = this;
    if (WritePump.#count === 1) queueMicrotask(WritePump.#startScheduled);
  }

  // The pumps whose writes start at the end of the current turn, in the order
  // they were scheduled: one microtask starts them all, rather than one each
  // (a pass that serves many sockets sends on many). Only #count are live;
  // the array keeps its storage.
  static #scheduled: (WritePump | null)[] = [];
  static #count = 0;

  static #startScheduled = (): void => {
    const scheduled = WritePump.#scheduled;
    let i = 0;
    try {
      while (i < WritePump.#count) {
        const pump = scheduled[i]!;
        scheduled[i++] = null;
        pump.#queued = false;
        pump.start();
      }
    } finally {
      const left = WritePump.#count - i;
      if (left > 0) {
        // A start threw: the others still start, in a microtask of their own.
        scheduled.copyWithin(0, i, WritePump.#count).fill(null, left);
        queueMicrotask(WritePump.#startScheduled);
      }
      WritePump.#count = left;
    }
  };

  /** Starts a write if none is in flight and something waits. */
  start(): void {
    if (this.writing || this.tx.length === 0) return;
    const core = this.#core;
    // Before a STARTTLS upgrade completes, only the plaintext head goes out.
    const plain = this.plainTx > 0;
    const conn = plain ? core.raw : core.securing ? null : core.conn;
    if (conn === null) return;
    this.writing = true;
    // Made on first use: an idle connection carries as few closures as it can.
    if (this.#onWritten === undefined) {
      this.#onWritten = (count) => this.#onWrite(count);
      this.#onWriteFailed = (error) => this.#onWriteError(error);
    }
    // All that waits: `send` bounds it. A response just over a cap would
    // leave in two writes, the second a full write round trip (and a pass of
    // the loop) after the first.
    conn.write(this.tx.peek(plain ? this.plainTx : this.tx.length))
      .then(this.#onWritten, this.#onWriteFailed);
  }

  /** Drops what waits: the connection failed. */
  clear(): void {
    this.tx.clear();
    this.plainTx = 0;
  }

  /**
   * The socket is closed: deliver what waits, then release the connection,
   * giving up after the linger timeout, as a kernel does.
   */
  linger(): void {
    this.#lingering = true;
    this.finish();
    const core = this.#core;
    if (core.conn !== null || core.splice !== null) {
      this.#lingerTimer = setTimeout(() => {
        this.tx.clear();
        this.#core.release();
      }, this.lingerTimeout);
    }
  }

  /** Stops the linger timer: the connection is released. */
  stopLinger(): void {
    clearTimeout(this.#lingerTimer);
  }

  /** Ends the write side or closes once everything accepted has been written. */
  finish(): void {
    if (this.writing || this.tx.length > 0) return;
    const core = this.#core;
    if (this.#lingering) {
      core.release();
    } else if (this.shutWrite && core.conn !== null && !core.securing) {
      core.conn.closeWrite().catch(() => {});
    }
  }

  #onWrite(count: number): void {
    this.writing = false;
    const core = this.#core;
    core.activity++;
    const wasFull = this.full;
    this.tx.discard(count);
    if (this.plainTx > 0) {
      this.plainTx = Math.max(0, this.plainTx - count);
      if (this.plainTx === 0) core.splice?.startOutput();
    }
    if (this.tx.length > 0) this.start();
    else this.finish();
    if (!core.closed) {
      if (wasFull && !this.full) core.changed();
      core.sent();
    }
  }

  #onWriteError(error: Error): void {
    this.writing = false;
    this.clear();
    if (this.#core.closed) this.#core.release();
    else this.#core.fail(restated("send", error) as Error);
  }
}
