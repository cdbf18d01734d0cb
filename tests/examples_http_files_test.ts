// The producers of examples/http/files.ts that put a response head in front
// of the body's first block: one array, so one send on the epoll backend.

import { assert, assertEquals } from "@std/assert";
import { concat } from "@std/bytes";
import {
  FileRangeProducer,
  HeadAndBytesProducer,
  PieceBuffer,
} from "../examples/http/files.ts";

const head = new TextEncoder().encode("HTTP/1.1 200 OK\r\n\r\n");

function bytes(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 7 + 3) % 251);
}

/** Every piece, each copied as it comes (the buffer is reused). */
function drain(producer: { more(): Uint8Array }): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  for (let piece = producer.more(); piece.length > 0; piece = producer.more()) {
    pieces.push(piece.slice());
  }
  return pieces;
}

Deno.test("HeadAndBytesProducer: the head and the first block are one piece", () => {
  const buffer = new PieceBuffer();
  const block = bytes(65536);
  assertEquals(
    drain(new HeadAndBytesProducer(head, block, buffer, 65536)),
    [concat([head, block])],
  );
  const larger = bytes(100_000);
  assertEquals(
    drain(new HeadAndBytesProducer(head, larger, buffer, 65536)),
    [concat([head, larger.subarray(0, 65536)]), larger.subarray(65536)],
  );
});

Deno.test("FileRangeProducer: given the head, its first piece holds it and the first block", async () => {
  const data = bytes(200_000);
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, data);
    const buffer = new PieceBuffer();
    const start = 10;
    const length = 70_000;
    const producer = new FileRangeProducer(path, start, length, 65536, {
      head,
      buffer,
    });
    const first = producer.more();
    assertEquals(first.length, head.length + 65536);
    assertEquals(first.subarray(0, head.length), head);
    assertEquals(
      first.subarray(head.length),
      data.subarray(start, start + 65536),
    );
    const firstBuffer = first.buffer;
    const second = producer.more();
    // The channel's one buffer, again.
    assert(second.buffer === firstBuffer);
    assertEquals(second, data.subarray(start + 65536, start + length));
    assertEquals(producer.more().length, 0);
    // Without a head, as before.
    assertEquals(
      concat(drain(new FileRangeProducer(path, 0, 1000, 256, { buffer }))),
      data.subarray(0, 1000),
    );
  } finally {
    await Deno.remove(path);
  }
});
