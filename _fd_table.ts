// Small integers for live sockets, reused lowest first like POSIX descriptors.

import { Heap } from "./_heap.ts";

const FIRST = 3;

/** Hands out the lowest free number and maps live numbers to their owners. */
export class FdTable<T> {
  #owners = new Map<number, T>();
  #free = new Heap<number>((a, b) => a < b);
  #next = FIRST;

  /** Registers `owner` under the lowest free number and returns it. */
  allocate(owner: T): number {
    const fd = this.#free.pop() ?? this.#next++;
    this.#owners.set(fd, owner);
    return fd;
  }

  /** Frees `fd` for reuse. */
  release(fd: number): void {
    if (this.#owners.delete(fd)) this.#free.push(fd);
  }

  /** The owner of `fd`, or `undefined` when it is not live. */
  get(fd: number): T | undefined {
    return this.#owners.get(fd);
  }
}
