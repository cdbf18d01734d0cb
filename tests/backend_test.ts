// Tests of the backend choice (SocketOptions.backend, setDefaultBackend(),
// ASYNCORE_BACKEND) and of what only the epoll backend has: OS descriptors as
// socket numbers, select() and Poll on other descriptors without touching
// them, and a listener that survives running out of descriptors. They choose
// their backend themselves, so they run the same in both passes of the suite.

import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "@std/assert";
import {
  getDefaultBackend,
  Poll,
  POLLIN,
  POLLNVAL,
  select,
  setDefaultBackend,
  Socket,
} from "../select.ts";
import { unsupportedReason } from "../_epoll/libc.ts";
import { fixture, Peer, within } from "./_helpers.ts";

const unsupported = unsupportedReason();
const skip = unsupported === null
  ? ""
  : " (skipped: the epoll backend cannot run here)";
const ignore = unsupported !== null;

/** Runs `body` with the default backend set to epoll, then restores it. */
async function withEpollDefault(body: () => Promise<void>): Promise<void> {
  const before = getDefaultBackend();
  setDefaultBackend("epoll");
  try {
    await body();
  } finally {
    setDefaultBackend(before);
  }
}

// Deno asks for --allow-all to read this process's /proc entries, so a child
// process reads them.
function run(command: string, args: string[]): string {
  const { stdout } = new Deno.Command(command, { args, stderr: "null" })
    .outputSync();
  return new TextDecoder().decode(stdout).trim();
}

/** What /proc says descriptor `fd` of this process is, or `""`. */
function descriptorTarget(fd: number): string {
  return run("readlink", [`/proc/${Deno.pid}/fd/${fd}`]);
}

/** This process's open descriptors. */
function openDescriptors(): number[] {
  return run("ls", [`/proc/${Deno.pid}/fd`]).split(/\s+/).map(Number);
}

async function backendOf(
  flags: string[],
  env: Record<string, string>,
): Promise<string> {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, fixture("backend_choice.ts")],
    env,
    stdin: "null",
    stderr: "inherit",
  }).output();
  return new TextDecoder().decode(stdout).trim();
}

Deno.test("backend: bad names are TypeErrors naming the argument", () => {
  assertThrows(
    // @ts-expect-error: not a backend
    () => new Socket({ backend: "kqueue" }),
    TypeError,
    'options.backend must be "deno" or "epoll", got "kqueue"',
  );
  assertThrows(
    // @ts-expect-error: not a backend
    () => setDefaultBackend(1),
    TypeError,
    "backend must be",
  );
  const cert = "-----BEGIN CERTIFICATE-----";
  assertThrows(
    () => new Socket({ backend: "epoll", tls: { cert, key: cert } }),
    Deno.errors.NotSupported,
    'options.tls needs the "deno" backend',
  );
  using tls = new Socket({ tls: { hostname: "localhost" } });
  assertEquals(tls.backend, "deno", "a TLS socket uses the deno backend");
  using deno = new Socket({ backend: "deno" });
  assertEquals(deno.backend, "deno");
});

Deno.test({
  name:
    `backend: ASYNCORE_BACKEND is read with --allow-env, and the failures name their fix${skip}`,
  ignore,
  async fn() {
    const epoll = { ASYNCORE_BACKEND: "epoll" };
    assertEquals(
      await backendOf(["--allow-ffi", "--allow-env"], epoll),
      "epoll",
    );
    const unset = { ASYNCORE_BACKEND: "" };
    assertEquals(
      await backendOf(["--allow-ffi", "--allow-env"], unset),
      "deno",
    );
    // Without the env permission the variable is treated as unset.
    assertEquals(await backendOf(["--allow-ffi"], epoll), "deno");
    assertEquals(
      await backendOf(["--allow-env"], epoll),
      "NotCapable: the epoll backend calls libc through FFI: run Deno with --allow-ffi (it lifts Deno's sandbox for this process), or use the default backend",
    );
    assertEquals(
      await backendOf(["--allow-env"], { ASYNCORE_BACKEND: "fast" }),
      'TypeError: ASYNCORE_BACKEND must be "deno" or "epoll", got "fast"',
    );
  },
});

Deno.test({
  name: `backend: an epoll socket's number is its OS descriptor${skip}`,
  ignore,
  fn() {
    using sock = new Socket({ backend: "epoll" });
    assertEquals(sock.backend, "epoll");
    assertMatch(descriptorTarget(sock.fileno()), /^socket:\[\d+\]$/);
    // A socket of the other backend in the same process has its own number.
    using other = new Socket({ backend: "deno" });
    assert(other.fileno() !== sock.fileno());
    sock.close();
    assertEquals(sock.fileno(), -1);
  },
});

Deno.test({
  name:
    `backend: select() and Poll look at other descriptors and never touch them${skip}`,
  ignore,
  async fn() {
    await withEpollDefault(async () => {
      // A descriptor of Deno's own (not a socket of ours): select() and Poll
      // may watch it, and it is still there, the same, afterwards.
      let foreign = -1;
      for (const fd of openDescriptors()) {
        const target = descriptorTarget(fd);
        if (fd > 2 && /^(anon_inode|pipe)/.test(target)) {
          foreign = fd;
          break;
        }
      }
      assert(foreign >= 0, "Deno has a pipe or an anonymous inode open");
      const before = descriptorTarget(foreign);
      await select([foreign], [foreign], [], 0);
      const poller = new Poll();
      poller.register(foreign, POLLIN);
      await poller.poll(0);
      assertEquals(descriptorTarget(foreign), before, "left as it was");

      // A number that is not open: BadResource from select(), POLLNVAL from
      // Poll, and nothing waits forever.
      const closed = 0x3fff_fff0;
      await assertRejects(
        () => select([closed], [], [], 1000),
        Deno.errors.BadResource,
        "is not an open descriptor",
      );
      const unopened = new Poll();
      unopened.register(closed, POLLIN);
      assertEquals(await within(1000, "poll", unopened.poll(5000)), [[
        closed,
        POLLNVAL,
      ]]);
      // Numbers no descriptor can have are argument errors.
      await assertRejects(
        () => select([-1], [], [], 0),
        Deno.errors.BadResource,
      );
      assertThrows(() => unopened.register(2 ** 31, POLLIN), TypeError);
    });
  },
});

Deno.test({
  name:
    `backend: a listener that runs out of descriptors stops asking and works again once one is freed${skip}`,
  ignore,
  async fn() {
    // The server runs with few descriptors; this process holds the clients.
    await using server = new Peer("sh", [
      "-c",
      'ulimit -n 64 && exec "$0" run --allow-net --allow-ffi "$1"',
      Deno.execPath(),
      fixture("epoll_emfile.ts"),
    ]);
    const port = Number((await server.line()).match(/^port (\d+)$/)![1]);
    const clients: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 80; i++) {
        try {
          clients.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        } catch (error) {
          // Out of descriptors, the server reports and closes its listener,
          // which may be before all 80 are made: its lines below tell.
          if (
            !(error instanceof Deno.errors.ConnectionReset ||
              error instanceof Deno.errors.ConnectionRefused)
          ) throw error;
          break;
        }
      }
      assertEquals(await server.line(), "accept: EMFILE");
      assertEquals(
        await server.line(),
        "readable while out of descriptors: 0",
      );
      assertEquals(
        await server.line(),
        "readable once one is freed: 1",
      );
      assertEquals(await server.line(), "accepted again: true");
      assertEquals((await server.exit()).code, 0);
    } finally {
      for (const conn of clients) conn.close();
    }
  },
});
