// Helpers for the asynchat and producers tests: bounded loops and waits,
// address families, byte helpers and a spawned CPython peer.

import { AssertionError } from "@std/assert";
import { TextLineStream } from "@std/streams";
import type { ChannelMap } from "../asyncore.ts";
import {
  hasPython as hasAsyncore,
  probe,
  runLoop as runLoopWithin,
  type RunLoopOptions,
  seeded,
  within,
} from "./_helpers.ts";

export {
  concat,
  connectAddress,
  type Endpoint,
  FAMILIES,
  type Family,
  hasIPv6,
  pattern,
  portOf,
  within,
} from "./_helpers.ts";

export const encoder: TextEncoder = new TextEncoder();
export const decoder: TextDecoder = new TextDecoder();

/** UTF-8 bytes of `text`. */
export const bytes = (text: string): Uint8Array => encoder.encode(text);
/** `data` decoded as UTF-8. */
export const text = (data: Uint8Array): string => decoder.decode(data);

/** The seed for randomised tests: `$ASYNCHAT_SEED`, or a fresh one. */
export function testSeed(): number {
  const fixed = Deno.env.get("ASYNCHAT_SEED");
  return fixed ? Number(fixed) : Math.floor(Math.random() * 2 ** 31);
}

/** Runs `body(rand)`, printing the seed if it throws. */
export function withSeed<T>(name: string, body: (rand: () => number) => T): T {
  const seed = testSeed();
  try {
    return body(seeded(seed));
  } catch (error) {
    console.error(`${name} failed with seed ${seed} (ASYNCHAT_SEED=${seed})`);
    throw error;
  }
}

/** CPython with `asyncore` and `asynchat` (3.11 or older) is installed. */
export const hasPython: boolean = hasAsyncore && probe("python3", [
  "-W",
  "ignore",
  "-c",
  "import asynchat",
]);

/** The shared bounded loop, with the longer bound these tests were written for. */
export function runLoop(
  map: ChannelMap,
  options: RunLoopOptions = {},
): Promise<void> {
  return runLoopWithin(map, { bound: 10_000, ...options });
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
