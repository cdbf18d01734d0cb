/**
 * The blog's asyncore echo server, shaped like Python's `SocketServer`: an
 * `EchoServer` dispatcher with `serverBind`, `serverActivate`,
 * `verifyRequest`, `processRequest` and `serveForever`, and an `EchoHandler` that buffers what it reads and says `writable()` only
 * while it has something to send. `deno task start` runs it.
 *
 * ```sh
 * deno run --allow-net examples/asyncore_echo_server.ts [--host 127.0.0.1] [--port 8881] [--quiet]
 * ```
 *
 * Differences from the post: the handler stops reading while 64 KiB wait to
 * be sent (so a client that never reads cannot grow the buffer without
 * bound), connections are logged, and Ctrl-C closes every channel.
 *
 * @module
 */

import { closeAll, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
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

/** The most bytes a handler holds before it stops reading. */
const MAX_BUFFERED = 65536;

/** Serves one client: echoes what it reads. */
export class EchoHandler extends Dispatcher {
  readonly server: EchoServer;
  readonly clientAddress: Deno.Addr;
  buffer: Uint8Array = new Uint8Array(0);
  isWritable = false;

  constructor(connSock: Socket, clientAddress: Deno.Addr, server: EchoServer) {
    super(connSock);
    this.server = server;
    this.clientAddress = clientAddress;
  }

  override readable(): boolean {
    return this.buffer.length < MAX_BUFFERED;
  }

  override writable(): boolean {
    return this.isWritable;
  }

  override handleRead(): void {
    const data = this.recv(8192);
    if (data.length > 0) {
      const joined = new Uint8Array(this.buffer.length + data.length);
      joined.set(this.buffer);
      joined.set(data, this.buffer.length);
      this.buffer = joined;
      this.isWritable = true;
    }
  }

  override handleWrite(): void {
    if (this.buffer.length > 0) {
      const sent = this.send(this.buffer);
      this.buffer = this.buffer.subarray(sent);
    }
    if (this.buffer.length === 0) this.isWritable = false;
  }

  override handleClose(): void {
    log("Disconnected from", formatAddress(this.clientAddress));
    this.close();
  }
}

/** The handler class an {@linkcode EchoServer} makes for each request. */
export type HandlerClass = new (
  connSock: Socket,
  clientAddress: Deno.Addr,
  server: EchoServer,
) => Dispatcher;

/** Listens and hands each connection to a new handler. */
export class EchoServer extends Dispatcher {
  allowReuseAddress = false;
  requestQueueSize = 5;
  readonly address: { hostname: string; port: number };
  readonly handlerClass: HandlerClass;

  constructor(
    address: { hostname: string; port: number },
    handlerClass: HandlerClass = EchoHandler,
  ) {
    super();
    this.address = address;
    this.handlerClass = handlerClass;
    this.createSocket();
    if (this.allowReuseAddress) this.setReuseAddr();
    try {
      this.serverBind();
      this.serverActivate();
    } catch (error) {
      this.close();
      throw error;
    }
  }

  serverBind(): void {
    this.bind(this.address);
  }

  serverActivate(): void {
    this.listen(this.requestQueueSize);
  }

  /** Serves until Ctrl-C (`signal`), then closes every channel. */
  async serveForever(signal?: AbortSignal): Promise<void> {
    await loop({ signal });
    closeAll();
  }

  override handleAccept(): void {
    const pair = this.accept();
    if (pair === null) return;
    const [connSock, clientAddress] = pair;
    if (this.verifyRequest(connSock, clientAddress)) {
      this.processRequest(connSock, clientAddress);
    } else {
      connSock.close();
    }
  }

  verifyRequest(_connSock: Socket, _clientAddress: Deno.Addr): boolean {
    return true;
  }

  processRequest(connSock: Socket, clientAddress: Deno.Addr): void {
    log("Connected from", formatAddress(clientAddress));
    new this.handlerClass(connSock, clientAddress, this);
  }

  override handleClose(): void {
    this.close();
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "asyncore_echo_server.ts",
    flags: QUIET_FLAG,
    summary: "Echoes whatever each client sends (asyncore dispatchers).",
    options: serverOptions("8881"),
  });
  const { options } = cli.parse();
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  const hostname = cli.host("--host", options.host);
  const port = cli.port("--port", options.port);
  const server = listenOrExit(
    "asyncore_echo_server.ts",
    () => new EchoServer({ hostname, port }),
  );
  await server.serveForever(interrupt.signal);
}
