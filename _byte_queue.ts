// A FIFO of byte chunks: the receive and send buffers of a Socket.

const EMPTY = new Uint8Array(0);

/** A queue of byte chunks that hands bytes out without copying when it can. */
export class ByteQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  #offset = 0;
  #length = 0;

  /** The number of bytes queued. */
  get length(): number {
    return this.#length;
  }

  /** Appends `chunk`; the queue keeps a reference, so the caller must not reuse it. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
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
    const rest = this.#chunks.slice(this.#head);
    if (this.#offset > 0) rest[0] = rest[0].subarray(this.#offset);
    this.#chunks = [merged, ...rest];
    this.#head = 0;
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
    if (this.#head === this.#chunks.length) {
      this.#chunks.length = 0;
      this.#head = 0;
    } else if (this.#head > 64 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Drops everything. */
  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#offset = 0;
    this.#length = 0;
  }
}
