// Small integers for live sockets, reused lowest first like POSIX descriptors.

const FIRST = 3;

/** Hands out the lowest free number and maps live numbers to their owners. */
export class FdTable<T> {
  #owners = new Map<number, T>();
  #free: number[] = []; // a binary min-heap
  #next = FIRST;

  /** Registers `owner` under the lowest free number and returns it. */
  allocate(owner: T): number {
    const fd = this.#free.length > 0 ? this.#popFree() : this.#next++;
    this.#owners.set(fd, owner);
    return fd;
  }

  /** Frees `fd` for reuse. */
  release(fd: number): void {
    if (!this.#owners.delete(fd)) return;
    const heap = this.#free;
    heap.push(fd);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent] <= heap[i]) break;
      [heap[parent], heap[i]] = [heap[i], heap[parent]];
      i = parent;
    }
  }

  /** The owner of `fd`, or `undefined` when it is not live. */
  get(fd: number): T | undefined {
    return this.#owners.get(fd);
  }

  #popFree(): number {
    const heap = this.#free;
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let least = i;
        if (left < heap.length && heap[left] < heap[least]) least = left;
        if (right < heap.length && heap[right] < heap[least]) least = right;
        if (least === i) break;
        [heap[least], heap[i]] = [heap[i], heap[least]];
        i = least;
      }
    }
    return top;
  }
}
