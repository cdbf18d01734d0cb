// Close semantics: closing never drops a byte the socket accepted, a
// closeWhenDone() after a large producer delivers all of it, and closeAll()
// on a busy map ends everything at once without corrupting what was sent.

import { assert, assertEquals, assertGreater } from "@std/assert";
import {
  callLater,
  type ChannelMap,
  closeAll,
  Dispatcher,
} from "../asyncore.ts";
import { AsyncChat, type Producer } from "../asynchat.ts";
import { Socket } from "../select.ts";
import {
  hashToEnd,
  isStreamAt,
  serve,
  Server,
  streamBytes,
  StreamHash,
  until,
  within,
} from "./_reliability_helpers.ts";
import { BoundedEchoHandler } from "./_dispatchers.ts";
import { BACKEND } from "./_helpers.ts";

Deno.test("close: close() with a full send buffer delivers every byte", async (t) => {
  await t.step(
    "Socket: buffers of 64 KiB and 1 MiB filled, then closed",
    async () => {
      for (const size of [65536, 1024 * 1024]) {
        using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const sock = new Socket({ sendBufferSize: size });
        sock.connect({ hostname: "127.0.0.1", port: listener.addr.port });
        const peer = await listener.accept();
        await until(() => !sock.closed && sendable(sock), 5000, "connected");
        // Fill the socket's buffer until it pushes back (the kernel takes
        // some first), then close at once.
        let offset = 0;
        await until(
          () => {
            try {
              for (;;) offset += sock.send(streamBytes(size, offset, 32768));
            } catch (error) {
              assert(error instanceof Deno.errors.WouldBlock, String(error));
            }
            // On the epoll backend the buffer is the kernel's, sized by it:
            // full is when it pushes back.
            return BACKEND === "epoll" || sock.sendBuffered === size;
          },
          10_000,
          "the send buffer is full",
        );
        sock.close();
        const { hash, bytes, error } = await within(
          10_000,
          "the peer reads it all",
          hashToEnd(peer),
        );
        peer.close();
        assertEquals(error, null);
        assertEquals(hash.length, offset);
        let at = 0;
        for (const chunk of bytes) {
          assert(isStreamAt(size, at, chunk), `bytes at ${at}`);
          at += chunk.length;
        }
      }
    },
  );

  await t.step(
    "50 channels fill their buffers and close in one pass",
    async () => {
      const map: ChannelMap = new Map();
      const accepted: number[] = [];
      class Burst extends Dispatcher {
        sent = 0;
        readonly seed: number;
        constructor(sock: Socket, m: ChannelMap, seed: number) {
          super(sock, m);
          this.seed = seed;
        }
        override readable(): boolean {
          return false;
        }
        override handleWrite(): void {
          for (;;) {
            const n = this.send(streamBytes(this.seed, this.sent, 16384));
            this.sent += n;
            if (n < 16384) break;
          }
          accepted[this.seed] = this.sent;
          // The socket holds up to 64 KiB the peer has not read yet.
          this.close();
        }
      }
      let next = 0;
      const server = new Server(map, (sock, m) => new Burst(sock, m, next++));
      const running = serve(map, 20_000, "bursts");
      const conns = await Promise.all(
        Array.from(
          { length: 50 },
          () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
        ),
      );
      await until(() => next === 50 && map.size === 1, 10_000, "all closed");
      server.close();
      await running;
      // Only now do the peers start reading.
      const results = await within(
        10_000,
        "peers read",
        Promise.all(conns.map((conn) => hashToEnd(conn))),
      );
      for (const conn of conns) conn.close();
      // Which accepted socket a connection got is not known; match by content.
      const seen = new Set<number>();
      for (const { hash, bytes, error } of results) {
        assertEquals(error, null);
        const first = bytes[0];
        const seed = accepted.findIndex((count, i) =>
          count === hash.length && !seen.has(i) &&
          isStreamAt(i, 0, first.subarray(0, 64))
        );
        assert(seed >= 0, `no channel sent these ${hash.length} bytes`);
        seen.add(seed);
        let at = 0;
        for (const chunk of bytes) {
          assert(isStreamAt(seed, at, chunk), `channel ${seed} at ${at}`);
          at += chunk.length;
        }
        assertGreater(hash.length, 65535, "a full socket buffer");
      }
    },
  );
});

function sendable(sock: Socket): boolean {
  try {
    sock.getpeername();
    return true;
  } catch {
    return false;
  }
}

Deno.test("close: closeWhenDone() after a large producer delivers it all, then the end", async () => {
  const map: ChannelMap = new Map();
  const SIZE = 8 * 1024 * 1024;
  const SEED = 77;
  let pulls = 0;
  class Big implements Producer {
    #offset = 0;
    more(): Uint8Array {
      pulls++;
      const size = Math.min(10_000, SIZE - this.#offset);
      const piece = streamBytes(SEED, this.#offset, size);
      this.#offset += size;
      return piece;
    }
  }
  const header = new TextEncoder().encode("HEADER\r\n");
  let chat: AsyncChat | undefined;
  const server = new Server(map, (sock, m) => {
    chat = new AsyncChat(sock, m);
    chat.push(header);
    chat.pushWithProducer(new Big());
    chat.push("TRAILER");
    chat.closeWhenDone();
    chat.push("never sent: after closeWhenDone()");
  });
  const running = serve(map, 30_000, "producer");
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  // A slow reader: small reads, so the producer is pulled as room appears.
  const hash = new StreamHash();
  const buffer = new Uint8Array(1500);
  let offset = 0;
  let ok = true;
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    const chunk = buffer.subarray(0, n);
    hash.update(chunk);
    // Check the body part of each read against the stream.
    const bodyStart = Math.max(0, header.length - offset);
    const bodyEnd = Math.min(n, header.length + SIZE - offset);
    if (bodyEnd > bodyStart) {
      ok &&= isStreamAt(
        SEED,
        offset + bodyStart - header.length,
        chunk.subarray(bodyStart, bodyEnd),
      );
    }
    offset += n;
  }
  conn.close();
  server.close();
  await running;
  assert(ok, "the body came back as produced");
  assertEquals(offset, header.length + SIZE + "TRAILER".length);
  assert(chat!.socket!.closed);
  assertEquals(pulls, Math.ceil(SIZE / 10_000) + 1);
});

Deno.test("close: closeAll() on a busy map ends every channel at once, without corrupting what was sent", async () => {
  const CLIENTS = 100;
  for (const from of ["a timer", "outside the loop"]) {
    const map: ChannelMap = new Map();
    const server = new Server(
      map,
      (sock, m) => new BoundedEchoHandler(sock, m),
    );
    const running = serve(map, 30_000, "busy map");
    let streaming = 0;
    const clients = Array.from({ length: CLIENTS }, async (_, seed) => {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      let sent = 0;
      let writeError: Error | null = null;
      const writer = (async () => {
        try {
          // Keep writing until the server goes away (bounded all the same).
          while (sent < 64 * 1024 * 1024) {
            const n = await conn.write(streamBytes(seed, sent, 8192));
            if (sent === 0) streaming++;
            sent += n;
          }
        } catch (error) {
          writeError = error as Error;
        }
      })();
      let received = 0;
      let intact = true;
      let readError: Error | null = null;
      const buffer = new Uint8Array(65536);
      try {
        for (;;) {
          const n = await conn.read(buffer);
          if (n === null) break;
          intact &&= isStreamAt(seed, received, buffer.subarray(0, n));
          received += n;
        }
      } catch (error) {
        readError = error as Error;
      }
      await writer;
      conn.close();
      return { sent, received, intact, readError, writeError };
    });
    await until(
      () => streaming === CLIENTS && map.size === CLIENTS + 1,
      20_000,
      "all accepted and streaming",
    );
    const busy = map.size;
    if (from === "a timer") {
      callLater(0, () => closeAll(map), { map });
    } else {
      closeAll(map);
    }
    assertEquals(busy, CLIENTS + 1);
    await within(5000, "the loop ends", running);
    assertEquals(map.size, 0);
    const results = await within(10_000, "clients end", Promise.all(clients));
    for (const [seed, result] of results.entries()) {
      assert(result.intact, `client ${seed}: the echo is what it sent`);
      assert(result.received <= result.sent, `client ${seed}`);
      // The echo ended: end of stream, or a reset for the unread input.
      if (result.readError) {
        assert(
          result.readError instanceof Deno.errors.ConnectionReset,
          `client ${seed}: ${result.readError}`,
        );
      }
    }
  }
});

Deno.test("close: closeAll(map, true) closes every channel even when one close() throws", () => {
  const map: ChannelMap = new Map();
  const channels: Dispatcher[] = [];
  class Stubborn extends Dispatcher {
    override close(): void {
      super.close();
      throw new Error("close failed");
    }
  }
  for (let i = 0; i < 5; i++) {
    const channel = i === 2
      ? new Stubborn(undefined, map)
      : new Dispatcher(undefined, map);
    channel.createSocket();
    channels.push(channel);
  }
  closeAll(map, true);
  assertEquals(map.size, 0);
  for (const channel of channels) assert(channel.socket!.closed);
});
