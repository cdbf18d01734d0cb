// A set of descriptor numbers as a bitmap: Linux hands out the lowest free
// number, so live descriptors are dense from 0 and a bit each serves where a
// Set would hold some 30 bytes per entry. Numbers outside 0..2^30 go to a Set.

const LIMIT = 0x40000000;

/** A set of non-negative integers, one bit each while they stay small. */
export class FdSet {
  #bits = new Uint32Array(32);
  #others: Set<number> | null = null;

  /** Adds `fd`. */
  add(fd: number): void {
    if (!(fd >= 0 && fd < LIMIT)) {
      (this.#others ??= new Set()).add(fd);
      return;
    }
    const word = fd >>> 5;
    if (word >= this.#bits.length) {
      let size = this.#bits.length * 2;
      while (size <= word) size *= 2;
      const bits = new Uint32Array(size);
      bits.set(this.#bits);
      this.#bits = bits;
    }
    this.#bits[word] |= 1 << (fd & 31);
  }

  /** Whether `fd` is in the set. */
  has(fd: number): boolean {
    if (!(fd >= 0 && fd < LIMIT)) return this.#others?.has(fd) ?? false;
    const word = fd >>> 5;
    return word < this.#bits.length &&
      (this.#bits[word] & (1 << (fd & 31))) !== 0;
  }

  /** Removes `fd`; returns whether it was there. */
  delete(fd: number): boolean {
    if (!this.has(fd)) return false;
    if (!(fd >= 0 && fd < LIMIT)) return this.#others!.delete(fd);
    this.#bits[fd >>> 5] &= ~(1 << (fd & 31));
    return true;
  }
}
