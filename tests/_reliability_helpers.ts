// Shared pieces of the reliability suite (tests/reliability_*_test.ts):
// seeded randomness, a streaming hash, bounded waits, a server used by several
// themes, and peers that misbehave on purpose (resets via python3 or node).
//
// Run as a program it is the client side of the scale test, so that the
// server's process does not hold both ends of 10,000 connections:
//   deno run --allow-net tests/_reliability_helpers.ts scale-client PORT N [WAVE]

import { AssertionError } from "@std/assert";
import { delay } from "@std/async";
import { equals } from "@std/bytes";
import { type ChannelMap, closeAll, Dispatcher, loop } from "../asyncore.ts";
import type { Socket } from "../select.ts";
import { portOf, type Random, writeAll } from "./_helpers.ts";

export { portOf, type Random, seeded, within } from "./_helpers.ts";

// ---------------------------------------------------------------------------
// Randomness and hashing

/** An integer in [min, max]. */
export function randInt(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** `length` bytes from the seeded generator. */
export function randomBytes(random: Random, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    const word = (random() * 4294967296) >>> 0;
    out[i] = word;
    out[i + 1] = word >>> 8;
    out[i + 2] = word >>> 16;
    out[i + 3] = word >>> 24;
  }
  for (; i < length; i++) out[i] = (random() * 256) >>> 0;
  return out;
}

/**
 * Byte `offset + i` of a seeded stream, for every `i < length`: a function
 * of the absolute offset only, so any cut of the stream into chunks can be
 * checked chunk by chunk.
 */
export function streamBytes(
  seed: number,
  offset: number,
  length: number,
): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    let x = Math.imul((offset + i) ^ seed, 0x9e3779b1);
    x ^= x >>> 15;
    x = Math.imul(x, 0x85ebca6b);
    out[i] = (x ^ (x >>> 13)) >>> 5;
  }
  return out;
}

/** Whether `chunk` is the seeded stream's bytes at `offset` (see {@linkcode streamBytes}). */
export function isStreamAt(
  seed: number,
  offset: number,
  chunk: Uint8Array,
): boolean {
  return equals(chunk, streamBytes(seed, offset, chunk.length));
}

/**
 * A streaming 64-bit hash of a byte stream (two independent 32-bit FNV-1a
 * style lanes) with its length: equal digests mean equal streams, for the
 * purpose of catching lost, duplicated, reordered or corrupted bytes.
 */
export class StreamHash {
  #a = 0x811c9dc5;
  #b = 0x01000193;
  #length = 0;

  /** Adds bytes to the stream. */
  update(bytes: Uint8Array): void {
    let a = this.#a;
    let b = this.#b;
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i];
      a = Math.imul(a ^ byte, 0x01000193);
      b = Math.imul(b ^ byte, 0x5bd1e995) ^ (b >>> 13);
    }
    this.#a = a;
    this.#b = b;
    this.#length += bytes.length;
  }

  /** The number of bytes hashed. */
  get length(): number {
    return this.#length;
  }

  /** The digest so far: length and both lanes. */
  digest(): string {
    return `${this.#length}:${(this.#a >>> 0).toString(16)}:${
      (this.#b >>> 0).toString(16)
    }`;
  }
}

// ---------------------------------------------------------------------------
// Waiting with a bound (`within` is the shared one from _helpers.ts)

/**
 * Serves `map` until it is empty, with a bound: when `ms` pass first the map
 * is closed (so nothing leaks) and an AssertionError is thrown.
 */
export function serve(
  map: ChannelMap,
  ms: number,
  what = "loop",
  options: { usePoll?: boolean; timeout?: number } = {},
): Promise<void> {
  const served = serveFor(map, ms, what, options);
  // A test that fails before awaiting it must not also get an unhandled
  // rejection from it; awaiting it still throws.
  served.catch(() => {});
  return served;
}

async function serveFor(
  map: ChannelMap,
  ms: number,
  what: string,
  options: { usePoll?: boolean; timeout?: number },
): Promise<void> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  try {
    await loop({
      map,
      timeout: options.timeout ?? 1000,
      usePoll: options.usePoll,
      signal: abort.signal,
    });
  } finally {
    clearTimeout(timer);
  }
  if (abort.signal.aborted) {
    const left = map.size;
    closeAll(map, true);
    throw new AssertionError(
      `${what}: ${left} channels still open after ${ms} ms`,
    );
  }
}

/**
 * Polls `condition` once per event-loop turn batch until it holds or `ms`
 * pass; for conditions set by code running elsewhere (loops, callbacks).
 */
export async function until(
  condition: () => boolean,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new AssertionError(`${what}: not true within ${ms} ms`);
    }
    await delay(1);
  }
}

/**
 * Waits until `value()` has stayed the same for `quietMs` (say, bytes pushed
 * to a peer that stopped reading), with a bound of `ms`; returns the value.
 */
export async function settled(
  value: () => number,
  quietMs: number,
  ms: number,
  what: string,
): Promise<number> {
  const deadline = performance.now() + ms;
  let last = value();
  let since = performance.now();
  for (;;) {
    await delay(5);
    const now = performance.now();
    const current = value();
    if (current !== last) {
      last = current;
      since = now;
    } else if (now - since >= quietMs) {
      return current;
    }
    if (now > deadline) {
      throw new AssertionError(`${what}: still changing after ${ms} ms`);
    }
  }
}

/**
 * Reads from `conn` until end of stream (or a disconnect error, which is
 * reported rather than thrown), hashing what arrives and keeping the first
 * `limit` bytes. For the bytes alone, see `readToEnd` in _helpers.ts.
 */
export async function hashToEnd(
  conn: Deno.Conn,
  limit = Infinity,
): Promise<{ hash: StreamHash; bytes: Uint8Array[]; error: Error | null }> {
  const hash = new StreamHash();
  const bytes: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      const chunk = buffer.slice(0, n);
      hash.update(chunk);
      if (hash.length <= limit) bytes.push(chunk);
    }
  } catch (error) {
    return { hash, bytes, error: error as Error };
  }
  return { hash, bytes, error: null };
}

// ---------------------------------------------------------------------------
// Capturing what the library logs

/**
 * Collects what `console.log`/`console.error` print while `body` runs (the
 * library's `logInfo` and `log` go there), keeping the test output quiet.
 */
export async function captureLogs<T>(
  body: (lines: string[]) => Promise<T> | T,
): Promise<T> {
  const lines: string[] = [];
  const { log, error } = console;
  console.log = (...args: unknown[]) => lines.push(args.join(" "));
  console.error = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    return await body(lines);
  } finally {
    console.log = log;
    console.error = error;
  }
}

// ---------------------------------------------------------------------------
// Servers used by several themes

/** A listening dispatcher on 127.0.0.1 that hands each connection to `make`. */
export class Server extends Dispatcher {
  accepted = 0;
  readonly #make: (sock: Socket, map: ChannelMap) => void;
  readonly #map: ChannelMap;

  constructor(
    map: ChannelMap,
    make: (sock: Socket, map: ChannelMap) => void,
    backlog = 128,
  ) {
    super(undefined, map);
    this.#map = map;
    this.#make = make;
    this.createSocket();
    this.bind({ hostname: "127.0.0.1", port: 0 });
    this.listen(backlog);
  }

  get port(): number {
    return portOf(this);
  }

  override handleAccepted(sock: Socket): void {
    this.accepted++;
    this.#make(sock, this.#map);
  }
}

// ---------------------------------------------------------------------------
// Peers that misbehave, in another runtime (Deno has no SO_LINGER)

/** The programs that can act as resetting peers here (python3, node). */
export async function resetPeers(): Promise<("python3" | "node")[]> {
  const found: ("python3" | "node")[] = [];
  for (const program of ["python3", "node"] as const) {
    try {
      const { success } = await new Deno.Command(program, {
        args: ["--version"],
        stdout: "null",
        stderr: "null",
      }).output();
      if (success) found.push(program);
    } catch {
      // Not installed.
    }
  }
  return found;
}

const PYTHON_RESET = `
import socket, struct, sys
port, send, wait = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
data = bytes(i % 251 for i in range(send))
s.sendall(data)
got = 0
while got < wait:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += len(chunk)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print(got, flush=True)
`;

const NODE_RESET = `
const net = require("node:net");
const [port, send, wait] = process.argv.slice(-3).map(Number);
const data = Buffer.alloc(send);
for (let i = 0; i < send; i++) data[i] = i % 251;
let got = 0;
const s = net.connect(port, "127.0.0.1", () => {
  s.write(data, () => { if (got >= wait) done(); });
});
let finished = false;
function done() {
  if (finished) return;
  finished = true;
  s.resetAndDestroy();
  console.log(got);
}
s.on("data", (chunk) => { got += chunk.length; if (got >= wait) done(); });
s.on("end", done);
s.on("error", () => {});
`;

/**
 * Connects to `port` from another process, sends `send` bytes (`i % 251`),
 * reads until `wait` bytes came back (or end of stream), then resets the
 * connection (SO_LINGER 0). Resolves with the bytes it read.
 */
export async function resettingPeer(
  program: "python3" | "node",
  port: number,
  send: number,
  wait: number,
): Promise<number> {
  const args = program === "python3"
    ? ["-c", PYTHON_RESET, String(port), String(send), String(wait)]
    : ["-e", NODE_RESET, String(port), String(send), String(wait)];
  const { success, stdout, stderr } = await new Deno.Command(program, {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!success) {
    throw new Error(
      `${program} peer failed: ${new TextDecoder().decode(stderr)}`,
    );
  }
  return Number(new TextDecoder().decode(stdout).trim());
}

// ---------------------------------------------------------------------------
// The open-file limit

/** The soft open-file limit of this process's shell, or null if unknown. */
export async function openFileLimit(): Promise<number | null> {
  try {
    const { success, stdout } = await new Deno.Command("sh", {
      args: ["-c", "ulimit -n"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!success) return null;
    const text = new TextDecoder().decode(stdout).trim();
    if (text === "unlimited") return Infinity;
    const limit = Number(text);
    return Number.isFinite(limit) ? limit : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// The client side of the scale test, run as a separate process

async function scaleClient(
  port: number,
  count: number,
  wave: number,
): Promise<void> {
  const conns: Deno.Conn[] = [];
  const started = performance.now();
  // Connect in waves, each awaited before the next.
  for (let i = 0; i < count; i += wave) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + wave); j++) {
      batch.push(Deno.connect({ hostname: "127.0.0.1", port }));
    }
    conns.push(...await Promise.all(batch));
  }
  const connected = performance.now();
  // Every connection says its number and waits for the echo, all at once.
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let served = 0;
  await Promise.all(conns.map(async (conn, i) => {
    const message = `${i}\n`;
    await writeAll(conn, encoder.encode(message));
    const buffer = new Uint8Array(64);
    let reply = "";
    while (!reply.endsWith("\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      reply += decoder.decode(buffer.subarray(0, n));
    }
    if (reply === message) served++;
  }));
  const echoed = performance.now();
  for (const conn of conns) conn.close();
  console.log(JSON.stringify({
    count,
    served,
    connectMs: Math.round(connected - started),
    echoMs: Math.round(echoed - connected),
  }));
}

if (import.meta.main) {
  const [command, port, count, wave = "256"] = Deno.args;
  if (command !== "scale-client") {
    console.error("usage: _reliability_helpers.ts scale-client PORT N [WAVE]");
    Deno.exit(2);
  }
  await scaleClient(Number(port), Number(count), Number(wave));
}
