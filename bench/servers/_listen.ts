/**
 * The listening side our echo servers share: a `Dispatcher` on 127.0.0.1
 * that hands each accepted socket (with TCP_NODELAY, as every server in the
 * benchmark sets) to `serve`, and the `PORT` argument.
 *
 * @module
 */

import { Dispatcher } from "../../asyncore.ts";
import type { Socket } from "../../select.ts";

/** Accepts connections and starts a channel for each. */
export class EchoListener extends Dispatcher {
  #serve: (sock: Socket) => void;

  constructor(port: number, serve: (sock: Socket) => void) {
    super();
    this.#serve = serve;
    this.createSocket();
    this.setReuseAddr();
    this.bind({ hostname: "127.0.0.1", port });
    this.listen(1024);
  }

  override handleAccepted(sock: Socket, _addr: Deno.Addr): void {
    sock.setNoDelay(true);
    this.#serve(sock);
  }
}

/** The port from the first argument (0, a free port, when absent). */
export function portArgument(): number {
  const port = Number(Deno.args[0] ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`PORT must be an integer in 0..65535, got ${port}`);
  }
  return port;
}

/** Prints the line the benchmark waits for. */
export function announce(listener: Dispatcher): void {
  const addr = listener.getsockname() as Deno.NetAddr;
  console.log(`listening on 127.0.0.1:${addr.port}`);
}
