// Helpers for the asynchat and producers tests: bounded loops and waits,
// address families, byte helpers and a spawned CPython peer.

import { AssertionError } from "@std/assert";
import { TextLineStream } from "@std/streams";
import { type ChannelMap, closeAll, loop } from "../asyncore.ts";
import type { Address } from "../select.ts";

export const encoder: TextEncoder = new TextEncoder();
export const decoder: TextDecoder = new TextDecoder();

/** UTF-8 bytes of `text`. */
export const bytes = (text: string): Uint8Array => encoder.encode(text);
/** `data` decoded as UTF-8. */
export const text = (data: Uint8Array): string => decoder.decode(data);

/** Joins byte chunks. */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const chunk of chunks) size += chunk.length;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** `size` bytes with period 251 (a prime, so shifted or lost bytes show). */
export function pattern(size: number, offset = 0): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i + offset) % 251;
  return out;
}

/** mulberry32: a small seeded PRNG returning numbers in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed for randomised tests: `$ASYNCHAT_SEED`, or a fresh one. */
export function testSeed(): number {
  const fixed = Deno.env.get("ASYNCHAT_SEED");
  return fixed ? Number(fixed) : Math.floor(Math.random() * 2 ** 31);
}

/** Runs `body(rand)`, printing the seed if it throws. */
export function withSeed<T>(name: string, body: (rand: () => number) => T): T {
  const seed = testSeed();
  try {
    return body(prng(seed));
  } catch (error) {
    console.error(`${name} failed with seed ${seed} (ASYNCHAT_SEED=${seed})`);
    throw error;
  }
}

function probe(command: string, args: string[]): boolean {
  try {
    return new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
}

/** CPython with `asyncore` and `asynchat` (3.11 or older) is installed. */
export const hasPython: boolean = probe("python3", [
  "-W",
  "ignore",
  "-c",
  "import asyncore, asynchat",
]);

/** The loopback interface has an IPv6 address. */
export const hasIPv6: boolean = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

/** A place to bind a server. */
export interface Endpoint extends Disposable {
  /** The `Socket` transport it needs. */
  transport: "tcp" | "unix";
  /** What to pass to `bind()`. */
  address: Address;
}

/** One address family. */
export interface Family {
  /** For test names. */
  name: string;
  /** Skip on this host (no IPv6). */
  ignore: boolean;
  /** A fresh endpoint. */
  endpoint(): Endpoint;
}

/** IPv4, IPv6 (skipped without `::1`) and Unix sockets. */
export const FAMILIES: readonly Family[] = [
  {
    name: "IPv4",
    ignore: false,
    endpoint: () => ({
      transport: "tcp",
      address: { hostname: "127.0.0.1", port: 0 },
      [Symbol.dispose]() {},
    }),
  },
  {
    name: "IPv6",
    ignore: !hasIPv6,
    endpoint: () => ({
      transport: "tcp",
      address: { hostname: "::1", port: 0 },
      [Symbol.dispose]() {},
    }),
  },
  {
    name: "Unix",
    ignore: false,
    endpoint: () => {
      const dir = Deno.makeTempDirSync({ prefix: "asynchat_test_" });
      return {
        transport: "unix",
        address: { path: `${dir}/sock` },
        [Symbol.dispose]() {
          Deno.removeSync(dir, { recursive: true });
        },
      };
    },
  },
];

/** The address to connect to a server bound at `addr`. */
export function connectAddress(addr: Deno.Addr): Address {
  if (addr.transport === "unix") return { path: addr.path! };
  if (addr.transport !== "tcp") throw new TypeError(addr.transport);
  return { hostname: addr.hostname, port: addr.port };
}

/** The port of a TCP address. */
export function portOf(addr: Deno.Addr): number {
  if (addr.transport !== "tcp") throw new TypeError(addr.transport);
  return addr.port;
}

/** `promise`, or an AssertionError naming `what` after `ms`. */
export async function within<T>(
  ms: number,
  what: string,
  promise: Promise<T>,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new AssertionError(`${what}: not done within ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs the loop on `map` until it is empty; after `bound` ms every channel
 * is closed and the test fails, naming the channels left.
 */
export async function runLoop(
  map: ChannelMap,
  options: { usePoll?: boolean; bound?: number } = {},
): Promise<void> {
  const { usePoll = false, bound = 10_000 } = options;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), bound);
  try {
    await loop({ map, usePoll, timeout: 1000, signal: controller.signal });
  } catch (error) {
    closeAll(map, true);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  if (map.size > 0) {
    const left = [...map.values()].map(String).join(", ");
    closeAll(map, true);
    throw new AssertionError(`the loop still had ${left} after ${bound} ms`);
  }
}

/** A child process whose stdout is read by lines; disposing it reaps it. */
export class Peer implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;
  readonly #stderr: Promise<string>;
  #exited = false;
  /** The exit status, once it exits. */
  readonly status: Promise<Deno.CommandStatus>;

  /** Starts `python3 -W ignore -c <script> ...args`. */
  constructor(script: string, args: string[] = []) {
    this.#child = new Deno.Command("python3", {
      args: ["-W", "ignore", "-c", script, ...args],
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

  /** The next line of output, within `ms`. */
  async line(ms = 10_000): Promise<string> {
    const { value, done } = await within(
      ms,
      "a line from python3",
      this.#lines.read(),
    );
    if (done) {
      throw new AssertionError(
        `python3 ended its output; stderr: ${await this.#stderr}`,
      );
    }
    return value;
  }

  /** Waits for the exit; fails with its stderr unless it succeeded. */
  async exit(ms = 10_000): Promise<void> {
    const status = await within(ms, "python3's exit", this.status);
    if (!status.success) {
      throw new AssertionError(
        `python3 exited with ${status.code}; stderr: ${await this.#stderr}`,
      );
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#exited) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // It exited meanwhile.
      }
    }
    await this.status;
    await this.#lines.cancel().catch(() => {});
    await this.#stderr.catch(() => "");
  }
}
