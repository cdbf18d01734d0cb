/**
 * The fast poetry server of Dave Peticolas's Twisted tutorial
 * (`blocking-server/fastpoetry.py`, Part 2): every client gets the whole
 * poem, then the connection closes. Twisted's `connectionMade()` writes the
 * poem and calls `loseConnection()`; here the `PoetryProtocol` channel
 * `push()`es it and calls `closeWhenDone()`, which is the same thing.
 *
 * ```sh
 * deno run --allow-net --allow-read examples/poetry_server.ts [--host 127.0.0.1] [--port 10000] [--quiet] [POEM_FILE]
 * ```
 *
 * `POEM_FILE` defaults to `examples/poetry/death_be_not_proud.txt`. The
 * tutorial picks a random port unless given one; this server defaults to
 * 10000, the port of the tutorial's command lines (`--port 0` picks one).
 *
 * @module
 */

import { AsyncChat } from "@asyncore/asyncore/asynchat";
import { closeAll, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
import type { Socket } from "@asyncore/asyncore/select";
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

/** Sends the poem to one client and closes. */
export class PoetryProtocol extends AsyncChat {
  constructor(sock: Socket, addr: Deno.Addr, factory: PoetryFactory) {
    super(sock);
    log(
      `Sending ${factory.poem.length} bytes of poetry to ${
        formatAddress(addr)
      }`,
    );
    this.connectionMade(factory.poem);
  }

  connectionMade(poem: Uint8Array): void {
    this.push(poem);
    this.closeWhenDone();
  }

  /** What the client sends is of no interest. */
  override collectIncomingData(_data: Uint8Array): void {}
}

/** Listens, and starts a `PoetryProtocol` for each client. */
export class PoetryFactory extends Dispatcher {
  readonly poem: Uint8Array;

  constructor(poem: Uint8Array, address: { hostname: string; port: number }) {
    super();
    this.poem = poem;
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
    new PoetryProtocol(sock, addr, this);
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "poetry_server.ts",
    flags: QUIET_FLAG,
    summary: "Sends a poem to every client, then closes the connection.",
    permissions: "--allow-net --allow-read",
    positionals: "[POEM_FILE]",
    maxPositionals: 1,
    options: serverOptions("10000"),
  });
  const { options, positionals } = cli.parse();
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  const hostname = cli.host("--host", options.host);
  const port = cli.port("--port", options.port);
  const poemFile = positionals[0] ??
    new URL("./poetry/death_be_not_proud.txt", import.meta.url);
  const poemName = typeof poemFile === "string"
    ? poemFile
    : "examples/poetry/death_be_not_proud.txt";
  let poem: Uint8Array;
  try {
    poem = Deno.readFileSync(poemFile);
  } catch (error) {
    console.error(
      `poetry_server.ts: cannot read ${poemName}: ${messageOf(error)}`,
    );
    Deno.exit(1);
  }
  listenOrExit(
    "poetry_server.ts",
    () => new PoetryFactory(poem, { hostname, port }),
  );
  log(`Serving ${poemName} (${poem.length} bytes)`);
  await loop({ signal: interrupt.signal });
  closeAll();
}
