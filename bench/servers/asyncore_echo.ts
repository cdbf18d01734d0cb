/**
 * Ours: the asyncore echo server, a `Dispatcher` with its own buffer, as in
 * Python: `handleRead` appends what `recv` returns, `writable()` is true only
 * while the buffer holds bytes, and `handleWrite` sends from it.
 *
 * ```sh
 * deno run --allow-net bench/servers/asyncore_echo.ts PORT
 * ```
 *
 * @module
 */

import { Dispatcher, loop } from "../../asyncore.ts";
import { announce, EchoListener, portArgument } from "./_listen.ts";

const EMPTY = new Uint8Array(0);

/** Echoes what it reads, from a buffer of its own. */
export class EchoHandler extends Dispatcher {
  #buffer: Uint8Array = EMPTY;

  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length === 0) return;
    if (this.#buffer.length === 0) {
      // recv() hands out views that are never reused, so no copy is needed.
      this.#buffer = data;
    } else {
      const joined = new Uint8Array(this.#buffer.length + data.length);
      joined.set(this.#buffer);
      joined.set(data, this.#buffer.length);
      this.#buffer = joined;
    }
  }

  override writable(): boolean {
    return this.#buffer.length > 0;
  }

  override handleWrite(): void {
    const sent = this.send(this.#buffer);
    this.#buffer = sent === this.#buffer.length
      ? EMPTY
      : this.#buffer.subarray(sent);
  }

  override handleClose(): void {
    this.close();
  }
}

if (import.meta.main) {
  announce(new EchoListener(portArgument(), (sock) => new EchoHandler(sock)));
  await loop();
}
