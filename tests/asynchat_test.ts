// AsyncChat: CPython's test_asynchat cases over real loopback sockets, then
// input splitting and the output queue in detail.

import {
  AsyncChat,
  findPrefixAtEnd,
  type Producer,
  SimpleProducer,
  type Terminator,
} from "../asynchat.ts";
import { type ChannelMap, Dispatcher } from "../asyncore.ts";
import type { Socket } from "../select.ts";
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertLessOrEqual,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { concat, indexOfNeedle } from "@std/bytes";
import {
  bytes,
  connectAddress,
  FAMILIES,
  pattern,
  runLoop,
  text,
  within,
} from "./_asynchat_helpers.ts";
import {
  dataSegmentsIn,
  epollUnsupported,
  skipNote,
} from "./_epoll_helpers.ts";
import { isDisconnect } from "./_helpers.ts";

// ---------------------------------------------------------------------------
// CPython's test_asynchat, over real sockets.

const SERVER_QUIT = bytes("QUIT\n");

/**
 * CPython's echo_server thread, as a task: collects until QUIT, then sends
 * everything but the QUIT back in writes of `chunkSize` bytes and closes.
 */
function startEchoServer(
  chunkSize = 1,
  startResend?: Promise<void>,
): { port: number; received: Promise<Uint8Array> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const received = (async () => {
    try {
      const conn = await listener.accept();
      try {
        let buffer: Uint8Array = new Uint8Array(0);
        const block = new Uint8Array(4096);
        while (indexOfNeedle(buffer, SERVER_QUIT) < 0) {
          const n = await conn.read(block);
          if (n === null) break;
          buffer = concat([buffer, block.subarray(0, n)]);
        }
        const at = indexOfNeedle(buffer, SERVER_QUIT);
        if (at >= 0) {
          buffer = concat([
            buffer.subarray(0, at),
            buffer.subarray(at + SERVER_QUIT.length),
          ]);
        }
        await startResend;
        try {
          for (let i = 0; i < buffer.length; i += chunkSize) {
            let piece = buffer.subarray(i, i + chunkSize);
            while (piece.length > 0) {
              piece = piece.subarray(await conn.write(piece));
            }
          }
        } catch (error) {
          // The client may have closed already (closeWhenDone).
          if (!isDisconnect(error)) throw error;
        }
        return buffer;
      } finally {
        conn.close();
      }
    } finally {
      listener.close();
    }
  })();
  return { port, received };
}

/** CPython's echo_client. */
class EchoClient extends AsyncChat {
  contents: string[] = [];
  buffer: Uint8Array = new Uint8Array(0);

  constructor(terminator: Terminator, port: number, map: ChannelMap) {
    super(undefined, map);
    this.createSocket();
    this.connect({ hostname: "127.0.0.1", port });
    this.setTerminator(terminator);
  }

  override handleConnect(): void {}

  override collectIncomingData(data: Uint8Array): void {
    this.buffer = concat([this.buffer, data]);
  }

  override foundTerminator(): void {
    this.contents.push(text(this.buffer));
    this.buffer = new Uint8Array(0);
  }
}

const FLAVOURS = [
  { name: "select", usePoll: false },
  { name: "poll", usePoll: true },
];

for (const { name, usePoll } of FLAVOURS) {
  for (const term of ["\n", "\r\n", "qqq"]) {
    Deno.test(`asynchat (${name}): ${term.length}-byte line terminator, read 1, 2 and 3 bytes at a time`, async (t) => {
      for (const chunk of [1, 2, 3]) {
        await t.step(`chunks of ${chunk}`, async () => {
          const map: ChannelMap = new Map();
          const server = startEchoServer(chunk);
          const c = new EchoClient(bytes(term), server.port, map);
          c.acInBufferSize = chunk; // every read splits the stream again
          c.push(bytes("hello "));
          c.push(bytes("world" + term));
          c.push(bytes("I'm not dead yet!" + term));
          c.push(SERVER_QUIT);
          await runLoop(map, { usePoll });
          await within(5000, "the echo server", server.received);
          assertEquals(c.contents, ["hello world", "I'm not dead yet!"]);
        });
      }
    });
  }

  Deno.test(`asynchat (${name}): numeric terminators`, async (t) => {
    const data = bytes("hello world, I'm not dead yet!\n");
    // [terminator, bytes per read]: 6 of 6 ends exactly at a read boundary;
    // 20 of 6 counts down over four reads.
    for (
      const [term, readSize] of [[1, 65536], [6, 65536], [6, 6], [12, 6], [
        20,
        6,
      ], [20, 1]]
    ) {
      await t.step(`${term} bytes, reads of ${readSize}`, async () => {
        const map: ChannelMap = new Map();
        const server = startEchoServer(3);
        const c = new EchoClient(term, server.port, map);
        c.acInBufferSize = readSize;
        c.push(data);
        c.push(SERVER_QUIT);
        await runLoop(map, { usePoll });
        await within(5000, "the echo server", server.received);
        assertEquals(c.contents, [text(data.subarray(0, term))]);
        // Once reached, the count is 0, which collects the rest.
        assertEquals(c.getTerminator(), 0);
        assertEquals(text(c.buffer), text(data.subarray(term)));
      });
    }
  });

  Deno.test(`asynchat (${name}): null terminator`, async () => {
    const map: ChannelMap = new Map();
    const server = startEchoServer(2);
    const c = new EchoClient(null, server.port, map);
    const data = bytes("hello world, I'm not dead yet!\n");
    c.push(data);
    c.push(SERVER_QUIT);
    await runLoop(map, { usePoll });
    await within(5000, "the echo server", server.received);
    assertEquals(c.contents, []);
    assertEquals(c.buffer, data);
  });

  Deno.test(`asynchat (${name}): simple producer`, async () => {
    const map: ChannelMap = new Map();
    const server = startEchoServer();
    const c = new EchoClient(bytes("\n"), server.port, map);
    const data = bytes("hello world\nI'm not dead yet!\n");
    c.pushWithProducer(
      new SimpleProducer(concat([data, SERVER_QUIT]), 8),
    );
    await runLoop(map, { usePoll });
    await within(5000, "the echo server", server.received);
    assertEquals(c.contents, ["hello world", "I'm not dead yet!"]);
  });

  Deno.test(`asynchat (${name}): string producer`, async (t) => {
    for (
      const data of [
        bytes("hello world\nI'm not dead yet!\nQUIT\n"),
        "hello world\nI'm not dead yet!\nQUIT\n",
      ]
    ) {
      await t.step(typeof data, async () => {
        const map: ChannelMap = new Map();
        const server = startEchoServer();
        const c = new EchoClient(bytes("\n"), server.port, map);
        c.pushWithProducer(data);
        await runLoop(map, { usePoll });
        await within(5000, "the echo server", server.received);
        assertEquals(c.contents, ["hello world", "I'm not dead yet!"]);
      });
    }
  });

  Deno.test(`asynchat (${name}): empty lines`, async () => {
    const map: ChannelMap = new Map();
    const server = startEchoServer();
    const c = new EchoClient(bytes("\n"), server.port, map);
    c.push(bytes("hello world\n\nI'm not dead yet!\n"));
    c.push(SERVER_QUIT);
    await runLoop(map, { usePoll });
    await within(5000, "the echo server", server.received);
    assertEquals(c.contents, ["hello world", "", "I'm not dead yet!"]);
  });

  Deno.test(`asynchat (${name}): closeWhenDone`, async () => {
    const map: ChannelMap = new Map();
    const { promise: resend, resolve } = Promise.withResolvers<void>();
    const server = startEchoServer(1, resend);
    const c = new EchoClient(bytes("\n"), server.port, map);
    c.push(bytes("hello world\nI'm not dead yet!\n"));
    c.push(SERVER_QUIT);
    c.closeWhenDone();
    await runLoop(map, { usePoll });
    // Echo only once the client has closed: it must not get anything back.
    resolve();
    const received = await within(5000, "the echo server", server.received);
    assertEquals(c.contents, []);
    assertEquals(c.connected, false);
    // Everything queued before closeWhenDone() was delivered.
    assertEquals(text(received), "hello world\nI'm not dead yet!\n");
  });

  Deno.test(`asynchat (${name}): push takes bytes, views and strings, nothing else`, async () => {
    const map: ChannelMap = new Map();
    const server = startEchoServer();
    const c = new EchoClient(bytes("\n"), server.port, map);
    const data = bytes("bytes\n");
    c.push(data);
    c.push(concat([bytes("xx"), data]).subarray(2)); // a view, like memoryview
    c.push("bytes\n"); // strings are UTF-8 (Python wants bytes)
    const error = assertThrows(
      () => c.push(10 as unknown as string),
      TypeError,
    );
    assertStringIncludes(error.message, "data");
    assertStringIncludes(error.message, "10");
    assertThrows(() => c.push(null as unknown as string), TypeError);
    c.push(SERVER_QUIT);
    await runLoop(map, { usePoll });
    await within(5000, "the echo server", server.received);
    assertEquals(c.contents, ["bytes", "bytes", "bytes"]);
  });
}

Deno.test("asynchat: handleRead ignores WouldBlock", () => {
  class Mocked extends AsyncChat {
    errors: unknown[] = [];
    override recv(): Uint8Array {
      throw new Deno.errors.WouldBlock("nothing buffered");
    }
    override handleError(error: unknown): void {
      this.errors.push(error);
    }
  }
  const chat = new Mocked(undefined, new Map());
  chat.handleRead();
  assertEquals(chat.errors, []);
});

Deno.test("asynchat: findPrefixAtEnd", () => {
  assertEquals(findPrefixAtEnd("qwerty\r", "\r\n"), 1);
  assertEquals(findPrefixAtEnd("qwertydkjf", "\r\n"), 0);
  assertEquals(findPrefixAtEnd(bytes("qwerty\r"), bytes("\r\n")), 1);
  // The longest proper prefix, never the whole needle.
  assertEquals(findPrefixAtEnd("abcab", "abcabd"), 5);
  assertEquals(findPrefixAtEnd("xabab", "ababc"), 4);
  assertEquals(findPrefixAtEnd("aba", "ab"), 1);
  assertEquals(findPrefixAtEnd("", "\r\n"), 0);
  assertEquals(findPrefixAtEnd("abc", ""), 0);
  // Strings are UTF-8: "→" is three bytes, E2 86 92.
  assertEquals(findPrefixAtEnd("x", "→"), 0);
  assertEquals(
    findPrefixAtEnd(new Uint8Array([120, 0xe2, 0x86]), "→"),
    2,
  );
  assertThrows(() => findPrefixAtEnd(1 as unknown as string, "a"), TypeError);
});

Deno.test("asynchat: bad terminators are refused, naming the argument", () => {
  const chat = new AsyncChat(undefined, new Map());
  for (const bad of [-1, 1.5, NaN, Infinity, -Infinity]) {
    const error = assertThrows(() => chat.setTerminator(bad), RangeError);
    assertStringIncludes(error.message, "term");
    assertStringIncludes(error.message, String(bad));
  }
  for (const bad of ["", new Uint8Array(0)]) {
    const error = assertThrows(() => chat.setTerminator(bad), RangeError);
    assertStringIncludes(error.message, "term must not be empty");
  }
  for (const bad of [true, {}, undefined, 1n, [13, 10], new ArrayBuffer(2)]) {
    const error = assertThrows(
      () => chat.setTerminator(bad as unknown as Terminator),
      TypeError,
    );
    assertStringIncludes(error.message, "term must be");
  }
  assertEquals(chat.getTerminator(), null); // unchanged by the failures
});

// ---------------------------------------------------------------------------
// Input splitting, fed without a socket.

type Event = string | null; // collected data as text, or null at a terminator

class Fed extends AsyncChat {
  events: Event[] = [];
  onTerminator: (chat: Fed) => void = () => {};
  #input: Uint8Array[] = [];

  constructor(term: Terminator) {
    super(undefined, new Map());
    this.setTerminator(term);
  }

  override recv(): Uint8Array {
    const chunk = this.#input.shift();
    if (chunk === undefined) throw new Deno.errors.WouldBlock();
    return chunk;
  }

  override collectIncomingData(data: Uint8Array): void {
    assert(data.length > 0, "collectIncomingData got an empty array");
    const last = this.events.length - 1;
    if (last >= 0 && this.events[last] !== null) {
      this.events[last] += text(data);
    } else {
      this.events.push(text(data));
    }
  }

  override foundTerminator(): void {
    this.events.push(null);
    this.onTerminator(this);
  }

  feed(...chunks: (string | Uint8Array)[]): Event[] {
    for (const chunk of chunks) {
      this.#input.push(typeof chunk === "string" ? bytes(chunk) : chunk);
      this.handleRead();
    }
    return this.events;
  }
}

Deno.test("asynchat: a terminator set in foundTerminator applies to the data already read", () => {
  // Pipelined requests, each a header line and a body whose length it gives,
  // all in one read.
  const chat = new Fed("\r\n");
  const bodies: string[] = [];
  let header = true;
  chat.onTerminator = (c) => {
    const last = c.events.at(-2) ?? "";
    if (!header) {
      bodies.push(last);
      c.setTerminator("\r\n");
    } else if (last === "0") {
      bodies.push("");
      return;
    } else {
      c.setTerminator(Number(last));
    }
    header = !header;
  };
  const crlfs = "\r\n\r\n\r\n\r"; // 7 bytes that look like terminators
  chat.feed(`5\r\nhello3\r\nabc0\r\n7\r\n${crlfs}\n\n`);
  assertEquals(bodies, ["hello", "abc", "", crlfs]);
  assertEquals(chat.getTerminator(), "\r\n");
  assertEquals(chat.events.at(-1), "\n\n");
});

Deno.test("asynchat: a terminator split over reads is found, down to 1-byte reads", () => {
  for (const term of ["\n", "\r\n", "qqq", "→", "\r\n.\r\n"]) {
    const stream = `a${term}${term}b${term.slice(0, -1)}c${term}`;
    const whole = new Fed(term).feed(stream);
    assertEquals(whole, [
      "a",
      null,
      null,
      `b${term.slice(0, -1)}c`,
      null,
    ]);
    const data = bytes(stream);
    const ones = Array.from(data, (_, i) => data.subarray(i, i + 1));
    assertEquals(
      new Fed(term).feed(...ones),
      whole,
      `term ${JSON.stringify(term)}`,
    );
  }
});

Deno.test("asynchat: only a possible terminator start is held back", () => {
  const chat = new Fed("\r\n");
  assertEquals(chat.feed("abc\r"), ["abc"]);
  assertEquals(chat.feed("x\r"), ["abc\rx"]);
  assertEquals(chat.feed("\n"), ["abc\rx", null]);
  // A terminator changed between reads applies to the held-back bytes.
  const other = new Fed("\r\n");
  other.feed("abc\r");
  other.setTerminator(null);
  assertEquals(other.feed("x"), ["abc\rx"]);
});

Deno.test("asynchat: a byte count counts down across reads", () => {
  const chat = new Fed(10);
  assertEquals(chat.feed("abcd"), ["abcd"]);
  assertEquals(chat.getTerminator(), 6);
  assertEquals(chat.feed("efghij"), ["abcdefghij", null]);
  assertEquals(chat.getTerminator(), 0);
  // 0 (and null) pass everything on without calling foundTerminator.
  assertEquals(chat.feed("klm"), ["abcdefghij", null, "klm"]);
  const none = new Fed(null);
  assertEquals(none.feed("a\r\n", "b"), ["a\r\nb"]);
});

Deno.test("asynchat: terminators given as bytes are copied", () => {
  const term = bytes("\r\n");
  const chat = new Fed(term);
  assertEquals(chat.getTerminator(), term);
  term[0] = 120; // "x\n" now; the channel still splits on "\r\n"
  assertEquals(chat.feed("ax\nb\r\n"), ["ax\nb", null]);
});

Deno.test("asynchat: discardBuffers in foundTerminator stops the split", () => {
  const chat = new Fed("\n");
  chat.onTerminator = (c) => c.discardBuffers();
  assertEquals(chat.feed("a\nb\nc\r"), ["a", null]);
  chat.onTerminator = () => {};
  // Nothing of the first read survives, not even the held-back "\r".
  assertEquals(chat.feed("\nd\n"), ["a", null, null, "d", null]);
});

Deno.test("asynchat: a throwing foundTerminator leaves the rest for the next read", () => {
  const chat = new Fed("\n");
  let throws = true;
  chat.onTerminator = () => {
    if (throws) {
      throws = false;
      throw new Error("boom");
    }
  };
  assertThrows(() => chat.feed("a\nb\nc"), Error, "boom");
  assertEquals(chat.events, ["a", null]);
  assertEquals(chat.feed("\n"), ["a", null, "b", null, "c", null]);
});

Deno.test("asynchat: collected data stays valid and getData joins it", () => {
  class Keeper extends AsyncChat {
    lines: Uint8Array[] = [];
    #input: Uint8Array[] = [];
    override recv(): Uint8Array {
      return this.#input.shift() ?? new Uint8Array(0);
    }
    override foundTerminator(): void {
      this.lines.push(this.getData());
    }
    feed(data: Uint8Array): void {
      this.#input.push(data);
      this.handleRead();
    }
  }
  const chat = new Keeper(undefined, new Map());
  chat.setTerminator("\n");
  chat.feed(bytes("one\ntw"));
  chat.feed(bytes("o\nthree"));
  chat.feed(bytes("\n"));
  assertEquals(chat.lines.map(text), ["one", "two", "three"]);
  assertEquals(chat.getData().length, 0);
});

Deno.test("asynchat: the default foundTerminator warns and drops the data", () => {
  class Quiet extends AsyncChat {
    warnings: string[] = [];
    override logInfo(message: string, type = "info"): void {
      if (type === "warning") this.warnings.push(message);
    }
    override recv(): Uint8Array {
      return bytes("abc\nde");
    }
  }
  const quiet = new Quiet(undefined, new Map());
  quiet.setTerminator("\n");
  quiet.handleRead();
  assertEquals(quiet.warnings, ["unhandled found terminator"]);
  assertEquals(text(quiet.getData()), "de");
});

// ---------------------------------------------------------------------------
// The output queue, with a fake socket that takes `room` bytes.

class Out extends AsyncChat {
  sends: Uint8Array[] = [];
  room = Infinity;
  closes = 0;

  constructor() {
    super(undefined, new Map());
    this.connected = true;
  }

  override send(data: Uint8Array | string): number {
    const chunk = data as Uint8Array;
    const n = Math.min(this.room, chunk.length);
    this.room -= n;
    if (n > 0) this.sends.push(chunk.subarray(0, n));
    return n;
  }

  override handleClose(): void {
    this.closes++;
    this.connected = false;
  }

  sent(): string {
    return text(concat(this.sends));
  }
}

Deno.test("asynchat: sends are at most acOutBufferSize, and views of the pushed bytes", () => {
  const chat = new Out();
  chat.acOutBufferSize = 1000;
  const data = pattern(4500);
  chat.push(data);
  assertEquals(chat.sends.map((s) => s.length), [1000, 1000, 1000, 1000, 500]);
  for (const send of chat.sends) assert(send.buffer === data.buffer);
  assertEquals(concat(chat.sends), data);
  chat.acOutBufferSize = 0;
  const error = assertThrows(() => chat.push("x"), RangeError);
  assertStringIncludes(error.message, "acOutBufferSize");
});

Deno.test("asynchat: a 64 MiB push drains without copying the rest on each send", () => {
  const chat = new Out();
  chat.room = 0;
  const big = new Uint8Array(64 * 1024 * 1024);
  big[big.length - 1] = 7;
  chat.push(big);
  assertEquals(chat.sendBuffered, big.length);
  let calls = 0;
  const start = performance.now();
  while (chat.writable()) {
    chat.room = 65536; // a kernel-sized send buffer per write event
    chat.handleWrite();
    calls++;
  }
  const ms = performance.now() - start;
  assertEquals(calls, 1024);
  assertEquals(chat.sends.length, 1024);
  assertEquals(chat.sendBuffered, 0);
  // Every send is a view into the one array: nothing was copied.
  assert(
    chat.sends.every((s, i) =>
      s.buffer === big.buffer && s.byteOffset === i * 65536
    ),
  );
  assertEquals(chat.sends.at(-1)!.at(-1), 7);
  assertLessOrEqual(ms, 1000, `draining took ${ms} ms`);
});

Deno.test("asynchat: a producer is pulled only while the socket takes more", () => {
  let pulls = 0;
  const GiB = 1024 * 1024 * 1024;
  const piece = new Uint8Array(65536);
  const huge: Producer = {
    more() {
      if (pulls * piece.length >= GiB) return new Uint8Array(0);
      pulls++;
      return piece;
    },
  };
  const chat = new Out();
  chat.room = 100_000;
  chat.pushWithProducer(huge);
  // 100 000 bytes fit: the first piece, and part of the second.
  assertEquals(pulls, 2);
  assertEquals(chat.sends.reduce((n, s) => n + s.length, 0), 100_000);
  for (let i = 0; i < 10; i++) {
    chat.room = 65536;
    chat.handleWrite();
  }
  assertEquals(pulls, 12);
  assert(chat.writable());
  chat.discardBuffers();
  assertEquals(chat.writable(), false);
});

Deno.test("asynchat: producers may return strings; empty pieces end them", () => {
  const chat = new Out();
  const pieces = ["hé", "llo", ""];
  chat.pushWithProducer({ more: () => pieces.shift() ?? "never" });
  chat.push(" world");
  assertEquals(chat.sent(), "héllo world");
  assertThrows(
    () => chat.pushWithProducer({ more: () => 5 as unknown as string }),
    TypeError,
    "producer.more() result must be a Uint8Array or a string, got 5",
  );
  assertThrows(
    () => chat.pushWithProducer({} as Producer),
    TypeError,
    "producer must have a more() method",
  );
});

Deno.test("asynchat: closeWhenDone closes after what was queued before it", () => {
  const chat = new Out();
  chat.room = 3;
  chat.push("hello");
  chat.pushWithProducer(new SimpleProducer("world", 2));
  chat.closeWhenDone();
  chat.push("never");
  assertEquals(chat.closes, 0);
  while (chat.connected) {
    chat.room = 3;
    chat.handleWrite();
  }
  assertEquals(chat.sent(), "helloworld");
  assertEquals(chat.closes, 1);
});

Deno.test("asynchat: many small pushes go out in one pass once the socket takes them, several per send", () => {
  const chat = new Out();
  chat.room = 0;
  for (let i = 0; i < 100_000; i++) chat.push(`${i % 10}`);
  assertEquals(chat.sendBuffered, 100_000);
  assert(chat.writable());
  chat.room = Infinity;
  chat.handleWrite();
  assertEquals(chat.writable(), false);
  assertEquals(chat.sendBuffered, 0);
  assertEquals(chat.sent(), "0123456789".repeat(10_000));
  assert(chat.sends.length <= 100, `${chat.sends.length} sends`);
});

Deno.test("asynchat: arrays over 1 KiB are sent as they are, the small ones after them together", () => {
  const chat = new Out();
  chat.room = 0;
  const large = pattern(2048);
  chat.push(large);
  for (const piece of ["a", "b", "c\n"]) chat.push(piece);
  chat.room = Infinity;
  chat.handleWrite();
  assertEquals(chat.sends.length, 2);
  assert(chat.sends[0].buffer === large.buffer, "the large array, not a copy");
  assertEquals(text(chat.sends[1]), "abc\n");
});

Deno.test("asynchat: a gathered send the socket takes part of goes on where it stopped", () => {
  const chat = new Out();
  chat.room = 0;
  for (const piece of ["abc", "def", "ghi"]) chat.push(piece);
  chat.pushWithProducer(new SimpleProducer("jkl"));
  chat.push("mno");
  assertEquals(chat.sendBuffered, 12); // a producer's bytes are not known
  const seen: [number, number][] = [];
  for (const room of [5, 0, 1, 4, 100]) {
    chat.room = room;
    chat.handleWrite();
    seen.push([chat.sent().length, chat.sendBuffered]);
  }
  assertEquals(seen, [[5, 7], [5, 7], [6, 6], [10, 5], [15, 0]]);
  assertEquals(chat.sent(), "abcdefghijklmno");
  assertEquals(chat.writable(), false);
});

Deno.test("asynchat: nothing is sent before the connection is up", () => {
  const chat = new Out();
  chat.connected = false;
  chat.push("early");
  assert(chat.writable());
  assertEquals(chat.sends, []);
  chat.connected = true;
  chat.handleWrite();
  assertEquals(chat.sent(), "early");
  assertEquals(chat.writable(), false);
});

Deno.test("asynchat: close and discardBuffers dispose the producers still queued", () => {
  const disposals: string[] = [];
  const producer = (name: string): Producer & Disposable => ({
    more: () => name, // never exhausted
    [Symbol.dispose]: () => {
      disposals.push(name);
    },
  });
  const chat = new Out();
  chat.room = 0;
  chat.pushWithProducer(producer("a"));
  chat.push("bytes");
  chat.pushWithProducer({ more: () => "plain" }); // nothing to dispose
  chat.pushWithProducer(producer("b"));
  chat.discardBuffers();
  assertEquals(disposals, ["a", "b"]);
  assertEquals(chat.writable(), false);
  chat.pushWithProducer(producer("c"));
  chat.closeWhenDone();
  chat.pushWithProducer(producer("d"));
  chat.close();
  assertEquals(disposals, ["a", "b", "c", "d"]);
  // A disposal error surfaces once all have been disposed.
  const failing = new Out();
  failing.room = 0;
  failing.pushWithProducer({
    more: () => "x",
    [Symbol.dispose]: () => {
      throw new Error("first");
    },
  } as Producer);
  failing.pushWithProducer(producer("e"));
  assertThrows(() => failing.close(), Error, "first");
  assertEquals(disposals.at(-1), "e");
});

Deno.test("asynchat: discardBuffers drops input and output", () => {
  const chat = new Out();
  chat.room = 2;
  chat.push("abcdef");
  class In extends AsyncChat {
    override recv(): Uint8Array {
      return bytes("partial\r");
    }
    override foundTerminator(): void {}
  }
  const input = new In(undefined, new Map());
  input.setTerminator("\r\n");
  input.handleRead();
  assertEquals(text(input.getData()), "partial");
  input.handleRead();
  input.discardBuffers();
  assertEquals(input.getData().length, 0);
  chat.discardBuffers();
  chat.room = Infinity;
  chat.handleWrite();
  assertEquals(chat.sent(), "ab");
  assertEquals(chat.sendBuffered, 0);
});

// ---------------------------------------------------------------------------
// Over real sockets: every address family, pipelining, big transfers.

/** Answers each line in upper case; "QUIT" closes when done. */
class UpperHandler extends AsyncChat {
  constructor(sock: Socket | Deno.Conn, map: ChannelMap) {
    super(sock, map);
    this.setTerminator("\r\n");
  }
  override foundTerminator(): void {
    const line = text(this.getData());
    if (line === "QUIT") this.closeWhenDone();
    else this.push(line.toUpperCase() + "\r\n");
  }
}

class OneShotServer extends Dispatcher {
  constructor(
    map: ChannelMap,
    transport: "tcp" | "unix",
    address: Parameters<Dispatcher["bind"]>[0],
    readonly makeHandler: (sock: Socket) => void,
  ) {
    super(undefined, map);
    this.createSocket({ transport });
    this.bind(address);
    this.listen(5);
  }
  override handleAccepted(sock: Socket): void {
    this.makeHandler(sock);
    this.close();
  }
}

class LineClient extends AsyncChat {
  lines: string[] = [];
  override handleConnect(): void {}
  override foundTerminator(): void {
    this.lines.push(text(this.getData()));
  }
}

for (const family of FAMILIES) {
  Deno.test({
    name: `asynchat: a line protocol between two channels over ${family.name}`,
    ignore: family.ignore,
    async fn() {
      using endpoint = family.endpoint();
      const map: ChannelMap = new Map();
      const server = new OneShotServer(
        map,
        endpoint.transport,
        endpoint.bindAddress,
        (sock) => new UpperHandler(sock, map),
      );
      const client = new LineClient(undefined, map);
      client.createSocket({ transport: endpoint.transport });
      client.connect(connectAddress(server.getsockname()));
      client.setTerminator("\r\n");
      const words = Array.from({ length: 200 }, (_, i) => `line ${i} é`);
      client.push(words.join("\r\n") + "\r\nQUIT\r\n");
      await runLoop(map);
      assertEquals(client.lines, words.map((w) => w.toUpperCase()));
    },
  });
}

Deno.test("asynchat: pipelined requests with changing terminators over a socket", async () => {
  const map: ChannelMap = new Map();
  // Requests: "<name> <length>\r\n<body>"; answers: "<name>:<body, CRLF as |>\n".
  class Handler extends AsyncChat {
    #name = "";
    constructor(sock: Socket) {
      super(sock, map);
      this.setTerminator("\r\n");
    }
    override foundTerminator(): void {
      const data = text(this.getData());
      if (this.getTerminator() === "\r\n") {
        const [name, length] = data.split(" ");
        if (name === "BYE") {
          this.closeWhenDone();
          return;
        }
        this.#name = name;
        const n = Number(length);
        if (n === 0) this.push(`${name}:\n`);
        else this.setTerminator(n);
      } else {
        this.push(`${this.#name}:${data.replaceAll("\r\n", "|")}\n`);
        this.setTerminator("\r\n");
      }
    }
  }
  const server = new OneShotServer(
    map,
    "tcp",
    { hostname: "127.0.0.1", port: 0 },
    (sock) => new Handler(sock),
  );
  const client = new LineClient(undefined, map);
  client.createSocket();
  client.connect(connectAddress(server.getsockname()));
  client.setTerminator("\n");
  const expected: string[] = [];
  let requests = "";
  for (let i = 0; i < 300; i++) {
    const body = "x\r\n".repeat(i % 7) + `#${i}`;
    requests += `r${i} ${body.length}\r\n${body}`;
    expected.push(`r${i}:${body.replaceAll("\r\n", "|")}`);
  }
  client.push(requests + "BYE 0\r\n");
  await runLoop(map);
  assertEquals(client.lines, expected);
});

Deno.test("asynchat: a 64 MiB push over a socket arrives whole", async () => {
  const size = 64 * 1024 * 1024;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received = (async () => {
    try {
      const conn = await listener.accept();
      const block = new Uint8Array(256 * 1024);
      let count = 0;
      let bad = -1;
      try {
        for (;;) {
          const n = await conn.read(block);
          if (n === null) break;
          for (let i = 0; i < n; i++) {
            if (block[i] !== (count + i) % 251 && bad < 0) bad = count + i;
          }
          count += n;
        }
      } finally {
        conn.close();
      }
      return { count, bad };
    } finally {
      listener.close();
    }
  })();
  const map: ChannelMap = new Map();
  const chat = new AsyncChat(undefined, map);
  chat.createSocket();
  chat.connect(connectAddress(listener.addr));
  chat.push(pattern(size));
  chat.closeWhenDone();
  const start = performance.now();
  await runLoop(map, { bound: 60_000 });
  const { count, bad } = await within(30_000, "the reader", received);
  const seconds = (performance.now() - start) / 1000;
  assertEquals(count, size);
  assertEquals(bad, -1, `byte ${bad} is wrong`);
  console.log(`  64 MiB push: ${(size / 2 ** 20 / seconds).toFixed(0)} MiB/s`);
});

Deno.test("asynchat: a 1 GiB producer is pulled lazily and stops when the peer goes", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const readLimit = 1024 * 1024;
  const reader = (async () => {
    try {
      const conn = await listener.accept();
      const block = new Uint8Array(65536);
      let count = 0;
      try {
        while (count < readLimit) {
          const n = await conn.read(block);
          if (n === null) break;
          count += n;
        }
      } finally {
        conn.close();
      }
      return count;
    } finally {
      listener.close();
    }
  })();
  const GiB = 1024 * 1024 * 1024;
  const piece = new Uint8Array(65536).fill(42);
  let pulled = 0;
  let disposed = 0;
  const producer: Producer & Disposable = {
    more() {
      if (pulled >= GiB) return new Uint8Array(0);
      pulled += piece.length;
      return piece;
    },
    [Symbol.dispose]() {
      disposed++;
    },
  };
  const map: ChannelMap = new Map();
  class Quiet extends AsyncChat {
    override handleError(): void {
      this.close();
    }
  }
  const chat = new Quiet(undefined, map);
  chat.createSocket();
  chat.connect(connectAddress(listener.addr));
  chat.pushWithProducer(producer);
  await runLoop(map, { bound: 30_000 });
  assert((await within(10_000, "the reader", reader)) >= readLimit);
  // What was pulled is what the reader took plus what the buffers on the
  // way hold (a few MiB), not the gigabyte.
  assertLessOrEqual(pulled, 64 * 1024 * 1024, `pulled ${pulled} bytes`);
  assertEquals(chat.connected, false);
  // Closing dropped it, and disposed it once.
  assertEquals(disposed, 1);
});

Deno.test("asynchat: a channel over a Deno.Conn", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const map: ChannelMap = new Map();
  const accepted = listener.accept();
  const client = new LineClient(undefined, map);
  client.createSocket();
  client.connect(connectAddress(listener.addr));
  client.setTerminator("\r\n");
  client.push("conn\r\nQUIT\r\n");
  const conn = await within(5000, "accept", accepted);
  listener.close();
  const handler = new UpperHandler(conn, map);
  assertInstanceOf(handler, AsyncChat);
  await runLoop(map);
  assertEquals(client.lines, ["CONN"]);
});

Deno.test("asynchat: an oversized record ends the channel through handleClose(), as any other end does", async () => {
  // The owner's cleanup lives in handleClose(): the record limit must reach
  // it too, not close behind its back.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const map: ChannelMap = new Map();
  const events: string[] = [];
  class Owned extends AsyncChat {
    override handleRecordTooLarge(): void {
      events.push("handleRecordTooLarge");
      super.handleRecordTooLarge();
    }
    override handleClose(): void {
      events.push(`handleClose (closed: ${this.socket?.closed})`);
      super.handleClose();
    }
    override logInfo(): void {}
  }
  const chat = new Owned(undefined, map);
  chat.maxRecordSize = 1000;
  chat.setTerminator("\n");
  chat.createSocket();
  chat.connect(connectAddress(listener.addr));
  const peer = await within(5000, "accept", listener.accept());
  listener.close();
  try {
    // 4 KiB without a newline, and the peer stays open: only the limit ends it.
    await peer.write(new Uint8Array(4096).fill(0x78));
    await runLoop(map);
    assertEquals(events, [
      "handleRecordTooLarge",
      "handleClose (closed: false)",
    ]);
    assert(chat.socket?.closed);
  } finally {
    peer.close();
  }
});

// What a handler pushes in pieces while a read is handled leaves in one send,
// so one TCP segment on either backend, which the client counts with TCP_INFO
// on its own descriptor, an epoll socket's. Small pieces are joined; so is a
// 16 KiB line echoed with its newline (on epoll it used to leave in two).
const PIECES_CASES: [
  string,
  string[],
  (chat: AsyncChat, data: Uint8Array[]) => void,
][] = [
  ["a reply pushed in pieces by one handler", [
    "first",
    "second line",
    "third",
  ], (chat, data) => {
    for (const piece of concat(data)) chat.push(Uint8Array.of(piece));
    chat.push("\n");
  }],
  ["a 16 KiB line echoed with its newline", [
    "a".repeat(16383),
    "b".repeat(16383),
    "c".repeat(16383),
  ], (chat, data) => {
    for (const piece of data) chat.push(piece);
    chat.push("\n");
  }],
];

for (const [what, lines, reply] of PIECES_CASES) {
  for (const family of FAMILIES.slice(0, 2)) {
    Deno.test({
      name:
        `asynchat: ${what} leaves in one TCP segment over ${family.name}${skipNote}`,
      ignore: family.ignore || epollUnsupported !== null,
      async fn() {
        using endpoint = family.endpoint();
        const map: ChannelMap = new Map();
        class PiecesHandler extends AsyncChat {
          #data: Uint8Array[] = [];
          constructor(sock: Socket) {
            super(sock, map);
            this.setTerminator("\n");
          }
          override collectIncomingData(data: Uint8Array): void {
            this.#data.push(data);
          }
          override foundTerminator(): void {
            reply(this, this.#data);
            this.#data = [];
          }
        }
        const server = new OneShotServer(
          map,
          "tcp",
          endpoint.bindAddress,
          (sock) => new PiecesHandler(sock),
        );
        const segments: number[] = [];
        class CountingClient extends LineClient {
          #before = 0;
          override handleConnect(): void {
            this.#before = dataSegmentsIn(this.fileno());
            this.push(lines[0] + "\n");
          }
          override foundTerminator(): void {
            super.foundTerminator();
            const now = dataSegmentsIn(this.fileno());
            segments.push(now - this.#before);
            this.#before = now;
            if (this.lines.length < lines.length) {
              this.push(lines[this.lines.length] + "\n");
            } else {
              this.close();
            }
          }
        }
        const client = new CountingClient(undefined, map);
        client.createSocket({ backend: "epoll" });
        client.setTerminator("\n");
        client.connect(connectAddress(server.getsockname()));
        await runLoop(map);
        assertEquals(client.lines, lines);
        assertEquals(segments, [1, 1, 1]);
      },
    });
  }
}

class Collector extends AsyncChat {
  override handleConnect(): void {}
  override handleClose(): void {
    this.close();
  }
}

const HELD_CASES: [string, (chat: AsyncChat) => void, string][] = [
  ["a send() in foundTerminator goes after what it pushed before", (chat) => {
    chat.push("pushed, ");
    chat.send("then sent\n");
    chat.closeWhenDone();
  }, "pushed, then sent\n"],
  ["a close() in foundTerminator sends what it pushed first", (chat) => {
    chat.push("pushed, ");
    chat.push("then closed\n");
    chat.close();
  }, "pushed, then closed\n"],
  ["a foundTerminator that throws still sends what it pushed", (chat) => {
    chat.push("pushed before the fault\n");
    throw new RangeError("fault");
  }, "pushed before the fault\n"],
];

for (const family of FAMILIES) {
  for (const [title, reply, expected] of HELD_CASES) {
    Deno.test({
      name: `asynchat: ${title}, over ${family.name}`,
      ignore: family.ignore,
      async fn() {
        using endpoint = family.endpoint();
        const map: ChannelMap = new Map();
        const faults: unknown[] = [];
        class Replier extends AsyncChat {
          constructor(sock: Socket) {
            super(sock, map);
            this.setTerminator("\n");
          }
          override foundTerminator(): void {
            this.getData();
            reply(this);
          }
          override handleError(error: unknown): void {
            faults.push(error);
            this.close();
          }
        }
        const server = new OneShotServer(
          map,
          endpoint.transport,
          endpoint.bindAddress,
          (sock) => new Replier(sock),
        );
        const client = new Collector(undefined, map);
        client.createSocket({ transport: endpoint.transport });
        client.connect(connectAddress(server.getsockname()));
        client.setTerminator(null);
        client.push("request\n");
        await runLoop(map);
        assertEquals(text(client.getData()), expected);
        assertEquals(faults.length, title.includes("throws") ? 1 : 0);
      },
    });
  }
}
