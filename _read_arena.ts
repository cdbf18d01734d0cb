// Where reads land. Allocating a typed array costs about a microsecond in
// Deno whatever its size, so every socket's reads are carved out of shared
// arenas: one allocation serves many sockets, and an idle connection's read
// in flight pins a few hundred bytes rather than a buffer of its own. A region
// is never handed out twice; an arena lives while any view of it does.

const ARENA_SIZE = 65536;
// Regions larger than this take a buffer of their own, so one busy socket
// does not use up a shared arena per read.
const MAX_SHARED_REGION = ARENA_SIZE / 4;

let arena = new Uint8Array(0);
let used = 0;

/** A fresh region of `size` bytes that nothing else will be given. */
export function allocateRegion(size: number): Uint8Array {
  if (size > MAX_SHARED_REGION) return new Uint8Array(size);
  if (arena.length - used < size) {
    arena = new Uint8Array(ARENA_SIZE);
    used = 0;
  }
  const region = arena.subarray(used, used + size);
  used += size;
  return region;
}
