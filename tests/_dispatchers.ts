// Dispatchers shared by the core tests: an echo server and client over any
// address family, and a base class that records instead of printing.

import { concat } from "@std/bytes";
import {
  type ChannelMap,
  Dispatcher,
  DispatcherWithSend,
} from "../asyncore.ts";
import type { Address, Socket, SocketOptions } from "../select.ts";
import { connectAddress, type Endpoint } from "./_helpers.ts";

/** A dispatcher that keeps what it logs instead of printing it. */
export class Quiet extends Dispatcher {
  logs: [string, string][] = [];
  errors: unknown[] = [];

  override logInfo(message: string, type = "info"): void {
    this.logs.push([type, message]);
  }

  override handleError(error: unknown): void {
    this.errors.push(error);
    this.close();
  }
}

/** Serves one accepted connection: echoes, and closes at end of stream. */
export class EchoHandler extends DispatcherWithSend {
  closes = 0;
  onClose: () => void = () => {};

  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length > 0) this.send(data);
  }

  override handleClose(): void {
    this.closes++;
    this.close();
    this.onClose();
  }

  override logInfo(): void {}
}

/** An echo server that closes itself once `connections` handlers closed. */
export class EchoServer extends Quiet {
  readonly map: ChannelMap;
  readonly accepted: { sock: Socket; addr: Deno.Addr; peer: Deno.Addr }[] = [];
  readonly handlers: EchoHandler[] = [];
  #closed = 0;
  #connections: number;

  constructor(map: ChannelMap, endpoint: Endpoint, connections = 1) {
    super(undefined, map);
    this.map = map;
    this.#connections = connections;
    this.createSocket({ transport: endpoint.transport });
    this.bind(endpoint.bindAddress);
    this.listen(5);
  }

  /** Where clients connect. */
  get address(): Address {
    return connectAddress(this.getsockname());
  }

  override handleAccepted(sock: Socket, addr: Deno.Addr): void {
    this.accepted.push({ sock, addr, peer: sock.getpeername() });
    const handler = new EchoHandler(sock, this.map);
    handler.onClose = () => {
      if (++this.#closed === this.#connections) this.close();
    };
    this.handlers.push(handler);
  }
}

/** A client that sends `message`, reads the echo, and closes. */
export class EchoClient extends Quiet {
  events: string[] = [];
  chunks: Uint8Array[] = [];
  received = 0;
  inHandleConnect: { connected: boolean; connecting: boolean } | null = null;
  #out: Uint8Array;
  readonly #expected: number;

  constructor(
    map: ChannelMap,
    address: Address,
    message: Uint8Array,
    options?: SocketOptions,
  ) {
    super(undefined, map);
    this.#out = message;
    this.#expected = message.length;
    this.createSocket(
      options ?? ("path" in address ? { transport: "unix" } : {}),
    );
    this.connect(address);
  }

  get reply(): Uint8Array {
    return concat(this.chunks);
  }

  override writable(): boolean {
    return !this.connected || this.#out.length > 0;
  }

  override handleConnect(): void {
    this.events.push("connect");
    this.inHandleConnect = {
      connected: this.connected,
      connecting: this.connecting,
    };
  }

  override handleWrite(): void {
    this.events.push("write");
    this.#out = this.#out.subarray(this.send(this.#out));
  }

  override handleRead(): void {
    this.events.push("read");
    const data = this.recv(65536);
    if (data.length === 0) return;
    this.chunks.push(data.slice());
    this.received += data.length;
    if (this.received >= this.#expected) this.close();
  }

  override handleClose(): void {
    this.events.push("close");
    this.close();
  }
}
