/**
 * Ours: the `DispatcherWithSend` echo server: `handleRead` sends what it
 * receives and `DispatcherWithSend` buffers whatever the socket does not
 * take at once.
 *
 * ```sh
 * deno run --allow-net bench/servers/dispatcher_with_send_echo.ts PORT
 * ```
 *
 * @module
 */

import { DispatcherWithSend, loop } from "../../asyncore.ts";
import { announce, EchoListener, portArgument } from "./_listen.ts";

class EchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length > 0) this.send(data);
  }

  override handleClose(): void {
    this.close();
  }
}

announce(new EchoListener(portArgument(), (sock) => new EchoHandler(sock)));
await loop();
