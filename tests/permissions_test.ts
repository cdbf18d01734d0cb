// The permissions a program needs are the ones the README lists: a server on
// either backend, run with network permission for its own address only and
// with prompts turned into errors (`--no-prompt`), serves clients that keep
// its loop busy (so the epoll loop hands the thread to Deno's event loop many
// times), and Deno's permission audit log (DENO_AUDIT_PERMISSIONS) shows no
// check of anything else: no hidden listener, no prompt in a terminal.

import { assert, assertEquals, assertFalse, AssertionError } from "@std/assert";
import { getAvailablePort } from "@std/net";
import type { Backend } from "../socket.ts";
import { epollUnsupported, skipNote } from "./_epoll_helpers.ts";
import {
  fixture,
  pattern,
  Peer,
  readExactly,
  within,
  writeAll,
} from "./_helpers.ts";

const CLIENTS = 8;
const ROUNDS = 1000;
const SIZE = 64;

/** What one entry of Deno's permission audit log says was checked. */
interface Audited {
  permission: string;
  value: string | null;
}

/** A client that sends `ROUNDS` messages, each after the last one's echo. */
async function pingPong(port: number, seed: number): Promise<void> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  for (let round = 0; round < ROUNDS; round++) {
    const message = pattern(SIZE, seed * ROUNDS + round);
    await writeAll(conn, message);
    const reply = await readExactly(conn, SIZE);
    assertEquals(reply, message, `client ${seed}, round ${round}`);
  }
}

async function serveUnderLoad(backend: Backend): Promise<void> {
  const port = getAvailablePort();
  const dir = await Deno.makeTempDir();
  const audit = `${dir}/audit.jsonl`;
  try {
    await using server = new Peer("env", [
      `ASYNCORE_BACKEND=${backend}`,
      `DENO_AUDIT_PERMISSIONS=${audit}`,
      Deno.execPath(),
      "run",
      "--no-prompt",
      "--allow-ffi",
      "--allow-env=ASYNCORE_BACKEND",
      `--allow-net=127.0.0.1:${port}`,
      fixture("permission_echo_server.ts"),
      String(port),
      String(CLIENTS),
    ]);
    assertEquals(await server.line(), `listening ${backend}`);
    let done = 0;
    await within(
      30_000,
      () => `${done} of ${CLIENTS} clients' ${ROUNDS} echoes`,
      Promise.all(
        Array.from(
          { length: CLIENTS },
          (_, i) => pingPong(port, i).then(() => void done++),
        ),
      ),
    );
    await server.exit();
    const stderr = await server.stderr();
    assertFalse(
      /NotCapable|Requires \w+ access|permission/i.test(stderr),
      `the server's stderr: ${stderr}`,
    );
    const log = await Deno.readTextFile(audit).catch(() => {
      throw new AssertionError(
        "Deno wrote no permission audit log (DENO_AUDIT_PERMISSIONS)",
      );
    });
    const checked = log.split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Audited);
    const unexpected = checked.filter(({ permission, value }) =>
      !(permission === "ffi" ||
        (permission === "env" && value === "ASYNCORE_BACKEND") ||
        (permission === "net" && value === `127.0.0.1:${port}`))
    ).map(({ permission, value }) => `${permission} ${value}`);
    assertEquals(
      [...new Set(unexpected)],
      [],
      `${unexpected.length} permission checks beyond the README's`,
    );
    assert(checked.length > 0, "the audit log recorded the server's checks");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "permissions: a busy server on the default backend needs only its " +
    "own address",
  fn: () => serveUnderLoad("deno"),
});

Deno.test({
  name: "permissions: a busy server on the epoll backend needs --allow-ffi, " +
    `the variable and its own address, nothing else${skipNote}`,
  ignore: epollUnsupported !== null,
  fn: () => serveUnderLoad("epoll"),
});
