// A socket's send buffer: one contiguous region reused for the life of the
// connection, so a send costs a copy and no allocation (allocating typed
// arrays is slow in Deno).

const EMPTY = new Uint8Array(0);
const MIN_CAPACITY = 512;

/** Bytes waiting to be written, kept contiguous so one write takes them all. */
export class SendBuffer {
  #buffer: Uint8Array<ArrayBuffer> = EMPTY;
  #start = 0;
  #end = 0;
  // A write in flight reads its region in place, so bytes appended past the
  // region's end move to another one. The region the write read is taken
  // back once it is over (`discard`), and the next move reuses it: a socket
  // that streams while its writes are in flight swaps between two regions
  // instead of leaving one region of garbage per move.
  #retired: Uint8Array<ArrayBuffer> | null = null;
  #spare: Uint8Array<ArrayBuffer> | null = null;
  // What peek() last returned.
  #view: Uint8Array = EMPTY;

  /** The number of bytes waiting. */
  get length(): number {
    return this.#end - this.#start;
  }

  /**
   * Copies `bytes` in. `inFlight` says a write is reading the waiting bytes,
   * so they must not move within the current region.
   */
  append(bytes: Uint8Array, inFlight: boolean): void {
    const length = this.#end - this.#start;
    if (this.#end + bytes.length > this.#buffer.length) {
      if (!inFlight && length + bytes.length <= this.#buffer.length) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
      } else {
        let capacity = Math.max(this.#buffer.length, MIN_CAPACITY);
        while (capacity < length + bytes.length) capacity *= 2;
        const spare = this.#spare;
        this.#spare = null;
        const moved = spare !== null && spare.length >= capacity
          ? spare
          : new Uint8Array(capacity);
        moved.set(this.#buffer.subarray(this.#start, this.#end));
        if (inFlight) this.#retired = this.#buffer;
        this.#buffer = moved;
      }
      this.#start = 0;
      this.#end = length;
    }
    this.#buffer.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /**
   * Up to `max` waiting bytes, as a view (no copy). The view of the last
   * call is handed out again while it covers the same bytes of the same
   * region (a write takes one, and the next starts once it is over): a
   * connection that sends messages of one size makes no view per write.
   */
  peek(max: number): Uint8Array {
    const end = Math.min(this.#end, this.#start + max);
    const view = this.#view;
    if (
      view.buffer === this.#buffer.buffer && view.byteOffset === this.#start &&
      view.length === end - this.#start
    ) return view;
    return this.#view = this.#buffer.subarray(this.#start, end);
  }

  /** Drops `count` bytes from the front: the write that took them is over. */
  discard(count: number): void {
    this.#start = Math.min(this.#start + count, this.#end);
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
      // Nothing waits: an idle connection keeps one region, as before.
      this.#retired = this.#spare = null;
    } else if (this.#retired !== null) {
      this.#spare = this.#retired;
      this.#retired = null;
    }
  }

  /** Drops everything and lets go of the memory. */
  clear(): void {
    this.#buffer = this.#view = EMPTY;
    this.#retired = this.#spare = null;
    this.#start = this.#end = 0;
  }
}
