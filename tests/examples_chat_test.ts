// End-to-end tests of examples/chat_client.ts and its asyncore twin,
// examples/asyncore_chat_client.ts: the client runs as a subprocess with its
// standard input and output on pipes, selecting on standard input and its
// socket (the epoll backend's real descriptors), or serving them as two
// channels of one loop (a FileDispatcher and an AsyncChat).

import { assertEquals, assertMatch } from "@std/assert";
import { unsupportedReason } from "../_epoll/libc.ts";
import {
  IO_TIMEOUT,
  ROOT,
  startServer,
  stopCleanly,
  within,
} from "./_examples_helpers.ts";
import { bytes, killQuietly } from "./_helpers.ts";

const unsupported = unsupportedReason();
const skip = unsupported === null
  ? ""
  : " (skipped: the epoll backend cannot run here)";

const CLIENTS = ["chat_client.ts", "asyncore_chat_client.ts"];

/** A chat client with its stdin and stdout on pipes. */
class ChatClient implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly stdin: WritableStreamDefaultWriter<Uint8Array>;
  #output = "";
  #errors = "";
  #changed: () => void = () => {};
  #drained: Promise<void>;

  constructor(
    readonly script: string,
    port: number,
    permissions = ["--allow-net", "--allow-ffi"],
    stdin: "piped" | "null" = "piped",
  ) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...permissions,
        `examples/${script}`,
        "--port",
        String(port),
      ],
      cwd: ROOT,
      stdin,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.stdin = stdin === "piped"
      ? this.child.stdin.getWriter()
      : new WritableStream<Uint8Array>().getWriter();
    const collect = async (
      stream: ReadableStream<Uint8Array>,
      append: (text: string) => void,
    ) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        append(chunk);
        this.#changed();
      }
    };
    this.#drained = Promise.all([
      collect(this.child.stdout, (text) => this.#output += text),
      collect(this.child.stderr, (text) => this.#errors += text),
    ]).then(() => this.#changed());
  }

  get output(): string {
    return this.#output;
  }

  get errors(): string {
    return this.#errors;
  }

  /** Waits until stdout matches `pattern`, bounded. */
  async waitFor(pattern: RegExp): Promise<void> {
    const deadline = performance.now() + IO_TIMEOUT;
    while (!pattern.test(this.#output)) {
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(
          `${this.script} did not print ${pattern}\nstdout:\n${this.#output}\nstderr:\n${this.#errors}`,
        );
      }
      await within(
        left,
        `output matching ${pattern}`,
        new Promise<void>((resolve) => this.#changed = resolve),
      );
    }
  }

  /** Waits for the exit, bounded. */
  async exit(): Promise<Deno.CommandStatus> {
    const status = await within(IO_TIMEOUT, "the exit", this.child.status);
    await this.#drained;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    killQuietly(this.child);
    await this.stdin.close().catch(() => {});
    await this.child.status;
    await this.#drained;
  }
}

for (const script of CLIENTS) {
  Deno.test({
    name:
      `${script} sends what is typed and prints what the server sends${skip}`,
    ignore: unsupported !== null,
    async fn() {
      await using server = await startServer("asynchat_line_echo_server.ts");
      await using client = new ChatClient(script, server.port);
      await client.waitFor(/^Connected to 127\.0\.0\.1:\d+\. /);
      await client.stdin.write(bytes("hello\n"));
      await client.waitFor(/\nhello\n$/);
      // Part of a line, then the rest: the echo comes once the line is whole.
      await client.stdin.write(bytes("wor"));
      await client.stdin.write(bytes("ld\n"));
      await client.waitFor(/\nhello\nworld\n$/);
      // End of input ends the session.
      await client.stdin.close();
      const status = await client.exit();
      assertEquals(status.code, 0, client.errors);
      assertEquals(client.errors, "");
      await stopCleanly(server);
    },
  });

  Deno.test({
    name: `${script} ends when the server closes the connection${skip}`,
    ignore: unsupported !== null,
    async fn() {
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      await using client = new ChatClient(script, listener.addr.port);
      const conn = await within(IO_TIMEOUT, "the connect", listener.accept());
      await conn.write(bytes("welcome\n"));
      conn.close();
      await client.waitFor(/welcome\nThe server closed the connection\.\n$/);
      const status = await client.exit();
      assertEquals(status.code, 0, client.errors);
    },
  });

  Deno.test({
    name: `${script} without --allow-ffi says what it needs${skip}`,
    ignore: unsupported !== null,
    async fn() {
      await using client = new ChatClient(script, 1, [
        "--allow-net",
        "--no-prompt",
      ]);
      await client.stdin.close();
      const status = await client.exit();
      assertEquals(status.code, 1);
      assertMatch(client.errors, /--allow-ffi/);
      assertEquals(client.output, "");
    },
  });
}

Deno.test({
  name:
    `asyncore_chat_client.ts with /dev/null as input (which epoll cannot watch) connects and ends${skip}`,
  ignore: unsupported !== null,
  async fn() {
    await using server = await startServer("asynchat_line_echo_server.ts");
    await using client = new ChatClient(
      "asyncore_chat_client.ts",
      server.port,
      undefined,
      "null",
    );
    const status = await client.exit();
    assertEquals(status.code, 0, client.errors);
    assertMatch(client.output, /^Connected to 127\.0\.0\.1:\d+\. /);
    assertEquals(client.errors, "");
    await stopCleanly(server);
  },
});
