// Where reads land. Allocating a typed array costs about a microsecond in
// Deno whatever its size, and a large one adds to the external memory V8's
// collector must account for, so every socket's reads are carved out of
// shared arenas: one allocation serves many reads, and an idle connection's
// read in flight pins a few hundred bytes rather than a buffer of its own. A
// region is never handed out twice; an arena lives while any view of it does.
// Short regions come from small arenas, so a short message kept for long pins
// little; long ones (a streaming socket's) from larger arenas of their own.

const SMALL_ARENA_SIZE = 65536;
const MAX_SMALL_REGION = SMALL_ARENA_SIZE / 4;
const LARGE_ARENA_SIZE = 262144;
const MAX_LARGE_REGION = LARGE_ARENA_SIZE / 4;

class Arena {
  #size: number;
  #arena = new Uint8Array(0);
  #used = 0;

  constructor(size: number) {
    this.#size = size;
  }

  take(size: number): Uint8Array {
    if (this.#arena.length - this.#used < size) {
      this.#arena = new Uint8Array(this.#size);
      this.#used = 0;
    }
    const region = this.#arena.subarray(this.#used, this.#used + size);
    this.#used += size;
    return region;
  }
}

const small = new Arena(SMALL_ARENA_SIZE);
const large = new Arena(LARGE_ARENA_SIZE);

/** A fresh region of `size` bytes that nothing else will be given. */
export function allocateRegion(size: number): Uint8Array {
  if (size <= MAX_SMALL_REGION) return small.take(size);
  if (size <= MAX_LARGE_REGION) return large.take(size);
  return new Uint8Array(size);
}
