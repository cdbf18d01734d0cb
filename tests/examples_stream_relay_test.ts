// End-to-end tests of examples/stream_relay_server.ts: a file and a fetch()
// body of a loopback HTTP server, relayed to several clients at once.

import { assertEquals, assertStringIncludes } from "@std/assert";
import {
  assertUsageError,
  connect,
  pattern,
  startServer,
  stopCleanly,
} from "./_examples_helpers.ts";
import { closeQuietly, readToEnd } from "./_helpers.ts";

/** Connects `clients` clients to `port` at once; returns what each read. */
async function fetchAll(port: number, clients: number): Promise<Uint8Array[]> {
  return await Promise.all(
    Array.from({ length: clients }, async () => {
      const conn = await connect(port);
      try {
        return await readToEnd(conn);
      } finally {
        closeQuietly(conn);
      }
    }),
  );
}

Deno.test("stream_relay_server.ts relays a file to every client", async () => {
  const data = pattern(3 * 1024 * 1024 + 17);
  const path = await Deno.makeTempFile({ prefix: "relay_", suffix: ".bin" });
  try {
    await Deno.writeFile(path, data);
    await using server = await startServer("stream_relay_server.ts", [path], {
      allowRead: true,
    });
    const received = await fetchAll(server.port, 3);
    for (const bytes of received) assertEquals(bytes, data);
    const { stdout } = await stopCleanly(server);
    assertStringIncludes(stdout, `relaying ${path} to 127.0.0.1:`);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("stream_relay_server.ts relays a fetch() body from a loopback HTTP server", async () => {
  const data = pattern(2 * 1024 * 1024 + 5, 7);
  await using http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) =>
      new URL(request.url).pathname === "/body"
        ? new Response(ReadableStream.from([data.subarray(0, 1000), data]))
        : new Response("not here", { status: 404 }),
  );
  const url = `http://127.0.0.1:${http.addr.port}`;
  await using server = await startServer("stream_relay_server.ts", [
    `${url}/body`,
  ]);
  const received = await fetchAll(server.port, 2);
  const expected = new Uint8Array(data.length + 1000);
  expected.set(data.subarray(0, 1000));
  expected.set(data, 1000);
  for (const bytes of received) assertEquals(bytes, expected);
  await stopCleanly(server);

  // A source that cannot be opened closes the client's connection.
  await using missing = await startServer("stream_relay_server.ts", [
    `${url}/missing`,
  ]);
  assertEquals((await fetchAll(missing.port, 1))[0].length, 0);
  const { stdout } = await missing.stop();
  assertStringIncludes(stdout, "answered 404");
});

Deno.test("stream_relay_server.ts without a SOURCE prints its usage", async () => {
  await assertUsageError("stream_relay_server.ts", [], /missing SOURCE/);
});
