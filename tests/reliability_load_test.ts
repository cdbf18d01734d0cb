// Integrity under load: many concurrent clients push random bytes in random
// sized writes through a server on one loop, and each gets exactly its own
// bytes back, checked by a streaming hash.

import { assertEquals } from "@std/assert";
import type { ChannelMap } from "../asyncore.ts";
import {
  ECHO_HIGH_WATER,
  EchoHandler,
  randInt,
  type Random,
  randomBytes,
  seeded,
  serve,
  Server,
  StreamHash,
  testSeed,
  within,
  withSeed,
  writeAll,
} from "./_reliability_helpers.ts";

const CLIENTS = 200;
const PER_CLIENT = 1024 * 1024;

interface ClientResult {
  sent: string;
  received: string;
}

/** Sends `total` random bytes in random-sized writes, half-closes, reads to the end. */
async function client(
  port: number,
  random: Random,
  total: number,
  frame: (chunk: Uint8Array, last: boolean) => Uint8Array = (chunk) => chunk,
): Promise<ClientResult> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const sent = new StreamHash();
  const received = new StreamHash();
  const reader = (async () => {
    const buffer = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return;
      received.update(buffer.subarray(0, n));
    }
  })();
  let left = total;
  while (left > 0) {
    // Mostly small writes, now and then a large one.
    const size = Math.min(
      left,
      random() < 0.8 ? randInt(random, 1, 4096) : randInt(random, 4096, 65536),
    );
    left -= size;
    const chunk = frame(randomBytes(random, size), left === 0);
    sent.update(chunk);
    await writeAll(conn, chunk);
  }
  await conn.closeWrite();
  await reader;
  conn.close();
  return { sent: sent.digest(), received: received.digest() };
}

Deno.test("load: 200 clients × 1 MiB through the asyncore echo come back intact", async () => {
  const seed = testSeed();
  await withSeed(seed, async () => {
    const map: ChannelMap = new Map();
    const handlers: EchoHandler[] = [];
    const server = new Server(map, (sock, m) => {
      handlers.push(new EchoHandler(sock, m));
    }, 256);
    const random = seeded(seed);
    const started = performance.now();
    const served = serve(map, 120_000, "echo server");
    const results = await within(
      120_000,
      "clients",
      Promise.all(
        Array.from(
          { length: CLIENTS },
          (_, i) =>
            client(server.port, seeded(random() * 2 ** 32 + i), PER_CLIENT),
        ),
      ),
    );
    server.close();
    await served;
    const elapsed = performance.now() - started;
    for (const [i, { sent, received }] of results.entries()) {
      assertEquals(received, sent, `client ${i}`);
    }
    assertEquals(server.accepted, CLIENTS);
    const peak = Math.max(...handlers.map((h) => h.peakBuffered));
    console.log(
      `  echo: ${CLIENTS} × ${PER_CLIENT} B in ${Math.round(elapsed)} ms, ` +
        `peak queued per channel ${peak} B`,
    );
    // Backpressure held: a channel never queued much more than its mark plus one read.
    assertEquals(peak <= ECHO_HIGH_WATER + 65536, true, `peak ${peak}`);
  });
});
