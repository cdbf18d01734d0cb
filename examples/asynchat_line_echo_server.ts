/**
 * The asynchat echo server of _Python in a Nutshell_ (2nd edition), Example
 * 19-8: the `MainServerSocket` of Example 19-7 hands each connection to a
 * `SecondaryServerSocket` on `AsyncChat`, which splits the input on `\n`
 * and pushes back each line.
 *
 * ```sh
 * deno run --allow-net examples/asynchat_line_echo_server.ts [--host 127.0.0.1] [--port 8881] [--max-length 1048576] [--quiet]
 * ```
 *
 * Differences from the book: each line is pushed back with its `\n` (the
 * book's drops it, so a client cannot tell where one answer ends), the
 * channel stops reading while 128 KiB wait to be sent, and Ctrl-C closes
 * every channel. A line may be up to `--max-length` bytes (1 MiB by default;
 * the book sets no bound, which lets one client take all the memory): past
 * it the line is logged as too long and the connection closed.
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
  maxLengthOption,
  QUIET_FLAG,
  serverOptions,
} from "./_cli.ts";

const encoder = new TextEncoder();

/** The longest line echoed by default, in bytes. */
export const MAX_LENGTH = 1048576;

/** Accepts connections and starts a `SecondaryServerSocket` for each. */
export class MainServerSocket extends Dispatcher {
  /** The longest line each connection echoes. */
  readonly maxLength: number;

  constructor(port: number, hostname = "127.0.0.1", maxLength = MAX_LENGTH) {
    super();
    this.maxLength = maxLength;
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
    new SecondaryServerSocket(newSocket, address).maxRecordSize =
      this.maxLength;
  }
}

/** Echoes each `\n`-terminated line of one connection. */
export class SecondaryServerSocket extends AsyncChat {
  readonly peer: string;
  data: Uint8Array[] = [];

  constructor(sock: Socket, address: Deno.Addr) {
    super(sock);
    this.peer = formatAddress(address);
    this.setTerminator("\n");
  }

  override readable(): boolean {
    return this.sendBuffered < 131072;
  }

  override collectIncomingData(data: Uint8Array): void {
    this.data.push(data);
  }

  override foundTerminator(): void {
    // One push per line, so the answer goes out in one piece when it can.
    this.push(concat([...this.data, encoder.encode("\n")]));
    this.data = [];
  }

  override handleClose(): void {
    log("Disconnected from", this.peer);
    this.close();
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "asynchat_line_echo_server.ts",
    flags: QUIET_FLAG,
    summary: "Echoes each \\n-terminated line (asynchat).",
    options: {
      ...serverOptions("8881"),
      "max-length": maxLengthOption("the longest line echoed", MAX_LENGTH),
    },
  });
  const { options } = cli.parse();
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  const hostname = cli.host("--host", options.host);
  const port = cli.port("--port", options.port);
  const maxLength = cli.positiveInteger("--max-length", options["max-length"]);
  listenOrExit(
    "asynchat_line_echo_server.ts",
    () => new MainServerSocket(port, hostname, maxLength),
  );
  await loop({ signal: interrupt.signal });
  closeAll();
}
