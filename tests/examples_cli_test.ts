// The command lines of every example: usage text on bad options, --help,
// a port already in use, Ctrl-C in a client, the default port, IPv6.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { delay } from "@std/async";
import {
  assertClosedByPeer,
  assertUsageError,
  connect,
  echo,
  INTERRUPTED,
  permissionArgs,
  ROOT,
  runExample,
  RunningExample,
  START_TIMEOUT,
  startServer,
  stopCleanly,
  within,
} from "./_examples_helpers.ts";
import {
  bytes,
  closeQuietly,
  hasIPv6,
  isDisconnect,
  readToEnd,
  text,
} from "./_helpers.ts";

/** Every server example, the arguments it needs and its default port. */
const SERVERS: {
  name: string;
  args: string[];
  port: string;
  read?: boolean;
}[] = [
  { name: "select_echo_server.ts", args: [], port: "8881" },
  { name: "asyncore_echo_server.ts", args: [], port: "8881" },
  { name: "dispatcher_with_send_echo_server.ts", args: [], port: "8881" },
  { name: "asynchat_echo_server.ts", args: [], port: "8881" },
  { name: "asynchat_line_echo_server.ts", args: [], port: "8881" },
  { name: "poetry_server.ts", args: [], port: "10000", read: true },
  { name: "transform_server.ts", args: [], port: "11000" },
  { name: "http_server.ts", args: [], port: "8080", read: true },
];

const CLIENTS = [
  "echo_client.ts",
  "http_client.ts",
  "poetry_client.ts",
  "transform_client.ts",
];

for (const name of [...SERVERS.map((s) => s.name), "proxy.ts", ...CLIENTS]) {
  Deno.test(`${name} --help prints usage; a bad option prints it on stderr`, async () => {
    const help = await runExample(name, ["--help"], { allowRead: true });
    assertEquals([help.code, help.stderr], [0, ""]);
    assertMatch(
      text(help.stdout),
      new RegExp(`^usage: deno run .*examples/${name}`),
    );
    assertMatch(text(help.stdout), /^ {2}--help +show this text and exit$/m);
    await assertUsageError(name, ["--bogus"], /unknown option "--bogus"/, {
      allowRead: true,
    });
    await assertUsageError(name, ["-x"], /unknown option "-x"/, {
      allowRead: true,
    });
  });
}

for (const server of SERVERS) {
  Deno.test(`${server.name} checks --port and --host`, async () => {
    const options = { allowRead: server.read };
    const help = await runExample(server.name, ["--help"], options);
    assertMatch(
      text(help.stdout),
      new RegExp(
        `--port PORT +port to listen on \\(default: ${server.port}\\)`,
      ),
    );
    assertMatch(
      text(help.stdout),
      /--host HOST +address to listen on \(default: 127\.0\.0\.1\)/,
    );
    await assertUsageError(
      server.name,
      ["--port", "65536"],
      /--port must be a port number from 0 to 65535, got "65536"/,
      options,
    );
    await assertUsageError(
      server.name,
      ["--port=eighty"],
      /--port must be a port number/,
      options,
    );
    await assertUsageError(
      server.name,
      ["--port"],
      /option --port needs a value \(PORT\)/,
      options,
    );
    await assertUsageError(
      server.name,
      ["--host", ""],
      /--host must be a host name or address/,
      options,
    );
  });

  Deno.test(`${server.name} reports a port already in use`, async () => {
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { code, stdout, stderr } = await runExample(
      server.name,
      ["--port", String(taken.addr.port), ...server.args],
      { allowRead: server.read },
    );
    assertEquals(code, 1);
    assertEquals(text(stdout).includes("listening on"), false);
    assertMatch(stderr, new RegExp(`^${server.name}: cannot listen: `));
  });
}

Deno.test("asyncore_echo_server.ts (deno task start) listens on 127.0.0.1:8881 by default", async () => {
  // Only when 8881 is free on this machine.
  try {
    Deno.listen({ hostname: "127.0.0.1", port: 8881 }).close();
  } catch {
    console.log("8881 is in use here: skipped");
    return;
  }
  await using server = new RunningExample("asyncore_echo_server.ts", []);
  await server.waitForOutput(/^listening on 127\.0\.0\.1:8881$/m);
  const conn = await connect(8881);
  try {
    assertEquals(text(await echo(conn, bytes("default\n"))), "default\n");
  } finally {
    conn.close();
  }
  await stopCleanly(server);
});

Deno.test({
  name: "asyncore_echo_server.ts listens on IPv6 with --host ::1",
  ignore: !hasIPv6,
  async fn() {
    await using server = await startServer("asyncore_echo_server.ts", [
      "--host",
      "::1",
    ]);
    assertEquals(server.hostname, "::1");
    assertMatch(server.stdout, /^listening on \[::1\]:\d+$/m);
    const conn = await connect(server.port, "::1");
    try {
      assertEquals(text(await echo(conn, bytes("six\n"))), "six\n");
    } finally {
      conn.close();
    }
    await stopCleanly(server);
  },
});

/**
 * A server that accepts one connection and never answers: `accepted`
 * resolves once the client is connected, `received` with what it read once
 * the client closed.
 */
function silentServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const received = accepted.then(async (conn) => {
    let all = "";
    const buffer = new Uint8Array(4096);
    try {
      for (;;) {
        const count = await conn.read(buffer);
        if (count === null) return all;
        all += text(buffer.subarray(0, count));
      }
    } finally {
      conn.close();
    }
  });
  return { port: listener.addr.port, accepted, received, listener };
}

const WAITING_CLIENTS: [string, (port: number) => string[], RegExp][] = [
  ["echo_client.ts", (port) => ["--port", String(port)], /^Sent: /m],
  ["http_client.ts", (port) => [`http://127.0.0.1:${port}/`], /^$/],
  ["poetry_client.ts", (port) => [String(port)], /^$/],
  ["transform_client.ts", (port) => ["1", String(port)], /^$/],
];

for (const [name, args, ready] of WAITING_CLIENTS) {
  Deno.test(`${name} stops cleanly on Ctrl-C, closing its connections`, async () => {
    const server = silentServer();
    try {
      await using client = new RunningExample(name, args(server.port));
      await within(10_000, "the client to connect", server.accepted);
      await client.waitForOutput(ready);
      // The client is connected and waits for an answer that never comes.
      const finished = await client.stop();
      assertEquals(
        [finished.code, finished.signal],
        [INTERRUPTED, null],
        `stdout:\n${finished.stdout}\nstderr:\n${finished.stderr}`,
      );
      assert(!/error|uncaught/i.test(finished.stderr), finished.stderr);
      await within(10_000, "the client to close", server.received);
    } finally {
      server.listener.close();
      await server.received.catch(() => {});
    }
  });
}

Deno.test("a server stops cleanly on Ctrl-C with clients connected", async () => {
  await using server = await startServer("asynchat_line_echo_server.ts");
  const conns = await Promise.all([1, 2, 3].map(() => connect(server.port)));
  try {
    // One mid-line: the server holds an incomplete line for it.
    await conns[0].write(bytes("half a li"));
    assertEquals(text(await echo(conns[1], bytes("whole\n"))), "whole\n");
    await stopCleanly(server);
    for (const conn of conns) await assertClosedByPeer(conn);
  } finally {
    conns.forEach(closeQuietly);
  }
});

for (const name of ["select_echo_server.ts", "asyncore_echo_server.ts"]) {
  Deno.test(`${name} exits on Ctrl-C even when a client never reads`, async () => {
    await using server = await startServer(name);
    const conn = await connect(server.port);
    // Flood the server without reading its echo, until its buffers are full.
    const chunk = new Uint8Array(1 << 20).fill(0x2e);
    const flooding = (async () => {
      try {
        for (let i = 0; i < 64; i++) await conn.write(chunk);
      } catch {
        // The server closed.
      }
    })();
    try {
      await server.waitForOutput(/^Connected from /m);
      await delay(500);
      // Its closed sockets still hold unsent echoes: the process gives
      // them LINGER_AFTER_INTERRUPT ms and then exits anyway.
      const started = performance.now();
      await stopCleanly(server);
      assert(performance.now() - started < 8000, "exited within the bound");
    } finally {
      conn.close();
      await flooding;
    }
  });
}

/** Every example with a record limit, and the limit it applies by default. */
const RECORD_LIMITS: [string, string, boolean][] = [
  ["asynchat_echo_server.ts", "1048576", false],
  ["asynchat_line_echo_server.ts", "1048576", false],
  ["transform_server.ts", "1048576", false],
  ["transform_client.ts", "67108864", false],
  ["tls_echo_server.ts", "65536", true],
];

for (const [name, limit, allowRead] of RECORD_LIMITS) {
  Deno.test(`${name} shows its record limit in --help and takes --max-length`, async () => {
    const help = await runExample(name, ["--help"], { allowRead });
    assertMatch(
      text(help.stdout),
      new RegExp(`^ {2}--max-length BYTES +.+ \\(default: ${limit}\\)$`, "m"),
    );
    // transform_client.ts needs its addresses before it reads options.
    const addresses = name === "transform_client.ts" ? ["1", "2"] : [];
    await assertUsageError(
      name,
      ["--max-length", "0", ...addresses],
      /--max-length must be a positive integer, got "0"/,
      { allowRead },
    );
  });
}

/** A server example, what it needs, and one exchange that it logs. */
interface LoggingServer {
  name: string;
  args: string[];
  read?: boolean;
  /** What it logs for the exchange (without --quiet). */
  logs: RegExp;
  /** One client served to the end; the server logs before it answers. */
  serve(port: number): Promise<void>;
}

/** Sends a line and reads its echo. */
async function echoLine(port: number): Promise<void> {
  const conn = await connect(port);
  try {
    assertEquals(text(await echo(conn, bytes("quiet?\r\n"))), "quiet?\r\n");
  } finally {
    conn.close();
  }
}

/** Connects, sends `send`, and reads whatever comes until the server closes. */
async function sendAndDrain(port: number, send = ""): Promise<void> {
  const conn = await connect(port);
  try {
    if (send !== "") await conn.write(bytes(send));
    await readToEnd(conn);
  } finally {
    closeQuietly(conn);
  }
}

/** An upstream for proxy.ts: echoes one connection. */
function echoUpstream(): { port: number; done: Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    try {
      const conn = await within(
        10_000,
        "the proxy to connect",
        listener.accept(),
      );
      try {
        const buffer = new Uint8Array(4096);
        for (;;) {
          const count = await conn.read(buffer);
          if (count === null) return;
          await conn.write(buffer.subarray(0, count));
        }
      } catch (error) {
        // The proxy reset the connection.
        if (!isDisconnect(error)) throw error;
      } finally {
        closeQuietly(conn);
      }
    } finally {
      listener.close();
    }
  })();
  return { port: listener.addr.port, done };
}

const LOGGING_SERVERS: LoggingServer[] = [
  ...[
    "select_echo_server.ts",
    "asyncore_echo_server.ts",
    "dispatcher_with_send_echo_server.ts",
    "asynchat_echo_server.ts",
    "asynchat_line_echo_server.ts",
  ].map((name) => ({
    name,
    args: [],
    logs: /^Connected from 127\.0\.0\.1:\d+$/m,
    serve: echoLine,
  })),
  {
    name: "poetry_server.ts",
    args: [],
    read: true,
    logs: /^Sending \d+ bytes of poetry to /m,
    serve: (port) => sendAndDrain(port),
  },
  {
    name: "transform_server.ts",
    args: [],
    logs: /^Rejected /m,
    serve: (port) => sendAndDrain(port, "not a netstring"),
  },
  {
    name: "stream_relay_server.ts",
    args: ["examples/poetry/sonnet_18.txt"],
    read: true,
    logs: /^relaying /m,
    serve: (port) => sendAndDrain(port),
  },
  {
    name: "tls_echo_server.ts",
    args: [],
    read: true,
    logs: /^Connected from /m,
    serve: (port) => sendAndDrain(port, "QUIT\r\n"),
  },
];

for (const quiet of [false, true]) {
  for (const server of LOGGING_SERVERS) {
    Deno.test(`${server.name} ${quiet ? "with --quiet prints only its listening line" : "logs its clients without --quiet"}; Ctrl-C exits 130`, async () => {
      await using example = await startServer(
        server.name,
        [...(quiet ? ["--quiet"] : []), ...server.args],
        { allowRead: server.read },
      );
      await server.serve(example.port);
      if (!quiet) await example.waitForOutput(server.logs);
      const { stdout } = await stopCleanly(example);
      if (quiet) {
        assertEquals(stdout, `listening on 127.0.0.1:${example.port}\n`);
      } else {
        assertMatch(stdout, server.logs);
      }
    });
  }

  Deno.test(`proxy.ts ${quiet ? "with --quiet prints only its listening line" : "logs its clients without --quiet"}; Ctrl-C exits 130`, async () => {
    const upstream = echoUpstream();
    try {
      await using proxy = await startServer("proxy.ts", [
        ...(quiet ? ["--quiet"] : []),
        "127.0.0.1",
        String(upstream.port),
      ]);
      await echoLine(proxy.port);
      if (!quiet) await proxy.waitForOutput(/^Accepted \(0\) from /m);
      const { stdout } = await stopCleanly(proxy);
      if (quiet) {
        assertEquals(stdout, `listening on 127.0.0.1:${proxy.port}\n`);
      } else {
        assertMatch(stdout, /^Accepted \(0\) from /m);
      }
    } finally {
      await upstream.done;
    }
  });
}

Deno.test("every server's --help offers --quiet", async () => {
  for (const name of [...LOGGING_SERVERS.map((s) => s.name), "proxy.ts"]) {
    const help = await runExample(name, ["--help"], { allowRead: true });
    assertMatch(
      text(help.stdout),
      /^ {2}--quiet +print only the listening line/m,
    );
  }
});

Deno.test("a server with --quiet goes on serving while its stdout is a pipe nobody reads", async () => {
  // Without --quiet, about 1,000 connections fill a 64 KiB pipe with log
  // lines, and console.log() then holds up the server's event loop.
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...permissionArgs(),
      "examples/asyncore_echo_server.ts",
      "--port",
      "0",
      "--quiet",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  try {
    let printed = "";
    const port = await within(
      START_TIMEOUT,
      "the listening line",
      (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`ended without listening: ${printed}`);
          printed += text(value);
          const match = printed.match(/^listening on 127\.0\.0\.1:(\d+)$/m);
          if (match) return Number(match[1]);
        }
      })(),
    );
    // From here on nobody reads the pipe.
    await within(
      60_000,
      "2,000 clients served",
      (async () => {
        for (let i = 0; i < 2000; i++) await echoLine(port);
      })(),
    );
  } finally {
    child.kill("SIGINT");
    const status = await within(
      10_000,
      "the server to exit",
      child.status,
      () => child.kill("SIGKILL"),
    );
    await reader.cancel();
    assertEquals([status.code, status.signal], [INTERRUPTED, null]);
  }
});
