// The backends alike where a user would not expect them to differ: one error
// class and one message per failure, the same addresses accepted. Every test
// here asserts the same thing on both backends (CI runs the suite on each).

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertThrows,
} from "@std/assert";
import { Socket } from "../socket.ts";
import { select } from "../select.ts";
import { BACKEND, probe, unixEndpoint } from "./_helpers.ts";

/** A loopback port nothing listens on (bound, then let go). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** The error a connect to `address` ends with. */
async function connectError(
  address: { hostname: string; port: number } | { path: string },
): Promise<Error | null> {
  using sock = new Socket({ transport: "path" in address ? "unix" : "tcp" });
  sock.connect(address);
  await select([sock], [sock], [], 5000);
  return sock.error;
}

function assertOsError(
  error: unknown,
  ErrorClass: new (...args: never[]) => Error,
  message: string,
  code: string,
): void {
  assertInstanceOf(error, ErrorClass);
  assertEquals(error.message, message);
  assertEquals((error as { code?: string }).code, code);
}

Deno.test(`a refused connect is ConnectionRefused with the errno's message [${BACKEND}]`, async () => {
  assertOsError(
    await connectError({ hostname: "127.0.0.1", port: freePort() }),
    Deno.errors.ConnectionRefused,
    "connect: connection refused (ECONNREFUSED, os error 111)",
    "ECONNREFUSED",
  );
});

Deno.test(`a connect to port 0 is refused, as by the kernel [${BACKEND}]`, async () => {
  assertOsError(
    await connectError({ hostname: "127.0.0.1", port: 0 }),
    Deno.errors.ConnectionRefused,
    "connect: connection refused (ECONNREFUSED, os error 111)",
    "ECONNREFUSED",
  );
});

Deno.test(`a connect to a missing Unix path is NotFound with the errno's message [${BACKEND}]`, async () => {
  using endpoint = unixEndpoint();
  assertOsError(
    await connectError({ path: endpoint.path }),
    Deno.errors.NotFound,
    "connect: no such file or directory (ENOENT, os error 2)",
    "ENOENT",
  );
});

Deno.test(`a bind to an address in use is AddrInUse with the errno's message [${BACKEND}]`, () => {
  using first = new Socket();
  first.bind({ hostname: "127.0.0.1", port: 0 });
  first.listen();
  const { port } = first.getsockname() as Deno.NetAddr;
  using second = new Socket();
  let error: unknown = null;
  try {
    second.bind({ hostname: "127.0.0.1", port });
    second.listen();
  } catch (caught) {
    error = caught;
  }
  assertOsError(
    error,
    Deno.errors.AddrInUse,
    "bind: address in use (EADDRINUSE, os error 98)",
    "EADDRINUSE",
  );
});

Deno.test(`an abstract Unix name (a leading NUL) binds, connects and reads back [${BACKEND}]`, async () => {
  const name = `\0asyncore-parity-${Deno.pid}-${crypto.randomUUID()}`;
  using server = new Socket({ transport: "unix" });
  server.bind({ path: name });
  server.listen();
  assertEquals(server.getsockname(), { transport: "unix", path: name });
  using client = new Socket({ transport: "unix" });
  client.connect({ path: name });
  assertEquals((await select([server], [], [], 5000))[0], [server]);
  using conn = server.accept()[0];
  assertEquals((await select([], [client], [], 5000))[1], [client]);
  assertEquals(client.getpeername(), { transport: "unix", path: name });
  assertEquals(conn.getsockname(), { transport: "unix", path: name });
  client.send("over an abstract name");
  assertEquals((await select([conn], [], [], 5000))[0], [conn]);
  assertEquals(
    new TextDecoder().decode(conn.recv(100)),
    "over an abstract name",
  );
});

Deno.test(`a Unix path with a NUL inside, or too long, is the same error on both [${BACKEND}]`, () => {
  using sock = new Socket({ transport: "unix" });
  assertThrows(
    () => sock.bind({ path: "a\0b" }),
    TypeError,
    "address.path must not contain a NUL character but as its first (an abstract socket's name)",
  );
  assertThrows(
    () => sock.bind({ path: "/tmp/" + "x".repeat(103) }),
    RangeError,
    "address.path must be at most 107 bytes in UTF-8, got 108",
  );
  assertThrows(
    () => sock.connect({ path: "\0" + "x".repeat(108) }),
    RangeError,
    "address.path must be at most 108 bytes in UTF-8, got 109",
  );
  assertEquals(sock.closed, false);
});

/** A name /etc/hosts gives a loopback IPv4 address, but localhost; or null. */
function hostsName(): { name: string; address: string } | null {
  let hosts: string;
  try {
    hosts = Deno.readTextFileSync("/etc/hosts");
  } catch {
    return null;
  }
  for (const line of hosts.split("\n")) {
    const [address, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
    if (!/^127\.\d+\.\d+\.\d+$/.test(address ?? "")) continue;
    const name = names.find((name) => name !== "localhost");
    if (name !== undefined) return { name, address };
  }
  return null;
}

const HOSTS_NAME = hostsName();

/** The address `hostname` binds to. */
function boundTo(hostname: string): string {
  using sock = new Socket();
  sock.bind({ hostname, port: 0 });
  sock.listen();
  return (sock.getsockname() as Deno.NetAddr).hostname;
}

Deno.test(`bind() takes inet_aton's short forms of an IPv4 address [${BACKEND}]`, () => {
  assertEquals(boundTo("127.1"), "127.0.0.1");
  assertEquals(boundTo("127.0.1"), "127.0.0.1");
  assertEquals(boundTo("0x7f.1"), "127.0.0.1");
  assertEquals(boundTo("localhost"), "127.0.0.1");
});

Deno.test({
  name: HOSTS_NAME === null
    ? `bind() takes a host name from /etc/hosts [${BACKEND}] [no name for a 127.x address in /etc/hosts but localhost]`
    : `bind() takes a host name from /etc/hosts [${BACKEND}]`,
  ignore: HOSTS_NAME === null,
  fn() {
    assertEquals(boundTo(HOSTS_NAME!.name), HOSTS_NAME!.address);
  },
});

/** The kernel's listen queue of the TCP listener on `port` (`ss`'s Send-Q). */
function listenQueue(port: number): number {
  const { stdout } = new Deno.Command("ss", {
    args: ["-ltnH", `sport = :${port}`],
    stdin: "null",
    stderr: "null",
  }).outputSync();
  const fields = new TextDecoder().decode(stdout).trim().split(/\s+/);
  return Number(fields[2]);
}

const hasSs = probe("ss", ["-V"]);

Deno.test({
  name: hasSs
    ? `listen() has a kernel queue no shorter than Deno's own listener's [${BACKEND}]`
    : `listen() has a kernel queue no shorter than Deno's own listener's [${BACKEND}] [ss (iproute2) is not installed]`,
  ignore: !hasSs,
  fn() {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deno = listenQueue(listener.addr.port);
    assert(deno > 0, `Deno.listen's queue: ${deno}`);
    using sock = new Socket();
    sock.bind({ hostname: "127.0.0.1", port: 0 });
    sock.listen(5);
    const queue = listenQueue((sock.getsockname() as Deno.NetAddr).port);
    assert(queue >= deno, `listen(5)'s queue: ${queue}, Deno's: ${deno}`);
  },
});

Deno.test(`an unnamed Unix socket's address is the empty path [${BACKEND}]`, async () => {
  using endpoint = unixEndpoint();
  using server = new Socket({ transport: "unix" });
  server.bind({ path: endpoint.path });
  server.listen();
  using client = new Socket({ transport: "unix" });
  client.connect({ path: endpoint.path });
  assertEquals((await select([server], [], [], 5000))[0], [server]);
  const [conn, address] = server.accept();
  using _conn = conn;
  assertEquals((await select([], [client], [], 5000))[1], [client]);
  assertEquals({ ...address }, { transport: "unix", path: "" });
  assertEquals({ ...conn.getpeername() }, { transport: "unix", path: "" });
  assertEquals({ ...client.getsockname() }, { transport: "unix", path: "" });
});
