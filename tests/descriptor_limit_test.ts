// A server at the descriptor limit: the README's echo server (and the
// select() one, which accepts by hand) runs under `ulimit -n 64` (this
// process holds the clients, with its own limit), is sent more clients than
// it can hold, and must keep serving the ones it has, say once that it is
// out of descriptors, take the waiting ones as the first leave, and never
// die (Deno 2.9 panics if a stack is formatted then).

import { assertEquals, assertNotMatch } from "@std/assert";
import { connect, echo, permissionArgs, ROOT } from "./_examples_helpers.ts";
import {
  bytes,
  closeQuietly,
  fixture,
  Peer,
  text,
  within,
} from "./_helpers.ts";

const CLIENTS = 100;
const OUT_OF_DESCRIPTORS =
  "error: out of descriptors (EMFILE): not accepting until one is free";

/** Reads the server's lines until one equals `wanted`; returns the others. */
async function skipTo(server: Peer, wanted: string): Promise<string[]> {
  const skipped: string[] = [];
  for (;;) {
    const line = await server.line(20_000);
    if (line === wanted) return skipped;
    skipped.push(line);
  }
}

for (const example of ["asyncore_echo_server.ts", "select_echo_server.ts"]) {
  Deno.test(`descriptor limit: ${example} under ulimit -n 64 serves 100 clients in turn and lives`, async () => {
    await using server = new Peer("sh", [
      "-c",
      'ulimit -n 64 && cd "$1" && shift && exec "$0" "$@"',
      Deno.execPath(),
      ROOT,
      "run",
      ...permissionArgs(),
      `examples/${example}`,
      "--port",
      "0",
    ]);
    const port = Number(
      (await server.line(20_000)).match(/^listening on [^\s]+:(\d+)$/)![1],
    );
    const clients = await within(
      20_000,
      `${CLIENTS} connects`,
      Promise.all(Array.from({ length: CLIENTS }, () => connect(port))),
    );
    try {
      // Every client has sent before the server can have answered them all.
      await Promise.all(clients.map((conn, i) => conn.write(bytes(`${i}\n`))));
      const before = await skipTo(server, OUT_OF_DESCRIPTORS);
      for (const line of before) assertNotMatch(line, /error/);
      // Each client reads its echo and leaves, freeing a descriptor for one
      // that waits in the listener's queue.
      await Promise.all(clients.map(async (conn, i) => {
        const reply = new Uint8Array(`${i}\n`.length);
        let got = 0;
        while (got < reply.length) {
          const count = await within(
            30_000,
            `client ${i}'s echo`,
            conn.read(reply.subarray(got)),
          );
          if (count === null) throw new Error(`client ${i}: end of stream`);
          got += count;
        }
        assertEquals(text(reply), `${i}\n`);
        conn.close();
      }));
    } finally {
      for (const conn of clients) {
        closeQuietly(conn);
      }
    }
    // And once they have gone, a new client is served.
    const last = await connect(port);
    try {
      assertEquals(text(await echo(last, bytes("again\n"))), "again\n");
    } finally {
      last.close();
    }
    const exited = await Promise.race([server.status, Promise.resolve(null)]);
    assertEquals(exited, null, "the server is still running");
  });
}

Deno.test("descriptor limit: select() waits in a process out of descriptors, and the listener accepts again once one is freed", async () => {
  // On the epoll backend a select() that waits needs an epoll instance,
  // which out of descriptors it could not open (select(2) needs none).
  await using server = new Peer("sh", [
    "-c",
    'ulimit -n 64 && exec "$0" "$@"',
    Deno.execPath(),
    "run",
    ...permissionArgs(),
    fixture("select_at_limit.ts"),
  ]);
  const port = Number((await server.line(20_000)).match(/^port (\d+)$/)![1]);
  const clients: Deno.Conn[] = [];
  try {
    // More than the server can hold; it accepts what it can.
    for (let i = 0; i < 80; i++) clients.push(await connect(port));
    assertEquals(await server.line(20_000), "accept: EMFILE");
    assertEquals(
      await server.line(),
      "select while out of descriptors: readable 0",
    );
    assertEquals(
      await server.line(),
      "select once one is freed: readable true",
    );
    assertEquals(await server.line(), "accepted again: true");
    assertEquals((await server.exit()).code, 0);
  } finally {
    for (const conn of clients) conn.close();
  }
});
