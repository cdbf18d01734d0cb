/**
 * The client of `tls_echo_server.ts`: the book's echo client (see
 * `echo_client.ts`) over TLS, one step after another on a non-blocking
 * {@linkcode Socket} and `select()`, which work on TLS sockets as on plain
 * ones. With `--mode tls` the socket is made with `tls` options, so the
 * connect completes once the handshake has. With `--mode starttls` it
 * connects in plaintext, reads the server's greeting, sends `STARTTLS`,
 * waits for the `220` go-ahead and upgrades the connection in place with
 * `startTls()`.
 *
 * ```sh
 * deno run --allow-net --allow-read examples/tls_echo_client.ts [--host 127.0.0.1] [--port 8443] [--mode tls|starttls] [--ca FILE] [--servername NAME] [LINE...]
 * ```
 *
 * The server's certificate is checked against `--ca` (default: the test CA
 * in `tests/fixtures/tls`, besides the system's roots) and `--servername`
 * (default: `--host`). A failed handshake is reported with Deno's reason and
 * exit code 1.
 *
 * @module
 */

import { Socket } from "@asyncore/asyncore/select";
import { blockingCalls, Interrupted } from "./_blocking.ts";
import { catchInterrupt, Cli, formatAddress, messageOf } from "./_cli.ts";

const cli = new Cli({
  name: "tls_echo_client.ts",
  summary:
    "Sends each LINE (default: the book's three lines) to a TLS echo server and prints the responses.",
  positionals: "[LINE...]",
  maxPositionals: Infinity,
  permissions: "--allow-net --allow-read",
  options: {
    host: { value: "HOST", help: "server address", default: "127.0.0.1" },
    port: { value: "PORT", help: "server port", default: "8443" },
    mode: {
      value: "tls|starttls",
      help: "TLS from the first byte, or plaintext until STARTTLS",
      default: "tls",
    },
    ca: {
      value: "FILE",
      help: "a CA certificate to trust, PEM (default: the test CA)",
    },
    servername: {
      value: "NAME",
      help: "the name the certificate must carry (default: HOST)",
    },
  },
});
const { options, positionals } = cli.parse();
const hostname = cli.host("--host", options.host);
const port = cli.port("--port", options.port);
if (options.mode !== "tls" && options.mode !== "starttls") {
  cli.fail(
    `--mode must be tls or starttls, got ${JSON.stringify(options.mode)}`,
  );
}
const servername = options.servername === undefined
  ? hostname
  : cli.host("--servername", options.servername);
let caCert: string;
try {
  caCert = Deno.readTextFileSync(
    options.ca ?? new URL("../tests/fixtures/tls/ca.crt", import.meta.url),
  );
} catch (error) {
  console.error(`tls_echo_client.ts: cannot read --ca: ${messageOf(error)}`);
  Deno.exit(1);
}
const tls = { hostname: servername, caCerts: [caCert] };
const data = positionals.length > 0
  ? positionals.join("\n")
  : `A few lines of data
to test the operation
of both server and client.`;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

using interrupt = catchInterrupt();
const { waitFor, sendall, recvExactly } = blockingCalls(interrupt.signal);

/**
 * Receives one `\r\n`-terminated line, a byte at a time: nothing past it is
 * taken, so the bytes after a STARTTLS go-ahead are left for TLS.
 */
async function recvLine(sock: Socket): Promise<string> {
  let line = "";
  while (!line.endsWith("\r\n")) {
    line += decoder.decode(await recvExactly(sock, 1));
  }
  return line.slice(0, -2);
}

const server = formatAddress({ transport: "tcp", hostname, port });
const sock = new Socket(options.mode === "tls" ? { tls } : {});
try {
  sock.connect({ hostname, port });
  await waitFor(sock, "w");
  if (options.mode === "tls") {
    console.log("Connected to server over TLS");
  } else {
    console.log("Connected to server");
    console.log("Server:", await recvLine(sock));
    await sendall(sock, encoder.encode("STARTTLS\r\n"));
    const reply = await recvLine(sock);
    console.log("Server:", reply);
    if (!reply.startsWith("220")) throw new Error("the server refused TLS");
    sock.startTls(tls);
    await waitFor(sock, "w"); // the handshake is over
    console.log("Upgraded to TLS");
  }
  for (const line of data.split(/\r?\n/)) {
    const request = encoder.encode(line + "\r\n");
    await sendall(sock, request);
    console.log("Sent:", line);
    const response = decoder.decode(await recvExactly(sock, request.length));
    console.log("Received:", response.slice(0, -2));
  }
} catch (error) {
  if (!(error instanceof Interrupted)) {
    console.error(`tls_echo_client.ts: ${server}: ${messageOf(error)}`);
    Deno.exitCode = 1;
  }
} finally {
  sock.close();
}
