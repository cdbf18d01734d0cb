// Shared helpers for the whole test suite: address families, connected
// socket pairs, bounded waits and reads, bounded loops, seeded randomness and
// spawned peers (CPython, Node).

import { AssertionError } from "@std/assert";
import { deadline } from "@std/async";
import { concat } from "@std/bytes";
import { TextLineStream } from "@std/streams";
import { type ChannelMap, closeAll, loop } from "../asyncore.ts";
import { type Address, select } from "../select.ts";
import {
  type Backend,
  getDefaultBackend,
  Socket,
  type SocketOptions,
} from "../socket.ts";

/** Whether `command args` runs and succeeds (`false` when it is absent). */
export function probe(command: string, args: string[]): boolean {
  try {
    const { success } = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return success;
  } catch {
    return false;
  }
}

/** `python3` runs here (any CPython 3): a plain socket peer. */
export const hasPython3: boolean = probe("python3", ["-c", ""]);

/** `python3` still has `asyncore` and `asynchat` (CPython 3.11 or older). */
export const hasPythonAsyncore: boolean = hasPython3 && probe("python3", [
  "-W",
  "ignore",
  "-c",
  "import asyncore, asynchat",
]);

/** `python3` has its `ssl` module (a TLS peer). */
export const hasPythonSsl: boolean = hasPython3 &&
  probe("python3", ["-c", "import ssl"]);

/** The backend this run of the suite uses (`ASYNCORE_BACKEND`; CI runs both). */
export const BACKEND: Backend = getDefaultBackend();

/**
 * Options for a test of what only the `"deno"` backend has (its own
 * buffers and linger timer; the `"epoll"` backend's are the kernel's): on
 * the epoll backend the test is ignored and its name says why.
 */
export function denoBackendOnly(
  name: string,
  why: string,
): { name: string; ignore: boolean } {
  return BACKEND === "deno"
    ? { name, ignore: false }
    : { name: `${name} [deno backend only: ${why}]`, ignore: true };
}

/** Node.js is installed. */
export const hasNode: boolean = probe("node", ["-e", ""]);

/** The loopback interface has an IPv6 address. */
export const hasIPv6: boolean = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

/**
 * A host name other than `localhost` that /etc/hosts maps to an IPv4
 * loopback address (names resolve without DNS), or `undefined`.
 */
export const loopbackHostName: string | undefined = (() => {
  let hosts: string;
  try {
    hosts = Deno.readTextFileSync("/etc/hosts");
  } catch {
    return undefined;
  }
  for (const line of hosts.split("\n")) {
    const [address, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
    if (!address?.startsWith("127.")) continue;
    const name = names.find((name) => name !== "" && name !== "localhost");
    if (name !== undefined) return name;
  }
  return undefined;
})();

/** A place to bind a server: a TCP loopback address or a Unix socket path. */
export interface Endpoint extends Disposable {
  /** The transport a `Socket` needs for it. */
  transport: "tcp" | "unix";
  /** What to pass to `bind()`. */
  bindAddress: Address;
}

/** One address family the tests run over. */
export interface Family {
  /** For test names. */
  name: string;
  /** Skip the tests of this family (e.g. no IPv6 on this host). */
  ignore: boolean;
  /** A fresh endpoint; Unix ones live in a temporary directory removed on dispose. */
  endpoint(): Endpoint;
}

function tcpEndpoint(hostname: string): Endpoint {
  return {
    transport: "tcp",
    bindAddress: { hostname, port: 0 },
    [Symbol.dispose]() {},
  };
}

/** A Unix socket path in a new temporary directory, removed on dispose. */
export function unixEndpoint(): Endpoint & { path: string } {
  const dir = Deno.makeTempDirSync({ prefix: "asyncore_test_" });
  const path = `${dir}/sock`;
  return {
    transport: "unix",
    path,
    bindAddress: { path },
    [Symbol.dispose]() {
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** IPv4, IPv6 (ignored without `::1`) and Unix sockets. */
export const FAMILIES: readonly Family[] = [
  { name: "IPv4", ignore: false, endpoint: () => tcpEndpoint("127.0.0.1") },
  { name: "IPv6", ignore: !hasIPv6, endpoint: () => tcpEndpoint("::1") },
  { name: "Unix", ignore: false, endpoint: unixEndpoint },
];

/** The address to connect to a socket bound at `addr` (from getsockname()). */
export function connectAddress(addr: Deno.Addr): Address {
  if (addr.transport === "unix") {
    if (!addr.path) throw new TypeError("an unnamed Unix socket");
    return { path: addr.path };
  }
  if (addr.transport !== "tcp") {
    throw new TypeError(`unexpected transport ${addr.transport}`);
  }
  return { hostname: addr.hostname, port: addr.port };
}

/** Socket options other than the transport, which an endpoint decides. */
export type PairSocketOptions = Omit<SocketOptions, "transport">;

/** Options for {@linkcode socketPair}. */
export interface SocketPairOptions extends PairSocketOptions {
  /**
   * Where the listener binds (the caller disposes it).
   *
   * @default {TCP on 127.0.0.1}
   */
  endpoint?: Endpoint;
  /** The listener's own options (so the accepted socket's), over the shared ones. */
  listenerOptions?: PairSocketOptions;
  /** The client's own options, over the shared ones. */
  clientOptions?: PairSocketOptions;
}

/** A listening socket, a client connected to it, and the accepted end. */
export interface SocketPair extends Disposable {
  listener: Socket;
  client: Socket;
  server: Socket;
}

/**
 * Makes a listening `Socket`, connects a client to it and accepts it, each
 * step waited on with {@linkcode waitReady}. Disposing the pair closes
 * all three; a caller that needs only the two ends may close the listener at
 * once. The listener is made before the client, so option factories run in
 * the order `listenerOptions`, `clientOptions`.
 */
export async function socketPair(
  options: SocketPairOptions = {},
): Promise<SocketPair> {
  const {
    endpoint = tcpEndpoint("127.0.0.1"),
    listenerOptions,
    clientOptions,
    ...shared
  } = options;
  const { transport } = endpoint;
  const listener = new Socket({ ...shared, ...listenerOptions, transport });
  let client: Socket | null = null;
  let server: Socket | null = null;
  const close = () => {
    server?.close();
    client?.close();
    listener.close();
  };
  try {
    listener.bind(endpoint.bindAddress);
    listener.listen();
    client = new Socket({ ...shared, ...clientOptions, transport });
    client.connect(connectAddress(listener.getsockname()));
    await waitReady(listener, "read");
    [server] = listener.accept();
    await waitReady(client, "write");
    if (client.error !== null) throw client.error;
    return { listener, client, server, [Symbol.dispose]: close };
  } catch (error) {
    close();
    throw error;
  }
}

/** Waits until `sock` is ready to `want`; fails after `ms`. */
export async function waitReady(
  sock: Socket,
  want: "read" | "write",
  ms = 10_000,
): Promise<void> {
  const [readable, writable] = await select(
    want === "read" ? [sock] : [],
    want === "write" ? [sock] : [],
    [],
    ms,
  );
  if (readable.length + writable.length === 0) {
    throw new AssertionError(`the socket was not ready to ${want} in ${ms} ms`);
  }
}

/** Receives from `sock` until end of stream; fails after `ms`. */
export async function recvAll(
  sock: Socket,
  ms = 10_000,
): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  const deadline = performance.now() + ms;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) {
      throw new AssertionError(`no end of stream within ${ms} ms`);
    }
    const [readable] = await select([sock], [], [], left);
    if (readable.length === 0) continue;
    const data = sock.recv(65536);
    if (data.length === 0) return concat(chunks);
    chunks.push(data.slice());
  }
}

/** Opens a plain `Deno.Conn` to a TCP address (a peer that is not a Socket). */
export function dial(addr: Deno.Addr): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: hostOf(addr), port: portOf(addr) });
}

/** The hostname of a TCP address. */
export function hostOf(addr: Deno.Addr): string {
  if (addr.transport !== "tcp") {
    throw new TypeError(`expected a TCP address, got ${addr.transport}`);
  }
  return addr.hostname;
}

/**
 * The port of a TCP address, or of the address a socket or channel is bound
 * to (`getsockname()`).
 */
export function portOf(
  target: Deno.Addr | { getsockname(): Deno.Addr },
): number {
  const addr = "getsockname" in target ? target.getsockname() : target;
  if (addr.transport !== "tcp") {
    throw new TypeError(`expected a TCP address, got ${addr.transport}`);
  }
  return addr.port;
}

function isTimeout(error: unknown): boolean {
  return error instanceof DOMException && error.name === "TimeoutError";
}

/**
 * Resolves with `promise` (or a value already there), or (`deadline` from
 * @std/async) rejects with an
 * AssertionError naming `what` once `ms` pass, after calling `onTimeout`
 * (which should cancel the work: kill a child, close a connection). `what`
 * may be a function, to say how far the work got when it timed out.
 */
export async function within<T>(
  ms: number,
  what: string | (() => string),
  promise: Promise<T> | T,
  onTimeout?: () => void,
): Promise<T> {
  try {
    return await deadline(Promise.resolve(promise), ms);
  } catch (error) {
    if (!isTimeout(error)) throw error;
    onTimeout?.();
    const named = typeof what === "function" ? what() : what;
    throw new AssertionError(`${named}: not done within ${ms} ms`);
  }
}

/** Resolves `true` with `promise`, or `false` if `ms` pass first. */
export async function settlesWithin(
  ms: number,
  promise: Promise<unknown>,
): Promise<boolean> {
  try {
    await deadline(promise, ms);
    return true;
  } catch (error) {
    if (isTimeout(error)) return false;
    throw error;
  }
}

/** Options for {@linkcode runLoop}. */
export interface RunLoopOptions {
  /** Use `poll2` instead of `poll`. */
  usePoll?: boolean;
  /** The longest wait of one pass, in ms (default 1000). */
  timeout?: number;
  /** Fail when the map is not empty after this many ms (default 5000). */
  bound?: number;
}

/**
 * Runs `loop()` on `map` until the map is empty. If that takes longer than
 * the bound, every channel is closed and the test fails, naming the channels
 * that were left.
 */
export async function runLoop(
  map: ChannelMap,
  options: RunLoopOptions = {},
): Promise<void> {
  const { usePoll = false, timeout = 1000, bound = 5000 } = options;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), bound);
  try {
    await loop({ map, usePoll, timeout, signal: controller.signal });
  } catch (error) {
    closeAll(map, true);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  if (map.size > 0) {
    const left = [...map.values()].map(String).join(", ");
    closeAll(map, true);
    throw new AssertionError(
      `the loop still had ${left} after ${bound} ms`,
    );
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** UTF-8 bytes of `text`. */
export function bytes(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text);
}

/** UTF-8 text of `data`. */
export function text(data: Uint8Array): string {
  return decoder.decode(data);
}

/** How long {@linkcode readExactly} and {@linkcode readToEnd} wait by default. */
export const READ_TIMEOUT = 10_000;

/**
 * Writes all of `data` to `conn` (`Deno.Conn.write` may take part of it).
 * Not `conn.writable`: a stream's writer keeps the connection locked.
 */
export async function writeAll(
  conn: Deno.Conn,
  data: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    offset += await conn.write(data.subarray(offset));
  }
}

/**
 * Reads exactly `n` bytes; fails on end of stream, or after `ms` (closing
 * the connection to cancel the read).
 */
export async function readExactly(
  conn: Deno.Conn,
  n: number,
  ms: number = READ_TIMEOUT,
): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(n);
  let offset = 0;
  await within(
    ms,
    () => `reading ${n} bytes (got ${offset})`,
    (async () => {
      while (offset < n) {
        const count = await conn.read(out.subarray(offset));
        if (count === null) {
          throw new Error(
            `end of stream after ${offset} of ${n} bytes: ${
              JSON.stringify(text(out.subarray(0, offset)))
            }`,
          );
        }
        offset += count;
      }
    })(),
    () => conn.close(),
  );
  return out;
}

/**
 * Reads from `conn` until the peer closes; fails after `ms`, closing the
 * connection to cancel the read. Not `toBytes(conn.readable)` (@std/streams):
 * that closes `conn` at end of stream, and the callers close it themselves.
 */
export async function readToEnd(
  conn: Deno.Conn,
  ms: number = READ_TIMEOUT,
): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  await within(
    ms,
    "reading to the end of the stream",
    (async () => {
      for (;;) {
        const buffer = new Uint8Array(65536);
        const count = await conn.read(buffer);
        if (count === null) return;
        chunks.push(buffer.subarray(0, count));
      }
    })(),
    () => conn.close(),
  );
  return concat(chunks);
}

/** The errors that mean the peer went away (reset, closed, never there). */
export const DISCONNECTS: readonly (new (message?: string) => Error)[] = [
  Deno.errors.ConnectionReset,
  Deno.errors.ConnectionAborted,
  Deno.errors.BrokenPipe,
  Deno.errors.UnexpectedEof,
  Deno.errors.NotConnected,
];

/** Whether `error` is one of {@linkcode DISCONNECTS}. */
export function isDisconnect(error: unknown): boolean {
  return DISCONNECTS.some((kind) => error instanceof kind);
}

/**
 * Closes `resource` (a connection, a listener) unless it is closed already,
 * e.g. by a timed-out read.
 */
export function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
}

/** Sends `signal` to `child` unless it has exited already. */
export function killQuietly(
  child: Deno.ChildProcess,
  signal: Deno.Signal = "SIGTERM",
): void {
  try {
    child.kill(signal);
  } catch (error) {
    // Deno's "Child process has already terminated".
    if (!(error instanceof TypeError)) throw error;
  }
}

/** `size` bytes of a pattern with period 251 (a prime, so shifts show). */
export function pattern(size: number, offset = 0): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i + offset) % 251;
  return bytes;
}

/** A seeded generator of floats in [0, 1) (mulberry32): sequences replay. */
export type Random = () => number;

/** Makes a seeded generator; the same seed gives the same sequence. */
export function seeded(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The environment variable that fixes the seed of the seeded tests. */
export const SEED_VARIABLE = "TEST_SEED";

/**
 * The seed of a seeded (fuzz or property) test: {@linkcode SEED_VARIABLE}
 * when set, to replay a failure; otherwise a fresh one in [0, 2^32).
 */
export function testSeed(): number {
  const fixed = Deno.env.get(SEED_VARIABLE);
  if (fixed === undefined || fixed === "") {
    return (Math.random() * 4294967296) >>> 0;
  }
  const seed = Number(fixed);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 4294967296) {
    throw new TypeError(
      `${SEED_VARIABLE} must be an integer in [0, 2^32), got "${fixed}"`,
    );
  }
  return seed;
}

/**
 * Runs `body` with `seed` (usually {@linkcode testSeed}'s). When it fails,
 * prints the seed and how to replay it (`TEST_SEED=<seed>`), and puts the
 * same in front of the error's message. An inner seed derived from an outer
 * one is given a `label`, and named without the replay hint: the outer
 * seed's is the one that replays.
 */
export async function withSeed<T>(
  seed: number,
  body: (seed: number) => Promise<T> | T,
  label?: string,
): Promise<T> {
  try {
    return await body(seed);
  } catch (error) {
    const message = label === undefined
      ? `failed with seed ${seed} (replay: ${SEED_VARIABLE}=${seed})`
      : `${label} ${seed} failed`;
    console.error(message);
    if (error instanceof Error) error.message = `${message}: ${error.message}`;
    throw error;
  }
}

/** Whether `data` equals `pattern(data.length, offset)`, without a copy. */
export function isPattern(data: Uint8Array, offset = 0): boolean {
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== (i + offset) % 251) return false;
  }
  return true;
}

const FIXTURES = new URL("./fixtures/", import.meta.url);

/** The path of a file under tests/fixtures/. */
export function fixture(name: string): string {
  return new URL(name, FIXTURES).pathname;
}

/**
 * A child process (a CPython or Node peer) whose stdout is read line by line.
 * Disposing it kills the child if it still runs and awaits its exit, so no
 * process or pipe outlives a test.
 */
export class Peer implements AsyncDisposable {
  readonly #command: string;
  readonly #child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;
  readonly #stderr: Promise<string>;
  #exited = false;
  /** The exit status, once it exits. */
  readonly status: Promise<Deno.CommandStatus>;

  /** Starts `command` with `args`. */
  constructor(command: string, args: string[]) {
    this.#command = command;
    this.#child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.status = this.#child.status.then((status) => {
      this.#exited = true;
      return status;
    });
    this.#lines = this.#child.stdout
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(new TextLineStream())
      .getReader();
    this.#stderr = new Response(this.#child.stderr).text();
  }

  /** Starts `python3 -W ignore tests/fixtures/<script> ...args`. */
  static python(script: string, args: string[]): Peer {
    return new Peer("python3", ["-W", "ignore", fixture(script), ...args]);
  }

  /** Starts `python3 -W ignore -c <code> ...args`. */
  static pythonCode(code: string, args: string[] = []): Peer {
    return new Peer("python3", ["-W", "ignore", "-c", code, ...args]);
  }

  /** Starts `node tests/fixtures/<script> ...args`. */
  static node(script: string, args: string[]): Peer {
    return new Peer("node", [fixture(script), ...args]);
  }

  /** The next line of output, within `ms`. */
  async line(ms = 10_000): Promise<string> {
    const { value, done } = await within(
      ms,
      `a line from ${this.#command}`,
      this.#lines.read(),
    );
    if (done) {
      throw new AssertionError(
        `${this.#command} ended its output; stderr: ${await this.stderr()}`,
      );
    }
    return value;
  }

  /**
   * Waits up to `ms` for the child to exit on its own; fails with its stderr
   * unless it succeeded.
   */
  async exit(ms = 10_000): Promise<Deno.CommandStatus> {
    const status = await within(ms, `${this.#command}'s exit`, this.status);
    if (!status.success) {
      throw new AssertionError(
        `${this.#command} exited with ${status.code}; stderr: ${await this
          .stderr()}`,
      );
    }
    return status;
  }

  /** Everything the child wrote to stderr (once it has exited). */
  stderr(): Promise<string> {
    return this.#stderr;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#exited) {
      killQuietly(this.#child, "SIGKILL");
    }
    await this.status;
    await this.#lines.cancel().catch(() => {});
    await this.#stderr.catch(() => "");
  }
}

/** Local ports of the TCP connections in TIME_WAIT, from /proc (Linux); `null` elsewhere. */
export function timeWaitPorts(): Set<number> | null {
  const ports = new Set<number>();
  let found = false;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    found = true;
    for (const row of text.split("\n").slice(1)) {
      const fields = row.trim().split(/\s+/);
      // sl local_address rem_address st ...; TIME_WAIT is state 06.
      if (fields.length > 3 && fields[3] === "06") {
        ports.add(parseInt(fields[1].split(":")[1], 16));
      }
    }
  }
  return found ? ports : null;
}
