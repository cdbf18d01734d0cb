// Faults: a bad peer or a bad handler hurts only its own channel. Each test
// runs a "witness" client doing echo round trips on the same loop while the
// fault happens, and checks that it was served throughout.

import {
  assert,
  assertEquals,
  assertGreater,
  assertInstanceOf,
  assertLessOrEqual,
} from "@std/assert";
import { concat } from "@std/bytes";
import {
  callLater,
  type ChannelMap,
  closeAll,
  Dispatcher,
  DispatcherWithSend,
  readwrite,
} from "../asyncore.ts";
import { POLLPRI, type Socket } from "../select.ts";
import { AsyncChat, type Producer } from "../asynchat.ts";
import {
  captureLogs,
  hashToEnd,
  portOf,
  randInt,
  randomBytes,
  resetPeers,
  resettingPeer,
  seeded,
  serve,
  Server,
  settled,
  until,
  within,
} from "./_reliability_helpers.ts";
import { BoundedEchoHandler } from "./_dispatchers.ts";
import { BACKEND, testSeed, withSeed, writeAll } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A client doing `rounds` echo round trips of 1 KiB against an echo server:
 * resolves when every reply matched, so the loop served it throughout.
 */
async function witness(port: number, rounds = 20): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const buffer = new Uint8Array(4096);
    for (let round = 0; round < rounds; round++) {
      const message = randomBytes(seeded(round), 1024);
      await writeAll(conn, message);
      const parts: Uint8Array[] = [];
      let got = 0;
      while (got < message.length) {
        const n = await conn.read(buffer);
        if (n === null) throw new Error(`witness: end of stream at ${round}`);
        parts.push(buffer.slice(0, n));
        got += n;
      }
      assertEquals(concat(parts), message, `witness round ${round}`);
    }
  } finally {
    conn.close();
  }
}

/** A map with an echo server on it, served in the background. */
function echoMap(): {
  map: ChannelMap;
  server: Server;
  port: number;
} {
  const map: ChannelMap = new Map();
  const server = new Server(map, (sock, m) => new BoundedEchoHandler(sock, m));
  return { map, server, port: server.port };
}

// ---------------------------------------------------------------------------
// Peer faults

const peers = await resetPeers();

for (const peer of ["python3", "node"] as const) {
  Deno.test({
    name:
      `peer faults: a reset mid-stream (${peer} peer) closes only that channel`,
    // Deno has no SO_LINGER; without python3 or node there is no real reset.
    ignore: !peers.includes(peer),
    async fn() {
      const { map, port } = echoMap();
      const errors: unknown[] = [];
      const created = new Set<Dispatcher>();
      const closed = new Set<Dispatcher>();
      class Watched extends BoundedEchoHandler {
        override handleError(error: unknown): void {
          errors.push(error);
          super.handleError(error);
        }
        override close(): void {
          closed.add(this);
          super.close();
        }
      }
      const server = new Server(map, (sock, m) => {
        created.add(new Watched(sock, m));
      });
      const running = serve(map, 30_000, "reset");
      // One peer sends 256 KiB, reads 64 KiB of the echo, then resets while
      // the server still has the rest queued: both the server's reads and its
      // writes meet the reset. Another resets after a short exchange, and a
      // third at once, maybe before it is even accepted (which must not harm
      // the listener).
      const [got, short] = await within(
        20_000,
        "reset peers and witness",
        Promise.all([
          resettingPeer(peer, server.port, 256 * 1024, 64 * 1024),
          resettingPeer(peer, server.port, 4096, 4096),
          resettingPeer(peer, server.port, 0, 0),
          witness(port, 30),
        ]),
      );
      assertGreater(got, 0);
      assertEquals(short, 4096);
      await until(
        () => closed.size === created.size,
        10_000,
        "reset channels closed",
      );
      assertGreater(created.size, 1);
      assertEquals(errors, [], "a reset is a disconnect, not a handler error");
      assertEquals(map.size, 2, "only the two servers are left");
      // The loop still serves new clients after the resets.
      await witness(port, 5);
      closeAll(map);
      await running;
    },
  });
}

Deno.test("peer faults: half-close — the peer ends its writing, the server still sends what remains", async (t) => {
  await t.step(
    "asyncore echo: 1 MiB sent, write side shut, 1 MiB back",
    async () => {
      const { map, port, server } = echoMap();
      const running = serve(map, 30_000, "half-close echo");
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const data = randomBytes(seeded(1), 1024 * 1024);
      const reading = hashToEnd(conn);
      await writeAll(conn, data);
      await conn.closeWrite();
      const { bytes, error } = await within(20_000, "echo back", reading);
      conn.close();
      assertEquals(error, null);
      assertEquals(concat(bytes), data);
      await until(() => map.size === 1, 5000, "the echo channel closed");
      server.close();
      await running;
    },
  );

  await t.step(
    "AsyncChat: answers at end of stream with a 2 MiB producer, then closeWhenDone",
    async () => {
      const map: ChannelMap = new Map();
      const reply = randomBytes(seeded(2), 2 * 1024 * 1024);
      class AtEnd extends AsyncChat {
        received = 0;
        eof = false;
        constructor(sock: Socket, m: ChannelMap) {
          super(sock, m);
          this.setTerminator(null);
        }
        override collectIncomingData(data: Uint8Array): void {
          this.received += data.length;
        }
        override readable(): boolean {
          return !this.eof;
        }
        override handleClose(): void {
          if (this.eof || this.socket?.error) {
            this.close(); // closeWhenDone() reached, or the peer is gone
            return;
          }
          this.eof = true;
          let offset = 0;
          const producer: Producer = {
            more: () => {
              const size = Math.min(3000, reply.length - offset);
              offset += size;
              return reply.subarray(offset - size, offset);
            },
          };
          this.pushWithProducer(producer);
          this.closeWhenDone();
        }
      }
      const handlers: AtEnd[] = [];
      const server = new Server(map, (sock, m) => {
        handlers.push(new AtEnd(sock, m));
      });
      const running = serve(map, 30_000, "half-close asynchat");
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      const reading = hashToEnd(conn);
      await writeAll(conn, encoder.encode("request body"));
      await conn.closeWrite();
      const { bytes, error } = await within(20_000, "reply", reading);
      conn.close();
      assertEquals(error, null);
      assertEquals(concat(bytes), reply);
      assertEquals(handlers[0].received, "request body".length);
      await until(() => map.size === 1, 5000, "the channel closed");
      server.close();
      await running;
    },
  );
});

Deno.test("peer faults: connection refused goes to that channel's handleError, the loop goes on", async () => {
  for (const usePoll of [false, true]) {
    const { map, port, server } = echoMap();
    const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const refusedPort = portOf(free.addr);
    free.close();
    const errors: unknown[] = [];
    let connected = false;
    class Client extends Dispatcher {
      override handleConnect(): void {
        connected = true;
      }
      override handleError(error: unknown): void {
        errors.push(error);
        super.handleError(error);
      }
    }
    await captureLogs(async (lines) => {
      const running = serve(map, 20_000, "refused", { usePoll });
      const clients = Array.from({ length: 10 }, () => {
        const client = new Client(undefined, map);
        client.createSocket();
        client.connect({ hostname: "127.0.0.1", port: refusedPort });
        return client;
      });
      await within(10_000, "witness", witness(port, 10));
      await until(() => errors.length === 10, 10_000, "refusals reported");
      assertEquals(connected, false);
      for (const error of errors) {
        assertInstanceOf(error, Deno.errors.ConnectionRefused);
      }
      for (const client of clients) assert(client.socket!.closed);
      assertEquals(
        lines.filter((line) => line.includes("ConnectionRefused")).length,
        10,
      );
      server.close();
      closeAll(map);
      await running;
    });
  }
});

Deno.test("peer faults: a listener that accepts and closes at once ends every client cleanly", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  let accepted = 0;
  const closer = (async () => {
    for await (const conn of listener) {
      conn.close();
      accepted++;
    }
  })();
  const map: ChannelMap = new Map();
  const errors: unknown[] = [];
  const ended: string[] = [];
  class Client extends DispatcherWithSend {
    override handleConnect(): void {
      this.send(new Uint8Array(200 * 1024));
    }
    override handleRead(): void {
      this.recv(65536);
    }
    override handleClose(): void {
      ended.push(this.socket?.error?.name ?? "eof");
      this.close();
    }
    override handleError(error: unknown): void {
      errors.push(error);
      super.handleError(error);
    }
  }
  const clients = Array.from({ length: 50 }, () => {
    const client = new Client(undefined, map);
    client.createSocket();
    client.connect({ hostname: "127.0.0.1", port });
    return client;
  });
  await serve(map, 20_000, "clients of a closing listener");
  assertEquals(errors, []);
  assertEquals(ended.length, 50);
  for (const client of clients) assert(client.socket!.closed);
  listener.close();
  await closer;
  assertEquals(accepted, 50);
});

Deno.test("peer faults: a peer that never reads stalls only its channel, with memory bounded", async (t) => {
  await t.step(
    "DispatcherWithSend refilled while sendBuffered is low",
    async () => {
      const { map, port } = echoMap();
      const HIGH = 128 * 1024;
      let pushed = 0;
      let peak = 0;
      let peakSocket = 0;
      class Firehose extends DispatcherWithSend {
        override readable(): boolean {
          return true;
        }
        override writable(): boolean {
          return true;
        }
        override handleRead(): void {
          this.recv(65536);
        }
        override handleWrite(): void {
          while (this.connected && this.sendBuffered < HIGH) {
            pushed += this.send(new Uint8Array(32 * 1024));
          }
          super.handleWrite();
          peak = Math.max(peak, this.sendBuffered);
          peakSocket = Math.max(peakSocket, this.socket!.sendBuffered);
        }
        override handleClose(): void {
          this.close();
        }
      }
      let firehose: Firehose | undefined;
      const source = new Server(map, (sock, m) => {
        firehose = new Firehose(sock, m);
      });
      const running = serve(map, 60_000, "firehose");
      const sink = await Deno.connect({
        hostname: "127.0.0.1",
        port: source.port,
      });
      // The kernel takes a few MiB; then the socket's own buffer fills and
      // stays full.
      await until(() => firehose !== undefined, 5000, "accepted");
      const stalledAt = await settled(() => pushed, 500, 20_000, "stall");
      // On the epoll backend the socket's buffer is the kernel's: the
      // bounds below are the deno backend's own buffer.
      if (BACKEND === "deno") {
        assertEquals(
          firehose!.socket!.sendBuffered,
          firehose!.socket!.sendBufferSize,
        );
      }
      await within(20_000, "witness", witness(port, 50));
      assertEquals(
        pushed,
        stalledAt,
        "nothing more was accepted while stalled",
      );
      assertLessOrEqual(peak, HIGH + 32 * 1024);
      if (BACKEND === "deno") {
        assertLessOrEqual(peakSocket, firehose!.socket!.sendBufferSize);
      }
      console.log(
        `  stalled after ${pushed} B (kernel buffers + 64 KiB socket buffer); ` +
          `peak queued on the channel ${peak} B`,
      );
      sink.close();
      await until(() => map.size === 2, 10_000, "the firehose channel closed");
      closeAll(map);
      await running;
    },
  );

  await t.step(
    "AsyncChat pulls its producer only while the socket takes more",
    async () => {
      const { map, port } = echoMap();
      let pulled = 0;
      const piece = new Uint8Array(4096);
      const endless: Producer = {
        more: () => {
          pulled += piece.length;
          return piece;
        },
      };
      let chat: AsyncChat | undefined;
      let peak = 0;
      class Pusher extends AsyncChat {
        override handleWrite(): void {
          super.handleWrite();
          peak = Math.max(peak, this.sendBuffered);
        }
      }
      const source = new Server(map, (sock, m) => {
        chat = new Pusher(sock, m);
        chat.setTerminator("\n");
        chat.pushWithProducer(endless);
      });
      const running = serve(map, 60_000, "producer");
      const sink = await Deno.connect({
        hostname: "127.0.0.1",
        port: source.port,
      });
      await until(() => chat !== undefined, 5000, "accepted");
      const stalledAt = await settled(() => pulled, 500, 20_000, "stall");
      if (BACKEND === "deno") {
        assertEquals(chat!.socket!.sendBuffered, chat!.socket!.sendBufferSize);
      }
      await within(20_000, "witness", witness(port, 50));
      assertEquals(
        pulled,
        stalledAt,
        "the producer was not pulled while stalled",
      );
      // The kernel's buffer bounds it on the epoll backend, not sendBufferSize.
      if (BACKEND === "deno") {
        assertLessOrEqual(peak, chat!.socket!.sendBufferSize + piece.length);
        assertLessOrEqual(
          chat!.sendBuffered,
          chat!.socket!.sendBufferSize + piece.length,
        );
      }
      sink.close();
      await until(() => map.size === 2, 10_000, "the pushing channel closed");
      closeAll(map);
      await running;
    },
  );
});

Deno.test("peer faults: an oversized record", async (t) => {
  const lineServer = (
    map: ChannelMap,
    options: { limit?: number; keepOpen?: boolean } = {},
  ) => {
    const stats = { maxCollected: 0, tooLarge: 0, lines: [] as string[] };
    class Lines extends AsyncChat {
      #parts: Uint8Array[] = [];
      #length = 0;
      constructor(sock: Socket, m: ChannelMap) {
        super(sock, m);
        this.setTerminator("\n");
        if (options.limit !== undefined) this.maxRecordSize = options.limit;
      }
      override collectIncomingData(data: Uint8Array): void {
        this.#parts.push(data.slice());
        this.#length += data.length;
        stats.maxCollected = Math.max(stats.maxCollected, this.#length);
      }
      override foundTerminator(): void {
        const line = decoder.decode(concat(this.#parts));
        this.#parts = [];
        this.#length = 0;
        stats.lines.push(line.length > 20 ? `${line.length} bytes` : line);
        this.push(`${line.length > 20 ? `${line.length} bytes` : line}\n`);
      }
      override handleRecordTooLarge(): void {
        stats.tooLarge++;
        this.#parts = [];
        this.#length = 0;
        if (options.keepOpen) this.push("ERR\n");
        else super.handleRecordTooLarge();
      }
    }
    const server = new Server(map, (sock, m) => new Lines(sock, m));
    return { server, stats };
  };

  await t.step(
    "default: logged and closed, never more than maxRecordSize collected",
    async () => {
      const { map, port } = echoMap();
      const { server, stats } = lineServer(map);
      await captureLogs(async (lines) => {
        const running = serve(map, 30_000, "oversized");
        const conn = await Deno.connect({
          hostname: "127.0.0.1",
          port: server.port,
        });
        const reading = hashToEnd(conn);
        // 1 MiB with no newline: the server closes long before the end, so
        // writing may fail with a reset; that is the point.
        const writing = writeAll(conn, new Uint8Array(1024 * 1024).fill(120))
          .catch((error: Error) => error);
        const [{ bytes }] = await within(
          20_000,
          "closed by the server",
          Promise.all([reading, writing, witness(port, 10)]),
        );
        conn.close();
        assertEquals(concat(bytes).length, 0);
        assertEquals(stats.tooLarge, 1);
        assertLessOrEqual(stats.maxCollected, 65536);
        assert(lines.some((line) => line.includes("record longer than 65536")));
        await until(() => map.size === 2, 5000, "the channel closed");
        closeAll(map);
        await running;
      });
    },
  );

  await t.step(
    "override: reply and go on with the next record; Infinity disables",
    async () => {
      for (const limit of [1000, Infinity]) {
        const { map } = echoMap();
        const { server, stats } = lineServer(map, { limit, keepOpen: true });
        const seed = testSeed();
        await withSeed(seed, async () => {
          const running = serve(map, 30_000, "oversized override");
          const conn = await Deno.connect({
            hostname: "127.0.0.1",
            port: server.port,
          });
          const reading = hashToEnd(conn);
          const input = concat([
            encoder.encode("hello\n"),
            new Uint8Array(100_000).fill(120),
            encoder.encode("\nworld\n"),
          ]);
          // Random chunking puts the limit and the terminator anywhere.
          const random = seeded(seed);
          for (let offset = 0; offset < input.length;) {
            const size = randInt(random, 1, 3000);
            await writeAll(conn, input.subarray(offset, offset + size));
            offset += size;
          }
          await conn.closeWrite();
          const { bytes } = await within(10_000, "replies", reading);
          conn.close();
          const replies = decoder.decode(concat(bytes));
          if (limit === Infinity) {
            assertEquals(replies, "hello\n100000 bytes\nworld\n");
            assertEquals(stats.tooLarge, 0);
          } else {
            assertEquals(replies, "hello\nERR\nworld\n");
            assertEquals(stats.tooLarge, 1);
            assertLessOrEqual(stats.maxCollected, limit);
          }
          closeAll(map);
          await running;
        });
      }
    },
  );
});

// ---------------------------------------------------------------------------
// Handler faults

class Boom extends Error {
  constructor(where: string) {
    super(`boom in ${where}`);
    this.name = "Boom";
  }
}

type Where =
  | "handleRead"
  | "handleWrite"
  | "handleConnect"
  | "handleClose"
  | "handleAccept"
  | "handleAccepted"
  | "handleExpt"
  | "handleTimeout"
  | "readable"
  | "writable"
  | "handleError"
  | "close";

/** Every handler a test can make throw; `handleError` records first. */
class Faulty extends Dispatcher {
  readonly throwIn: Set<Where>;
  readonly errors: unknown[];
  keepOpenOnError = false;
  thrown: unknown = undefined;

  constructor(
    sock: Socket | undefined,
    map: ChannelMap,
    errors: unknown[],
    ...throwIn: Where[]
  ) {
    super(sock, map);
    this.errors = errors;
    this.throwIn = new Set(throwIn);
    if (this.throwIn.has("handleTimeout")) this.idleTimeout = 20;
  }

  #maybe(where: Where): void {
    if (!this.throwIn.has(where)) return;
    this.thrown = this.thrown ?? new Boom(where);
    throw this.thrown;
  }

  override readable(): boolean {
    this.#maybe("readable");
    return true;
  }
  override writable(): boolean {
    this.#maybe("writable");
    return !this.connected || this.throwIn.has("handleWrite");
  }
  override handleRead(): void {
    this.#maybe("handleRead");
    this.recv(4096);
  }
  override handleWrite(): void {
    this.#maybe("handleWrite");
  }
  override handleConnect(): void {
    this.#maybe("handleConnect");
  }
  override handleClose(): void {
    this.#maybe("handleClose");
    this.close();
  }
  override handleAccept(): void {
    this.#maybe("handleAccept");
    super.handleAccept();
  }
  override handleAccepted(sock: Socket, addr: Deno.Addr): void {
    this.#maybe("handleAccepted");
    super.handleAccepted(sock, addr);
  }
  override handleExpt(): void {
    this.#maybe("handleExpt");
  }
  override handleTimeout(): void {
    this.#maybe("handleTimeout");
    this.close();
  }
  override handleError(error: unknown): void {
    this.errors.push(error);
    if (this.keepOpenOnError) return;
    if (this.throwIn.has("handleError")) throw new Boom("handleError");
    super.handleError(error);
  }
  override close(): void {
    if (this.throwIn.has("close")) throw new Boom("close");
    super.close();
  }
}

interface FaultContext {
  map: ChannelMap;
  /** The echo server's port. */
  port: number;
  /** What the faulty channels' handleError() received. */
  errors: unknown[];
  /** What the library logged. */
  lines: string[];
  /** A listener whose accepted connections become Faulty channels. */
  faultyServer(...throwIn: Where[]): Promise<{
    channel: () => Faulty | undefined;
    conn: Deno.Conn;
  }>;
}

/** Runs `body` on a served map and checks the witness was served after it. */
async function withFault(
  usePoll: boolean,
  body: (ctx: FaultContext) => Promise<void>,
): Promise<void> {
  const { map, port } = echoMap();
  const errors: unknown[] = [];
  const listeners: Server[] = [];
  const conns: Deno.Conn[] = [];
  await captureLogs(async (lines) => {
    const running = serve(map, 20_000, "handler fault", { usePoll });
    const ctx: FaultContext = {
      map,
      port,
      errors,
      lines,
      async faultyServer(...throwIn) {
        let made: Faulty | undefined;
        const server = new Server(map, (sock, m) => {
          made = new Faulty(sock, m, errors, ...throwIn);
        });
        listeners.push(server);
        const conn = await Deno.connect({
          hostname: "127.0.0.1",
          port: server.port,
        });
        conns.push(conn);
        await until(() => made !== undefined, 5000, "accepted");
        return { channel: () => made, conn };
      },
    };
    try {
      await body(ctx);
      // Every other channel goes on.
      await within(10_000, "witness", witness(port, 10));
    } finally {
      for (const conn of conns) conn.close();
      closeAll(map, true);
      await running;
    }
  });
}

/** The channel left its map and its socket is closed. */
function assertClosed(channel: Dispatcher | undefined, map: ChannelMap): void {
  assert(channel !== undefined);
  assert(channel.socket?.closed, `${channel} is closed`);
  assert(![...map.values()].includes(channel), `${channel} left the map`);
}

function assertBooms(errors: unknown[], where: Where, count = 1): void {
  assertEquals(errors.length, count, `errors: ${errors}`);
  for (const error of errors) {
    assertInstanceOf(error, Boom);
    assertEquals(error.message, `boom in ${where}`);
  }
}

const FAULT_CASES: [string, (ctx: FaultContext) => Promise<void>][] = [
  ["handleRead", async ({ map, errors, faultyServer }) => {
    const { channel, conn } = await faultyServer("handleRead");
    await writeAll(conn, encoder.encode("x"));
    await until(() => errors.length > 0, 5000, "fault reported");
    await until(() => channel()!.socket!.closed, 5000, "closed");
    assertBooms(errors, "handleRead");
    assertClosed(channel(), map);
    assertEquals((await hashToEnd(conn)).hash.length, 0);
  }],
  ["handleWrite", async ({ map, errors, faultyServer }) => {
    const { channel } = await faultyServer("handleWrite");
    await until(() => errors.length > 0, 5000, "fault reported");
    assertBooms(errors, "handleWrite");
    assertClosed(channel(), map);
  }],
  ["handleConnect", async ({ map, port, errors }) => {
    const client = new Faulty(undefined, map, errors, "handleConnect");
    client.createSocket();
    client.connect({ hostname: "127.0.0.1", port });
    await until(() => errors.length > 0, 5000, "fault reported");
    assertBooms(errors, "handleConnect");
    assertClosed(client, map);
  }],
  ["handleClose (then handleError's own handleClose throws too)", async (
    { map, errors, lines, faultyServer },
  ) => {
    const { channel, conn } = await faultyServer("handleClose");
    await conn.closeWrite();
    await until(() => errors.length > 0, 5000, "fault reported");
    await until(() => channel()!.socket!.closed, 5000, "closed");
    assertBooms(errors, "handleClose");
    assertClosed(channel(), map);
    assert(lines.some((line) => line.includes("handleError failed")));
  }],
  ["handleAccept", async ({ map, errors }) => {
    const listener = new Faulty(undefined, map, errors, "handleAccept");
    listener.createSocket();
    listener.bind({ hostname: "127.0.0.1", port: 0 });
    listener.listen(5);
    // The pending connection is closed with the listener. On the epoll
    // backend the kernel resets the connection it had queued, maybe before
    // Deno reports the connect.
    const resetOnEpoll = (error: unknown) => {
      const reset = error instanceof Deno.errors.ConnectionReset;
      if (!(reset && BACKEND === "epoll")) throw error;
    };
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: portOf(listener),
    }).catch(resetOnEpoll);
    await until(() => errors.length > 0, 5000, "fault reported");
    assertBooms(errors, "handleAccept");
    assertClosed(listener, map);
    if (conn) {
      const { hash, error } = await hashToEnd(conn);
      if (error) resetOnEpoll(error);
      assertEquals(hash.length, 0);
      conn.close();
    }
  }],
  [
    "handleAccepted (the listener stays; accepted sockets are not leaked)",
    async (
      { map, errors },
    ) => {
      const listener = new Faulty(undefined, map, errors, "handleAccepted");
      listener.keepOpenOnError = true;
      listener.createSocket();
      listener.bind({ hostname: "127.0.0.1", port: 0 });
      listener.listen(5);
      for (let i = 1; i <= 3; i++) {
        const conn = await Deno.connect({
          hostname: "127.0.0.1",
          port: portOf(listener),
        });
        await until(() => errors.length === i, 5000, "fault reported");
        // The socket no channel took was closed: the client sees the end.
        const { hash, error } = await hashToEnd(conn);
        assertEquals([hash.length, error], [0, null]);
        conn.close();
      }
      assertBooms(errors, "handleAccepted", 3);
      assert(map.get(listener.fileno()) === listener, "still listening");
    },
  ],
  ["handleExpt", async ({ map, errors, faultyServer }) => {
    const { channel } = await faultyServer("handleExpt");
    // Stream sockets have no urgent data: deliver the event directly.
    readwrite(channel()!, POLLPRI);
    assertBooms(errors, "handleExpt");
    assertClosed(channel(), map);
  }],
  ["handleTimeout", async ({ map, errors, faultyServer }) => {
    const { channel } = await faultyServer("handleTimeout");
    await until(() => errors.length > 0, 5000, "fault reported");
    assertBooms(errors, "handleTimeout");
    assertClosed(channel(), map);
  }],
  ["readable()", async ({ map, errors, faultyServer }) => {
    const { channel } = await faultyServer("readable");
    await until(() => errors.length > 0, 5000, "fault reported");
    assertBooms(errors, "readable");
    assertClosed(channel(), map);
  }],
  ["writable()", async ({ map, errors, faultyServer }) => {
    const { channel } = await faultyServer("writable");
    await until(() => errors.length > 0, 5000, "fault reported");
    assertBooms(errors, "writable");
    assertClosed(channel(), map);
  }],
  ["a timer bound to the channel", async ({ map, errors, faultyServer }) => {
    const { channel } = await faultyServer();
    callLater(5, () => {
      throw new Boom("timer");
    }, { map, channel: channel() });
    await until(() => errors.length > 0, 5000, "fault reported");
    assertInstanceOf(errors[0], Boom);
    assertEquals(errors[0].message, "boom in timer");
    assertClosed(channel(), map);
  }],
  ["handleError itself", async ({ map, errors, lines, faultyServer }) => {
    const { channel, conn } = await faultyServer("handleRead", "handleError");
    await writeAll(conn, encoder.encode("x"));
    await until(() => channel()!.socket!.closed, 5000, "closed");
    assertBooms(errors, "handleRead");
    assertClosed(channel(), map);
    assert(lines.some((line) => line.includes("handleError failed")));
  }],
  [
    "handleError, and close() as well",
    async ({ map, errors, lines, faultyServer }) => {
      const { channel, conn } = await faultyServer(
        "handleRead",
        "handleError",
        "close",
      );
      await writeAll(conn, encoder.encode("x"));
      await until(() => channel()!.socket!.closed, 5000, "closed");
      assertBooms(errors, "handleRead");
      assertClosed(channel(), map);
      assert(lines.some((line) => line.includes("handleError failed")));
    },
  ],
  ["a thrown non-Error value", async ({ map, errors, lines, faultyServer }) => {
    const { channel, conn } = await faultyServer("handleRead");
    channel()!.thrown = "just a string";
    await writeAll(conn, encoder.encode("x"));
    await until(() => channel()!.socket!.closed, 5000, "closed");
    assertEquals(errors, ["just a string"]);
    assertClosed(channel(), map);
    assert(lines.some((line) => line.includes("just a string")));
  }],
];

for (const [name, body] of FAULT_CASES) {
  Deno.test(`handler faults: throwing from ${name} reaches handleError, the loop goes on`, async (t) => {
    for (const usePoll of [false, true]) {
      await t.step(usePoll ? "poll2" : "poll", () => withFault(usePoll, body));
    }
  });
}

Deno.test("handler faults: AsyncChat handlers and producers", async (t) => {
  type ChatWhere =
    | "foundTerminator"
    | "collectIncomingData"
    | "more"
    | "handleRecordTooLarge";
  for (
    const where of [
      "foundTerminator",
      "collectIncomingData",
      "more",
      "handleRecordTooLarge",
    ] as ChatWhere[]
  ) {
    await t.step(where, () =>
      withFault(false, async ({ map, errors }) => {
        let chat: AsyncChat | undefined;
        class Chat extends AsyncChat {
          constructor(sock: Socket, m: ChannelMap) {
            super(sock, m);
            this.setTerminator("\n");
            this.maxRecordSize = 16;
          }
          override collectIncomingData(data: Uint8Array): void {
            if (where === "collectIncomingData") {
              throw new Boom("collectIncomingData");
            }
            super.collectIncomingData(data);
          }
          override foundTerminator(): void {
            if (where === "foundTerminator") throw new Boom("foundTerminator");
            const line = this.getData();
            this.pushWithProducer({
              more: () => {
                if (where === "more") throw new Boom("more");
                return "";
              },
            });
            this.push(line);
          }
          override handleRecordTooLarge(): void {
            throw new Boom("handleRecordTooLarge");
          }
          override handleError(error: unknown): void {
            errors.push(error);
            super.handleError(error);
          }
        }
        const server = new Server(map, (sock, m) => {
          chat = new Chat(sock, m);
        });
        const conn = await Deno.connect({
          hostname: "127.0.0.1",
          port: server.port,
        });
        await writeAll(
          conn,
          encoder.encode(
            where === "handleRecordTooLarge"
              ? "a line far longer than sixteen bytes\n"
              : "line\n",
          ),
        );
        await until(() => errors.length > 0, 5000, "fault reported");
        assertInstanceOf(errors[0], Boom);
        assertEquals((errors[0] as Error).message, `boom in ${where}`);
        assertClosed(chat, map);
        assertEquals((await hashToEnd(conn)).error, null);
        conn.close();
        server.close();
      }));
  }
});

Deno.test("bounded input: the limit in detail (no socket)", () => {
  // Feeds reads directly, as the socket would.
  class Feed extends AsyncChat {
    records: string[] = [];
    tooLarge = 0;
    #input = new Uint8Array(0);
    override recv(): Uint8Array {
      return this.#input;
    }
    feed(...reads: string[]): void {
      for (const read of reads) {
        this.#input = encoder.encode(read);
        this.handleRead();
      }
    }
    override foundTerminator(): void {
      this.records.push(decoder.decode(this.getData()));
    }
    override handleRecordTooLarge(): void {
      this.tooLarge++;
    }
  }
  const make = (limit: number, term: string | number = "\r\n") => {
    const chat = new Feed(undefined, new Map());
    chat.setTerminator(term);
    chat.maxRecordSize = limit;
    return chat;
  };

  // Exactly the limit passes; one more byte does not, wherever reads cut.
  let chat = make(5);
  chat.feed("12", "345\r", "\n123456\r\nok\r\n");
  assertEquals(chat.records, ["12345", "ok"]);
  assertEquals(chat.tooLarge, 1);

  // A "\r" held back as a possible terminator start is not counted early.
  chat = make(5);
  chat.feed("12345\r", "\n");
  assertEquals([chat.records, chat.tooLarge], [["12345"], 0]);

  // An overflow skips to the end of that record, then reading goes on.
  chat = make(3);
  chat.feed("abcdefgh", "ijkl", "mn\r\nxy\r\n");
  assertEquals([chat.records, chat.tooLarge], [["xy"], 1]);

  // One call per record, however long it grows.
  chat = make(3);
  for (let i = 0; i < 100; i++) chat.feed("xxxxxxxxxx");
  chat.feed("\r\nz\r\n");
  assertEquals([chat.records, chat.tooLarge], [["z"], 1]);

  // Infinity turns it off; byte counts and null are not limited.
  chat = make(Infinity);
  chat.feed("a".repeat(200_000) + "\r\n");
  assertEquals([chat.records[0].length, chat.tooLarge], [200_000, 0]);
  chat = make(3, 10);
  chat.feed("0123456789");
  assertEquals([chat.records, chat.tooLarge], [["0123456789"], 0]);

  // The default limit (its default handler is tested over a socket above).
  assertEquals(new AsyncChat(undefined, new Map()).maxRecordSize, 65536);
});

Deno.test("bounded input: the netstring example refuses an over-long declared length before the body", async () => {
  const { TransformFactory, TransformService } = await import(
    "../examples/transform_server.ts"
  );
  const { socketMap } = await import("../asyncore.ts");
  assertEquals(socketMap.size, 0, "the default map is free");
  await captureLogs(async (lines) => {
    const factory = new TransformFactory(
      new TransformService(),
      { hostname: "127.0.0.1", port: 0 },
      1000,
    );
    const running = serve(socketMap, 20_000, "transform server");
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: portOf(factory),
    });
    const reading = hashToEnd(conn);
    // Declares 10 MB and starts sending it: the server closes at once,
    // so the body meets a closed connection long before its end.
    let written = 0;
    let writeError: unknown = null;
    try {
      await writeAll(conn, encoder.encode("10000000:"));
      const chunk = new Uint8Array(65536).fill(0x61);
      while (written < 10_000_000) {
        written += await conn.write(chunk);
      }
    } catch (error) {
      writeError = error;
    }
    const { bytes } = await within(10_000, "closed", reading);
    conn.close();
    assertEquals(concat(bytes).length, 0, "no answer");
    assert(writeError !== null, `the server read all ${written} bytes`);
    assert(lines.some((line) => line.includes("declared length 10000000")));
    await until(() => socketMap.size === 1, 5000, "the channel closed");
    factory.close();
    await running;
  });
});
