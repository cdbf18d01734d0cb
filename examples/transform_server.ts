/**
 * The poetry transformation service of Dave Peticolas's Twisted tutorial
 * (`twisted-server-1/transformedpoetry.py`, Part 12): a client sends one
 * netstring, `NAME.POEM` (say `cummingsify.` and a poem), and gets back the
 * transformed poem as a netstring; then the connection closes.
 *
 * ```sh
 * deno run --allow-net examples/transform_server.ts [--host 127.0.0.1] [--port 11000] [--max-length 1048576] [--idle-timeout 30000] [--quiet]
 * ```
 *
 * Transforms: `cummingsify` (lower-cases the poem, as the tutorial's does)
 * and `reverse` (the poem's lines in reverse order; added here). As in the
 * tutorial, a request without a `.`, an unknown transform, or one that fails
 * (here: a poem that is not UTF-8) closes the connection without an answer;
 * so does input that is not a netstring, or a declared length over
 * `--max-length`, which is refused as soon as the length is read, before
 * any of the body. A client silent for `--idle-timeout` ms (one that declares
 * a length and never sends the body, say) is closed too. The server goes on
 * serving everyone else.
 *
 * @module
 */

import { closeAll, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
import type { Socket } from "@asyncore/asyncore/select";
import { NetstringReceiver } from "./_netstring.ts";
import {
  catchInterrupt,
  Cli,
  formatAddress,
  listenOrExit,
  log,
  maxLengthOption,
  QUIET_FLAG,
} from "./_cli.ts";

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** The transforms themselves, on text. */
export class TransformService {
  /** The tutorial's transform: e. e. cummings wrote in lower case. */
  cummingsify(poem: string): string {
    return poem.toLowerCase();
  }

  /** The poem's lines, last first (a trailing newline stays at the end). */
  reverse(poem: string): string {
    const ending = poem.endsWith("\n") ? "\n" : "";
    const lines = (ending ? poem.slice(0, -1) : poem).split("\n");
    return lines.reverse().join("\n") + ending;
  }
}

/** Reads one `NAME.POEM` netstring and answers it. */
export class TransformProtocol extends NetstringReceiver {
  readonly factory: TransformFactory;
  readonly peer: string;

  constructor(sock: Socket, addr: Deno.Addr, factory: TransformFactory) {
    super(sock);
    this.factory = factory;
    this.peer = formatAddress(addr);
    this.maxLength = factory.maxLength;
    this.idleTimeout = factory.clientIdleTimeout;
  }

  override handleTimeout(): void {
    this.reject(`silent for ${this.idleTimeout} ms`);
  }

  override stringReceived(request: Uint8Array): void {
    this.stopReading(); // one request per connection
    const dot = request.indexOf(0x2e);
    if (dot < 0) { // bad request
      return this.reject("no transform name (no '.')");
    }
    const xformName = new TextDecoder().decode(request.subarray(0, dot));
    this.xformRequestReceived(xformName, request.subarray(dot + 1));
  }

  xformRequestReceived(xformName: string, poem: Uint8Array): void {
    const newPoem = this.factory.transform(xformName, poem);
    if (newPoem === null) {
      return this.reject(
        this.factory.has(xformName)
          ? `${xformName} failed on ${poem.length} bytes`
          : `no such transform: ${JSON.stringify(xformName)}`,
      );
    }
    log(
      `${xformName}: ${poem.length} bytes for ${this.peer}`,
    );
    this.sendString(newPoem);
    this.closeWhenDone();
  }

  /** Closes without an answer, and says why. */
  reject(reason: string): void {
    log(`Rejected ${this.peer}: ${reason}`);
    this.close();
  }

  override protocolViolation(reason: string): void {
    this.reject(`not a netstring: ${reason}`);
  }

  override lengthLimitExceeded(length: number): void {
    this.reject(`declared length ${length} is over ${this.maxLength}`);
  }
}

/** Listens, and knows which transforms there are. */
export class TransformFactory extends Dispatcher {
  readonly service: TransformService;
  readonly maxLength: number;
  readonly clientIdleTimeout: number;
  readonly #xforms: Record<string, (poem: string) => string>;

  constructor(
    service: TransformService,
    address: { hostname: string; port: number },
    maxLength: number,
    idleTimeout = 30_000,
  ) {
    super();
    this.service = service;
    this.maxLength = maxLength;
    this.clientIdleTimeout = idleTimeout;
    this.#xforms = {
      cummingsify: (poem) => this.service.cummingsify(poem),
      reverse: (poem) => this.service.reverse(poem),
    };
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
    new TransformProtocol(sock, addr, this);
  }

  /** Whether there is a transform of this name. */
  has(xformName: string): boolean {
    return Object.hasOwn(this.#xforms, xformName);
  }

  /** The transformed poem, or `null` for no such transform or a failure. */
  transform(xformName: string, poem: Uint8Array): Uint8Array | null {
    if (!this.has(xformName)) return null; // no such transform
    try {
      return encoder.encode(this.#xforms[xformName](decoder.decode(poem)));
    } catch {
      return null; // transform failed
    }
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "transform_server.ts",
    flags: QUIET_FLAG,
    summary:
      "Answers a NAME.POEM netstring with the transformed poem (cummingsify, reverse).",
    options: {
      host: {
        value: "HOST",
        help: "address to listen on",
        default: "127.0.0.1",
      },
      port: { value: "PORT", help: "port to listen on", default: "11000" },
      "max-length": maxLengthOption("the longest request accepted", 1048576),
      "idle-timeout": {
        value: "MS",
        help: "close a client silent this long",
        default: "30000",
      },
    },
  });
  const { options } = cli.parse();
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  const hostname = cli.host("--host", options.host);
  const port = cli.port("--port", options.port);
  const maxLength = cli.positiveInteger("--max-length", options["max-length"]);
  const idleTimeout = cli.positiveInteger(
    "--idle-timeout",
    options["idle-timeout"],
  );
  listenOrExit(
    "transform_server.ts",
    () =>
      new TransformFactory(
        new TransformService(),
        { hostname, port },
        maxLength,
        idleTimeout,
      ),
  );
  await loop({ signal: interrupt.signal });
  closeAll();
}
