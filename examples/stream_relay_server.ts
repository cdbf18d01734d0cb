/**
 * A relay built on Web Streams: every client that connects gets the bytes
 * of SOURCE, a file (read through `Deno.open()`'s `readable`) or an
 * `http://` or `https://` URL (read through the `fetch()` body), and then
 * the connection closes. Not from the classic texts: it shows
 * `StreamProducer`, which lets `AsyncChat.pushWithProducer()` send a
 * `ReadableStream`, pulling it only as fast as the client reads.
 *
 * ```sh
 * deno run --allow-net --allow-read examples/stream_relay_server.ts [--host 127.0.0.1] [--port 8883] [--quiet] SOURCE
 * ```
 *
 * Try `nc 127.0.0.1 8883 | head` with a large file: the relay reads only a
 * little more of it than the client has taken.
 *
 * @module
 */

import { AsyncChat } from "@asyncore/asyncore/asynchat";
import { closeAll, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
import type { Socket } from "@asyncore/asyncore/select";
import { StreamProducer } from "@asyncore/asyncore/streams";
import {
  catchInterrupt,
  Cli,
  formatAddress,
  listenOrExit,
  log,
  messageOf,
  QUIET_FLAG,
  serverOptions,
} from "./_cli.ts";

/** Opens a fresh stream of `source`: a URL's body or a file's bytes. */
export async function openSource(
  source: string,
): Promise<ReadableStream<Uint8Array>> {
  if (/^https?:\/\//.test(source)) {
    const response = await fetch(source);
    if (!response.ok || response.body === null) {
      await response.body?.cancel();
      throw new Error(`${source} answered ${response.status}`);
    }
    return response.body;
  }
  return (await Deno.open(source)).readable;
}

/** Sends one client the source's bytes, then closes. */
export class RelayChannel extends AsyncChat {
  constructor(sock: Socket, source: string) {
    super(sock);
    openSource(source).then((stream) => {
      if (!this.connected) { // the client left while the source opened
        stream.cancel().catch(() => {});
        return;
      }
      this.pushWithProducer(new StreamProducer(stream));
      this.closeWhenDone();
    }, (error) => {
      this.logInfo(`cannot open ${source}: ${messageOf(error)}`, "error");
      this.close();
    });
  }

  /** What the client sends is of no interest. */
  override collectIncomingData(_data: Uint8Array): void {}
}

/** Listens, and starts a `RelayChannel` for each client. */
export class RelayServer extends Dispatcher {
  constructor(
    readonly source: string,
    address: { hostname: string; port: number },
  ) {
    super();
    this.createSocket();
    try {
      this.bind(address);
      this.listen(5);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  override handleAccepted(sock: Socket, addr: Deno.Addr): void {
    log(`relaying ${this.source} to ${formatAddress(addr)}`);
    new RelayChannel(sock, this.source);
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "stream_relay_server.ts",
    flags: QUIET_FLAG,
    summary: "Sends every client the bytes of a file or a URL, then closes.",
    permissions: "--allow-net --allow-read",
    positionals: "SOURCE",
    minPositionals: 1,
    maxPositionals: 1,
    options: serverOptions("8883"),
  });
  const { options, positionals } = cli.parse();
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  const hostname = cli.host("--host", options.host);
  const port = cli.port("--port", options.port);
  listenOrExit(
    "stream_relay_server.ts",
    () => new RelayServer(positionals[0], { hostname, port }),
  );
  await loop({ signal: interrupt.signal });
  closeAll();
}
