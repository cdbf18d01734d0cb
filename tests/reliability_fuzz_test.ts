// Fuzz: seeded random operations on both ends of socket pairs throw only
// documented errors and never lose or corrupt an accepted byte; seeded
// garbage into an AsyncChat server (checked against a reference model) and
// into the netstring transform server never crashes the loop. Every test
// prints its seed on failure; TEST_SEED=<seed> replays it.

import {
  assert,
  assertEquals,
  assertGreater,
  AssertionError,
} from "@std/assert";
import { delay } from "@std/async";
import { concat, indexOfNeedle } from "@std/bytes";
import { type ChannelMap, closeAll, socketMap } from "../asyncore.ts";
import { AsyncChat } from "../asynchat.ts";
import { select, type Socket } from "../select.ts";
import {
  TransformFactory,
  TransformService,
} from "../examples/transform_server.ts";
import { netstring } from "../examples/_netstring.ts";
import {
  captureLogs,
  hashToEnd,
  isStreamAt,
  randInt,
  type Random,
  randomBytes,
  seeded,
  serve,
  Server,
  streamBytes,
  until,
  within,
} from "./_reliability_helpers.ts";
import {
  isDisconnect,
  socketPair,
  testSeed,
  withSeed,
  writeAll,
} from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Socket pairs

/** What the model knows about one end of a pair. */
interface End {
  name: "a" | "b";
  sock: Socket;
  /** The seed of the bytes this end sends. */
  seed: number;
  /** Bytes its send() accepted. */
  accepted: number;
  /** Bytes its recv() returned (checked against the peer's stream). */
  received: number;
  shutRead: boolean;
  shutWrite: boolean;
  closed: boolean;
  /** recv() returned the end of the stream. */
  eof: boolean;
  /** Closed while bytes the peer accepted were still unread here (a reset). */
  closedDirty: boolean;
  /** Sent bytes after the peer closed (which then resets the connection). */
  sentAfterPeerClosed: boolean;
}

/** Makes a connected pair with random buffer sizes. */
async function randomPair(random: Random): Promise<[Socket, Socket]> {
  const sizes = () => ({
    recvBufferSize: randInt(random, 1, 131072),
    sendBufferSize: randInt(random, 1, 131072),
  });
  const { listener, client, server } = await socketPair({
    listenerOptions: sizes(),
    clientOptions: sizes(),
  });
  listener.close();
  return [client, server];
}

function fail(seed: number, step: string, message: string): never {
  throw new AssertionError(`seed ${seed}, ${step}: ${message}`);
}

/** What the pair sequences covered, to see that the checks have teeth. */
const pairStats = { exact: 0, exactBytes: 0, mayLose: 0, errors: 0 };

/** One random sequence of operations on a fresh pair, then a drain. */
async function pairSequence(seed: number): Promise<void> {
  const random = seeded(seed);
  const [sa, sb] = await randomPair(random);
  const make = (name: "a" | "b", sock: Socket): End => ({
    name,
    sock,
    seed: seed ^ (name === "a" ? 0x1234567 : 0x7654321),
    accepted: 0,
    received: 0,
    shutRead: false,
    shutWrite: false,
    closed: false,
    eof: false,
    closedDirty: false,
    sentAfterPeerClosed: false,
  });
  const a = make("a", sa);
  const b = make("b", sb);
  const peerOf = (end: End) => end === a ? b : a;
  const log: string[] = [];
  const where = () => log.slice(-8).join("; ");

  // An error is expected when `allowed` says so; anything else fails.
  const expect = (
    end: End,
    op: string,
    error: unknown,
    allowed: boolean,
  ) => {
    if (!allowed) {
      fail(
        seed,
        `${end.name}.${op}`,
        `unexpected ${
          error instanceof Error ? error.name : String(error)
        }: ${error} (after ${where()})`,
      );
    }
  };

  const send = (end: End) => {
    const size = randInt(random, 1, 100_000);
    const peer = peerOf(end);
    try {
      const n = end.sock.send(streamBytes(end.seed, end.accepted, size));
      if (n < 0 || n > size) fail(seed, "send", `returned ${n} of ${size}`);
      end.accepted += n;
      if (n > 0 && peer.closed) end.sentAfterPeerClosed = true;
      log.push(`${end.name}.send(${size})=${n}`);
    } catch (error) {
      log.push(`${end.name}.send(${size})!${(error as Error).name}`);
      pairStats.errors++;
      if (error instanceof Deno.errors.BadResource) {
        return expect(end, "send", error, end.closed);
      }
      if (end.closed) return expect(end, "send", error, false);
      if (error instanceof Deno.errors.WouldBlock) return;
      if (error instanceof Deno.errors.BrokenPipe && end.shutWrite) return;
      expect(end, "send", error, isDisconnect(error) && peer.closed);
    }
  };

  const recv = (end: End) => {
    const size = randInt(random, 1, 100_000);
    const peer = peerOf(end);
    try {
      const data = end.sock.recv(size);
      log.push(`${end.name}.recv(${size})=${data.length}`);
      if (data.length > size) fail(seed, "recv", "more than asked");
      if (data.length === 0) {
        end.eof = true;
        if (!end.shutRead && !peer.shutWrite && !peer.closed) {
          fail(seed, `${end.name}.recv`, `end of stream from an open peer`);
        }
        return;
      }
      if (end.shutRead) fail(seed, `${end.name}.recv`, "data after shutdown");
      if (!isStreamAt(peer.seed, end.received, data)) {
        fail(
          seed,
          `${end.name}.recv`,
          `bytes at ${end.received} are not what the peer sent`,
        );
      }
      end.received += data.length;
      if (end.received > peer.accepted) {
        fail(seed, `${end.name}.recv`, "more than the peer's send accepted");
      }
    } catch (error) {
      log.push(`${end.name}.recv(${size})!${(error as Error).name}`);
      pairStats.errors++;
      if (error instanceof Deno.errors.BadResource) {
        return expect(end, "recv", error, end.closed);
      }
      if (end.closed) return expect(end, "recv", error, false);
      if (error instanceof Deno.errors.WouldBlock) return;
      expect(end, "recv", error, isDisconnect(error) && peer.closed);
    }
  };

  const shutdown = (end: End) => {
    const how = (["read", "write", "both"] as const)[randInt(random, 0, 2)];
    log.push(`${end.name}.shutdown(${how})`);
    try {
      end.sock.shutdown(how);
      if (how !== "write") end.shutRead = true;
      if (how !== "read") end.shutWrite = true;
    } catch (error) {
      if (error instanceof Deno.errors.BadResource) {
        return expect(end, "shutdown", error, end.closed);
      }
      expect(end, "shutdown", error, false);
    }
  };

  const close = (end: End) => {
    log.push(`${end.name}.close()`);
    if (!end.closed) {
      const peer = peerOf(end);
      // Unread input (dropped by a read shutdown or not) makes the kernel
      // reset the connection on close.
      end.closedDirty = peer.accepted > end.received;
      end.closed = true;
    }
    end.sock.close();
  };

  const steps = randInt(random, 5, 60);
  for (let step = 0; step < steps; step++) {
    const end = random() < 0.5 ? a : b;
    const roll = random();
    if (roll < 0.36) send(end);
    else if (roll < 0.72) recv(end);
    else if (roll < 0.755) shutdown(end);
    else if (roll < 0.78) close(end);
    else {
      // Let I/O happen: a short wait on whatever is still open.
      const open = [a, b].filter((e) => !e.closed).map((e) => e.sock);
      if (open.length > 0) {
        await select(open, [], [], randInt(random, 0, 3));
      } else {
        await delay(0);
      }
    }
  }

  // Drain: each open end ends its writing and reads until the end.
  for (const end of [a, b]) {
    if (!end.closed && !end.shutWrite) {
      end.sock.shutdown("write");
      end.shutWrite = true;
    }
  }
  const deadline = performance.now() + 10_000;
  const reading = () =>
    [a, b].filter((end) => !end.closed && !end.shutRead && !end.eof);
  while (reading().length > 0) {
    if (performance.now() > deadline) {
      fail(seed, "drain", `no end of stream within 10 s (after ${where()})`);
    }
    for (const end of reading()) {
      for (let i = 0; i < 64 && !end.eof; i++) {
        const before = end.received;
        const wasErrored = log.length;
        recv(end);
        if (end.received === before) {
          // WouldBlock, end of stream, or an (allowed) disconnect error.
          if (log.length > wasErrored && log.at(-1)!.includes("!")) {
            if (!log.at(-1)!.includes("WouldBlock")) end.eof = true;
          }
          break;
        }
      }
    }
    const open = reading().map((end) => end.sock);
    if (open.length > 0) await select(open, [], [], 50);
  }
  // Nothing accepted was lost unless the connection was reset, or the
  // receiver gave up on it.
  for (const [from, to] of [[a, b], [b, a]]) {
    const mayLose = to.closed || to.shutRead || from.closedDirty ||
      (from.closed && to.sentAfterPeerClosed) || to.closedDirty;
    if (mayLose) {
      pairStats.mayLose++;
    } else {
      pairStats.exact++;
      pairStats.exactBytes += to.received;
    }
    if (!mayLose && to.received !== from.accepted) {
      fail(
        seed,
        `${from.name}->${to.name}`,
        `${from.accepted} bytes accepted, ${to.received} received (after ${where()})`,
      );
    }
  }
  a.sock.close();
  b.sock.close();
}

Deno.test("fuzz: random send/recv/shutdown/close on socket pairs throw only documented errors and lose no accepted byte", async () => {
  const base = testSeed();
  await withSeed(base, async () => {
    const random = seeded(base);
    for (let i = 0; i < 200; i++) {
      const seed = (random() * 2 ** 32) >>> 0;
      await withSeed(seed, () => pairSequence(seed), `sequence ${i}, seed`);
    }
    console.log(
      `  ${pairStats.exact} directions checked exactly ` +
        `(${pairStats.exactBytes} bytes), ${pairStats.mayLose} after a ` +
        `reset or a close by the receiver; ${pairStats.errors} documented ` +
        `errors thrown`,
    );
    assertGreater(pairStats.exact, 100);
  });
});

// ---------------------------------------------------------------------------
// Garbage into an AsyncChat server, against a reference model

const CRLF = encoder.encode("\r\n");
const MAX_RECORD = 4096;
const MAX_BLOB = 20_000;

function fnv(data: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const byte of data) h = Math.imul(h ^ byte, 0x01000193);
  return (h >>> 0).toString(16);
}

/**
 * The protocol: lines end with CRLF; `LEN n` (0 <= n <= MAX_BLOB) makes the
 * next n bytes a blob. Each line is answered `LINE <length> <hash>`, each
 * blob `BLOB <length> <hash>`, a bad `LEN` with `ERR`, and a line longer than
 * MAX_RECORD with `TOOLONG` (the channel skips to its end and goes on).
 */
function parseLen(line: Uint8Array): number | null | undefined {
  const text = decoder.decode(line);
  if (!text.startsWith("LEN ")) return undefined; // not a LEN command
  const digits = text.slice(4);
  if (!/^\d{1,6}$/.test(digits)) return null;
  const n = Number(digits);
  return n <= MAX_BLOB ? n : null;
}

/** The replies the protocol gives to `input`, computed directly. */
function referenceReplies(input: Uint8Array): string {
  let out = "";
  let pos = 0;
  for (;;) {
    const at = indexOfNeedle(input, CRLF, pos);
    if (at < 0) {
      // An unterminated line is not answered, unless it already grew past
      // the limit (not counting a "\r" that may start the terminator).
      const rest = input.length - pos - (input.at(-1) === 0x0d ? 1 : 0);
      return rest > MAX_RECORD ? out + "TOOLONG\r\n" : out;
    }
    const line = input.subarray(pos, at);
    pos = at + 2;
    if (line.length > MAX_RECORD) {
      out += "TOOLONG\r\n";
      continue;
    }
    const n = parseLen(line);
    if (n === undefined) {
      out += `LINE ${line.length} ${fnv(line)}\r\n`;
    } else if (n === null) {
      out += "ERR\r\n";
    } else if (n === 0) {
      // A count of 0 collects nothing and finds no terminator; the next
      // line follows at once (setTerminator(0) acts as null, so use none).
      out += `BLOB 0 ${fnv(new Uint8Array(0))}\r\n`;
    } else {
      if (input.length - pos < n) return out;
      const blob = input.subarray(pos, pos + n);
      pos += n;
      out += `BLOB ${n} ${fnv(blob)}\r\n`;
    }
  }
}

class Protocol extends AsyncChat {
  static errors: unknown[] = [];
  #parts: Uint8Array[] = [];
  #eof = false;

  constructor(sock: Socket, map: ChannelMap) {
    super(sock, map);
    this.setTerminator(CRLF);
    this.maxRecordSize = MAX_RECORD;
  }

  override readable(): boolean {
    return !this.#eof;
  }

  override collectIncomingData(data: Uint8Array): void {
    this.#parts.push(data);
  }

  override foundTerminator(): void {
    const data = concat(this.#parts);
    this.#parts = [];
    if (typeof this.getTerminator() === "number") {
      this.push(`BLOB ${data.length} ${fnv(data)}\r\n`);
      this.setTerminator(CRLF);
      return;
    }
    const n = parseLen(data);
    if (n === undefined) this.push(`LINE ${data.length} ${fnv(data)}\r\n`);
    else if (n === null) this.push("ERR\r\n");
    else if (n === 0) this.push(`BLOB 0 ${fnv(new Uint8Array(0))}\r\n`);
    else this.setTerminator(n);
  }

  override handleRecordTooLarge(): void {
    this.#parts = [];
    this.push("TOOLONG\r\n");
  }

  override handleClose(): void {
    if (this.#eof || this.socket?.error || this.socket?.closed) {
      this.close();
      return;
    }
    this.#eof = true;
    this.closeWhenDone();
  }

  override handleError(error: unknown): void {
    Protocol.errors.push(error);
    super.handleError(error);
  }
}

/** Random input: garbage, lines, LEN commands (good and bad), long lines. */
function garbage(random: Random, size: number): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  while (total < size) {
    const roll = random();
    let part: Uint8Array;
    if (roll < 0.3) {
      part = randomBytes(random, randInt(random, 0, 300));
    } else if (roll < 0.55) {
      part = concat([randomBytes(random, randInt(random, 0, 100)), CRLF]);
    } else if (roll < 0.7) {
      const n = random() < 0.8
        ? randInt(random, 0, 3000)
        : randInt(random, 0, 2_000_000);
      part = concat([encoder.encode(`LEN ${n}`), CRLF]);
      if (random() < 0.8) part = concat([part, randomBytes(random, n % 4000)]);
    } else if (roll < 0.75) {
      part = encoder.encode(random() < 0.5 ? "\r" : "\n");
    } else if (roll < 0.8) {
      part = new Uint8Array(randInt(random, MAX_RECORD - 2, MAX_RECORD * 3))
        .fill(0x2d);
    } else {
      part = encoder.encode(`word ${randInt(random, 0, 9999)}\r\n`);
    }
    parts.push(part);
    total += part.length;
  }
  return concat(parts);
}

Deno.test("fuzz: garbage into an AsyncChat server never crashes the loop, and each reply matches a reference model", async () => {
  const base = testSeed();
  await withSeed(base, async () => {
    const random = seeded(base);
    Protocol.errors = [];
    const map: ChannelMap = new Map();
    const server = new Server(map, (sock, m) => new Protocol(sock, m));
    const running = serve(map, 60_000, "garbage server");
    const CLIENTS = 60;
    await within(
      60_000,
      "garbage clients",
      Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
        const seed = (random() * 2 ** 32) >>> 0;
        await withSeed(seed, async () => {
          const own = seeded(seed);
          const input = garbage(own, randInt(own, 0, 200_000));
          const abrupt = i % 5 === 4; // some leave without reading
          const conn = await Deno.connect({
            hostname: "127.0.0.1",
            port: server.port,
          });
          const reading = abrupt ? null : hashToEnd(conn);
          try {
            for (let offset = 0; offset < input.length;) {
              const size = randInt(own, 1, 9000);
              await writeAll(conn, input.subarray(offset, offset + size));
              offset += size;
            }
            if (!abrupt) await conn.closeWrite();
          } catch (error) {
            if (!abrupt) throw error;
          }
          if (reading === null) {
            conn.close();
            return;
          }
          const { bytes, error } = await reading;
          conn.close();
          assertEquals(error, null);
          assertEquals(decoder.decode(concat(bytes)), referenceReplies(input));
        }, `client ${i}, seed`);
      })),
    );
    await until(() => map.size === 1, 10_000, "every channel closed");
    assertEquals(Protocol.errors, [], "no handler fault");
    server.close();
    await running;
  });
});

// ---------------------------------------------------------------------------
// Garbage into the netstring transform server (examples/transform_server.ts)

Deno.test("fuzz: garbage into the netstring transform server never crashes the loop", async () => {
  const base = testSeed();
  await withSeed(base, async () => {
    const random = seeded(base);
    assertEquals(socketMap.size, 0, "the default map is free");
    const MAX = 10_000;
    await captureLogs(async (lines) => {
      const factory = new TransformFactory(
        new TransformService(),
        { hostname: "127.0.0.1", port: 0 },
        MAX,
      );
      const port = (factory.getsockname() as Deno.NetAddr).port;
      const errors: unknown[] = [];
      const running = serve(socketMap, 60_000, "transform server");
      const inputs = (own: Random): Uint8Array => {
        const roll = own();
        if (roll < 0.25) return randomBytes(own, randInt(own, 0, 5000));
        if (roll < 0.4) {
          // A declared length over the limit, maybe with a body.
          return concat([
            encoder.encode(`${randInt(own, MAX + 1, 10 ** 9)}:`),
            randomBytes(own, randInt(own, 0, 3000)),
          ]);
        }
        if (roll < 0.55) {
          // Lengths that lie: shorter or longer than the body.
          const body = randomBytes(own, randInt(own, 0, 2000));
          return concat([
            encoder.encode(`${randInt(own, 0, 4000)}:`),
            body,
            encoder.encode(","),
          ]);
        }
        if (roll < 0.7) {
          // Digits, colons and commas in random order.
          const alphabet = encoder.encode("0123456789:,.");
          return Uint8Array.from(
            { length: randInt(own, 0, 200) },
            () => alphabet[randInt(own, 0, alphabet.length - 1)],
          );
        }
        if (roll < 0.85) {
          // A well-formed request with a random name and poem (text, or
          // bytes that are seldom UTF-8).
          const name =
            ["cummingsify", "reverse", "nope", ""][randInt(own, 0, 3)];
          const length = randInt(own, 0, 3000);
          const poem = own() < 0.5
            ? Uint8Array.from({ length }, () => randInt(own, 32, 126))
            : randomBytes(own, length);
          return netstring(concat([encoder.encode(`${name}.`), poem]));
        }
        // Valid netstrings, pipelined.
        return concat(
          Array.from(
            { length: randInt(own, 2, 5) },
            () => netstring(`reverse.${randInt(own, 0, 1e6)}\n`),
          ),
        );
      };
      await within(
        60_000,
        "garbage clients",
        Promise.all(Array.from({ length: 60 }, async (_, i) => {
          const seed = (random() * 2 ** 32) >>> 0;
          await withSeed(seed, async () => {
            const own = seeded(seed);
            const input = inputs(own);
            // Most clients end their writing and read the answer to its
            // end; the others leave as soon as they have written.
            const abrupt = own() < 0.3;
            const conn = await Deno.connect({ hostname: "127.0.0.1", port });
            const reading = abrupt ? null : hashToEnd(conn);
            try {
              for (let offset = 0; offset < input.length;) {
                const size = randInt(own, 1, 700);
                await writeAll(conn, input.subarray(offset, offset + size));
                offset += size;
              }
              if (!abrupt) await conn.closeWrite();
            } catch (error) {
              // The server may close first (a bad request): a reset here.
              errors.push(error);
            }
            if (reading !== null) {
              const { error } = await reading;
              if (error !== null) errors.push(error);
            }
            conn.close();
          }, `client ${i}, seed`);
        })),
      );
      // The server still answers a good request correctly.
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const reading = hashToEnd(conn);
      await writeAll(conn, netstring("reverse.one\ntwo\nthree\n"));
      const { bytes } = await within(10_000, "a good request", reading);
      conn.close();
      assertEquals(decoder.decode(concat(bytes)), "14:three\ntwo\none\n,");
      await until(() => socketMap.size === 1, 10_000, "every channel closed");
      for (const error of errors) assert(isDisconnect(error), String(error));
      assert(
        !lines.some((line) => line.includes("uncaptured exception")),
        lines.filter((line) => line.includes("uncaptured")).join("\n"),
      );
      factory.close();
      await running;
      const count = (text: string) =>
        lines.filter((line) => line.includes(text)).length;
      return [count("Rejected"), count(" bytes for ")];
    }).then(([rejected, answered]) => {
      console.log(`  ${rejected} requests rejected, ${answered} answered`);
      assertGreater(rejected, 10);
      assertGreater(answered, 2);
    });
    closeAll(socketMap);
  });
});
