// The Web Streams bridge (streams.ts) and the AsyncProducer protocol it rests
// on, over real loopback sockets: a stream relayed byte for byte, a slow
// reader that must push back on the stream rather than grow memory, errors
// reaching handleError(), and backpressure both ways through StreamChannel.

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertLessOrEqual,
  assertRejects,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import { TextLineStream, toText } from "@std/streams";
import { AsyncChat, type AsyncProducer } from "../asynchat.ts";
import type { ChannelMap } from "../asyncore.ts";
import { StreamChannel, StreamProducer } from "../streams.ts";
import {
  FAMILIES,
  type Family,
  isPattern,
  pattern,
  runLoop,
  writeAll,
} from "./_helpers.ts";
import { captureLogs, settled, until } from "./_reliability_helpers.ts";

const PERIOD_CHUNK = pattern(251 * 256); // 64,256 bytes; the pattern repeats
const MiB = 1024 * 1024;

/**
 * A connected pair of loopback connections, ours and the peer's: TCP over
 * IPv4 unless another family is given.
 */
async function connectedPair(
  family: Family = FAMILIES[0],
): Promise<[Deno.Conn, Deno.Conn]> {
  using endpoint = family.endpoint();
  const bound = endpoint.bindAddress;
  using listener = "path" in bound
    ? Deno.listen({ transport: "unix", path: bound.path })
    : Deno.listen({ hostname: bound.hostname!, port: 0 });
  const addr = listener.addr;
  return await Promise.all([
    addr.transport === "unix"
      ? Deno.connect({ transport: "unix", path: addr.path })
      : Deno.connect({
        hostname: (addr as Deno.NetAddr).hostname,
        port: (addr as Deno.NetAddr).port,
      }),
    listener.accept(),
  ]);
}

/**
 * A stream of `total` bytes of the period-251 pattern, made only when
 * pulled (no read-ahead of its own), counting how far it was pulled.
 */
function patternSource(total: number) {
  let pulled = 0;
  const cancelled = Promise.withResolvers<unknown>();
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= total) {
        controller.close();
        return;
      }
      const piece = PERIOD_CHUNK.subarray(
        0,
        Math.min(PERIOD_CHUNK.length, total - pulled),
      );
      pulled += piece.length;
      controller.enqueue(piece);
    },
    cancel(reason) {
      cancelled.resolve(reason);
    },
  }, { highWaterMark: 0 });
  return { stream, pulled: () => pulled, cancelled: cancelled.promise };
}

/** Reads `conn` to its end, checking the pattern; returns the byte count. */
async function readPattern(
  conn: Deno.Conn,
  gate?: Promise<void>,
): Promise<number> {
  await gate;
  let count = 0;
  const buffer = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) return count;
    assert(isPattern(buffer.subarray(0, n), count), `pattern at ${count}`);
    count += n;
  }
}

/** Writes `total` pattern bytes to `conn`, counting what it accepted. */
function writePattern(conn: Deno.Conn, total: number) {
  let written = 0;
  const done = (async () => {
    while (written < total) {
      const piece = PERIOD_CHUNK.subarray(
        0,
        Math.min(PERIOD_CHUNK.length, total - written),
      );
      let offset = 0;
      while (offset < piece.length) {
        const n = await conn.write(piece.subarray(offset));
        offset += n;
        written += n;
      }
    }
  })();
  return { done, written: () => written };
}

/** An AsyncChat that records the errors reaching handleError(). */
class Recorder extends AsyncChat {
  errors: unknown[] = [];
  override handleError(error: unknown): void {
    this.errors.push(error);
    this.close();
  }
}

for (const family of FAMILIES) {
  Deno.test({
    name:
      `StreamProducer relays a stream larger than every buffer, byte for byte (${family.name})`,
    ignore: family.ignore,
    fn: () => relayInOrder(family),
  });
}

async function relayInOrder(family: Family): Promise<void> {
  const [conn, peer] = await connectedPair(family);
  const map: ChannelMap = new Map();
  const channel = new AsyncChat(conn, map);
  const total = 8 * MiB + 1234;
  const source = patternSource(total);
  const producer = new StreamProducer(source.stream);
  channel.push("");
  channel.pushWithProducer(producer);
  channel.push(pattern(10, total % 251)); // after the stream, in order
  channel.closeWhenDone();
  const [received] = await Promise.all([
    readPattern(peer),
    runLoop(map, { bound: 20_000 }),
  ]);
  peer.close();
  assertEquals(received, total + 10);
  assertEquals(source.pulled(), total);
  assertEquals(producer.bytesRead, total);
  assertEquals(producer.buffered, 0);
}

Deno.test("StreamProducer: a peer that stops reading stops the stream being pulled", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const total = 32 * MiB;
  const highWaterMark = 65536;
  const source = patternSource(total);
  const producer = new StreamProducer(source.stream, { highWaterMark });
  let maxSendBuffered = 0;
  let maxProducerBuffered = 0;
  const sample = () => {
    maxSendBuffered = Math.max(maxSendBuffered, channel.sendBuffered);
    maxProducerBuffered = Math.max(maxProducerBuffered, producer.buffered);
  };
  class Watched extends AsyncChat {
    override initiateSend(): void {
      super.initiateSend();
      sample();
    }
  }
  const channel = new Watched(conn, map);
  channel.pushWithProducer(producer);
  channel.closeWhenDone();
  const reading = Promise.withResolvers<void>();
  const received = readPattern(peer, reading.promise);
  const looping = runLoop(map, { bound: 30_000 });

  // The peer reads nothing: the pulling must stop, at the sum of the
  // kernel's buffers and ours, far short of the whole stream.
  const stalledAt = await settled(
    () => {
      sample();
      return source.pulled();
    },
    300,
    15_000,
    "pulling the source",
  );
  const socket = channel.socket!;
  assert(
    stalledAt < total / 4,
    `pulled ${stalledAt} of ${total} bytes from a stream the peer does not read`,
  );
  assertLessOrEqual(stalledAt - producer.bytesRead, PERIOD_CHUNK.length);
  assertLessOrEqual(maxProducerBuffered, highWaterMark + PERIOD_CHUNK.length);
  assertLessOrEqual(
    maxSendBuffered,
    socket.sendBufferSize + PERIOD_CHUNK.length,
  );
  assertEquals(socket.sendBuffered, socket.sendBufferSize); // full: waiting

  reading.resolve();
  assertEquals(await received, total);
  await looping;
  peer.close();
  assertEquals(source.pulled(), total);
  assertLessOrEqual(maxProducerBuffered, highWaterMark + PERIOD_CHUNK.length);
});

Deno.test("StreamProducer: a stream that errors reaches handleError() after the bytes read before it", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const channel = new Recorder(conn, map);
  const failure = new Error("the source broke");
  let step = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (step++ === 0) controller.enqueue(pattern(1000));
      else controller.error(failure);
    },
  });
  channel.pushWithProducer(new StreamProducer(stream));
  channel.push("never sent");
  const [received] = await Promise.all([readPattern(peer), runLoop(map)]);
  peer.close();
  assertEquals(received, 1000);
  assertEquals(channel.errors.length, 1);
  assertStrictEquals(channel.errors[0], failure);
});

Deno.test("StreamProducer: a chunk that is not a Uint8Array is a TypeError in handleError()", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const channel = new Recorder(conn, map);
  const stream = ReadableStream.from(["text"]) as unknown as ReadableStream<
    Uint8Array
  >;
  channel.pushWithProducer(new StreamProducer(stream));
  const [received] = await Promise.all([readPattern(peer), runLoop(map)]);
  peer.close();
  assertEquals(received, 0);
  assertInstanceOf(channel.errors[0], TypeError);
  assert(String(channel.errors[0]).includes(`got "text"`));
});

Deno.test("StreamProducer: a channel closed with it queued cancels the stream", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const channel = new AsyncChat(conn, map);
  const source = patternSource(64 * MiB);
  const producer = new StreamProducer(source.stream);
  channel.pushWithProducer(producer);
  const looping = runLoop(map);
  await until(() => producer.bytesRead > 0, 5000, "the first read");
  channel.close();
  await looping;
  await source.cancelled;
  peer.close();
  assertEquals(producer.buffered, 0);
  assertEquals(producer.more(), new Uint8Array(0));
});

Deno.test("StreamProducer checks its arguments", async () => {
  assertThrows(
    () => new StreamProducer("text" as unknown as ReadableStream<Uint8Array>),
    TypeError,
    'stream must be a ReadableStream, got "text"',
  );
  const stream = new ReadableStream<Uint8Array>();
  const reader = stream.getReader();
  assertThrows(() => new StreamProducer(stream), TypeError, "locked");
  reader.releaseLock();
  assertThrows(
    () => new StreamProducer(stream, { highWaterMark: 0 }),
    RangeError,
    "options.highWaterMark",
  );
  await stream.cancel();
});

Deno.test("AsyncChat waits on an AsyncProducer's promise without spinning, and keeps order", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  let writes = 0;
  class Counting extends AsyncChat {
    override handleWrite(): void {
      writes++;
      super.handleWrite();
    }
  }
  const channel = new Counting(conn, map);
  const arrived = Promise.withResolvers<void>();
  const pieces: string[] = [];
  let ended = false;
  const later: AsyncProducer = {
    more: () => pieces.shift() ?? (ended ? "" : arrived.promise),
  };
  channel.push("a");
  channel.pushWithProducer(later);
  channel.push("c");
  channel.closeWhenDone();
  const text = toText(peer.readable);
  const looping = runLoop(map);
  await until(() => !channel.writable(), 5000, "waiting on the producer");
  const before = writes;
  // The loop must sleep, not poll a producer that has nothing.
  await settled(() => writes, 200, 5000, "write events while waiting");
  assertLessOrEqual(writes - before, 1);
  pieces.push("b");
  ended = true;
  arrived.resolve();
  await looping;
  assertEquals(await text, "abc");
});

Deno.test("AsyncChat: an AsyncProducer's rejected promise reaches handleError()", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const channel = new Recorder(conn, map);
  const failure = new Error("no more, ever");
  channel.pushWithProducer({ more: () => Promise.reject(failure) });
  await runLoop(map);
  peer.close();
  assertEquals(channel.errors, [failure]);
});

Deno.test("StreamChannel: lines through TextLineStream, answers through its writable", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const channel = new StreamChannel(conn, map);
  const served = channel.readableStream
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new TextLineStream())
    .pipeThrough(
      new TransformStream<string, string>({
        transform: (line, out) => out.enqueue(`${line.length}\n`),
      }),
    )
    .pipeThrough(new TextEncoderStream())
    .pipeTo(channel.writableStream);
  const lines = Array.from({ length: 1000 }, (_, i) => "x".repeat(i % 97));
  const writing = (async () => {
    await writeAll(peer, new TextEncoder().encode(lines.join("\n") + "\n"));
    await peer.closeWrite();
  })();
  const [answer] = await Promise.all([
    toText(peer.readable),
    runLoop(map),
    served,
    writing,
  ]);
  assertEquals(answer, lines.map((line) => `${line.length}\n`).join(""));
});

Deno.test("StreamChannel: gzip through CompressionStream", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const channel = new StreamChannel(conn, map);
  const served = channel.readableStream
    .pipeThrough(new CompressionStream("gzip"))
    .pipeTo(channel.writableStream);
  const input = pattern(3 * MiB);
  const writing = (async () => {
    const writer = peer.writable.getWriter();
    await writer.write(input);
    writer.releaseLock();
    await peer.closeWrite();
  })();
  const [unzipped] = await Promise.all([
    new Response(
      peer.readable.pipeThrough(new DecompressionStream("gzip")),
    ).bytes(),
    runLoop(map, { bound: 20_000 }),
    served,
    writing,
  ]);
  assertEquals(unzipped.length, input.length);
  assert(isPattern(unzipped));
});

Deno.test("StreamChannel: a reader that stops reading stops the channel reading, and the peer is pushed back", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const highWaterMark = 65536;
  const channel = new StreamChannel(conn, map, { highWaterMark });
  const total = 32 * MiB;
  const writer = writePattern(peer, total);
  const looping = runLoop(map, { bound: 30_000 });
  const stalledAt = await settled(
    writer.written,
    300,
    15_000,
    "the peer's writes",
  );
  assert(stalledAt < total / 4, `the peer wrote ${stalledAt} of ${total}`);
  assertEquals(channel.readable(), false);
  assertLessOrEqual(
    channel.socket!.recvBuffered,
    channel.socket!.recvBufferSize,
  );

  // Now read it all: everything arrives, in order, and the channel closes
  // at the peer's end since its writable side is not in use.
  let count = 0;
  const reading = (async () => {
    for await (const chunk of channel.readableStream) {
      assert(isPattern(chunk, count), `pattern at ${count}`);
      count += chunk.length;
    }
  })();
  await writer.done;
  peer.close();
  await Promise.all([reading, looping]);
  assertEquals(count, total);
});

Deno.test("StreamChannel: writes wait while the peer does not read, holding a bounded amount", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const channel = new StreamChannel(conn, map);
  const total = 32 * MiB;
  let accepted = 0;
  let maxSendBuffered = 0;
  const writing = (async () => {
    const writer = channel.writableStream.getWriter();
    for (let offset = 0; offset < total; offset += PERIOD_CHUNK.length) {
      await writer.write(PERIOD_CHUNK);
      accepted += PERIOD_CHUNK.length;
      maxSendBuffered = Math.max(maxSendBuffered, channel.sendBuffered);
    }
    await writer.close(); // a half-close once all is sent
  })();
  const reading = Promise.withResolvers<void>();
  const received = readPattern(peer, reading.promise);
  const looping = runLoop(map, { bound: 30_000 });
  const stalledAt = await settled(() => accepted, 300, 15_000, "the writes");
  assert(stalledAt < total / 4, `${stalledAt} of ${total} bytes accepted`);
  const socket = channel.socket!;
  assertLessOrEqual(maxSendBuffered, socket.sendBufferSize);
  assertLessOrEqual(
    channel.sendBuffered,
    socket.sendBufferSize + PERIOD_CHUNK.length,
  );

  reading.resolve();
  const count = await received; // ends at the half-close
  assertEquals(
    count,
    Math.ceil(total / PERIOD_CHUNK.length) * PERIOD_CHUNK.length,
  );
  await writing;
  peer.close();
  await looping;
});

Deno.test("StreamChannel: an error in a handler errors both streams", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const failure = new Error("handler bug");
  class Faulty extends StreamChannel {
    override handleRead(): void {
      throw failure;
    }
  }
  const channel = new Faulty(conn, map);
  await peer.write(new Uint8Array([1]));
  await captureLogs(() => runLoop(map));
  peer.close();
  await assertRejects(() => channel.readableStream.getReader().read());
  const writer = channel.writableStream.getWriter();
  const error = await writer.write(new Uint8Array([1])).catch((e) => e);
  assertStrictEquals(error, failure);
});

Deno.test("StreamChannel: closing the channel errors its readable stream", async () => {
  const [conn, peer] = await connectedPair();
  const map: ChannelMap = new Map();
  const channel = new StreamChannel(conn, map);
  const reading = channel.readableStream.getReader().read();
  const looping = runLoop(map);
  channel.close();
  await looping;
  peer.close();
  await assertRejects(() => reading, Deno.errors.BadResource);
});

Deno.test("StreamChannel as a client: what is written before the connect completes is sent", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const map: ChannelMap = new Map();
  const channel = new StreamChannel(undefined, map);
  channel.createSocket();
  channel.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const writer = channel.writableStream.getWriter();
  const written = writer.write(new TextEncoder().encode("ping"))
    .then(() => writer.close()); // a half-close once "ping" is sent
  const answer = toText(channel.readableStream);
  const looping = runLoop(map);
  const peer = await listener.accept();
  // Reading to the end (our half-close) closes the peer's connection too.
  assertEquals(await toText(peer.readable), "ping");
  await written;
  await looping;
  assertEquals(await answer, "");
});

Deno.test("StreamChannel as a client: closing its writable before the connect completes half-closes once connected", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const map: ChannelMap = new Map();
  const channel = new StreamChannel(undefined, map);
  channel.createSocket();
  channel.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const closed = channel.writableStream.close();
  const looping = runLoop(map);
  const peer = await listener.accept();
  assertEquals(await toText(peer.readable), ""); // our end of stream
  await closed;
  await looping;
});
