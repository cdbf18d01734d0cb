// End-to-end tests of examples/proxy.ts: concurrent clients through the
// proxy to a local echo server.

import { assert, assertEquals, assertMatch } from "@std/assert";
import {
  bytes,
  closeQuietly,
  Peer,
  probe,
  readToEnd,
  text,
  writeAll,
} from "./_helpers.ts";
import {
  assertClosedByPeer,
  assertLines,
  assertUsageError,
  connect,
  echo,
  hasPython3,
  INTERRUPTED,
  runPython,
  startServer,
  stopCleanly,
} from "./_examples_helpers.ts";

const hasCurl = probe("curl", ["--version"]);

/**
 * A local echo server: echoes what it reads; after echoing a `bye\n` it
 * closes. Each connection's `received` resolves with everything it read
 * once it ends.
 */
function echoServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: Promise<string>[] = [];
  const serve = async (conn: Deno.Conn): Promise<string> => {
    let all = "";
    const buffer = new Uint8Array(65536);
    try {
      for (;;) {
        const count = await conn.read(buffer);
        if (count === null) break;
        all += text(buffer.subarray(0, count));
        await writeAll(conn, buffer.subarray(0, count));
        if (all.endsWith("bye\n")) break;
      }
    } catch (error) {
      // The proxy may close its side while an echo is on its way back; what
      // was read is what the tests check.
      if (
        !(error instanceof Deno.errors.ConnectionReset ||
          error instanceof Deno.errors.BrokenPipe)
      ) throw error;
    } finally {
      conn.close();
    }
    return all;
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) received.push(serve(conn));
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
  })();
  return {
    port: listener.addr.port,
    received,
    async close(): Promise<string[]> {
      closeQuietly(listener);
      await accepting;
      return await Promise.all(received);
    },
  };
}

function lines(client: number, count: number, width = 0): string {
  let out = "";
  for (let j = 0; j < count; j++) {
    out += `client ${client} line ${j} ${"x".repeat((j * 37) % width || 0)}\n`;
  }
  return out;
}

Deno.test("proxy.ts forwards and logs several concurrent clients", async () => {
  const upstream = echoServer();
  await using proxy = await startServer(
    "proxy.ts",
    ["127.0.0.1", String(upstream.port)],
    { portFlag: "--listen" },
  );
  await proxy.waitForOutput(
    new RegExp(`^forwarding to 127\\.0\\.0\\.1:${upstream.port}$`, "m"),
  );
  const clients = await Promise.all(
    [0, 1, 2, 3].map(() => connect(proxy.port)),
  );
  try {
    const results = await Promise.all(clients.map(async (conn, i) => {
      // A few short lines, one at a time, then a large block at once.
      for (const line of lines(i, 3).split(/(?<=\n)/)) {
        assertEquals(text(await echo(conn, bytes(line))), line);
      }
      const block = bytes(lines(i, 500, 200));
      assertEquals(await echo(conn, block), block);
      if (i === 0) {
        // The server closes after "bye": the proxy closes the client too.
        assertEquals(text(await echo(conn, bytes("bye\n"))), "bye\n");
        await assertClosedByPeer(conn);
        return;
      }
      // The client ends with an unterminated line and closes its side:
      // the proxy passes the line on and closes both sides.
      await writeAll(conn, bytes(`tail ${i}`));
      await conn.closeWrite();
      assertEquals(text(await readToEnd(conn)), "");
    }));
    assertEquals(results.length, 4);
    // Every upstream connection saw exactly what its client sent.
    const received = (await upstream.close()).sort();
    assertEquals(received, [
      lines(0, 3) + lines(0, 500, 200) + "bye\n",
      lines(1, 3) + lines(1, 500, 200) + "tail 1",
      lines(2, 3) + lines(2, 500, 200) + "tail 2",
      lines(3, 3) + lines(3, 500, 200) + "tail 3",
    ]);
    await proxy.waitForOutput(
      /^Closing \(\d+\)$(?:[\s\S]*^Closing \(\d+\)$){3}/m,
    );
    const { stdout } = await stopCleanly(proxy);
    // Each client has its own channel id, logged with each line both ways.
    const ids = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const match = stdout.match(
        new RegExp(`^<== \\((\\d+)\\) "client ${i} line 0 "$`, "m"),
      );
      assert(match, `client ${i}'s first line is logged:\n${stdout}`);
      const id = match[1];
      ids.add(id);
      assertLines(stdout, [
        `Connected (${id}) to 127.0.0.1:${upstream.port}`,
        `<== (${id}) "client ${i} line 1 "`,
        `==> (${id}) "client ${i} line 1 "`,
        `<== (${id}) "client ${i} line 2 "`,
        `==> (${id}) "client ${i} line 2 "`,
        `Closing (${id})`,
        i === 0 ? `==> (${id}) "bye"` : `<== (${id}) "tail ${i}" (no newline)`,
      ]);
      assertMatch(
        stdout,
        new RegExp(`^Accepted \\(${id}\\) from 127\\.0\\.0\\.1:\\d+$`, "m"),
      );
    }
    assertEquals([...ids].sort(), ["0", "1", "2", "3"]);
  } finally {
    for (const conn of clients) closeQuietly(conn);
    await upstream.close();
  }
});

Deno.test("proxy.ts delivers what a client sent before it closed at once", async () => {
  // The client is gone before the proxy has connected to the server: what
  // it sent still reaches the server, then the server side is closed.
  const upstream = echoServer();
  await using proxy = await startServer(
    "proxy.ts",
    ["127.0.0.1", String(upstream.port)],
    { portFlag: "--listen" },
  );
  const conn = await connect(proxy.port);
  await writeAll(conn, bytes("quick\nno newline"));
  conn.close();
  await proxy.waitForOutput(/^Closing \(0\)$/m);
  await proxy.waitForOutput(/^<== \(0\) "no newline" \(no newline\)$/m);
  assertEquals(await upstream.close(), ["quick\nno newline"]);
  const { stdout } = await stopCleanly(proxy);
  assertLines(stdout, ['<== (0) "quick"']);
});

Deno.test("proxy.ts closes the client when the server cannot be reached", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refused = listener.addr.port;
  listener.close();
  await using proxy = await startServer(
    "proxy.ts",
    ["127.0.0.1", String(refused)],
    { portFlag: "--listen" },
  );
  const conn = await connect(proxy.port);
  try {
    await writeAll(conn, bytes("hello\n"));
    await assertClosedByPeer(conn);
    await proxy.waitForOutput(/^Failed \(0\): .+$/m);
    // The proxy goes on serving after the failure.
    const finished = await proxy.stop();
    assertEquals(finished.code, INTERRUPTED);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("proxy.ts explains its command line", async () => {
  await assertUsageError("proxy.ts", [], /missing SERVER_HOST SERVER_PORT/);
  await assertUsageError("proxy.ts", ["127.0.0.1"], /missing SERVER_HOST/);
  await assertUsageError(
    "proxy.ts",
    ["127.0.0.1", "http"],
    /SERVER_PORT must be a port number/,
  );
  await assertUsageError(
    "proxy.ts",
    ["127.0.0.1", "60000"],
    /SERVER_PORT \+ 8000 is past 65535; choose a port with --port/,
  );
  await assertUsageError(
    "proxy.ts",
    ["--listen", "70000", "127.0.0.1", "80"],
    /--listen must be a port number/,
  );
  await assertUsageError(
    "proxy.ts",
    ["--port", "70000", "127.0.0.1", "80"],
    /--port must be a port number/,
  );
});

/**
 * CPython's http.server, HTTP/1.1 with keep-alive: `GET /long` answers a
 * JSON body of one 200,000-byte line, `POST` echoes the body it was sent.
 */
const HTTP_BACKEND = `
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.answer(b'{"data": "' + b"x" * 200000 + b'"}')
    def do_POST(self):
        self.answer(self.rfile.read(int(self.headers["Content-Length"])))
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
`;

/** CPython's http.client: one keep-alive connection, three requests. */
const HTTP_CLIENT = `
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
conn.request("GET", "/long")
print(len(conn.getresponse().read()))
for body in [b"a body with no newline", b"and another"]:
    conn.request("POST", "/echo", body=body)
    print(conn.getresponse().read().decode())
conn.close()
`;

Deno.test({
  name:
    "proxy.ts carries a long line and bodies without a newline between CPython's http.client and http.server",
  ignore: !hasPython3,
  async fn() {
    await using backend = Peer.pythonCode(HTTP_BACKEND);
    const port = await backend.line();
    await using proxy = await startServer("proxy.ts", ["127.0.0.1", port]);
    const { code, stdout, stderr } = await runPython(HTTP_CLIENT, [
      String(proxy.port),
    ], 20_000);
    assertEquals([code, stderr], [0, ""]);
    assertEquals(
      stdout,
      [
        String(200_012),
        "a body with no newline",
        "and another",
        "",
      ].join("\n"),
    );
    // The heads are logged line by line; the bodies are counted.
    await proxy.waitForOutput(/^Closing \(0\)$/m);
    const finished = await stopCleanly(proxy);
    assertLines(finished.stdout, [
      '<== (0) "GET /long HTTP/1.1\\r"',
      '<== (0) "\\r"',
      '==> (0) "HTTP/1.1 200 OK\\r"',
      '==> (0) "Content-Length: 200012\\r"',
    ]);
    assertMatch(finished.stdout, /^==> \(0\) \d+ more bytes$/m);
  },
});

Deno.test({
  name: "proxy.ts carries a long line to curl",
  ignore: !hasPython3 || !hasCurl,
  async fn() {
    await using backend = Peer.pythonCode(HTTP_BACKEND);
    const port = await backend.line();
    await using proxy = await startServer("proxy.ts", ["127.0.0.1", port]);
    const curl = await new Deno.Command("curl", {
      args: [
        "-sS",
        "--max-time",
        "10",
        `http://127.0.0.1:${proxy.port}/long`,
      ],
      stdin: "null",
    }).output();
    assertEquals(text(curl.stderr), "");
    assertEquals(curl.code, 0);
    assertEquals(text(curl.stdout), `{"data": "${"x".repeat(200_000)}"}`);
    await stopCleanly(proxy);
  },
});

Deno.test("proxy.ts (on --port) passes on bytes as they come, without waiting for a newline", async () => {
  const upstream = echoServer();
  await using proxy = await startServer("proxy.ts", [
    "127.0.0.1",
    String(upstream.port),
  ]);
  const conn = await connect(proxy.port);
  try {
    // No newline: each piece must come back before the next is sent.
    for (const piece of ["partial", " line", " of a body"]) {
      assertEquals(text(await echo(conn, bytes(piece))), piece);
    }
    // A line far over 64 KiB, and the log shows its start only.
    const long = bytes("y".repeat(300_000) + "\n");
    assertEquals(await echo(conn, long), long);
    assertEquals(text(await echo(conn, bytes("bye\n"))), "bye\n");
    await assertClosedByPeer(conn);
  } finally {
    closeQuietly(conn);
  }
  await upstream.close();
  await proxy.waitForOutput(/^Closing \(0\)$/m);
  const { stdout } = await stopCleanly(proxy);
  assertLines(stdout, [
    `<== (0) "partial line of a body${
      "y".repeat(978)
    }" (first 1000 of 300022 bytes)`,
  ]);
});
