/**
 * Ours: the asyncore echo server, a `Dispatcher` with its own buffer, as in
 * Python: `handleRead` appends what `recv` returns, `writable()` is true only
 * while the buffer holds bytes, and `handleWrite` sends from it. With
 * `--recv-into`, each channel reads with `recvInto()` into one buffer of its
 * own, reused.
 *
 * ```sh
 * deno run --allow-net bench/servers/asyncore_echo.ts PORT [--recv-into]
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

/**
 * The echo with `recvInto()`: bytes land in the free end of one 64 KiB
 * buffer per channel and go back from its front; it empties at each full
 * send, so the channel stays readable (its interest unchanged) but when full.
 */
export class RecvIntoEchoHandler extends Dispatcher {
  #buffer = new Uint8Array(65536);
  #start = 0;
  #end = 0;

  override readable(): boolean {
    return this.#end < this.#buffer.length;
  }

  override handleRead(): void {
    this.#end += this.recvInto(this.#buffer.subarray(this.#end));
  }

  override writable(): boolean {
    return this.#end > this.#start;
  }

  override handleWrite(): void {
    this.#start += this.send(this.#buffer.subarray(this.#start, this.#end));
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  override handleClose(): void {
    this.close();
  }
}

if (import.meta.main) {
  const Handler = Deno.args.includes("--recv-into")
    ? RecvIntoEchoHandler
    : EchoHandler;
  announce(new EchoListener(portArgument(), (sock) => new Handler(sock)));
  await loop();
}
