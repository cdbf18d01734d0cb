/**
 * The test client of _Python in a Nutshell_ (2nd edition), Chapter 19: it
 * connects to an echo server, sends a few lines one at a time and prints
 * each response. Written as the book writes it, one step after another, on
 * a non-blocking {@linkcode Socket} and `select()`.
 *
 * ```sh
 * deno run --allow-net examples/echo_client.ts [--host 127.0.0.1] [--port 8881] [--eol crlf|lf|none] [LINE...]
 * ```
 *
 * It works against every echo server in `examples/`: each line goes out with
 * the `--eol` terminator (default `\r\n`, which the raw echo servers echo as
 * is, the `\r\n` asynchat server splits on, and the `\n` one echoes as it
 * came). The book's client sends lines with no terminator (`--eol none`) and
 * takes whatever one `recv` returns as the response; this one reads until
 * the whole echo is back, since TCP may deliver it in pieces.
 *
 * @module
 */

import { Socket } from "@asyncore/asyncore/select";
import { blockingCalls, Interrupted } from "./_blocking.ts";
import { catchInterrupt, Cli, formatAddress, messageOf } from "./_cli.ts";

const EOLS: Record<string, string> = { crlf: "\r\n", lf: "\n", none: "" };

const cli = new Cli({
  name: "echo_client.ts",
  summary:
    "Sends each LINE (default: the book's three lines) to an echo server and prints the responses.",
  positionals: "[LINE...]",
  maxPositionals: Infinity,
  options: {
    host: { value: "HOST", help: "server address", default: "127.0.0.1" },
    port: { value: "PORT", help: "server port", default: "8881" },
    eol: {
      value: "crlf|lf|none",
      help: "line terminator to send",
      default: "crlf",
    },
  },
});
const { options, positionals } = cli.parse();
// Ctrl-C from here on closes every channel and exits cleanly.
using interrupt = catchInterrupt();
const hostname = cli.host("--host", options.host);
const port = cli.port("--port", options.port);
const eolName = options.eol ?? "crlf";
if (!Object.hasOwn(EOLS, eolName)) {
  cli.fail(`--eol must be crlf, lf or none, got ${JSON.stringify(eolName)}`);
}
const eol = EOLS[eolName];
const data = positionals.length > 0
  ? positionals.join("\n")
  : `A few lines of data
to test the operation
of both server and client.`;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const { waitFor, sendall, recvExactly } = blockingCalls(interrupt.signal);

const sock = new Socket();
const server = formatAddress({ transport: "tcp", hostname, port });
try {
  sock.connect({ hostname, port });
  await waitFor(sock, "w");
  if (sock.error) throw sock.error;
  console.log("Connected to server");
  for (const line of data.split(/\r?\n/)) {
    const request = encoder.encode(line + eol);
    await sendall(sock, request);
    console.log("Sent:", line);
    const response = decoder.decode(await recvExactly(sock, request.length));
    console.log(
      "Received:",
      response.endsWith(eol)
        ? response.slice(0, response.length - eol.length)
        : response,
    );
  }
} catch (error) {
  if (!(error instanceof Interrupted)) {
    console.error(`echo_client.ts: ${server}: ${messageOf(error)}`);
    Deno.exitCode = 1;
  }
} finally {
  sock.close();
}
