// A FIFO of byte chunks: the receive and send buffers of a Socket.

const EMPTY = new Uint8Array(0);
// What a queue that never held anything has: no storage of its own.
const NO_CHUNKS: Uint8Array[] = [];
// An array that grew past this many slots is let go once the queue empties.
const KEPT_SLOTS = 64;

/** A queue of byte chunks that hands bytes out without copying when it can. */
export class ByteQueue {
  // The chunks queued are #chunks[#head..#tail); the slots around them hold
  // EMPTY. Emptying the queue keeps the array: a queue that fills and
  // empties once per message (a socket's receive buffer) would otherwise
  // allocate new storage for every message.
  #chunks: Uint8Array[] = NO_CHUNKS;
  #head = 0;
  #tail = 0;
  #offset = 0;
  #length = 0;

  /** The number of bytes queued. */
  get length(): number {
    return this.#length;
  }

  /** Appends `chunk`; the queue keeps a reference, so the caller must not reuse it. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const chunks = this.#chunks;
    if (this.#tail < chunks.length) chunks[this.#tail] = chunk;
    // Two slots at first (most queues hold one chunk at a time), then growing.
    else if (chunks === NO_CHUNKS) this.#chunks = [chunk, EMPTY];
    else chunks.push(chunk);
    this.#tail++;
    this.#length += chunk.length;
  }

  /** Returns up to `max` bytes from the front without removing them. */
  peek(max: number): Uint8Array {
    if (this.#length === 0) return EMPTY;
    const first = this.#chunks[this.#head];
    const available = first.length - this.#offset;
    if (available >= max || available === this.#length) {
      // The whole front chunk: no new view (a read hands out one per recv).
      if (this.#offset === 0 && max >= available) return first;
      return first.subarray(
        this.#offset,
        this.#offset + Math.min(max, available),
      );
    }
    // Coalesce the front chunks into one, so a partial write of it is not
    // copied again on the next peek.
    const size = Math.min(max, this.#length);
    const merged = new Uint8Array(size);
    this.#copyFront(merged, size);
    this.discard(size);
    const rest = this.#chunks.slice(this.#head, this.#tail);
    if (this.#offset > 0) rest[0] = rest[0].subarray(this.#offset);
    this.#chunks = [merged, ...rest];
    this.#head = 0;
    this.#tail = this.#chunks.length;
    this.#offset = 0;
    this.#length += size;
    return merged;
  }

  /** Removes and returns up to `max` bytes from the front. */
  take(max: number): Uint8Array {
    const data = this.peek(max);
    this.discard(data.length);
    return data;
  }

  /** Moves up to `buffer.length` bytes from the front into `buffer`; returns the count. */
  takeInto(buffer: Uint8Array): number {
    const count = Math.min(buffer.length, this.#length);
    this.#copyFront(buffer, count);
    this.discard(count);
    return count;
  }

  /** Copies the first `size` queued bytes (no more than are queued) into `target`. */
  #copyFront(target: Uint8Array, size: number): void {
    let filled = 0;
    let index = this.#head;
    let offset = this.#offset;
    while (filled < size) {
      const chunk = this.#chunks[index];
      const take = Math.min(chunk.length - offset, size - filled);
      target.set(
        take === chunk.length ? chunk : chunk.subarray(offset, offset + take),
        filled,
      );
      filled += take;
      index++;
      offset = 0;
    }
  }

  /** Drops `count` bytes from the front. */
  discard(count: number): void {
    let left = Math.min(count, this.#length);
    this.#length -= left;
    while (left > 0) {
      const chunk = this.#chunks[this.#head];
      const available = chunk.length - this.#offset;
      if (left < available) {
        this.#offset += left;
        return;
      }
      left -= available;
      this.#chunks[this.#head] = EMPTY;
      this.#head++;
      this.#offset = 0;
    }
    if (this.#head === this.#tail) {
      if (this.#tail > KEPT_SLOTS) this.#chunks = NO_CHUNKS;
      this.#head = this.#tail = 0;
    } else if (this.#head > 64 && this.#head * 2 > this.#tail) {
      this.#chunks = this.#chunks.slice(this.#head, this.#tail);
      this.#tail -= this.#head;
      this.#head = 0;
    }
  }

  /** Drops everything. */
  clear(): void {
    this.#chunks = NO_CHUNKS;
    this.#head = this.#tail = 0;
    this.#offset = 0;
    this.#length = 0;
  }
}
