/**
 * The blog's asynchat line echo server, the second version of its echo
 * server: the same `EchoServer` as `asyncore_echo_server.ts`, given an
 * `EchoHandler` on `AsyncChat` that splits its input on `\r\n` and pushes
 * each line back with its terminator.
 *
 * ```sh
 * deno run --allow-net examples/asynchat_echo_server.ts [--host 127.0.0.1] [--port 8881] [--max-length 1048576] [--quiet]
 * ```
 *
 * Differences from the post: the handler stops reading while 128 KiB wait
 * to be sent (so a client that never reads cannot grow the output queue
 * without bound), connections are logged, and Ctrl-C closes every channel.
 * A line may be up to `--max-length` bytes (1 MiB by default; the post sets
 * no bound, which lets one client take all the memory): past it the line is
 * logged as too long and the connection closed.
 *
 * @module
 */

import { AsyncChat } from "@asyncore/asyncore/asynchat";
import type { Socket } from "@asyncore/asyncore/select";
import { EchoServer } from "./asyncore_echo_server.ts";
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

/** Echoes each `\r\n`-terminated line of one client. */
export class EchoHandler extends AsyncChat {
  static readonly LINE_TERMINATOR = "\r\n";
  override maxRecordSize = MAX_LENGTH;
  readonly server: EchoServer;
  readonly clientAddress: Deno.Addr;
  ibuffer: Uint8Array[] = [];

  constructor(connSock: Socket, clientAddress: Deno.Addr, server: EchoServer) {
    super(connSock);
    this.server = server;
    this.clientAddress = clientAddress;
    this.setTerminator(EchoHandler.LINE_TERMINATOR);
  }

  override readable(): boolean {
    return this.sendBuffered < 131072;
  }

  override collectIncomingData(data: Uint8Array): void {
    this.ibuffer.push(data);
  }

  override foundTerminator(): void {
    // One push per line, so the answer goes out in one piece when it can.
    this.push(
      concat([...this.ibuffer, encoder.encode(EchoHandler.LINE_TERMINATOR)]),
    );
    this.ibuffer = [];
  }

  override handleClose(): void {
    log("Disconnected from", formatAddress(this.clientAddress));
    this.close();
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "asynchat_echo_server.ts",
    flags: QUIET_FLAG,
    summary: "Echoes each \\r\\n-terminated line (asynchat).",
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
  const server = listenOrExit(
    "asynchat_echo_server.ts",
    () =>
      new EchoServer(
        { hostname, port },
        class extends EchoHandler {
          override maxRecordSize = maxLength;
        },
      ),
  );
  await server.serveForever(interrupt.signal);
}
