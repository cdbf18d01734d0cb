// Dispatchers shared by the tests: the echo handler (core, TLS and
// reliability tests), an echo server and client over any address family, and
// a base class that records instead of printing.

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

/**
 * Serves one accepted connection as the asyncore echo of the sources
 * (`dispatcher_with_send`) does: echoes what it reads, and closes at end of
 * stream. Used by the core and TLS tests; see
 * {@linkcode BoundedEchoHandler} for a server under load.
 */
export class EchoHandler extends DispatcherWithSend {
  /** How many times `handleClose()` ran. */
  closes = 0;
  /** Called after each `handleClose()`. */
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
}

/** How much a {@linkcode BoundedEchoHandler} holds back before it stops reading. */
export const ECHO_HIGH_WATER = 256 * 1024;

/**
 * The {@linkcode EchoHandler} with the one change a production server needs:
 * it stops reading while more than {@linkcode ECHO_HIGH_WATER} bytes wait to
 * go out (`sendBuffered`), so a peer that writes faster than it reads is
 * pushed back instead of growing memory. At end of stream it sends what
 * remains, then closes (a half-close). Used by the reliability tests.
 */
export class BoundedEchoHandler extends EchoHandler {
  /** The most bytes ever queued on this channel. */
  peakBuffered = 0;
  /** Whether the peer has ended its stream. */
  eof = false;

  override readable(): boolean {
    return !this.eof && this.sendBuffered < ECHO_HIGH_WATER;
  }

  override writable(): boolean {
    return super.writable() || this.eof;
  }

  override handleRead(): void {
    super.handleRead();
    if (this.sendBuffered > this.peakBuffered) {
      this.peakBuffered = this.sendBuffered;
    }
  }

  override handleWrite(): void {
    super.handleWrite();
    // The socket delivers what it accepted even after close().
    if (this.eof && this.sendBuffered <= (this.socket?.sendBuffered ?? 0)) {
      this.close();
    }
  }

  override handleClose(): void {
    // End of stream: finish sending before closing (half-close).
    if (this.socket?.error || this.socket?.closed) {
      this.close();
      return;
    }
    this.eof = true;
  }
}

/** The echo server's handlers keep quiet, as the rest of its channels do. */
class QuietEchoHandler extends EchoHandler {
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
    const handler = new QuietEchoHandler(sock, this.map);
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
