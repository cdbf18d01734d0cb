/**
 * The chat client of `chat_client.ts`, written the asyncore way: two
 * channels in one loop, a `FileDispatcher` (Python's `file_dispatcher`) on
 * standard input and an `AsyncChat` on the socket. What the user types is
 * pushed to the server; what the server sends is printed. End of input
 * (Ctrl-D) ends the session once what was typed has been sent; so does the
 * server closing the connection.
 *
 * ```sh
 * deno run --allow-net --allow-ffi examples/asyncore_chat_client.ts [--host 127.0.0.1] [--port 8881]
 * ```
 *
 * Serving standard input in the loop needs real descriptors: the
 * `FileDispatcher` uses the epoll backend's system calls (Linux,
 * `--allow-ffi`, which lifts Deno's sandbox for the process); the socket
 * stays on the default backend unless `ASYNCORE_BACKEND=epoll` says
 * otherwise. Where that cannot run it says why and exits. As in Python,
 * standard input is left non-blocking (the flag is on the open file, shared
 * with the shell that started the program). Try it against any echo server
 * in `examples/`, e.g. `asynchat_line_echo_server.ts`.
 *
 * @module
 */

import { AsyncChat, closeAll, FileDispatcher, loop } from "@asyncore/asyncore";
import {
  catchInterrupt,
  Cli,
  formatAddress,
  messageOf,
  writeStdout,
} from "./_cli.ts";

const STDIN = 0;

/** The connection: prints what comes, sends what is pushed. */
class ChatChannel extends AsyncChat {
  failed = false;
  #ending = false;

  constructor(readonly server: string) {
    super();
    this.setTerminator(null); // no records: print what comes as it comes
  }

  override handleConnect(): void {
    console.log(`Connected to ${this.server}. Type to chat; Ctrl-D ends.`);
  }

  override collectIncomingData(data: Uint8Array): void {
    writeStdout(data);
  }

  /** Closes once everything pushed so far has been sent. */
  finish(): void {
    this.#ending = true;
    this.closeWhenDone();
  }

  override handleClose(): void {
    const error = this.socket?.error;
    if (error) return this.handleError(error);
    if (!this.#ending) console.log("The server closed the connection.");
    closeAll();
  }

  override handleError(error: unknown): void {
    this.failed = true;
    console.error(
      `asyncore_chat_client.ts: ${this.server}: ${messageOf(error)}`,
    );
    closeAll();
  }
}

/** Standard input: what is typed goes to the chat channel. */
class Keyboard extends FileDispatcher {
  constructor(readonly chat: ChatChannel) {
    super(STDIN);
  }

  override writable(): boolean {
    return false;
  }

  override handleRead(): void {
    const data = this.recv(4096);
    if (data.length > 0) this.chat.push(data);
  }

  /** End of input: the chat channel closes once it has sent everything. */
  override handleClose(): void {
    this.close();
    this.chat.finish();
  }
}

const cli = new Cli({
  name: "asyncore_chat_client.ts",
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
const chat = new ChatChannel(
  formatAddress({ transport: "tcp", hostname, port }),
);
try {
  // First, so that without --allow-ffi nothing else is tried.
  new Keyboard(chat);
} catch (error) {
  // Not Linux, or no --allow-ffi: the message names the reason and the fix.
  console.error(`asyncore_chat_client.ts: ${messageOf(error)}`);
  Deno.exit(1);
}
chat.createSocket();
chat.connect({ hostname, port });
await loop({ signal: interrupt.signal });
closeAll();
if (chat.failed) Deno.exitCode = 1;
