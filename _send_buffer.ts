// A socket's send buffer: one contiguous region reused for the life of the
// connection, so a send costs a copy and no allocation (allocating typed
// arrays is slow in Deno).

const EMPTY = new Uint8Array(0);
const MIN_CAPACITY = 512;

/** Bytes waiting to be written, kept contiguous so one write takes them all. */
export class SendBuffer {
  #buffer = EMPTY;
  #start = 0;
  #end = 0;

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
        const grown = new Uint8Array(capacity);
        grown.set(this.#buffer.subarray(this.#start, this.#end));
        this.#buffer = grown;
      }
      this.#start = 0;
      this.#end = length;
    }
    this.#buffer.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /** Up to `max` waiting bytes, as a view (no copy). */
  peek(max: number): Uint8Array {
    return this.#buffer.subarray(
      this.#start,
      Math.min(this.#end, this.#start + max),
    );
  }

  /** Drops `count` bytes from the front. */
  discard(count: number): void {
    this.#start = Math.min(this.#start + count, this.#end);
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  /** Drops everything and lets go of the memory. */
  clear(): void {
    this.#buffer = EMPTY;
    this.#start = this.#end = 0;
  }
}
