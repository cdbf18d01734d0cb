// End-to-end tests of examples/proxy.ts: concurrent clients through the
// proxy to a local echo server.

import { assert, assertEquals, assertMatch } from "@std/assert";
import {
  assertClosedByPeer,
  assertLines,
  assertUsageError,
  bytes,
  closeQuietly,
  connect,
  echo,
  readToEnd,
  startServer,
  stopCleanly,
  text,
  writeAll,
} from "./_examples_helpers.ts";

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
        let offset = 0;
        while (offset < count) {
          offset += await conn.write(buffer.subarray(offset, count));
        }
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
      try {
        listener.close();
      } catch {
        // Closed already.
      }
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
    assertEquals(finished.code, 0);
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
    /SERVER_PORT \+ 8000 is past 65535; choose a port with --listen/,
  );
  await assertUsageError(
    "proxy.ts",
    ["--listen", "70000", "127.0.0.1", "80"],
    /--listen must be a port number/,
  );
});
