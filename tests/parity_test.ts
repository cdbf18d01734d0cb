// The backends alike where a user would not expect them to differ: one error
// class and one message per failure, the same addresses accepted. Every test
// here asserts the same thing on both backends (CI runs the suite on each).

import { assertEquals, assertInstanceOf } from "@std/assert";
import { Socket } from "../socket.ts";
import { select } from "../select.ts";
import { BACKEND, unixEndpoint } from "./_helpers.ts";

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
