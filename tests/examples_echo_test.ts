// End-to-end tests of the echo servers in examples/ and of echo_client.ts:
// each server runs as a subprocess, real clients talk to it over loopback.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { delay } from "@std/async";
import { getAvailablePort } from "@std/net";
import {
  assertClosedByPeer,
  assertLines,
  connect,
  echo,
  hasPython3,
  INTERRUPTED,
  IO_TIMEOUT,
  permissionArgs,
  ROOT,
  runExample,
  runPython,
  START_TIMEOUT,
  startServer,
  stopCleanly,
  twistedClient,
  twistedPython,
  within,
} from "./_examples_helpers.ts";
import { bytes, closeQuietly, killQuietly, text } from "./_helpers.ts";

interface EchoServer {
  name: string;
  /** The terminator the server splits lines on, if it is line-based. */
  eol?: string;
}

const SERVERS: EchoServer[] = [
  { name: "select_echo_server.ts" },
  { name: "asyncore_echo_server.ts" },
  { name: "dispatcher_with_send_echo_server.ts" },
  { name: "asynchat_echo_server.ts", eol: "\r\n" },
  { name: "asynchat_line_echo_server.ts", eol: "\n" },
];

/** Lines of every length up to ~200 bytes; ~250 KiB in all. */
function manyLines(eol: string): Uint8Array {
  let out = "";
  for (let i = 0; out.length < 250_000; i++) {
    out += `line ${i} ${"abcdefghij".repeat(i % 20)}${eol}`;
  }
  return bytes(out);
}

const BOOK_CLIENT_OUTPUT = `Connected to server
Sent: A few lines of data
Received: A few lines of data
Sent: to test the operation
Received: to test the operation
Sent: of both server and client.
Received: of both server and client.
`;

for (const server of SERVERS) {
  Deno.test(`${server.name} echoes concurrent clients byte for byte`, async () => {
    await using example = await startServer(server.name);
    assertEquals(example.hostname, "127.0.0.1");
    const a = await connect(example.port);
    const b = await connect(example.port);
    try {
      const eol = server.eol ?? "\r\n";
      // A large stream on one client, small lines on the other, at once.
      const big = manyLines(eol);
      const [bigEcho, [small1, small2]] = await Promise.all([
        echo(b, big),
        (async () => [
          await echo(a, bytes(`hello${eol}`)),
          await echo(a, bytes(`wörld ☃${eol}`)),
        ])(),
      ]);
      assertEquals(text(small1), `hello${eol}`);
      assertEquals(text(small2), `wörld ☃${eol}`);
      assertEquals(bigEcho, big);
      a.close();
      // The server notices the disconnect and goes on serving b.
      await example.waitForOutput(/^disconnected from /im);
      assertEquals(text(await echo(b, bytes(`again${eol}`))), `again${eol}`);
      // Ctrl-C closes b's channel too.
      const finished = await stopCleanly(example);
      await assertClosedByPeer(b);
      assertMatch(finished.stdout, /^Connected from 127\.0\.0\.1:\d+$/m);
    } finally {
      closeQuietly(a);
      closeQuietly(b);
    }
  });

  Deno.test(`${server.name} answers echo_client.ts`, async () => {
    await using example = await startServer(server.name);
    const { code, stdout, stderr } = await runExample("echo_client.ts", [
      "--port",
      String(example.port),
    ]);
    assertEquals([code, stderr], [0, ""]);
    assertEquals(text(stdout), BOOK_CLIENT_OUTPUT);
    await stopCleanly(example);
  });

  Deno.test({
    name: `${server.name} answers the book's CPython client`,
    ignore: !hasPython3,
    async fn() {
      await using example = await startServer(server.name);
      const { code, stdout, stderr } = await runPython(
        BOOK_CLIENT,
        [String(example.port), server.eol ?? ""],
      );
      assertEquals([code, stderr], [0, ""]);
      assertEquals(stdout, BOOK_CLIENT_OUTPUT);
      await stopCleanly(example);
    },
  });
}

// The client of Python in a Nutshell, chapter 19, in Python 3; argv[2] is
// the terminator to add to each line (the book sends none).
const BOOK_CLIENT = `
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.settimeout(10)
sock.connect(('127.0.0.1', int(sys.argv[1])))
print("Connected to server")
data = """A few lines of data
to test the operation
of both server and client."""
for line in data.splitlines():
    sock.sendall((line + sys.argv[2]).encode())
    print("Sent:", line)
    response = sock.recv(8192)
    print("Received:", response.decode().rstrip("\\r\\n"))
sock.close()
`;

Deno.test("select_echo_server.ts logs as the book does with --verbose", async () => {
  await using example = await startServer("select_echo_server.ts", [
    "--verbose",
  ]);
  const conn = await connect(example.port);
  try {
    const local = conn.localAddr as Deno.NetAddr;
    const peer = `127.0.0.1:${local.port}`;
    assertEquals(text(await echo(conn, bytes("twelve bytes"))), "twelve bytes");
    conn.close();
    await example.waitForOutput(/^disconnected from /m);
    const { stdout } = await stopCleanly(example);
    assertLines(stdout, [
      `Connected from ${peer}`,
      `12 bytes from ${peer}`,
      `12 bytes to ${peer}`,
      `No data currently remain for ${peer}`,
      `disconnected from ${peer}`,
    ]);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("echo_client.ts sends the given lines with the chosen terminator", async () => {
  // --verbose: the server logs the size of each read.
  await using example = await startServer("select_echo_server.ts", [
    "--verbose",
  ]);
  const { code, stdout } = await runExample("echo_client.ts", [
    "--port",
    String(example.port),
    "--eol",
    "none",
    "one",
    "two words",
  ]);
  assertEquals(code, 0);
  assertEquals(
    text(stdout),
    "Connected to server\nSent: one\nReceived: one\nSent: two words\nReceived: two words\n",
  );
  const { stdout: log } = await stopCleanly(example);
  assertMatch(log, /^3 bytes from /m);
  assertMatch(log, /^9 bytes from /m);
});

Deno.test("echo_client.ts reports a refused connection", async () => {
  // Find a port nobody listens on.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const { code, stdout, stderr } = await runExample("echo_client.ts", [
    "--port",
    String(port),
  ]);
  assertEquals(code, 1);
  assertEquals(text(stdout), "");
  assertMatch(stderr, new RegExp(`^echo_client.ts: 127.0.0.1:${port}: `));
});

// CPython's client sends one long line and reads its echo whole.
const LONG_LINE_CLIENT = `
import socket, sys
size, eol = int(sys.argv[2]), sys.argv[3].encode()
line = bytes(48 + i % 10 for i in range(size)) + eol
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
sock.sendall(line)
got = b""
while len(got) < len(line):
    data = sock.recv(65536)
    if not data:
        break
    got += data
sock.close()
print(len(got), got == line)
`;

for (const server of SERVERS.filter((s) => s.eol !== undefined)) {
  Deno.test({
    name:
      `${server.name} echoes a 200 KiB line to a CPython client, as CPython's asynchat does`,
    ignore: !hasPython3,
    async fn() {
      await using example = await startServer(server.name);
      const { code, stdout, stderr } = await runPython(LONG_LINE_CLIENT, [
        String(example.port),
        "204800",
        server.eol!,
      ]);
      assertEquals([code, stderr], [0, ""]);
      assertEquals(stdout, `${204800 + server.eol!.length} True\n`);
      await stopCleanly(example);
    },
  });

  Deno.test(`${server.name} closes a line over --max-length and goes on serving`, async () => {
    await using example = await startServer(server.name, [
      "--max-length",
      "1000",
    ]);
    const eol = server.eol!;
    const over = await connect(example.port);
    const under = await connect(example.port);
    try {
      const fits = bytes("z".repeat(1000) + eol);
      assertEquals(await echo(under, fits), fits);
      await over.write(bytes("z".repeat(1001)));
      await assertClosedByPeer(over);
      // The channel is named by its class, as Python's repr() does.
      await example.waitForOutput(
        /record longer than 1000 bytes, closing channel <\w+ connected /,
      );
      assertEquals(await echo(under, fits), fits);
    } finally {
      closeQuietly(over);
      closeQuietly(under);
    }
    const finished = await example.stop();
    assertEquals(finished.code, INTERRUPTED);
  });
}

Deno.test("select_echo_server.ts logs only connections without --verbose", async () => {
  await using example = await startServer("select_echo_server.ts");
  const conn = await connect(example.port);
  try {
    const peer = `127.0.0.1:${(conn.localAddr as Deno.NetAddr).port}`;
    // 1 MiB in many reads and writes: none of them is logged.
    const data = bytes("0123456789abcdef".repeat(65536));
    assertEquals(await echo(conn, data), data);
    conn.close();
    await example.waitForOutput(/^disconnected from /m);
    const { stdout } = await stopCleanly(example);
    assertEquals(stdout.split("\n").filter((line) => line !== ""), [
      `listening on 127.0.0.1:${example.port}`,
      `Connected from ${peer}`,
      `disconnected from ${peer}`,
    ]);
  } finally {
    closeQuietly(conn);
  }
});

// Twisted's LineReceiver, its line limit raised to 1 MiB: sends one long
// line and prints the length of the echo and whether it matches.
const TWISTED_LINE_CLIENT = twistedClient(`
from twisted.protocols.basic import LineReceiver

class Client(LineReceiver):
    delimiter = b"\\n"
    MAX_LENGTH = 1 << 20
    def connectionMade(self):
        self.sent = bytes(48 + i % 10 for i in range(int(sys.argv[2])))
        self.sendLine(self.sent)
    def lineReceived(self, line):
        print(len(line), line == self.sent, flush=True)
        self.transport.loseConnection()
    def connectionLost(self, reason):
        if reactor.running:
            reactor.stop()
`);

Deno.test({
  name:
    "asynchat_line_echo_server.ts echoes a 300 KiB line to Twisted's LineReceiver",
  ignore: twistedPython === undefined,
  async fn() {
    await using example = await startServer("asynchat_line_echo_server.ts");
    const { code, stdout, stderr } = await runPython(
      TWISTED_LINE_CLIENT,
      [String(example.port), "307200"],
      20_000,
      twistedPython,
    );
    assertEquals([code, stderr], [0, ""]);
    assertEquals(stdout, "307200 True\n");
    await stopCleanly(example);
  },
});

Deno.test('README.md\'s "Use it" server echoes and logs each client as host:port', async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const section = readme.slice(readme.indexOf("\n## Use it\n"));
  const code = section.match(/```ts ignore\n([\s\S]*?)```/)?.[1] ?? "";
  assert(code.includes("new EchoServer(8881)"), "the snippet serves 8881");
  const port = getAvailablePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissionArgs(), "-"],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(bytes(code.replace("8881", String(port))));
  await writer.close();
  const output = child.output();
  try {
    // The snippet prints nothing before its first client: try until it listens.
    const conn = await within(
      START_TIMEOUT,
      "the snippet to listen",
      (async () => {
        for (;;) {
          try {
            return await connect(port);
          } catch (error) {
            if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
            await delay(50); // a retry, not a wait for order
          }
        }
      })(),
    );
    try {
      assertEquals(text(await echo(conn, bytes("readme\n"))), "readme\n");
      const local = conn.localAddr as Deno.NetAddr;
      child.kill("SIGINT");
      const { stdout, stderr } = await within(
        IO_TIMEOUT,
        "the snippet to exit",
        output,
      );
      assertEquals(
        text(stdout),
        `incoming connection from 127.0.0.1:${local.port}\n`,
        text(stderr),
      );
    } finally {
      conn.close();
    }
  } finally {
    killQuietly(child, "SIGKILL");
    await output.catch(() => {});
  }
});
