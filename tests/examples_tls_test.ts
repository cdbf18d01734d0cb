// End-to-end tests of examples/tls_echo_server.ts and tls_echo_client.ts:
// each runs as a subprocess; Deno's own TLS clients and the example client
// talk to the server over loopback.

import { assertEquals, assertMatch, assertRejects } from "@std/assert";
import { concat } from "@std/bytes";
import {
  assertUsageError,
  IO_TIMEOUT,
  permissionArgs,
  ROOT,
  runExample,
  startServer,
  stopCleanly,
  within,
} from "./_examples_helpers.ts";
import {
  bytes,
  closeQuietly,
  readExactly,
  text,
  writeAll,
} from "./_helpers.ts";

const CA = Deno.readTextFileSync(
  new URL("./fixtures/tls/ca.crt", import.meta.url),
);
const READ = { allowRead: true };

/** A line of `\r\n`-terminated text read byte by byte (nothing past it). */
async function readLine(conn: Deno.Conn): Promise<string> {
  let line = "";
  while (!line.endsWith("\r\n")) line += text(await readExactly(conn, 1));
  return line;
}

Deno.test("tls_echo_server.ts echoes concurrent TLS clients byte for byte", async () => {
  await using server = await startServer("tls_echo_server.ts", [], READ);
  const options = { port: server.port, hostname: "localhost", caCerts: [CA] };
  const a = await Deno.connectTls(options);
  const b = await Deno.connectTls(options);
  try {
    const big = new Uint8Array(300_000).map((_, i) => i % 251);
    const [echoedBig, echoedSmall] = await Promise.all([
      // Read while writing, so the echo never waits on buffer sizes.
      Promise.all([writeAll(a, big), readExactly(a, big.length)]).then((
        [, echoed],
      ) => echoed),
      (async () => {
        const parts: Uint8Array[] = [];
        for (let i = 0; i < 20; i++) {
          const line = bytes(`line ${i}\r\n`);
          await writeAll(b, line);
          parts.push(await readExactly(b, line.length));
        }
        return text(concat(parts));
      })(),
    ]);
    assertEquals(echoedBig, big);
    assertEquals(
      echoedSmall,
      Array.from({ length: 20 }, (_, i) => `line ${i}\r\n`).join(""),
    );
  } finally {
    // A timed-out read has closed its connection already: that failure, not
    // this cleanup, is the one to report.
    for (const conn of [a, b]) {
      closeQuietly(conn);
    }
  }
  const { stdout } = await stopCleanly(server);
  assertMatch(stdout, /^listening on 127\.0\.0\.1:\d+$/m);
  assertEquals(stdout.match(/^Connected from /gm)?.length, 2);
});

Deno.test("tls_echo_server.ts reports a failed handshake and goes on", async () => {
  await using server = await startServer("tls_echo_server.ts", [], READ);
  // No CA: this client rejects the test certificate.
  const bad = await Deno.connectTls({
    port: server.port,
    hostname: "localhost",
  });
  await assertRejects(() => bad.handshake(), Deno.errors.InvalidData);
  bad.close();
  await server.waitForOutput(/^TLS handshake with .* failed: .*UnknownCA/m);
  const good = await Deno.connectTls({
    port: server.port,
    hostname: "localhost",
    caCerts: [CA],
  });
  await writeAll(good, bytes("still here"));
  assertEquals(text(await readExactly(good, 10)), "still here");
  good.close();
  await stopCleanly(server);
});

Deno.test("tls_echo_server.ts --mode starttls upgrades on STARTTLS", async () => {
  await using server = await startServer(
    "tls_echo_server.ts",
    ["--mode", "starttls"],
    READ,
  );
  const conn = await Deno.connect({ port: server.port });
  let tls: Deno.TlsConn | undefined;
  try {
    assertEquals(
      await readLine(conn),
      "220 tls_echo_server.ts: send STARTTLS\r\n",
    );
    await writeAll(conn, bytes("EHLO deno\r\n"));
    assertEquals(await readLine(conn), "530 send STARTTLS first\r\n");
    await writeAll(conn, bytes("STARTTLS\r\n"));
    assertEquals(await readLine(conn), "220 ready for TLS\r\n");
    tls = await Deno.startTls(conn, { hostname: "localhost", caCerts: [CA] });
    await writeAll(tls, bytes("secret\r\n"));
    assertEquals(text(await readExactly(tls, 8)), "secret\r\n");
  } finally {
    (tls ?? conn).close();
  }
  const { stdout } = await stopCleanly(server);
  assertMatch(stdout, /^TLS established with 127\.0\.0\.1:\d+$/m);
});

const BOOK_LINES = [
  "Sent: A few lines of data",
  "Received: A few lines of data",
  "Sent: to test the operation",
  "Received: to test the operation",
  "Sent: of both server and client.",
  "Received: of both server and client.",
];

Deno.test("tls_echo_client.ts talks to tls_echo_server.ts in both modes", async () => {
  for (const mode of ["tls", "starttls"]) {
    await using server = await startServer(
      "tls_echo_server.ts",
      ["--mode", mode],
      READ,
    );
    const { code, stdout, stderr } = await runExample(
      "tls_echo_client.ts",
      ["--port", String(server.port), "--mode", mode],
      READ,
    );
    assertEquals([code, stderr], [0, ""]);
    const preamble = mode === "tls" ? ["Connected to server over TLS"] : [
      "Connected to server",
      "Server: 220 tls_echo_server.ts: send STARTTLS",
      "Server: 220 ready for TLS",
      "Upgraded to TLS",
    ];
    assertEquals(text(stdout), [...preamble, ...BOOK_LINES, ""].join("\n"));
    await stopCleanly(server);
  }
});

Deno.test("tls_echo_client.ts sends its arguments", async () => {
  await using server = await startServer("tls_echo_server.ts", [], READ);
  const { code, stdout } = await runExample(
    "tls_echo_client.ts",
    ["--port", String(server.port), "--servername", "localhost", "héllo", ""],
    READ,
  );
  assertEquals(code, 0);
  assertEquals(
    text(stdout),
    "Connected to server over TLS\nSent: héllo\nReceived: héllo\nSent: \nReceived: \n",
  );
  await stopCleanly(server);
});

Deno.test("tls_echo_client.ts reports a failed handshake with exit code 1", async (t) => {
  await using server = await startServer("tls_echo_server.ts", [], READ);
  const port = String(server.port);
  await t.step("a name the certificate does not carry", async () => {
    const { code, stdout, stderr } = await runExample(
      "tls_echo_client.ts",
      ["--port", port, "--servername", "example.com"],
      READ,
    );
    assertEquals([code, text(stdout)], [1, ""]);
    assertMatch(
      stderr,
      /^tls_echo_client\.ts: 127\.0\.0\.1:\d+: invalid peer certificate: certificate not valid for name "example\.com"/,
    );
  });
  await t.step("a CA that did not sign it", async () => {
    const { code, stderr } = await runExample(
      "tls_echo_client.ts",
      [
        "--port",
        port,
        "--ca",
        "tests/fixtures/tls/other.crt", // a certificate, but not the CA
      ],
      READ,
    );
    assertEquals(code, 1);
    assertMatch(stderr, /invalid peer certificate: UnknownIssuer/);
  });
  const { stdout } = await stopCleanly(server);
  assertMatch(stdout, /^TLS handshake with .* failed: .*BadCertificate/m);
  // TLS from the first byte against a server that greets in plaintext.
  await using plain = await startServer(
    "tls_echo_server.ts",
    ["--mode", "starttls"],
    READ,
  );
  const { code, stderr } = await runExample(
    "tls_echo_client.ts",
    ["--port", String(plain.port)],
    READ,
  );
  assertEquals(code, 1);
  assertMatch(
    stderr,
    /^tls_echo_client\.ts: 127\.0\.0\.1:\d+: .*corrupt message/,
  );
  await stopCleanly(plain);
});

Deno.test("tls_echo_server.ts and tls_echo_client.ts reject bad arguments", async () => {
  await assertUsageError(
    "tls_echo_server.ts",
    ["--mode", "ssl"],
    /--mode must be tls or starttls, got "ssl"/,
    READ,
  );
  await assertUsageError(
    "tls_echo_server.ts",
    ["--cert", "x.pem"],
    /--cert and --key go together/,
    READ,
  );
  await assertUsageError(
    "tls_echo_client.ts",
    ["--mode", "ssl"],
    /--mode must be tls or starttls/,
    READ,
  );
  const { code, stderr } = await runExample(
    "tls_echo_server.ts",
    ["--port", "0", "--cert", "missing.crt", "--key", "missing.key"],
    READ,
  );
  assertEquals(code, 1);
  assertMatch(stderr, /^tls_echo_server\.ts: cannot read --cert: /);
});

/** Runs http_client.ts with `env`, bounded; returns its exit code and output. */
async function fetchWithClient(
  urls: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissionArgs(), "examples/http_client.ts", ...urls],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = await within(
    IO_TIMEOUT,
    "http_client.ts to finish",
    child.output(),
    () => child.kill("SIGKILL"),
  );
  return {
    code: output.code,
    stdout: text(output.stdout),
    stderr: text(output.stderr),
  };
}

Deno.test("http_client.ts fetches https:// URLs", async () => {
  const dir = new URL("./fixtures/tls/", import.meta.url);
  await using server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: Deno.readTextFileSync(new URL("localhost.crt", dir)),
    key: Deno.readTextFileSync(new URL("localhost.key", dir)),
    onListen: () => {},
  }, (request) => new Response(`secure ${new URL(request.url).pathname}\n`));
  const { port } = server.addr;
  const urls = [`https://localhost:${port}/a`, `https://127.0.0.1:${port}/b`];
  // The test CA trusted through DENO_CERT, as a user would.
  const trusted = await fetchWithClient(urls, {
    DENO_CERT: new URL("ca.crt", dir).pathname,
  });
  assertEquals([trusted.code, trusted.stderr], [0, ""]);
  for (const url of urls) {
    const path = new URL(url).pathname;
    assertMatch(
      trusted.stdout,
      new RegExp(
        `^--- ${
          url.replaceAll(".", "\\.")
        } \\(\\d+ bytes\\)\\r?\\nHTTP/1\\.[01] 200 OK\\r\\n[^]*?\\r\\n\\r\\nsecure ${path}\\n`,
        "m",
      ),
    );
  }
  // Without it the certificate is refused, and said so.
  const refused = await fetchWithClient([urls[0]]);
  assertEquals([refused.code, refused.stdout], [1, ""]);
  assertMatch(
    refused.stderr,
    /^http_client\.ts: https:\/\/localhost:\d+\/a: invalid peer certificate: UnknownIssuer/,
  );
});
