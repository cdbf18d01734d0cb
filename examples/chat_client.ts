/**
 * The classic chat client of Python's socket tutorials: one `select()` over
 * standard input and a socket. What the user types goes to the server; what
 * the server sends is printed. End of input (Ctrl-D) ends the session; so
 * does the server closing the connection.
 *
 * ```sh
 * deno run --allow-net --allow-ffi examples/chat_client.ts [--host 127.0.0.1] [--port 8881]
 * ```
 *
 * Selecting on standard input needs real descriptors, so this program uses
 * the epoll backend (`setDefaultBackend("epoll")`: Linux, `--allow-ffi`,
 * which lifts Deno's sandbox for the process). Where that cannot run it says
 * why and exits. Try it against any echo server in `examples/`, e.g.
 * `asynchat_line_echo_server.ts`. The tutorial's client reads a whole line
 * from `sys.stdin` when it is readable; this one sends whatever input is
 * there, since a pipe may deliver part of a line.
 *
 * @module
 */

import { select, setDefaultBackend, Socket } from "@asyncore/asyncore/select";
import {
  catchInterrupt,
  Cli,
  formatAddress,
  messageOf,
  writeStdout,
} from "./_cli.ts";

const STDIN = 0;

const cli = new Cli({
  name: "chat_client.ts",
  summary:
    "Sends what is typed to a chat (or echo) server and prints what it sends.",
  permissions: "--allow-net --allow-ffi",
  options: {
    host: { value: "HOST", help: "server address", default: "127.0.0.1" },
    port: { value: "PORT", help: "server port", default: "8881" },
  },
});
const { options } = cli.parse();
using interrupt = catchInterrupt();
const hostname = cli.host("--host", options.host);
const port = cli.port("--port", options.port);
const server = formatAddress({ transport: "tcp", hostname, port });

try {
  setDefaultBackend("epoll");
} catch (error) {
  // Not Linux, or no --allow-ffi: the message names the reason and the fix.
  console.error(`chat_client.ts: ${messageOf(error)}`);
  Deno.exit(1);
}

const input = new Uint8Array(4096);
const sock = new Socket();
const { signal } = interrupt;

async function sendAll(data: Uint8Array): Promise<void> {
  while (data.length > 0) {
    await select([], [sock], [], undefined, { signal });
    if (signal.aborted) return;
    data = data.subarray(sock.send(data));
  }
}

try {
  sock.connect({ hostname, port });
  await select([], [sock], [], undefined, { signal });
  if (sock.error) throw sock.error;
  console.log(`Connected to ${server}. Type to chat; Ctrl-D ends.`);
  for (;;) {
    const [readable] = await select([STDIN, sock], [], [], undefined, {
      signal,
    });
    if (signal.aborted) break;
    if (readable.includes(sock)) {
      const data = sock.recv(4096);
      if (data.length === 0) {
        console.log("The server closed the connection.");
        break;
      }
      writeStdout(data);
    }
    if (readable.includes(STDIN)) {
      // select() said standard input is readable: this read does not wait.
      const count = await Deno.stdin.read(input);
      if (count === null) break;
      await sendAll(input.subarray(0, count));
    }
  }
} catch (error) {
  console.error(`chat_client.ts: ${server}: ${messageOf(error)}`);
  Deno.exitCode = 1;
} finally {
  sock.close();
}
