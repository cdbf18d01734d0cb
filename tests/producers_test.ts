// Medusa's producers, SimpleProducer, and a producer chain sent over a
// real socket.

import { AsyncChat, type Producer, SimpleProducer } from "../asynchat.ts";
import {
  BufferListProducer,
  ChunkedProducer,
  CompositeProducer,
  EscapingProducer,
  FileProducer,
  GlobbingProducer,
  HookedProducer,
  LinesProducer,
} from "../producers.ts";
import type { ChannelMap } from "../asyncore.ts";
import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertInstanceOf,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { concat } from "@std/bytes";
import {
  bytes,
  connectAddress,
  pattern,
  runLoop,
  text,
  within,
} from "./_asynchat_helpers.ts";
import { seeded, testSeed, withSeed } from "./_helpers.ts";

/** Every piece a producer yields until it returns an empty one. */
function pieces(producer: Producer, limit = 1_000_000): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < limit; i++) {
    const piece = producer.more();
    assertInstanceOf(piece, Uint8Array);
    if (piece.length === 0) {
      // Exhausted stays exhausted.
      assertEquals(producer.more().length, 0);
      return out;
    }
    out.push(piece);
  }
  throw new Error(`the producer did not end within ${limit} pieces`);
}

const drain = (producer: Producer): Uint8Array => concat(pieces(producer));

const latin1 = (data: Uint8Array): string =>
  Array.from(data, (b) => String.fromCharCode(b)).join("");
const fromLatin1 = (s: string): Uint8Array =>
  Uint8Array.from(s, (c) => c.charCodeAt(0));

/** A producer handing out the given pieces, counting calls. */
class Pieces implements Producer {
  calls = 0;
  #pieces: (Uint8Array | string)[];
  constructor(pieces: (Uint8Array | string)[]) {
    this.#pieces = [...pieces];
  }
  more(): Uint8Array | string {
    this.calls++;
    return this.#pieces.shift() ?? new Uint8Array(0);
  }
}

Deno.test("producers: SimpleProducer hands out views of at most bufferSize bytes", () => {
  const data = pattern(1300);
  const producer = new SimpleProducer(data);
  const out = pieces(producer);
  assertEquals(out.map((p) => p.length), [512, 512, 276]);
  assert(out.every((p) => p.buffer === data.buffer));
  assertEquals(concat(out), data);
  assertEquals(text(drain(new SimpleProducer("héllo", 2))), "héllo");
  assertEquals(pieces(new SimpleProducer("")).length, 0);
  assertThrows(() => new SimpleProducer("x", 0), RangeError, "bufferSize");
  assertThrows(() => new SimpleProducer("x", 1.5), RangeError, "bufferSize");
  assertThrows(
    () => new SimpleProducer(5 as unknown as string),
    TypeError,
    "data must be a Uint8Array or a string, got 5",
  );
});

Deno.test("producers: LinesProducer sends each line with CRLF, 50 lines at a time", () => {
  const lines = Array.from({ length: 120 }, (_, i) => `line ${i}`);
  const out = pieces(new LinesProducer(lines));
  assertEquals(out.length, 3);
  assertEquals(text(out[0]).split("\r\n").length, 51); // 50 lines + ""
  assertEquals(text(concat(out)), lines.map((l) => l + "\r\n").join(""));
  assertEquals(
    text(drain(new LinesProducer(["", bytes("b"), "ç"]))),
    "\r\nb\r\nç\r\n",
  );
  assertEquals(pieces(new LinesProducer([])).length, 0);
  assertThrows(
    () => new LinesProducer(["a", 1 as unknown as string]),
    TypeError,
    "lines[1] must be a Uint8Array or a string, got 1",
  );
  assertThrows(
    () => new LinesProducer("abc" as unknown as string[]),
    TypeError,
    "lines must be an array",
  );
});

Deno.test("producers: BufferListProducer yields the buffers, skipping empty ones", () => {
  const a = bytes("alpha");
  const out = pieces(
    new BufferListProducer([a, "", "beta", new Uint8Array(0)]),
  );
  assertEquals(out.map(text), ["alpha", "beta"]);
  // No copy: a view of the same memory (the library's own view of it).
  assert(out[0].buffer === a.buffer && out[0].byteOffset === a.byteOffset);
  assertThrows(
    () => new BufferListProducer([null as unknown as string]),
    TypeError,
    "buffers[0]",
  );
});

Deno.test("producers: FileProducer reads blocks and closes the file at its end", () => {
  const path = Deno.makeTempFileSync({ prefix: "producers_test_" });
  try {
    const data = pattern(200_000);
    Deno.writeFileSync(path, data);
    const producer = new FileProducer(Deno.openSync(path));
    assert(producer.open);
    const out = pieces(producer);
    assertEquals(out.map((p) => p.length), [65536, 65536, 65536, 3392]);
    assertEquals(concat(out), data);
    // Closed: the resource sanitizer would also fail this test otherwise.
    assertEquals(producer.open, false);

    const small = new FileProducer(Deno.openSync(path), 1000);
    assertEquals(small.more().length, 1000);
    small.close(); // early
    small.close(); // twice is fine
    assertEquals(small.more().length, 0);
    {
      using disposed = new FileProducer(Deno.openSync(path));
      assertEquals(disposed.more().length, 65536);
    }
    const empty = Deno.makeTempFileSync({ prefix: "producers_test_" });
    try {
      const none = new FileProducer(Deno.openSync(empty));
      assertEquals(none.more().length, 0);
      assertEquals(none.open, false);
    } finally {
      Deno.removeSync(empty);
    }
    using file = Deno.openSync(path);
    assertThrows(() => new FileProducer(file, -1), RangeError, "bufferSize");
    assertThrows(
      () => new FileProducer("path" as unknown as Deno.FsFile),
      TypeError,
      "file must be a Deno.FsFile",
    );
  } finally {
    Deno.removeSync(path);
  }
});

Deno.test("producers: CompositeProducer glues producers together", () => {
  const inner = new Pieces(["b", "c"]);
  const producer = new CompositeProducer([
    new Pieces(["a"]),
    new Pieces([]),
    inner,
    new CompositeProducer([new LinesProducer(["d"])]),
  ]);
  assertEquals(pieces(producer).map(text), ["a", "b", "c", "d\r\n"]);
  assertEquals(inner.calls, 3); // asked once more, then dropped
  assertEquals(pieces(new CompositeProducer([])).length, 0);
  assertThrows(
    () => new CompositeProducer([{} as Producer]),
    TypeError,
    "producers[0] must have a more() method",
  );
  assertThrows(
    () => new CompositeProducer(5 as unknown as Producer[]),
    TypeError,
    "producers must be an iterable",
  );
});

Deno.test("producers: GlobbingProducer gathers at least bufferSize bytes per piece", () => {
  const inner = new Pieces(Array.from({ length: 100 }, () => pattern(7)));
  const producer = new GlobbingProducer(inner, 64);
  const out = pieces(producer);
  assertEquals(out.map((p) => p.length), Array(10).fill(70));
  assertEquals(concat(out).length, 700);
  // Once its producer is exhausted it is not asked again.
  const calls = inner.calls;
  producer.more();
  assertEquals(inner.calls, calls);
  assertEquals(text(drain(new GlobbingProducer(new Pieces(["a", "b"])))), "ab");
  assertThrows(
    () => new GlobbingProducer(new Pieces([]), 0),
    RangeError,
    "bufferSize must be a positive integer, got 0",
  );
});

Deno.test("producers: HookedProducer reports the bytes produced when exhausted", () => {
  const reports: number[] = [];
  const inner = new Pieces(["héllo", bytes(" world")]);
  const producer = new HookedProducer(inner, (n) => reports.push(n));
  assertEquals(text(producer.more()), "héllo");
  assertEquals(reports, []);
  assertEquals(text(producer.more()), " world");
  assertEquals(reports, []);
  assertEquals(producer.more().length, 0);
  assertEquals(reports, [12]); // UTF-8 bytes: é is two
  producer.more();
  assertEquals(reports, [12]);
  assertEquals(inner.calls, 3);
  assertThrows(
    () => new HookedProducer(inner, 5 as unknown as () => void),
    TypeError,
    "hook must be a function",
  );
});

/** Decodes HTTP/1.1 chunked coding strictly; returns the body and trailers. */
function decodeChunked(
  data: Uint8Array,
): { body: Uint8Array; trailers: string[]; chunks: number[] } {
  const s = latin1(data);
  let pos = 0;
  const line = (): string => {
    const end = s.indexOf("\r\n", pos);
    if (end < 0) throw new Error(`no CRLF after ${pos}`);
    const out = s.slice(pos, end);
    pos = end + 2;
    return out;
  };
  const parts: Uint8Array[] = [];
  const chunks: number[] = [];
  for (;;) {
    const sizeLine = line();
    if (!/^[0-9a-f]+$/.test(sizeLine)) throw new Error(`bad size ${sizeLine}`);
    const size = parseInt(sizeLine, 16);
    if (size === 0) break;
    chunks.push(size);
    parts.push(data.subarray(pos, pos + size));
    pos += size;
    if (s.slice(pos, pos + 2) !== "\r\n") throw new Error(`no CRLF at ${pos}`);
    pos += 2;
  }
  const trailers: string[] = [];
  for (let field = line(); field !== ""; field = line()) trailers.push(field);
  if (pos !== s.length) {
    throw new Error(`${s.length - pos} bytes after the end`);
  }
  return { body: concat(parts), trailers, chunks };
}

Deno.test("producers: ChunkedProducer output decodes to the body and trailers", async () => {
  await withSeed(testSeed(), (seed) => {
    const rand = seeded(seed);
    for (let round = 0; round < 50; round++) {
      const body = Array.from(
        { length: Math.floor(rand() * 8) },
        () =>
          fromLatin1(
            Array.from(
              { length: 1 + Math.floor(rand() * 600) },
              () => "ab\r\n0"[Math.floor(rand() * 5)],
            ).join(""),
          ),
      );
      const trailers = round % 2 ? [] : ["Expires: never", `X-Round: ${round}`];
      const { body: decoded, trailers: got, chunks } = decodeChunked(
        drain(new ChunkedProducer(new BufferListProducer(body), trailers)),
      );
      assertEquals(decoded, concat(body));
      assertEquals(chunks, body.map((b) => b.length));
      assertEquals(got, trailers);
    }
  });
  assertEquals(
    text(drain(new ChunkedProducer(new Pieces([])))),
    "0\r\n\r\n",
  );
  assertThrows(
    () => new ChunkedProducer(new Pieces([]), ["X: a\r\nY: b"]),
    RangeError,
    "trailers[0] must not hold CR or LF",
  );
});

/** Splits `data` at the given offsets. */
function splitAt(data: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let last = 0;
  for (const cut of [...cuts, data.length]) {
    out.push(data.subarray(last, cut));
    last = cut;
  }
  return out.filter((p) => p.length > 0);
}

Deno.test("producers: EscapingProducer dot-stuffs across every chunk boundary", () => {
  const message = "a\r\n.b\r\n..c\r\n.\r\n.";
  const expected = message.replaceAll("\r\n.", "\r\n..");
  const data = fromLatin1(message);
  for (let i = 0; i <= data.length; i++) {
    for (let j = i; j <= data.length; j++) {
      const chunks = splitAt(data, [i, j]);
      const got = latin1(drain(new EscapingProducer(new Pieces(chunks))));
      assertEquals(got, expected, `cut at ${i} and ${j}`);
    }
  }
  // 1-byte pieces, and a message ending in a partial match.
  const ones = Array.from(data, (_, i) => data.subarray(i, i + 1));
  assertEquals(
    latin1(drain(new EscapingProducer(new Pieces(ones)))),
    expected,
  );
  assertEquals(
    latin1(drain(new EscapingProducer(new Pieces(["x\r", "\n"])))),
    "x\r\n",
  );
});

Deno.test("producers: EscapingProducer matches replaceAll for random data, chunkings and patterns", async () => {
  await withSeed(testSeed(), (seed) => {
    const rand = seeded(seed);
    const patterns: [string, string][] = [
      ["\r\n.", "\r\n.."],
      ["ab", "xa"], // the replacement ends with the pattern's start
      ["aa", "a"], // overlapping candidates
      [".", ".."],
      ["a.a", ""],
    ];
    for (let round = 0; round < 300; round++) {
      const [from, to] = patterns[round % patterns.length];
      const message = Array.from(
        { length: Math.floor(rand() * 60) },
        () => "ab.\r\n"[Math.floor(rand() * 5)],
      ).join("");
      const data = fromLatin1(message);
      const cuts = Array.from(
        { length: Math.floor(rand() * 10) },
        () => Math.floor(rand() * (data.length + 1)),
      ).sort((x, y) => x - y);
      const got = drain(
        new EscapingProducer(new Pieces(splitAt(data, cuts)), from, to),
      );
      assertEquals(
        latin1(got),
        message.replaceAll(from, to),
        `${JSON.stringify(message)} cut at ${cuts}, ${
          JSON.stringify([from, to])
        }`,
      );
    }
  });
  assertThrows(
    () => new EscapingProducer(new Pieces([]), ""),
    RangeError,
    "escapeFrom must not be empty",
  );
});

Deno.test("producers: an HTTP response built of producers, sent over a socket", async () => {
  const path = Deno.makeTempFileSync({ prefix: "producers_test_" });
  const content = pattern(300_000, 7);
  Deno.writeFileSync(path, content);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received = (async () => {
    try {
      const conn = await listener.accept();
      const parts: Uint8Array[] = [];
      const block = new Uint8Array(65536);
      try {
        for (;;) {
          const n = await conn.read(block);
          if (n === null) break;
          parts.push(block.slice(0, n));
        }
      } finally {
        conn.close();
      }
      return concat(parts);
    } finally {
      listener.close();
    }
  })();
  try {
    const map: ChannelMap = new Map();
    const chat = new AsyncChat(undefined, map);
    chat.createSocket();
    chat.connect(connectAddress(listener.addr));
    let reported = -1;
    const file = new FileProducer(Deno.openSync(path), 10_000);
    chat.pushWithProducer(
      new CompositeProducer([
        new LinesProducer([
          "HTTP/1.1 200 OK",
          "Transfer-Encoding: chunked",
          "",
        ]),
        new HookedProducer(
          new ChunkedProducer(new GlobbingProducer(file, 50_000), [
            "X-Done: yes",
          ]),
          (n) => reported = n,
        ),
      ]),
    );
    chat.closeWhenDone();
    await runLoop(map);
    const response = await within(10_000, "the reader", received);
    const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assertEquals(latin1(response.subarray(0, head.length)), head);
    const { body, trailers, chunks } = decodeChunked(
      response.subarray(head.length),
    );
    assertEquals(body, content);
    assertEquals(trailers, ["X-Done: yes"]);
    // Globbed: 10 000-byte reads gathered into pieces of at least 50 000.
    for (const size of chunks.slice(0, -1)) assertGreaterOrEqual(size, 50_000);
    assertEquals(reported, response.length - head.length);
    assertEquals(file.open, false);
  } finally {
    Deno.removeSync(path);
  }
});

Deno.test("producers: disposing a wrapper disposes what it wraps, e.g. closes files", () => {
  const path = Deno.makeTempFileSync({ prefix: "producers_test_" });
  try {
    Deno.writeFileSync(path, pattern(100_000));
    const files = [0, 1, 2].map(() =>
      new FileProducer(Deno.openSync(path), 1000)
    );
    let hooked = false;
    const chain = new ChunkedProducer(
      new GlobbingProducer(
        new EscapingProducer(
          new HookedProducer(files[0], () => hooked = true),
        ),
        5000,
      ),
    );
    assertEquals(decodeChunkSize(chain.more()), 5000);
    const composite = new CompositeProducer([
      new Pieces(["a"]),
      files[1],
      files[2],
    ]);
    assertEquals(text(composite.more()), "a");
    assertEquals(composite.more().length, 1000);
    chain[Symbol.dispose]();
    composite[Symbol.dispose]();
    assert(files.every((f) => !f.open));
    assertEquals(hooked, false);
    // Disposed producers are exhausted: no last chunk, nothing more.
    assertEquals(chain.more().length, 0);
    assertEquals(composite.more().length, 0);
  } finally {
    Deno.removeSync(path);
  }
});

function decodeChunkSize(chunk: Uint8Array): number {
  return parseInt(latin1(chunk).split("\r\n")[0], 16);
}

Deno.test("producers: errors name the producer argument", () => {
  for (
    const make of [
      () => new GlobbingProducer(null as unknown as Producer),
      () => new HookedProducer(5 as unknown as Producer, () => {}),
      () => new ChunkedProducer({} as Producer),
      () => new EscapingProducer("x" as unknown as Producer),
    ]
  ) {
    const error = assertThrows(make, TypeError);
    assertStringIncludes(error.message, "producer must have a more() method");
  }
});
