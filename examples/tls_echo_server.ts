/**
 * An echo server over TLS, on `AsyncChat`: each connection echoes whatever
 * it reads, encrypted. By default the listener is a TLS listener
 * (`SocketOptions.tls`), so connections speak TLS from the first byte. With
 * `--starttls` it listens in plaintext and speaks a small SMTP-like
 * preamble first: it greets with `220`, answers lines with `530` until the
 * client sends `STARTTLS`, replies `220 ready for TLS`, upgrades the
 * connection in place (`Dispatcher.startTls`) and then echoes over TLS.
 *
 * ```sh
 * deno run --allow-net --allow-read examples/tls_echo_server.ts [--host 127.0.0.1] [--port 8443] [--mode tls|starttls] [--cert FILE --key FILE] [--max-length 65536] [--quiet]
 * ```
 *
 * The certificate and key default to the test fixtures in
 * `tests/fixtures/tls` (a test CA's certificate for `localhost`,
 * `127.0.0.1` and `::1`); `tls_echo_client.ts` trusts that CA by default.
 * Failed handshakes are reported and the server goes on; Ctrl-C closes
 * every channel.
 *
 * @module
 */

import { AsyncChat } from "@asyncore/asyncore/asynchat";
import { closeAll, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
import type { Socket, TlsOptions } from "@asyncore/asyncore/select";
import {
  catchInterrupt,
  Cli,
  formatAddress,
  listenOrExit,
  log,
  maxLengthOption,
  messageOf,
  QUIET_FLAG,
} from "./_cli.ts";

const FIXTURES = new URL("../tests/fixtures/tls/", import.meta.url);
/** The most bytes a handler holds for a client before it stops reading. */
const MAX_BUFFERED = 65536;
/** The longest line before STARTTLS by default, in bytes. */
export const MAX_LENGTH = 65536;

/** Serves one client: the STARTTLS preamble if asked for, then echo. */
export class TlsEchoHandler extends AsyncChat {
  readonly peer: string;
  readonly tls: TlsOptions;

  constructor(
    sock: Socket,
    addr: Deno.Addr,
    tls: TlsOptions,
    starttls: boolean,
  ) {
    super(sock);
    this.peer = formatAddress(addr);
    this.tls = tls;
    if (starttls) {
      this.setTerminator("\r\n");
      this.push("220 tls_echo_server.ts: send STARTTLS\r\n");
    } else {
      this.setTerminator(null); // echo everything as it comes
    }
  }

  override readable(): boolean {
    return this.sendBuffered < MAX_BUFFERED;
  }

  override collectIncomingData(data: Uint8Array): void {
    if (this.getTerminator() === null) this.push(data.slice());
    else super.collectIncomingData(data);
  }

  override foundTerminator(): void {
    const line = new TextDecoder().decode(this.getData());
    if (line.toUpperCase() !== "STARTTLS") {
      this.push("530 send STARTTLS first\r\n");
      return;
    }
    // Anything the client sent after STARTTLS came in plaintext: drop it
    // (RFC 3207). Then the go-ahead, the upgrade, and echo over TLS.
    this.discardBuffers();
    this.push("220 ready for TLS\r\n");
    this.startTls(this.tls);
    this.setTerminator(null);
  }

  override handleStartTls(): void {
    log("TLS established with", this.peer);
  }

  override handleError(error: unknown): void {
    if (!(error instanceof Deno.errors.InvalidData)) {
      super.handleError(error);
      return;
    }
    log(`TLS handshake with ${this.peer} failed: ${messageOf(error)}`);
    this.close();
  }

  override handleClose(): void {
    log("Disconnected from", this.peer);
    this.close();
  }
}

/** Listens (with TLS unless `starttls`) and hands each connection to a handler. */
export class TlsEchoServer extends Dispatcher {
  readonly tls: TlsOptions;
  readonly starttls: boolean;
  /** The longest line a client may send before STARTTLS. */
  readonly maxLength: number;

  constructor(
    address: { hostname: string; port: number },
    tls: TlsOptions,
    starttls = false,
    maxLength = MAX_LENGTH,
  ) {
    super();
    this.tls = tls;
    this.starttls = starttls;
    this.maxLength = maxLength;
    this.createSocket(starttls ? {} : { tls });
    try {
      this.bind(address);
      this.listen(5);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  override handleAccepted(sock: Socket, addr: Deno.Addr): void {
    log("Connected from", formatAddress(addr));
    new TlsEchoHandler(sock, addr, this.tls, this.starttls).maxRecordSize =
      this.maxLength;
  }

  override handleClose(): void {
    this.close();
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "tls_echo_server.ts",
    flags: QUIET_FLAG,
    summary:
      "Echoes whatever each client sends, over TLS from the first byte or after STARTTLS.",
    permissions: "--allow-net --allow-read",
    options: {
      host: {
        value: "HOST",
        help: "address to listen on",
        default: "127.0.0.1",
      },
      port: { value: "PORT", help: "port to listen on", default: "8443" },
      mode: {
        value: "tls|starttls",
        help: "TLS from the first byte, or plaintext until STARTTLS",
        default: "tls",
      },
      cert: {
        value: "FILE",
        help: "certificate chain, PEM (default: the test certificate)",
      },
      key: {
        value: "FILE",
        help: "private key of the certificate, PEM (default: its test key)",
      },
      "max-length": maxLengthOption(
        "the longest line before STARTTLS",
        MAX_LENGTH,
      ),
    },
  });
  const { options } = cli.parse();
  const hostname = cli.host("--host", options.host);
  const port = cli.port("--port", options.port);
  if (options.mode !== "tls" && options.mode !== "starttls") {
    cli.fail(
      `--mode must be tls or starttls, got ${JSON.stringify(options.mode)}`,
    );
  }
  const maxLength = cli.positiveInteger("--max-length", options["max-length"]);
  if ((options.cert === undefined) !== (options.key === undefined)) {
    cli.fail("--cert and --key go together");
  }
  const read = (flag: string, path: string | URL): string => {
    try {
      return Deno.readTextFileSync(path);
    } catch (error) {
      console.error(
        `tls_echo_server.ts: cannot read --${flag}: ${messageOf(error)}`,
      );
      Deno.exit(1);
    }
  };
  const tls = {
    cert: read("cert", options.cert ?? new URL("localhost.crt", FIXTURES)),
    key: read("key", options.key ?? new URL("localhost.key", FIXTURES)),
  };
  listenOrExit("tls_echo_server.ts", () =>
    new TlsEchoServer(
      { hostname, port },
      tls,
      options.mode === "starttls",
      maxLength,
    ));
  using interrupt = catchInterrupt();
  await loop({ signal: interrupt.signal });
  closeAll();
}
