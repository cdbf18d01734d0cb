// Small integers for live sockets, reused lowest first like POSIX descriptors.
// The epoll backend's sockets are entered under their OS descriptors instead
// (`claim`); numbers handed out skip those. In a process whose default is the
// epoll backend, the other sockets' numbers come from a range no descriptor
// reaches (`high`), so that any other number can be taken for a descriptor.

import { FdSet } from "./_fd_set.ts";
import { Heap } from "./_heap.ts";

const FIRST = 3;
/** Above any descriptor Linux hands out (fs.nr_open is at most 2^30 - 64). */
const HIGH_FIRST = 0x40000000;

/** Hands out the lowest free number and maps live numbers to their owners. */
export class FdTable<T> {
  // Owners by number: below HIGH_FIRST (dense, as descriptors are) in an
  // array, 8 bytes a slot where a Map holds about 40 per entry; above it in a
  // Map.
  #low: (T | undefined)[] = [];
  #high = new Map<number, T>();
  #claimed = new FdSet();
  #free = new Heap<number>((a, b) => a < b);
  #next = FIRST;
  #highFree = new Heap<number>((a, b) => a < b);
  #highNext = HIGH_FIRST;

  /**
   * Registers `owner` under the lowest free number (from
   * `HIGH_FIRST` up when `high`) and returns it.
   */
  allocate(owner: T, high = false): number {
    const free = high ? this.#highFree : this.#free;
    let fd = free.pop();
    while (fd !== undefined && this.has(fd)) fd = free.pop();
    if (fd === undefined) {
      if (high) {
        fd = this.#highNext++;
      } else {
        while (this.has(this.#next)) this.#next++;
        fd = this.#next++;
      }
    }
    this.#set(fd, owner);
    return fd;
  }

  /** Registers `owner` under `fd`, a number it owns (an OS descriptor). */
  claim(fd: number, owner: T): void {
    this.#set(fd, owner);
    this.#claimed.add(fd);
  }

  /** Frees `fd` for reuse. */
  release(fd: number): void {
    if (!this.has(fd)) return;
    if (fd < HIGH_FIRST) this.#low[fd] = undefined;
    else this.#high.delete(fd);
    if (this.#claimed.delete(fd)) return;
    (fd >= HIGH_FIRST ? this.#highFree : this.#free).push(fd);
  }

  /** The owner of `fd`, or `undefined` when it is not live. */
  get(fd: number): T | undefined {
    return fd >= 0 && fd < HIGH_FIRST ? this.#low[fd] : this.#high.get(fd);
  }

  /** Whether `fd` is live. */
  has(fd: number): boolean {
    return this.get(fd) !== undefined;
  }

  #set(fd: number, owner: T): void {
    if (fd < HIGH_FIRST) this.#low[fd] = owner;
    else this.#high.set(fd, owner);
  }
}
