/**
 * The asyncore echo server of _Python in a Nutshell_ (2nd edition), Example
 * 19-7: a `MainServerSocket` dispatcher accepts connections and a
 * `SecondaryServerSocket` on `DispatcherWithSend` echoes each one, leaving
 * the buffering of unsent data to `DispatcherWithSend`.
 *
 * ```sh
 * deno run --allow-net examples/dispatcher_with_send_echo_server.ts [--host 127.0.0.1] [--port 8881] [--quiet]
 * ```
 *
 * Differences from the book: `handleClose()` closes the channel as well as
 * logging (the book's only logs, which leaves a channel whose peer vanished
 * in the map), the peer's address is remembered at accept time, a channel
 * stops reading while 128 KiB wait to be sent, and Ctrl-C closes every
 * channel.
 *
 * @module
 */

import {
  closeAll,
  Dispatcher,
  DispatcherWithSend,
  loop,
} from "@asyncore/asyncore/asyncore";
import type { Socket } from "@asyncore/asyncore/select";
import {
  catchInterrupt,
  Cli,
  formatAddress,
  listenOrExit,
  log,
  QUIET_FLAG,
  serverOptions,
} from "./_cli.ts";

/** Accepts connections and starts a `SecondaryServerSocket` for each. */
export class MainServerSocket extends Dispatcher {
  constructor(port: number, hostname = "127.0.0.1") {
    super();
    this.createSocket();
    try {
      this.bind({ hostname, port });
      this.listen(5);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  override handleAccept(): void {
    const pair = this.accept();
    if (pair === null) return;
    const [newSocket, address] = pair;
    log("Connected from", formatAddress(address));
    new SecondaryServerSocket(newSocket, address);
  }
}

/** Echoes one connection; `send()` buffers what the socket cannot take yet. */
export class SecondaryServerSocket extends DispatcherWithSend {
  readonly peer: string;

  constructor(sock: Socket, address: Deno.Addr) {
    super(sock);
    this.peer = formatAddress(address);
  }

  /** Stops reading while 128 KiB wait to be sent: a client that never reads is pushed back. */
  override readable(): boolean {
    return this.sendBuffered < 131072;
  }

  override handleRead(): void {
    const receivedData = this.recv(8192);
    if (receivedData.length > 0) this.send(receivedData);
    // An empty read means the peer closed; recv() has called handleClose().
  }

  override handleClose(): void {
    log("Disconnected from", this.peer);
    this.close();
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "dispatcher_with_send_echo_server.ts",
    flags: QUIET_FLAG,
    summary: "Echoes whatever each client sends (DispatcherWithSend).",
    options: serverOptions("8881"),
  });
  const { options } = cli.parse();
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  const hostname = cli.host("--host", options.host);
  const port = cli.port("--port", options.port);
  listenOrExit(
    "dispatcher_with_send_echo_server.ts",
    () => new MainServerSocket(port, hostname),
  );
  await loop({ signal: interrupt.signal });
  closeAll();
}
