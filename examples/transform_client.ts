/**
 * The poetry client of Dave Peticolas's Twisted tutorial that uses the
 * transformation service (`twisted-client-6/get-poetry.py`): it
 * gets a poem from each poetry server at once and, as each arrives, sends
 * it to the transformation server as a `NAME.POEM` netstring and prints the
 * answer. If the transform fails, it says so and prints the poem as it was.
 *
 * ```sh
 * deno run --allow-net examples/transform_client.ts [--transform cummingsify] [--max-length 67108864] XFORM_[HOST:]PORT POETRY_[HOST:]PORT...
 * ```
 *
 * The poems go to stdout in the order of the addresses; progress goes to
 * stderr. A poetry server that cannot be reached is reported and the exit
 * code is 1.
 *
 * @module
 */

import { closeAll, loop } from "@asyncore/asyncore/asyncore";
import { NetstringReceiver } from "./_netstring.ts";
import { PoetryClient } from "./poetry_client.ts";
import {
  catchInterrupt,
  Cli,
  concat,
  formatAddress,
  maxLengthOption,
  messageOf,
  writeStdout,
} from "./_cli.ts";

const encoder = new TextEncoder();

/** The longest transformed poem accepted by default, in bytes. */
export const MAX_LENGTH = 64 * 1024 * 1024;

/** Asks the transformation server for one transform of one poem. */
export class TransformClient extends NetstringReceiver {
  readonly xformName: string;
  readonly done: (poem: Uint8Array | null) => void;
  #answer: Uint8Array | null = null;
  #reported = false;

  constructor(
    xformName: string,
    poem: Uint8Array,
    address: { hostname: string; port: number },
    done: (poem: Uint8Array | null) => void,
    maxLength: number = MAX_LENGTH,
  ) {
    super();
    this.xformName = xformName;
    this.done = done;
    this.maxLength = maxLength;
    this.createSocket();
    this.connect(address);
    // Queued until the connection is made.
    this.sendString(concat([encoder.encode(`${xformName}.`), poem]));
  }

  override stringReceived(poem: Uint8Array): void {
    this.#answer = poem;
    this.stopReading();
    this.handleClose();
  }

  override handleClose(): void {
    this.close();
    if (this.#reported) return;
    this.#reported = true;
    this.done(this.#answer);
  }

  override handleError(error: unknown): void {
    console.error(`${this.xformName} request failed: ${messageOf(error)}`);
    this.handleClose();
  }
}

if (import.meta.main) {
  const cli = new Cli({
    name: "transform_client.ts",
    summary:
      "Gets a poem from each poetry server and prints it as the transformation server transforms it.",
    positionals: "XFORM_[HOST:]PORT POETRY_[HOST:]PORT...",
    minPositionals: 2,
    maxPositionals: Infinity,
    options: {
      transform: {
        value: "NAME",
        help: "the transform to ask for",
        default: "cummingsify",
      },
      "max-length": maxLengthOption(
        "the longest transformed poem accepted",
        MAX_LENGTH,
      ),
    },
  });
  const { options, positionals } = cli.parse();
  // Ctrl-C from here on closes every channel and exits cleanly.
  using interrupt = catchInterrupt();
  const xformName = options.transform ?? "cummingsify";
  if (!/^[^.]+$/.test(xformName)) {
    cli.fail(
      `--transform must be a name without ".", got ${
        JSON.stringify(xformName)
      }`,
    );
  }
  const maxLength = cli.positiveInteger("--max-length", options["max-length"]);
  const [xformAddress, ...poetryAddresses] = positionals.map((text) =>
    cli.address("address", text)
  );
  const poems: (Uint8Array | null)[] = poetryAddresses.map(() => null);
  let failures = 0;
  poetryAddresses.forEach((address, i) => {
    new PoetryClient(i + 1, address, (client) => {
      if (client.failed) {
        failures++;
        return;
      }
      const poem = client.poem;
      new TransformClient(xformName, poem, xformAddress, (transformed) => {
        if (transformed === null) {
          console.error(
            `Task ${client.task}: ${xformName} failed at ${
              formatAddress({ transport: "tcp", ...xformAddress })
            }; printing the poem as it was`,
          );
        } else {
          console.error(
            `Task ${client.task}: ${xformName}: ${transformed.length} bytes`,
          );
        }
        poems[i] = transformed ?? poem;
      }, maxLength);
    });
  });
  await loop({ signal: interrupt.signal });
  closeAll();
  for (const poem of poems) if (poem !== null) writeStdout(poem);
  if (interrupt.signal.aborted) console.error("Interrupted");
  else if (failures > 0) Deno.exitCode = 1;
}
