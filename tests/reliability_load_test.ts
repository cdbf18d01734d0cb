// Integrity under load: many concurrent clients push random bytes in random
// sized writes through a server on one loop, and each gets exactly its own
// bytes back, checked by a streaming hash.

import { assertEquals, assertGreater, assertLessOrEqual } from "@std/assert";
import { AsyncChat } from "../asynchat.ts";
import type { Socket } from "../select.ts";
import type { ChannelMap } from "../asyncore.ts";
import {
  randInt,
  type Random,
  randomBytes,
  seeded,
  serve,
  Server,
  StreamHash,
  within,
} from "./_reliability_helpers.ts";
import { BoundedEchoHandler, ECHO_HIGH_WATER } from "./_dispatchers.ts";
import { testSeed, withSeed, writeAll } from "./_helpers.ts";

const CLIENTS = 200;
const PER_CLIENT = 1024 * 1024;

interface ClientResult {
  sent: string;
  received: string;
}

/** The bytes a client sends: `next(size)` at a time, then `rest()`. */
interface Stream {
  next(size: number): Uint8Array;
  /** What ends the stream cleanly (the rest of the record under way). */
  rest(): Uint8Array;
}

/** Random bytes. */
function rawStream(random: Random): Stream {
  return {
    next: (size) => randomBytes(random, size),
    rest: () => new Uint8Array(0),
  };
}

const TERMINATOR = new Uint8Array([0x00, 0xff, 0x5a, 0xa5]);

/**
 * Random records of up to 32 KiB, each followed by {@linkcode TERMINATOR};
 * writes cut the stream anywhere, terminators included.
 */
function recordStream(random: Random): Stream {
  let pending = new Uint8Array(0);
  return {
    next(size) {
      while (pending.length < size) {
        const record = randomBytes(random, randInt(random, 0, 32 * 1024));
        const grown = new Uint8Array(
          pending.length + record.length + TERMINATOR.length,
        );
        grown.set(pending);
        grown.set(record, pending.length);
        grown.set(TERMINATOR, pending.length + record.length);
        pending = grown;
      }
      const chunk = pending.slice(0, size);
      pending = pending.subarray(size);
      return chunk;
    },
    rest() {
      const chunk = pending.slice();
      pending = new Uint8Array(0);
      return chunk;
    },
  };
}

/**
 * Sends `total` bytes of `stream` in random-sized writes, then its rest,
 * half-closes, and reads the echo to its end, hashing both directions.
 */
async function client(
  port: number,
  random: Random,
  total: number,
  stream: Stream,
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
    const chunk = stream.next(size);
    sent.update(chunk);
    await writeAll(conn, chunk);
  }
  const rest = stream.rest();
  sent.update(rest);
  await writeAll(conn, rest);
  await conn.closeWrite();
  await reader;
  conn.close();
  return { sent: sent.digest(), received: received.digest() };
}

/** Runs {@linkcode CLIENTS} clients against `port` at once and checks each echo. */
async function runClients(
  seed: number,
  port: number,
  makeStream: (random: Random) => Stream,
): Promise<void> {
  const random = seeded(seed);
  const results = await within(
    120_000,
    "clients",
    Promise.all(
      Array.from({ length: CLIENTS }, (_, i) => {
        const own = seeded((random() * 2 ** 32) ^ i);
        return client(port, own, PER_CLIENT, makeStream(own));
      }),
    ),
  );
  for (const [i, { sent, received }] of results.entries()) {
    assertEquals(received, sent, `client ${i}`);
  }
}

Deno.test("load: 200 clients × 1 MiB through the asyncore echo come back intact", async () => {
  const seed = testSeed();
  await withSeed(seed, async () => {
    const map: ChannelMap = new Map();
    const handlers: BoundedEchoHandler[] = [];
    const server = new Server(map, (sock, m) => {
      handlers.push(new BoundedEchoHandler(sock, m));
    }, 256);
    const started = performance.now();
    const served = serve(map, 120_000, "echo server");
    await runClients(seed, server.port, rawStream);
    server.close();
    await served;
    const elapsed = performance.now() - started;
    assertEquals(server.accepted, CLIENTS);
    const peak = Math.max(...handlers.map((h) => h.peakBuffered));
    console.log(
      `  echo: ${CLIENTS} × ${PER_CLIENT} B in ${Math.round(elapsed)} ms, ` +
        `peak queued per channel ${peak} B`,
    );
    // Backpressure held: a channel never queued more than its mark plus one read.
    assertLessOrEqual(peak, ECHO_HIGH_WATER + 65536);
  });
});

/**
 * Echoes each record with its terminator. It stops reading while more than
 * {@linkcode ECHO_HIGH_WATER} bytes wait to go out, and at end of stream
 * sends what is queued before closing.
 */
class RecordEcho extends AsyncChat {
  records = 0;
  peakBuffered = 0;
  #eof = false;

  constructor(sock: Socket, map: ChannelMap) {
    super(sock, map);
    this.setTerminator(TERMINATOR);
  }

  override readable(): boolean {
    return !this.#eof && this.sendBuffered < ECHO_HIGH_WATER;
  }

  override foundTerminator(): void {
    this.records++;
    this.push(this.getData());
    this.push(TERMINATOR);
    this.peakBuffered = Math.max(this.peakBuffered, this.sendBuffered);
  }

  override handleClose(): void {
    if (this.#eof || this.socket?.error) {
      this.close();
      return;
    }
    this.#eof = true;
    this.closeWhenDone();
  }
}

Deno.test("load: 200 clients × 1 MiB of records through an AsyncChat server with a binary terminator come back intact", async () => {
  const seed = testSeed();
  await withSeed(seed, async () => {
    const map: ChannelMap = new Map();
    const handlers: RecordEcho[] = [];
    const server = new Server(map, (sock, m) => {
      handlers.push(new RecordEcho(sock, m));
    }, 256);
    const started = performance.now();
    const served = serve(map, 120_000, "record server");
    await runClients(seed, server.port, recordStream);
    server.close();
    await served;
    const elapsed = performance.now() - started;
    assertEquals(server.accepted, CLIENTS);
    const records = handlers.reduce((sum, h) => sum + h.records, 0);
    const peak = Math.max(...handlers.map((h) => h.peakBuffered));
    console.log(
      `  records: ${CLIENTS} × ${PER_CLIENT} B (${records} records) in ` +
        `${Math.round(elapsed)} ms, peak queued per channel ${peak} B`,
    );
    assertGreater(records, CLIENTS * 32);
    assertLessOrEqual(peak, ECHO_HIGH_WATER + 2 * 65536);
  });
});
