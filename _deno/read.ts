// The promise backend's receive side: one `Deno.Conn.read()` in flight while
// the receive buffer has room, landing in regions of shared arenas.

import { ByteQueue } from "../_byte_queue.ts";
import { READABLE } from "../_readiness.ts";
import { allocateRegion } from "../_read_arena.ts";
import type { ConnCore } from "./core.ts";
import { restated } from "../_errors.ts";

// Reads start small so an idle connection pins little memory, and double
// while the peer keeps filling them.
const MIN_READ_SIZE = 512;
const MAX_READ_SIZE = 65536;
// Reads land in a region of a shared arena (see _read_arena.ts) and are
// handed out as views of it. A socket reads into the rest of its region until
// that is too small for the next read; a streaming one takes large regions.
const MAX_REGION_SIZE = 65536;
const MIN_TAIL = 128;

/** A socket's receive buffer and the read that fills it. */
export class ReadPump {
  /** Received bytes not yet taken by `recv`. */
  readonly rx: ByteQueue = new ByteQueue();
  /** The bound of `rx`. */
  limit: number;
  /** A read is in flight. */
  reading = false;
  /** The peer ended its stream. */
  eof = false;
  /** The socket was shut for reading: what arrives is dropped. */
  shutRead = false;
  /** The read in flight at a STARTTLS upgrade: its bytes go to the splice. */
  handoff = false;

  #core: ConnCore;
  #readSize = MIN_READ_SIZE;
  #region: Uint8Array | null = null;
  #regionUsed = 0;
  #target: Uint8Array | null = null;

  constructor(core: ConnCore, limit: number) {
    this.#core = core;
    this.limit = limit;
  }

  /** Starts a read if none is in flight and there is room. */
  start(): void {
    const core = this.#core;
    const conn = core.conn;
    if (
      this.reading || this.eof || core.error || conn === null ||
      core.closed || core.securing
    ) return;
    const size = Math.min(this.#readSize, this.limit - this.rx.length);
    if (size <= 0) return;
    let region = this.#region;
    let used = this.#regionUsed;
    // A reader reads into what is left of its region until less than a
    // quarter of the read it wants is, so one region serves several messages
    // (allocating, and the first touch of fresh memory, cost more than a
    // shorter read).
    if (
      region === null ||
      (region.length - used < size &&
        region.length - used < Math.max(MIN_TAIL, size >> 2))
    ) {
      region = this.#region = allocateRegion(
        this.#readSize === MIN_READ_SIZE
          ? MIN_READ_SIZE
          : Math.min(Math.max(this.#readSize * 8, size), MAX_REGION_SIZE),
      );
      used = this.#regionUsed = 0;
    }
    const target = region.subarray(used, Math.min(used + size, region.length));
    this.#target = target;
    this.reading = true;
    conn.read(target).then(this.#onRead, this.#onReadError);
  }

  /** Whether `recv` will not block for want of data: data, or the end of it. */
  get readable(): boolean {
    return this.rx.length > 0 || this.eof || this.shutRead;
  }

  /**
   * Up to `max` received bytes (then reads again if that made room), or
   * `null` when none are buffered.
   */
  take(max: number): Uint8Array | null {
    if (this.rx.length === 0) return null;
    const data = this.rx.take(max);
    this.start();
    return data;
  }

  /** Fills `buffer` from what was received; `-1` when nothing is buffered. */
  takeInto(buffer: Uint8Array): number {
    if (this.rx.length === 0) return -1;
    const count = this.rx.takeInto(buffer);
    this.start();
    return count;
  }

  /** Lets go of the region: the socket is closed. */
  release(): void {
    this.rx.clear();
    this.#region = null;
  }

  #onRead = (count: number | null): void => {
    this.reading = false;
    const core = this.#core;
    if (core.closed) return;
    core.activity++;
    if (this.handoff) {
      // The read in flight at a STARTTLS upgrade: its bytes are TLS records.
      this.handoff = false;
      const target = this.#target!;
      this.#target = null;
      core.splice?.feed(count === null ? null : target.slice(0, count));
      this.start();
      return;
    }
    if (count === null) {
      this.eof = true;
      this.#region = this.#target = null;
      core.changed(READABLE);
      return;
    }
    const target = this.#target!;
    if (!this.shutRead) {
      // A dropped read (shut for reading) leaves the region free for reuse.
      this.#regionUsed += count;
      this.rx.push(
        count === target.length ? target : target.subarray(0, count),
      );
    }
    if (count === target.length) {
      this.#readSize = Math.min(this.#readSize * 2, MAX_READ_SIZE);
    } else if (count < this.#readSize >> 2 && this.#readSize > MIN_READ_SIZE) {
      this.#readSize >>= 1;
    }
    if (!this.shutRead) core.changed(READABLE);
    this.start();
  };

  #onReadError = (error: Error): void => {
    this.reading = false;
    this.handoff = false;
    if (this.#core.closed) return;
    this.#core.fail(restated("recv", error) as Error);
  };
}
