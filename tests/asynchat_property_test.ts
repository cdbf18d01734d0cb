// Property test of AsyncChat's input splitting: for random streams, random
// chunkings (down to 1-byte reads) and random terminator schedules, the
// collected data and terminator calls are the same as for the unchunked
// stream, and the same as a plain model of Python's algorithm.
//
// A failure prints its seed; TEST_SEED=<seed> deno task test replays it.

import { AsyncChat, type Terminator } from "../asynchat.ts";
import { assert, assertEquals } from "@std/assert";
import { seeded, testSeed, withSeed } from "./_helpers.ts";

type Event = string; // "T" for a terminator, "D:<bytes>" for collected data

/** Merges adjacent data events: how data is cut into calls may vary. */
function normalise(events: Event[]): Event[] {
  const out: Event[] = [];
  for (const event of events) {
    const last = out.length - 1;
    if (event !== "T" && last >= 0 && out[last] !== "T") {
      out[last] += event.slice(2);
    } else {
      out.push(event);
    }
  }
  return out;
}

const latin1 = (bytes: Uint8Array): string =>
  Array.from(bytes, (b) => String.fromCharCode(b)).join("");

const bytesOf = (term: Terminator): Uint8Array =>
  typeof term === "string"
    ? new TextEncoder().encode(term)
    : term as Uint8Array;

/** A plain model: Python's algorithm run on the whole stream at once. */
function model(
  stream: Uint8Array,
  initial: Terminator,
  schedule: Terminator[],
): Event[] {
  const events: Event[] = [];
  let term = initial;
  let next = 0;
  let buf = stream;
  const found = () => {
    events.push("T");
    term = schedule[next++ % schedule.length];
  };
  const data = (bytes: Uint8Array) => events.push("D:" + latin1(bytes));
  while (buf.length > 0) {
    if (term === null || term === 0) {
      data(buf);
      buf = buf.subarray(buf.length);
    } else if (typeof term === "number") {
      if (buf.length < term) {
        data(buf);
        term -= buf.length;
        buf = buf.subarray(buf.length);
      } else {
        data(buf.subarray(0, term));
        buf = buf.subarray(term);
        term = 0;
        found();
      }
    } else {
      const needle = latin1(bytesOf(term));
      const text = latin1(buf);
      const at = text.indexOf(needle);
      if (at >= 0) {
        if (at > 0) data(buf.subarray(0, at));
        buf = buf.subarray(at + needle.length);
        found();
      } else {
        let keep = Math.min(needle.length - 1, text.length);
        while (keep > 0 && !text.endsWith(needle.slice(0, keep))) keep--;
        if (text.length > keep) data(buf.subarray(0, text.length - keep));
        break;
      }
    }
  }
  return events;
}

/** A channel fed from a list of chunks instead of a socket. */
class Fed extends AsyncChat {
  events: Event[] = [];
  #chunks: Uint8Array[] = [];
  #schedule: Terminator[];
  #next = 0;

  constructor(initial: Terminator, schedule: Terminator[]) {
    super(undefined, new Map());
    this.setTerminator(initial);
    this.#schedule = schedule;
  }

  override recv(): Uint8Array {
    const chunk = this.#chunks.shift();
    if (chunk === undefined) throw new Deno.errors.WouldBlock();
    return chunk;
  }

  override collectIncomingData(data: Uint8Array): void {
    assert(data.length > 0, "collectIncomingData got an empty array");
    this.events.push("D:" + latin1(data));
  }

  override foundTerminator(): void {
    this.events.push("T");
    this.setTerminator(this.#schedule[this.#next++ % this.#schedule.length]);
  }

  feed(chunks: Uint8Array[]): Event[] {
    this.#chunks = chunks;
    while (this.#chunks.length > 0) this.handleRead();
    return this.events;
  }
}

const ALPHABET = [97, 98, 113, 13, 10]; // a b q \r \n

function randomBytes(rand: () => number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    out[i] = rand() < 0.95
      ? ALPHABET[Math.floor(rand() * ALPHABET.length)]
      : Math.floor(rand() * 256);
  }
  return out;
}

function randomTerminator(rand: () => number): Terminator {
  const kind = rand();
  if (kind < 0.03) return null;
  if (kind < 0.3) return Math.floor(rand() * 12);
  const length = 1 + Math.floor(rand() * 4);
  const bytes = randomBytes(rand, length);
  // Some as strings (UTF-8, so keep them ASCII), some as bytes.
  return rand() < 0.5 && bytes.every((b) => b < 128) ? latin1(bytes) : bytes;
}

function randomChunks(rand: () => number, stream: Uint8Array): Uint8Array[] {
  const mode = Math.floor(rand() * 4);
  const chunks: Uint8Array[] = [];
  for (let pos = 0; pos < stream.length;) {
    const size = mode === 0
      ? 1
      : mode === 1
      ? 1 + Math.floor(rand() * 3)
      : mode === 2
      ? 1 + Math.floor(rand() * 40)
      : 1 + Math.floor(rand() * stream.length);
    chunks.push(stream.subarray(pos, pos + size));
    pos += size;
  }
  return chunks;
}

function describeCase(
  initial: Terminator,
  schedule: Terminator[],
  stream: Uint8Array,
): string {
  const show = (t: Terminator) =>
    t instanceof Uint8Array ? `bytes(${JSON.stringify(latin1(t))})` : (
      JSON.stringify(t)
    );
  return `initial ${show(initial)}, schedule [${
    schedule.map(show).join(", ")
  }], stream ${JSON.stringify(latin1(stream))}`;
}

Deno.test("asynchat property: chunking does not change what is collected", async () => {
  await withSeed(testSeed(), (seed) => {
    const rand = seeded(seed);
    let terminators = 0;
    for (let round = 0; round < 400; round++) {
      const stream = randomBytes(rand, Math.floor(rand() * 300));
      const initial = randomTerminator(rand);
      const schedule = Array.from(
        { length: 1 + Math.floor(rand() * 5) },
        () => randomTerminator(rand),
      );
      try {
        const expected = normalise(model(stream, initial, schedule));
        const whole = normalise(new Fed(initial, schedule).feed([stream]));
        assertEquals(whole, expected, "unchunked differs from the model");
        for (let chunking = 0; chunking < 6; chunking++) {
          const chunks = randomChunks(rand, stream);
          const got = normalise(new Fed(initial, schedule).feed(chunks));
          assertEquals(
            got,
            expected,
            `chunks of sizes [${chunks.map((c) => c.length)}] differ`,
          );
        }
        terminators += expected.filter((e) => e === "T").length;
      } catch (error) {
        console.error(
          `round ${round}: ${describeCase(initial, schedule, stream)}`,
        );
        throw error;
      }
    }
    // The generator must actually exercise terminators.
    assert(terminators > 1000, `only ${terminators} terminators in 400 rounds`);
  });
});

Deno.test("asynchat property: a long terminator split across 1-byte reads", async () => {
  await withSeed(testSeed(), (seed) => {
    const rand = seeded(seed);
    const boundary = new TextEncoder().encode("\r\n--boundary\r\n");
    for (let round = 0; round < 50; round++) {
      // Parts that contain near-misses of the boundary.
      const parts: Uint8Array[] = [];
      for (let i = 0; i < 4; i++) {
        const noise = randomBytes(rand, Math.floor(rand() * 30));
        const near = boundary.subarray(0, Math.floor(rand() * boundary.length));
        parts.push(noise, near, new TextEncoder().encode("xyz"), boundary);
      }
      const stream = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let offset = 0;
      for (const part of parts) {
        stream.set(part, offset);
        offset += part.length;
      }
      try {
        const expected = normalise(model(stream, boundary, [boundary]));
        const ones = Array.from(stream, (_, i) => stream.subarray(i, i + 1));
        assertEquals(
          normalise(new Fed(boundary, [boundary]).feed(ones)),
          expected,
        );
        assertEquals(
          normalise(
            new Fed(boundary, [boundary]).feed(randomChunks(rand, stream)),
          ),
          expected,
        );
        assertEquals(expected.filter((e) => e === "T").length, 4);
      } catch (error) {
        console.error(`failed in round ${round}`);
        throw error;
      }
    }
  });
});

Deno.test("asynchat property: the byte search agrees with a naive one", async () => {
  const { indexOfBytes, prefixAtEnd } = await import("../_bytes.ts");
  await withSeed(testSeed(), (seed) => {
    const rand = seeded(seed);
    const naiveIndex = (h: Uint8Array, n: Uint8Array, from: number) => {
      outer: for (let i = from; i + n.length <= h.length; i++) {
        for (let j = 0; j < n.length; j++) {
          if (h[i + j] !== n[j]) continue outer;
        }
        return i;
      }
      return -1;
    };
    const naivePrefix = (h: Uint8Array, n: Uint8Array, from: number) => {
      for (let l = Math.min(n.length - 1, h.length - from); l > 0; l--) {
        if (h.subarray(h.length - l).every((b, j) => b === n[j])) return l;
      }
      return 0;
    };
    for (let round = 0; round < 300; round++) {
      // Two-letter alphabets make candidates dense; long arrays cross the
      // stretch the plain loop scans.
      const alphabet = [97, 98, 99, 13, 10].slice(0, 2 + (round % 4));
      const pick = () => alphabet[Math.floor(rand() * alphabet.length)];
      const hay = Uint8Array.from({ length: Math.floor(rand() * 3000) }, pick);
      const needle = Uint8Array.from(
        { length: 1 + Math.floor(rand() * 6) },
        pick,
      );
      const from = Math.floor(rand() * (hay.length + 1));
      assertEquals(
        indexOfBytes(hay, needle, from),
        naiveIndex(hay, needle, from),
        `round ${round}`,
      );
      assertEquals(
        prefixAtEnd(hay, needle, from),
        naivePrefix(hay, needle, from),
        `round ${round}`,
      );
    }
  });
});

Deno.test("asynchat property: the word-at-a-time byte search agrees with indexOf", async () => {
  const { indexOfByte } = await import("../_bytes.ts");
  await withSeed(testSeed(), (seed) => {
    const rand = seeded(seed);
    for (let round = 0; round < 500; round++) {
      // Any byte value, matches sparse or absent, views at any alignment.
      const buffer = Uint8Array.from(
        { length: Math.floor(rand() * 600) },
        () => Math.floor(rand() * 256),
      );
      const start = Math.floor(rand() * (buffer.length + 1));
      const end = start + Math.floor(rand() * (buffer.length - start + 1));
      const hay = buffer.subarray(start, end);
      const byte = rand() < 0.5 && hay.length > 0
        ? hay[Math.floor(rand() * hay.length)]
        : Math.floor(rand() * 256);
      const from = Math.floor(rand() * (hay.length + 1));
      assertEquals(
        indexOfByte(hay, byte, from),
        hay.indexOf(byte, from),
        `round ${round}`,
      );
    }
  });
});
