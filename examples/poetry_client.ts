/**
 * The asynchronous poetry client of Dave Peticolas's Twisted tutorial
 * (`async-client/get-poetry.py`, Part 2; `twisted-client-1` later):
 * it connects to every poetry server at once and collects each poem as it
 * arrives, on one loop, one `PoetryClient` channel per server.
 *
 * ```sh
 * deno run --allow-net examples/poetry_client.ts [HOST:]PORT...
 * ```
 *
 * The poems go to stdout, in the order of the addresses; the tutorial's
 * progress lines (`Task 1: got 40 bytes of poetry from 127.0.0.1:10000`,
 * `Task 1 finished`) and its summary go to stderr. A server that cannot be
 * reached is reported and the exit code is 1; the other poems are printed.
 * Ctrl-C closes every channel and prints the poems already complete.
 *
 * @module
 */

import { closeAll, Dispatcher, loop } from "@asyncore/asyncore/asyncore";
import {
  catchInterrupt,
  Cli,
  concat,
  formatAddress,
  messageOf,
  writeStdout,
} from "./_cli.ts";

/** Gets one poem: reads until the server closes. */
export class PoetryClient extends Dispatcher {
  readonly task: number;
  readonly address: string;
  readonly poemFinished: (client: PoetryClient) => void;
  data: Uint8Array[] = [];
  finished = false;
  failed = false;

  /**
   * @param task The task's number, for the progress lines.
   * @param address The server.
   * @param poemFinished Called once, when the poem is complete or the
   *   connection failed.
   */
  constructor(
    task: number,
    address: { hostname: string; port: number },
    poemFinished: (client: PoetryClient) => void = () => {},
  ) {
    super();
    this.task = task;
    this.address = formatAddress({ transport: "tcp", ...address });
    this.poemFinished = poemFinished;
    this.createSocket();
    this.connect(address);
  }

  /** The poem so far. */
  get poem(): Uint8Array {
    return concat(this.data);
  }

  /** Wait for writability only to learn that the connect is done. */
  override writable(): boolean {
    return !this.connected;
  }

  override handleConnect(): void {}

  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length === 0) return; // the end: recv() called handleClose()
    this.data.push(data);
    console.error(
      `Task ${this.task}: got ${data.length} bytes of poetry from ${this.address}`,
    );
  }

  override handleClose(): void {
    this.close();
    if (this.finished) return;
    this.finished = true;
    console.error(`Task ${this.task} finished`);
    this.poemFinished(this);
  }

  override handleError(error: unknown): void {
    this.close();
    if (this.finished) return;
    this.finished = this.failed = true;
    console.error(
      `Task ${this.task}: failed to get poetry from ${this.address}: ${
        messageOf(error)
      }`,
    );
    this.poemFinished(this);
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "poetry_client.ts",
    summary: "Gets a poem from each poetry server at once and prints them.",
    positionals: "[HOST:]PORT...",
    minPositionals: 1,
    maxPositionals: Infinity,
    options: {},
  });
  const { positionals } = cli.parse();
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  const addresses = positionals.map((text) => cli.address("address", text));
  const start = performance.now();
  const clients = addresses.map((address, i) =>
    new PoetryClient(i + 1, address)
  );
  await loop({ signal: interrupt.signal });
  closeAll();
  const elapsed = ((performance.now() - start) / 1000).toFixed(3);
  for (const client of clients) {
    console.error(
      `Task ${client.task}: ${client.poem.length} bytes of poetry`,
    );
    if (client.finished && !client.failed) writeStdout(client.poem);
  }
  const got = clients.filter((client) => client.finished && !client.failed);
  console.error(`Got ${got.length} poems in ${elapsed}s`);
  if (interrupt.signal.aborted) console.error("Interrupted");
  else if (got.length < clients.length) Deno.exitCode = 1;
}
