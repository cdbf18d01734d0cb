/**
 * Medusa's logging proxy (`proxy.py`, by Sam Rushing):
 * a `ProxyServer` accepts each client on `PORT + 8000` and starts a
 * `ProxyReceiver` for it, which opens a `ProxySender` to the real server.
 * Both are `AsyncChat` channels: what one side reads is pushed to the other
 * and every line is logged with its channel id. When either side closes,
 * the other is closed once what it still has to send is sent.
 *
 * ```sh
 * deno run --allow-net examples/proxy.ts [--host 127.0.0.1] [--port PORT] [--quiet] SERVER_HOST SERVER_PORT
 * ```
 *
 * The log arrows are Medusa's: `<== (id)` is a line from the client to the
 * server, `==> (id)` a line from the server to the client.
 *
 * Differences from Medusa: bytes are passed on as they arrive, not a line
 * at a time, so a line of any length and a body that does not end in `\n`
 * (a POST, a keep-alive response) go through at once, and memory stays
 * bounded; each side logs its lines only up to the first empty one (the end
 * of an HTTP head) and then the count of bytes that follow, as one line when
 * it closes; a logged line shows at most its first 1,000 bytes. Channel ids
 * count up (Medusa's counter stays at 0, as it increments an instance
 * attribute), the side that closes second sends what is queued first, each
 * side stops reading while the other has 128 KiB to send, the listening port
 * is `--port` (`--listen`, its old name, still works), and Ctrl-C closes
 * every channel.
 *
 * @module
 */

import { AsyncChat } from "@asyncore/asyncore/asynchat";
import { closeAll, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
import type { Socket } from "@asyncore/asyncore/select";
import {
  catchInterrupt,
  Cli,
  concat,
  formatAddress,
  listenOrExit,
  log,
  messageOf,
  QUIET_FLAG,
} from "./_cli.ts";

/** How much one side may have queued before the other stops reading. */
const HIGH_WATER = 131072;
/** The most bytes of one line the log shows. */
const LOGGED = 1000;
const NEWLINE = 0x0a;
const decoder = new TextDecoder();

/** Python's `repr()` of a line, near enough: a JSON string. */
function repr(data: Uint8Array): string {
  return JSON.stringify(decoder.decode(data));
}

/** Listens on `here` and proxies each client to `there`. */
export class ProxyServer extends Dispatcher {
  readonly there: { hostname: string; port: number };

  constructor(
    there: { hostname: string; port: number },
    here: { hostname: string; port: number },
  ) {
    super();
    this.there = there;
    this.createSocket();
    this.setReuseAddr();
    try {
      this.bind(here);
      this.listen(5);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  override handleAccepted(sock: Socket, addr: Deno.Addr): void {
    new ProxyReceiver(this, sock, addr);
  }
}

/** What both halves of a proxied connection share. */
abstract class ProxyHalf extends AsyncChat {
  id = 0;
  /** The start of the line being read (its first `LOGGED` bytes), for the log. */
  line: Uint8Array[] = [];
  /** The length of the line being read. */
  lineLength = 0;
  /** Whether the head is over: an empty line was read. */
  inBody = false;
  /** The bytes read after the head. */
  bodyLength = 0;
  #closed = false;

  /** The other half, where this half's bytes go. */
  abstract get other(): ProxyHalf;
  /** The arrow logged with each line this half reads. */
  abstract readonly arrow: string;

  override readable(): boolean {
    return this.other.sendBuffered < HIGH_WATER;
  }

  /** Passes the bytes on as they are (no terminator is set), then logs. */
  override collectIncomingData(data: Uint8Array): void {
    this.other.push(data);
    let from = 0;
    while (!this.inBody) {
      const end = data.indexOf(NEWLINE, from);
      this.#keep(data.subarray(from, end < 0 ? data.length : end));
      if (end < 0) return;
      from = end + 1;
      this.#logLine("");
    }
    this.bodyLength += data.length - from;
  }

  #keep(part: Uint8Array): void {
    const room = LOGGED - Math.min(this.lineLength, LOGGED);
    if (room > 0 && part.length > 0) this.line.push(part.slice(0, room));
    this.lineLength += part.length;
  }

  #logLine(suffix: string): void {
    const data = concat(this.line);
    const cut = this.lineLength > data.length
      ? ` (first ${data.length} of ${this.lineLength} bytes)`
      : "";
    log(`${this.arrow} (${this.id}) ${repr(data)}${cut}${suffix}`);
    // An empty line ("\r\n" counts) ends an HTTP head.
    this.inBody = this.lineLength === 0 ||
      (this.lineLength === 1 && data[0] === 0x0d);
    this.line = [];
    this.lineLength = 0;
  }

  /** Logs what is left, then closes the other half when done. */
  override handleClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.lineLength > 0) this.#logLine(" (no newline)");
    if (this.bodyLength > 0) {
      log(`${this.arrow} (${this.id}) ${this.bodyLength} more bytes`);
    }
    this.close();
    this.other.closeWhenDone();
  }
}

/** The client's side of a proxied connection. */
export class ProxyReceiver extends ProxyHalf {
  static channelCounter = 0;
  readonly arrow = "<==";
  readonly server: ProxyServer;
  readonly sender: ProxySender;

  constructor(server: ProxyServer, conn: Socket, addr: Deno.Addr) {
    super(conn);
    this.server = server;
    this.id = ProxyReceiver.channelCounter++;
    log(`Accepted (${this.id}) from ${formatAddress(addr)}`);
    this.sender = new ProxySender(this, server.there);
    this.sender.id = this.id;
  }

  get other(): ProxyHalf {
    return this.sender;
  }

  override handleClose(): void {
    log(`Closing (${this.id})`);
    super.handleClose();
  }
}

/** The server's side of a proxied connection. */
export class ProxySender extends ProxyHalf {
  readonly arrow = "==>";
  readonly receiver: ProxyReceiver;
  readonly address: { hostname: string; port: number };

  constructor(
    receiver: ProxyReceiver,
    address: { hostname: string; port: number },
  ) {
    super();
    this.receiver = receiver;
    this.address = address;
    this.createSocket();
    this.connect(address);
  }

  get other(): ProxyHalf {
    return this.receiver;
  }

  override handleConnect(): void {
    log(
      `Connected (${this.id}) to ${formatAddress(this.getpeername())}`,
    );
  }

  /** A failed connect (or any other failure) closes both halves. */
  override handleError(error: unknown): void {
    log(`Failed (${this.id}): ${messageOf(error)}`);
    this.handleClose();
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "proxy.ts",
    flags: QUIET_FLAG,
    summary:
      "Forwards each client to SERVER_HOST SERVER_PORT, logging every line each way.",
    positionals: "SERVER_HOST SERVER_PORT",
    minPositionals: 2,
    maxPositionals: 2,
    options: {
      host: {
        value: "HOST",
        help: "address to listen on",
        default: "127.0.0.1",
      },
      port: {
        value: "PORT",
        help: "port to listen on (default: SERVER_PORT + 8000)",
      },
      listen: { value: "PORT", help: "the old name of --port" },
    },
  });
  const { options, positionals } = cli.parse();
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  const there = {
    hostname: cli.host("SERVER_HOST", positionals[0]),
    port: cli.port("SERVER_PORT", positionals[1]),
  };
  const [portFlag, portText] = options.port !== undefined
    ? ["--port", options.port]
    : ["--listen", options.listen];
  if (portText === undefined && there.port + 8000 > 65535) {
    cli.fail(`SERVER_PORT + 8000 is past 65535; choose a port with --port`);
  }
  const here = {
    hostname: cli.host("--host", options.host),
    port: portText === undefined
      ? there.port + 8000
      : cli.port(portFlag, portText),
  };
  listenOrExit("proxy.ts", () => new ProxyServer(there, here));
  log(`forwarding to ${formatAddress({ transport: "tcp", ...there })}`);
  await loop({ signal: interrupt.signal });
  closeAll();
}
