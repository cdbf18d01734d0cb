// The promise backend's send buffer (_send_buffer.ts), driven as its write
// pump drives it: a write takes a view of what waits, `send` appends more
// while that write is in flight, and the write's end discards what it took.

import { assert, assertEquals } from "@std/assert";
import { SendBuffer } from "../_deno/send_buffer.ts";

/** Streams `total` bytes through `tx` in `piece`-sized sends, bounded by `limit`. */
function stream(
  tx: SendBuffer,
  total: number,
  piece: number,
  limit: number,
  takes: (waiting: number) => number,
): { regions: Set<ArrayBufferLike>; written: number } {
  const regions = new Set<ArrayBufferLike>();
  let written = 0;
  let next = 0;
  let inFlight: { view: Uint8Array; copy: Uint8Array } | null = null as
    | { view: Uint8Array; copy: Uint8Array }
    | null;
  const fill = () => {
    while (next < total && tx.length + piece <= limit) {
      const bytes = new Uint8Array(piece);
      for (let i = 0; i < piece; i++) bytes[i] = (next + i) & 0xff;
      tx.append(bytes, inFlight !== null);
      next += piece;
    }
  };
  const startWrite = () => {
    if (tx.length === 0) return;
    const view = tx.peek(tx.length);
    regions.add(view.buffer);
    inFlight = { view, copy: view.slice() };
  };
  for (let round = 0; round < 100_000 && written < total; round++) {
    fill();
    if (inFlight === null) {
      startWrite();
      continue;
    }
    // The write is over: what it read was left alone while it was in flight.
    const { view, copy } = inFlight;
    assertEquals(view, copy, "a region in flight was written");
    const count = takes(view.length);
    for (let i = 0; i < count; i++, written++) {
      if (view[i] !== (written & 0xff)) {
        throw new Error(`byte ${written} is ${view[i]}`);
      }
    }
    tx.discard(count);
    inFlight = null;
    // As the write pump does: the next write starts at once.
    startWrite();
  }
  return { regions, written };
}

Deno.test("SendBuffer: streaming while writes are in flight reuses two regions", () => {
  const tx = new SendBuffer();
  // A slow reader: each write takes a third of what waits, so sends keep
  // arriving while a write is in flight, and move past a region's end.
  const { regions, written } = stream(
    tx,
    4 << 20,
    4096,
    65536,
    (waiting) => Math.max(1, Math.floor(waiting / 3)),
  );
  assertEquals(written, 4 << 20);
  assert(regions.size <= 2, `${regions.size} regions for 4 MiB`);
  assertEquals(tx.length, 0);
});

Deno.test("SendBuffer: writes that take everything need one region", () => {
  const tx = new SendBuffer();
  const { regions, written } = stream(tx, 1 << 20, 1024, 65536, (n) => n);
  assertEquals(written, 1 << 20);
  assertEquals(regions.size, 1);
});

Deno.test("SendBuffer: clear() lets go of every region", () => {
  const tx = new SendBuffer();
  tx.append(new Uint8Array(1000), false);
  const first = tx.peek(1000);
  tx.append(new Uint8Array(1000), true); // moves: the first region is in flight
  tx.clear();
  assertEquals(tx.length, 0);
  tx.append(new Uint8Array([1, 2, 3]), false);
  assertEquals([...tx.peek(10)], [1, 2, 3]);
  assert(tx.peek(10).buffer !== first.buffer);
});
