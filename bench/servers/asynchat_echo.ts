/**
 * Ours: the `AsyncChat` line echo server: terminator `"\n"`,
 * `collectIncomingData` keeps the pieces of a line and `foundTerminator`
 * pushes them back with the newline.
 *
 * ```sh
 * deno run --allow-net bench/servers/asynchat_echo.ts PORT
 * ```
 *
 * @module
 */

import { AsyncChat } from "../../asynchat.ts";
import { loop } from "../../asyncore.ts";
import type { Socket } from "../../select.ts";
import { announce, EchoListener, portArgument } from "./_listen.ts";

const NEWLINE = new Uint8Array([0x0a]);

/** The echo channel; bench/asynchat_bench.ts runs it without a socket. */
export class LineEcho extends AsyncChat {
  #pieces: Uint8Array[] = [];

  constructor(sock?: Socket) {
    super(sock);
    this.setTerminator("\n");
  }

  override collectIncomingData(data: Uint8Array): void {
    // The views are never reused, so they can be pushed later as they are.
    this.#pieces.push(data);
  }

  override foundTerminator(): void {
    for (const piece of this.#pieces) this.push(piece);
    this.#pieces = [];
    this.push(NEWLINE);
  }
}

if (import.meta.main) {
  announce(new EchoListener(portArgument(), (sock) => new LineEcho(sock)));
  await loop();
}
