/**
 * Micro-benchmarks of `AsyncChat` without sockets: terminator scanning
 * (1-byte, 2-byte and numeric terminators) over 64 MiB fed in random chunk
 * sizes, the line echo of `deno task bench` (64 B and 16 KiB lines),
 * producer draining, many small pushes, and `findPrefixAtEnd`.
 *
 * ```sh
 * deno bench bench/asynchat_bench.ts
 * ```
 *
 * The channel's `recv` and `send` are overridden, so only the module's own
 * work is measured. Every iteration checks what came through (records and
 * bytes) and throws on a mismatch. Inputs come from a seeded generator, so
 * every run sees the same data.
 *
 * @module
 */

import {
  AsyncChat,
  findPrefixAtEnd,
  type Producer,
  SimpleProducer,
} from "../asynchat.ts";
import {
  BufferListProducer,
  CompositeProducer,
  GlobbingProducer,
  LinesProducer,
} from "../producers.ts";
import { LineEcho } from "./servers/asynchat_echo.ts";

const MiB = 1024 * 1024;
const INPUT_SIZE = 64 * MiB;
const EMPTY = new Uint8Array(0);

/** Mulberry32: a small seeded generator of floats in [0, 1). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [min, max], log-uniform, so small values show up too. */
function logUniform(next: () => number, min: number, max: number): number {
  const lo = Math.log(min);
  return Math.min(
    max,
    Math.floor(Math.exp(lo + next() * (Math.log(max + 1) - lo))),
  );
}

/** Input made of records of 1..1024 letters, each followed by `terminator`. */
interface Input {
  data: Uint8Array;
  /** Record lengths, terminators excluded. */
  lengths: number[];
  payload: number;
}

function makeInput(terminator: Uint8Array, seed: number): Input {
  const next = random(seed);
  const data = new Uint8Array(INPUT_SIZE);
  const lengths: number[] = [];
  let pos = 0;
  let payload = 0;
  for (;;) {
    const length = logUniform(next, 1, 1024);
    if (pos + length + terminator.length > data.length) break;
    for (let i = 0; i < length; i++) data[pos + i] = 0x61 + (pos + i) % 26;
    data.set(terminator, pos + length);
    pos += length + terminator.length;
    lengths.push(length);
    payload += length;
  }
  return { data: data.subarray(0, pos), lengths, payload };
}

/** `data` cut into views of random sizes up to 64 KiB. */
function chunked(data: Uint8Array, seed: number): Uint8Array[] {
  const next = random(seed);
  const chunks: Uint8Array[] = [];
  for (let pos = 0; pos < data.length;) {
    const size = logUniform(next, 1, 65536);
    chunks.push(data.subarray(pos, pos + size));
    pos += size;
  }
  return chunks;
}

/** A channel fed from a list of chunks that counts what it collects. */
class Feeder extends AsyncChat {
  bytes = 0;
  records = 0;
  #chunks: Uint8Array[];
  #next = 0;
  #lengths: number[] | null;

  constructor(chunks: Uint8Array[], lengths: number[] | null = null) {
    super(undefined, new Map());
    this.#chunks = chunks;
    this.#lengths = lengths;
    this.maxRecordSize = Infinity;
  }

  override recv(_bufsize: number): Uint8Array {
    return this.#chunks[this.#next++] ?? EMPTY;
  }

  override collectIncomingData(data: Uint8Array): void {
    this.bytes += data.length;
  }

  override foundTerminator(): void {
    this.records++;
    // A numeric terminator is used up when reached; the next one is set here.
    if (this.#lengths !== null && this.records < this.#lengths.length) {
      this.setTerminator(this.#lengths[this.records]);
    }
  }

  feedAll(): void {
    for (let i = 0; i < this.#chunks.length; i++) this.handleRead();
  }
}

function check(name: string, actual: number, expected: number): void {
  if (actual !== expected) {
    throw new Error(`${name}: got ${actual}, expected ${expected}`);
  }
}

const encoder = new TextEncoder();
const lineInput = makeInput(encoder.encode("\n"), 1);
const lineChunks = chunked(lineInput.data, 2);
const crlfInput = makeInput(encoder.encode("\r\n"), 3);
const crlfChunks = chunked(crlfInput.data, 4);
const countInput = makeInput(EMPTY, 5);
const countChunks = chunked(countInput.data, 6);

Deno.bench({
  name: 'terminator "\\n", 64 MiB in random chunks',
  group: "terminator scanning",
  baseline: true,
  n: 5,
  warmup: 1,
  fn() {
    const chat = new Feeder(lineChunks);
    chat.setTerminator("\n");
    chat.feedAll();
    check("records", chat.records, lineInput.lengths.length);
    check("bytes", chat.bytes, lineInput.payload);
  },
});

Deno.bench({
  name: 'terminator "\\r\\n", 64 MiB in random chunks',
  group: "terminator scanning",
  n: 5,
  warmup: 1,
  fn() {
    const chat = new Feeder(crlfChunks);
    chat.setTerminator("\r\n");
    chat.feedAll();
    check("records", chat.records, crlfInput.lengths.length);
    check("bytes", chat.bytes, crlfInput.payload);
  },
});

Deno.bench({
  name: "numeric terminator, 64 MiB in random chunks",
  group: "terminator scanning",
  n: 5,
  warmup: 1,
  fn() {
    const chat = new Feeder(countChunks, countInput.lengths);
    chat.setTerminator(countInput.lengths[0]);
    chat.feedAll();
    check("records", chat.records, countInput.lengths.length);
    check("bytes", chat.bytes, countInput.payload);
  },
});

/**
 * The line echo of bench/servers/asynchat_echo.ts without its socket: each
 * read is one line, and the server's handlers push it back, so this is the
 * work `AsyncChat` itself adds per echoed message in `deno task bench`.
 */
class SocketlessEcho extends LineEcho {
  line: Uint8Array = EMPTY;
  sent = 0;

  constructor() {
    super();
    this.connected = true;
  }

  override recv(_bufsize: number): Uint8Array {
    return this.line;
  }

  override send(data: Uint8Array | string): number {
    this.sent += data.length;
    return data.length;
  }
}

const ECHOES = 10_000;

for (const size of [64, 16384]) {
  // Distinct buffers, cycled, as fresh reads are.
  const echoLines = Array.from({ length: 64 }, (_, j) => {
    const line = new Uint8Array(size);
    for (let i = 0; i < size - 1; i++) line[i] = 0x61 + (i + j) % 26;
    line[size - 1] = 0x0a;
    return line;
  });
  Deno.bench({
    name: `line echo: ${ECHOES.toLocaleString("en-US")} lines of ${
      size === 64 ? "64 B" : "16 KiB"
    }`,
    group: "line echo",
    baseline: size === 64,
    n: 20,
    warmup: 5,
    fn() {
      const chat = new SocketlessEcho();
      for (let i = 0; i < ECHOES; i++) {
        chat.line = echoLines[i % echoLines.length];
        chat.handleRead();
      }
      check("sent", chat.sent, ECHOES * size);
    },
  });
}

/** A channel whose socket takes up to `room` bytes per send, or none while full. */
class Drain extends AsyncChat {
  sent = 0;
  full = false;
  room: number;

  constructor(room = 65536) {
    super(undefined, new Map());
    this.connected = true;
    this.room = room;
  }

  override send(data: Uint8Array | string): number {
    if (this.full) return 0;
    const n = Math.min(this.room, data.length);
    this.sent += n;
    return n;
  }

  drain(): void {
    this.full = false;
    this.initiateSend();
  }
}

const PRODUCED = 16 * MiB;
const produced = new Uint8Array(PRODUCED).fill(0x61);
const smallPieces: Uint8Array[] = [];
for (let pos = 0; pos < PRODUCED; pos += 4096) {
  smallPieces.push(produced.subarray(pos, pos + 4096));
}
const lines: Uint8Array[] = [];
for (let pos = 0; pos + 78 <= PRODUCED; pos += 80) {
  lines.push(produced.subarray(pos, pos + 78));
}

function drainBench(
  name: string,
  make: () => Producer,
  expected: number,
  baseline = false,
): void {
  Deno.bench({
    name,
    group: "producer draining",
    baseline,
    n: 10,
    warmup: 2,
    fn() {
      const chat = new Drain();
      chat.full = true;
      chat.pushWithProducer(make());
      chat.drain();
      check("sent", chat.sent, expected);
    },
  });
}

drainBench(
  "SimpleProducer(16 MiB, 512)",
  () => new SimpleProducer(produced, 512),
  PRODUCED,
  true,
);
drainBench(
  "SimpleProducer(16 MiB, 65536)",
  () => new SimpleProducer(produced, 65536),
  PRODUCED,
);
drainBench(
  "BufferListProducer(4096 × 4 KiB)",
  () => new BufferListProducer(smallPieces),
  PRODUCED,
);
drainBench(
  "GlobbingProducer(BufferListProducer(4 KiB pieces), 64 KiB)",
  () => new GlobbingProducer(new BufferListProducer(smallPieces), 65536),
  PRODUCED,
);
drainBench(
  "CompositeProducer of 4096 SimpleProducers",
  () =>
    new CompositeProducer(smallPieces.map((p) => new SimpleProducer(p, 4096))),
  PRODUCED,
);
drainBench(
  `LinesProducer(${lines.length.toLocaleString("en-US")} lines of 78 B)`,
  () => new LinesProducer(lines),
  lines.length * 80,
);

const PUSHES = 1_000_000;
const small = new Uint8Array(16).fill(0x62);

Deno.bench({
  name: `${PUSHES.toLocaleString("en-US")} pushes of 16 B, socket taking each`,
  group: "many small pushes",
  baseline: true,
  n: 5,
  warmup: 1,
  fn() {
    const chat = new Drain();
    for (let i = 0; i < PUSHES; i++) chat.push(small);
    check("sent", chat.sent, PUSHES * 16);
  },
});

Deno.bench({
  name: `${
    PUSHES.toLocaleString("en-US")
  } pushes of 16 B while full, then drain`,
  group: "many small pushes",
  n: 5,
  warmup: 1,
  fn() {
    const chat = new Drain();
    chat.full = true;
    for (let i = 0; i < PUSHES; i++) chat.push(small);
    chat.drain();
    check("sent", chat.sent, PUSHES * 16);
  },
});

Deno.bench({
  name: `${
    PUSHES.toLocaleString("en-US")
  } pushes of a 16-char string, socket taking each`,
  group: "many small pushes",
  n: 5,
  warmup: 1,
  fn() {
    const chat = new Drain();
    for (let i = 0; i < PUSHES; i++) chat.push("0123456789abcdef");
    check("sent", chat.sent, PUSHES * 16);
  },
});

// findPrefixAtEnd on what a read typically ends with.
const hay = new Uint8Array(4096).fill(0x61);
hay[4095] = 0x0d; // ends with "\r" of "\r\n"
const boundary = encoder.encode(
  "\r\n--boundary-7f3a9c1e2b4d5f60718293a4b5c6d7e8f\r\n",
);
const hayBoundary = new Uint8Array(4096).fill(0x61);
hayBoundary.set(boundary.subarray(0, 30), 4096 - 30);
const CALLS = 100_000;

const CRLF = encoder.encode("\r\n");

Deno.bench({
  name: `findPrefixAtEnd(4 KiB, CRLF bytes) × ${CALLS.toLocaleString("en-US")}`,
  group: "findPrefixAtEnd",
  baseline: true,
  fn() {
    let total = 0;
    for (let i = 0; i < CALLS; i++) total += findPrefixAtEnd(hay, CRLF);
    check("prefix", total, CALLS);
  },
});

// Strings are encoded on every call, which is what this one shows.
Deno.bench({
  name: `findPrefixAtEnd(4 KiB, "\\r\\n" string) × ${
    CALLS.toLocaleString("en-US")
  }`,
  group: "findPrefixAtEnd",
  fn() {
    let total = 0;
    for (let i = 0; i < CALLS; i++) total += findPrefixAtEnd(hay, "\r\n");
    check("prefix", total, CALLS);
  },
});

Deno.bench({
  name: `findPrefixAtEnd(4 KiB, 48-byte boundary) × ${
    CALLS.toLocaleString("en-US")
  }`,
  group: "findPrefixAtEnd",
  fn() {
    let total = 0;
    for (let i = 0; i < CALLS; i++) {
      total += findPrefixAtEnd(hayBoundary, boundary);
    }
    check("prefix", total, CALLS * 30);
  },
});
