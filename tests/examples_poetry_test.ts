// End-to-end tests of the Twisted tutorial's programs in examples/: the
// poetry server and client, and the netstring transformation service.

import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import { delay } from "@std/async";
import { concat } from "@std/bytes";
import {
  assertClosedByPeer,
  assertLines,
  assertUsageError,
  connect,
  hasPython3,
  ROOT,
  runExample,
  runPython,
  START_TIMEOUT,
  startServer,
  stopCleanly,
  twistedClient,
  twistedPython,
  twistedServer,
} from "./_examples_helpers.ts";
import {
  bytes,
  closeQuietly,
  Peer,
  readToEnd,
  text,
  writeAll,
} from "./_helpers.ts";

const DONNE = Deno.readFileSync(
  `${ROOT}examples/poetry/death_be_not_proud.txt`,
);
const SHAKESPEARE = Deno.readFileSync(`${ROOT}examples/poetry/sonnet_18.txt`);

/** A long poem: ~600 KiB of numbered lines in mixed case. */
function longPoem(): Uint8Array<ArrayBuffer> {
  let out = "";
  for (let i = 0; out.length < 600_000; i++) {
    out += `Line ${i}: The Quick Brown Fox, ${"Ever Onward ".repeat(i % 9)}\n`;
  }
  return bytes(out);
}

/** Writes `data` to a temporary file and returns its path. */
async function tempPoem(data: Uint8Array): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "poem_", suffix: ".txt" });
  await Deno.writeFile(path, data);
  return path;
}

/** A netstring of `data`. */
function netstring(data: Uint8Array | string): Uint8Array {
  const body = typeof data === "string" ? bytes(data) : data;
  return concat([bytes(`${body.length}:`), body, bytes(",")]);
}

/** Sends one request to the transform server and reads all of the answer. */
async function ask(port: number, request: Uint8Array): Promise<Uint8Array> {
  const conn = await connect(port);
  try {
    await writeAll(conn, request);
    return await readToEnd(conn);
  } finally {
    closeQuietly(conn);
  }
}

Deno.test("poetry_server.ts sends its poem to each client and closes", async () => {
  await using server = await startServer("poetry_server.ts", [], {
    allowRead: true,
  });
  await server.waitForOutput(/^Serving /m);
  assertStringIncludes(
    server.stdout,
    `Serving examples/poetry/death_be_not_proud.txt (${DONNE.length} bytes)\n`,
  );
  // "listening on" first, as every other server prints it.
  assertEquals(
    server.stdout.split("\n").slice(0, 2),
    [
      `listening on 127.0.0.1:${server.port}`,
      `Serving examples/poetry/death_be_not_proud.txt (${DONNE.length} bytes)`,
    ],
  );
  const conns = await Promise.all([1, 2, 3].map(() => connect(server.port)));
  try {
    const poems = await Promise.all(conns.map((conn) => readToEnd(conn)));
    for (const poem of poems) assertEquals(poem, DONNE);
  } finally {
    conns.forEach(closeQuietly);
  }
  const { stdout } = await stopCleanly(server);
  assertEquals(
    stdout.match(
      new RegExp(`^Sending ${DONNE.length} bytes of poetry to `, "gm"),
    )
      ?.length,
    3,
  );
});

Deno.test("poetry_server.ts sends a long poem whole", async () => {
  const poem = longPoem();
  const path = await tempPoem(poem);
  try {
    await using server = await startServer("poetry_server.ts", [path], {
      allowRead: true,
    });
    const conns = await Promise.all([1, 2].map(() => connect(server.port)));
    try {
      // One client reads at once, the other a little later.
      const first = readToEnd(conns[0]);
      await delay(100);
      const second = readToEnd(conns[1]);
      assertEquals(await first, poem);
      assertEquals(await second, poem);
    } finally {
      conns.forEach(closeQuietly);
    }
    await stopCleanly(server);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("poetry_server.ts reports a poem it cannot read", async () => {
  const { code, stderr } = await runExample(
    "poetry_server.ts",
    ["--port", "0", "examples/poetry/no_such_poem.txt"],
    { allowRead: true },
  );
  assertEquals(code, 1);
  assertMatch(
    stderr,
    /^poetry_server\.ts: cannot read examples\/poetry\/no_such_poem\.txt: /,
  );
});

Deno.test("poetry_client.ts gets poems from several servers", async () => {
  const long = longPoem();
  const path = await tempPoem(long);
  try {
    await using donne = await startServer("poetry_server.ts", [], {
      allowRead: true,
    });
    await using shakespeare = await startServer(
      "poetry_server.ts",
      ["examples/poetry/sonnet_18.txt"],
      { allowRead: true },
    );
    await using longServer = await startServer("poetry_server.ts", [path], {
      allowRead: true,
    });
    const { code, stdout, stderr } = await runExample("poetry_client.ts", [
      String(donne.port),
      `127.0.0.1:${shakespeare.port}`,
      `127.0.0.1:${longServer.port}`,
    ]);
    assertEquals(code, 0, stderr);
    assertEquals(stdout, concat([DONNE, SHAKESPEARE, long]));
    assertLines(stderr, [
      "Task 1 finished",
      "Task 2 finished",
      "Task 3 finished",
      `Task 1: ${DONNE.length} bytes of poetry`,
      `Task 2: ${SHAKESPEARE.length} bytes of poetry`,
      `Task 3: ${long.length} bytes of poetry`,
    ]);
    assertMatch(
      stderr,
      new RegExp(
        `^Task 2: got \\d+ bytes of poetry from 127\\.0\\.0\\.1:${shakespeare.port}$`,
        "m",
      ),
    );
    assertMatch(stderr, /^Got 3 poems in \d+\.\d{3}s$/m);
    for (const server of [donne, shakespeare, longServer]) {
      await stopCleanly(server);
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("poetry_client.ts reads from all servers at once", async () => {
  // Two servers that send nothing until both have a client: a client that
  // got one poem after the other would wait forever.
  const listeners = [0, 1].map(() =>
    Deno.listen({ hostname: "127.0.0.1", port: 0 })
  );
  const poems = [bytes("first poem\n"), bytes("second poem\n")];
  const accepted = listeners.map((listener) => listener.accept());
  const serving = Promise.all(accepted).then(async (conns) => {
    for (const [i, conn] of conns.entries()) {
      await writeAll(conn, poems[i]);
      conn.close();
    }
  });
  try {
    const { code, stdout, stderr } = await runExample(
      "poetry_client.ts",
      listeners.map((listener) => String(listener.addr.port)),
    );
    assertEquals(code, 0, stderr);
    assertEquals(text(stdout), "first poem\nsecond poem\n");
  } finally {
    listeners.forEach((listener) => listener.close());
    await serving.catch(() => {});
  }
});

Deno.test("poetry_client.ts reports a server it cannot reach", async () => {
  await using donne = await startServer("poetry_server.ts", [], {
    allowRead: true,
  });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refused = listener.addr.port;
  listener.close();
  const { code, stdout, stderr } = await runExample("poetry_client.ts", [
    String(refused),
    String(donne.port),
  ]);
  assertEquals(code, 1);
  assertEquals(stdout, DONNE);
  assertMatch(
    stderr,
    new RegExp(
      `^Task 1: failed to get poetry from 127\\.0\\.0\\.1:${refused}: `,
      "m",
    ),
  );
  assertLines(stderr, ["Task 2 finished"]);
  assertMatch(stderr, /^Got 1 poems in \d+\.\d{3}s$/m);
  await stopCleanly(donne);
});

Deno.test("transform_server.ts answers cummingsify and reverse", async () => {
  await using server = await startServer("transform_server.ts");
  assertEquals(
    await ask(server.port, netstring(concat([bytes("cummingsify."), DONNE]))),
    netstring(text(DONNE).toLowerCase()),
  );
  assertEquals(
    await ask(server.port, netstring("reverse.one\ntwo\nthree\n")),
    netstring("three\ntwo\none\n"),
  );
  assertEquals(
    await ask(server.port, netstring("reverse.one\ntwo")),
    netstring("two\none"),
  );
  // The poem may hold dots, and be empty.
  assertEquals(
    await ask(server.port, netstring("cummingsify.A.B.C")),
    netstring("a.b.c"),
  );
  assertEquals(
    await ask(server.port, netstring("cummingsify.")),
    netstring(""),
  );
  // A long poem, sent in pieces.
  const long = longPoem();
  const conn = await connect(server.port);
  try {
    const request = netstring(concat([bytes("cummingsify."), long]));
    for (let i = 0; i < request.length; i += 100_000) {
      await writeAll(conn, request.subarray(i, i + 100_000));
    }
    assertEquals(
      await readToEnd(conn),
      netstring(text(long).toLowerCase()),
    );
  } finally {
    closeQuietly(conn);
  }
  const { stdout } = await stopCleanly(server);
  assertMatch(stdout, /^cummingsify: 727 bytes for 127\.0\.0\.1:\d+$/m);
  assertMatch(stdout, /^reverse: 14 bytes for 127\.0\.0\.1:\d+$/m);
});

Deno.test("transform_server.ts closes bad requests and goes on serving", async () => {
  await using server = await startServer("transform_server.ts");
  // A client in the middle of a good request while the bad ones come in.
  const pending = await connect(server.port);
  try {
    const request = netstring("cummingsify.Still Here");
    await writeAll(pending, request.subarray(0, 10));
    const bad: [string, Uint8Array][] = [
      ["no dot", netstring("cummingsify")],
      ["unknown transform", netstring("shout.a poem")],
      [
        "not UTF-8",
        netstring(
          concat([bytes("cummingsify."), new Uint8Array([0xff, 0xfe])]),
        ),
      ],
      ["a letter in the length", bytes("1x:abc,")],
      ["no length", bytes(":abc,")],
      ["a leading zero", bytes("05:a.bcd,")],
      ["no comma", bytes("3:a.b;")],
      // Over the limit: refused once the length is read, without the body.
      ["declared length over 1 MiB", bytes("1048577:")],
      ["too many digits", bytes("123456789")],
    ];
    for (const [what, request] of bad) {
      const conn = await connect(server.port);
      try {
        await writeAll(conn, request);
        await assertClosedByPeer(conn).catch((error) => {
          throw new Error(`${what}: ${error}`);
        });
      } finally {
        closeQuietly(conn);
      }
    }
    await writeAll(pending, request.subarray(10));
    assertEquals(await readToEnd(pending), netstring("still here"));
    const { stdout } = await stopCleanly(server);
    const rejected = stdout.split("\n").filter((line) =>
      line.startsWith("Rejected ")
    ).map((line) => line.replace(/^Rejected 127\.0\.0\.1:\d+: /, ""));
    assertEquals(rejected, [
      "no transform name (no '.')",
      'no such transform: "shout"',
      "cummingsify failed on 2 bytes",
      "not a netstring: a length must be decimal digits, got byte 120",
      "not a netstring: a length must have at least one digit",
      "not a netstring: a length must not have leading zeros",
      'not a netstring: a netstring must end with ",", got byte 59',
      "declared length 1048577 is over 1048576",
      "declared length 123456789 is over 1048576",
    ]);
  } finally {
    closeQuietly(pending);
  }
});

Deno.test("transform_server.ts takes --max-length", async () => {
  await using server = await startServer("transform_server.ts", [
    "--max-length",
    "20",
  ]);
  assertEquals(
    await ask(server.port, netstring("cummingsify.EIGHT CH")),
    netstring("eight ch"),
  );
  assertEquals(
    text(await ask(server.port, netstring("cummingsify.NINE CHARS"))),
    "",
  );
  const { stdout } = await stopCleanly(server);
  assertLines(stdout.replace(/127\.0\.0\.1:\d+/g, "ADDR"), [
    "Rejected ADDR: declared length 22 is over 20",
  ]);
});

Deno.test("transform_server.ts closes a client that declares a length and goes silent", async () => {
  await using server = await startServer("transform_server.ts", [
    "--idle-timeout",
    "200",
  ]);
  const started = performance.now();
  // The body never comes: only the idle timeout ends this connection.
  const partial = new TextEncoder().encode("10:cummi");
  assertEquals(text(await ask(server.port, partial)), "");
  const waited = performance.now() - started;
  assert(waited >= 150, `closed after ${waited} ms, before the timeout`);
  assertEquals(
    await ask(server.port, netstring("cummingsify.STILL HERE")),
    netstring("still here"),
  );
  const { stdout } = await stopCleanly(server);
  assertLines(stdout.replace(/127\.0\.0\.1:\d+/g, "ADDR"), [
    "Rejected ADDR: silent for 200 ms",
    "cummingsify: 10 bytes for ADDR",
  ]);
});

Deno.test({
  name: "transform_server.ts answers a CPython netstring client",
  ignore: !hasPython3,
  async fn() {
    await using server = await startServer("transform_server.ts");
    const { code, stdout, stderr } = await runPython(
      `
import socket, sys
poem = "Death, Be Not Proud\\n".encode()
request = b"cummingsify." + poem
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
sock.sendall(b"%d:%s," % (len(request), request))
answer = b""
while True:
    data = sock.recv(8192)
    if not data:
        break
    answer += data
sock.close()
length, _, rest = answer.partition(b":")
assert rest[int(length)] == ord(","), answer
sys.stdout.write(rest[:int(length)].decode())
`,
      [String(server.port)],
    );
    assertEquals([code, stderr], [0, ""]);
    assertEquals(stdout, "death, be not proud\n");
    await stopCleanly(server);
  },
});

Deno.test("transform_client.ts prints transformed poems from several servers", async () => {
  await using xform = await startServer("transform_server.ts");
  await using donne = await startServer("poetry_server.ts", [], {
    allowRead: true,
  });
  await using shakespeare = await startServer(
    "poetry_server.ts",
    ["examples/poetry/sonnet_18.txt"],
    { allowRead: true },
  );
  const poets = [String(donne.port), `127.0.0.1:${shakespeare.port}`];
  const lowered = await runExample("transform_client.ts", [
    String(xform.port),
    ...poets,
  ]);
  assertEquals(lowered.code, 0, lowered.stderr);
  assertEquals(
    text(lowered.stdout),
    text(DONNE).toLowerCase() + text(SHAKESPEARE).toLowerCase(),
  );
  assertLines(lowered.stderr, [
    `Task 1: cummingsify: ${DONNE.length} bytes`,
    `Task 2: cummingsify: ${SHAKESPEARE.length} bytes`,
  ]);
  const reversed = await runExample("transform_client.ts", [
    "--transform",
    "reverse",
    `127.0.0.1:${xform.port}`,
    String(shakespeare.port),
  ]);
  assertEquals(reversed.code, 0, reversed.stderr);
  assertEquals(
    text(reversed.stdout),
    text(SHAKESPEARE).slice(0, -1).split("\n").reverse().join("\n") + "\n",
  );
  // An unknown transform fails: the poem is printed as it was.
  const unknown = await runExample("transform_client.ts", [
    "--transform",
    "shout",
    String(xform.port),
    String(donne.port),
  ]);
  assertEquals(unknown.code, 0, unknown.stderr);
  assertEquals(unknown.stdout, DONNE);
  assertMatch(
    unknown.stderr,
    /^Task 1: shout failed at 127\.0\.0\.1:\d+; printing the poem as it was$/m,
  );
  for (const server of [xform, donne, shakespeare]) await stopCleanly(server);
});

Deno.test("the poetry programs explain their command lines", async () => {
  await assertUsageError(
    "poetry_server.ts",
    ["a.txt", "b.txt"],
    /unexpected argument "b\.txt"/,
    { allowRead: true },
  );
  await assertUsageError("poetry_client.ts", [], /missing \[HOST:\]PORT\.\.\./);
  await assertUsageError(
    "poetry_client.ts",
    ["localhost:port"],
    /address must be a port number/,
  );
  await assertUsageError(
    "transform_client.ts",
    ["11000"],
    /missing XFORM_\[HOST:\]PORT POETRY_\[HOST:\]PORT\.\.\./,
  );
  await assertUsageError(
    "transform_client.ts",
    ["--transform", "a.b", "11000", "10000"],
    /--transform must be a name without "\."/,
  );
  await assertUsageError(
    "transform_server.ts",
    ["--max-length", "0"],
    /--max-length must be a positive integer, got "0"/,
  );
  await assertUsageError(
    "transform_server.ts",
    ["extra"],
    /unexpected argument "extra"/,
  );
});

// Twisted peers: the tutorial's own kind of client and server, on Twisted's
// reactor, against ours.

// A NetstringReceiver client, as the tutorial's transform client: sends one
// request and prints the answer.
const TWISTED_TRANSFORM_CLIENT = twistedClient(`
from twisted.protocols.basic import NetstringReceiver

class Client(NetstringReceiver):
    MAX_LENGTH = 1 << 22
    def connectionMade(self):
        poem = open(sys.argv[2], "rb").read()
        self.sendString(b"cummingsify." + poem)
    def stringReceived(self, answer):
        sys.stdout.buffer.write(answer)
        sys.stdout.flush()
        self.transport.loseConnection()
    def connectionLost(self, reason):
        if reactor.running:
            reactor.stop()
`);

// The tutorial's fast poetry server: writes the poem to each client and
// closes; prints its port first.
const TWISTED_POETRY_SERVER = twistedServer(
  `
class PoetryProtocol(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(self.factory.poem)
        self.transport.loseConnection()

class PoetryFactory(protocol.Factory):
    protocol = PoetryProtocol
    def __init__(self, poem):
        self.poem = poem
`,
  `PoetryFactory(open(sys.argv[1], "rb").read())`,
);

// The tutorial's poetry client: collects what arrives until the server
// closes, then prints it.
const TWISTED_POETRY_CLIENT = twistedClient(`
class Client(protocol.Protocol):
    poem = b""
    def dataReceived(self, data):
        self.poem += data
    def connectionLost(self, reason):
        sys.stdout.buffer.write(self.poem)
        sys.stdout.flush()
        if reactor.running:
            reactor.stop()
`);

// The tutorial's transform server, on NetstringReceiver: answers
// "cummingsify.<poem>" with the poem in lower case; prints its port first.
const TWISTED_TRANSFORM_SERVER = twistedServer(
  `
from twisted.protocols.basic import NetstringReceiver

class TransformProtocol(NetstringReceiver):
    MAX_LENGTH = 1 << 22
    def stringReceived(self, request):
        xform, _, poem = request.partition(b".")
        if xform == b"cummingsify":
            self.sendString(poem.lower())
        self.transport.loseConnection()

class Factory(protocol.ServerFactory):
    protocol = TransformProtocol
`,
  "Factory()",
);

Deno.test({
  name: "transform_client.ts uses Twisted's transform server",
  ignore: twistedPython === undefined,
  async fn() {
    await using twisted = new Peer(twistedPython!, [
      "-c",
      TWISTED_TRANSFORM_SERVER,
    ]);
    const port = await twisted.line(START_TIMEOUT);
    await using donne = await startServer("poetry_server.ts", [], {
      allowRead: true,
    });
    const { code, stdout, stderr } = await runExample("transform_client.ts", [
      port,
      String(donne.port),
    ]);
    assertEquals(code, 0, stderr);
    assertEquals(text(stdout), text(DONNE).toLowerCase());
    assertLines(stderr, [`Task 1: cummingsify: ${DONNE.length} bytes`]);
    await stopCleanly(donne);
  },
});

Deno.test({
  name: "transform_server.ts answers Twisted's NetstringReceiver",
  ignore: twistedPython === undefined,
  async fn() {
    const long = longPoem();
    const path = await tempPoem(long);
    try {
      await using server = await startServer("transform_server.ts");
      for (const poem of [DONNE, long]) {
        await Deno.writeFile(path, poem);
        const { code, stdout, stderr } = await runPython(
          TWISTED_TRANSFORM_CLIENT,
          [String(server.port), path],
          20_000,
          twistedPython,
        );
        assertEquals([code, stderr], [0, ""]);
        assertEquals(stdout, text(poem).toLowerCase());
      }
      await stopCleanly(server);
    } finally {
      await Deno.remove(path);
    }
  },
});

Deno.test({
  name: "poetry_client.ts reads a poem from Twisted's poetry server",
  ignore: twistedPython === undefined,
  async fn() {
    const long = longPoem();
    const path = await tempPoem(long);
    try {
      await using twisted = new Peer(twistedPython!, [
        "-c",
        TWISTED_POETRY_SERVER,
        path,
      ]);
      const port = await twisted.line(START_TIMEOUT);
      const { code, stdout, stderr } = await runExample("poetry_client.ts", [
        port,
      ]);
      assertEquals(code, 0, stderr);
      assertEquals(stdout, long);
      assertLines(stderr, [`Task 1: ${long.length} bytes of poetry`]);
    } finally {
      await Deno.remove(path);
    }
  },
});

Deno.test({
  name: "poetry_server.ts serves Twisted's poetry client",
  ignore: twistedPython === undefined,
  async fn() {
    await using server = await startServer(
      "poetry_server.ts",
      ["examples/poetry/sonnet_18.txt"],
      { allowRead: true },
    );
    const { code, stdout, stderr } = await runPython(
      TWISTED_POETRY_CLIENT,
      [String(server.port)],
      20_000,
      twistedPython,
    );
    assertEquals([code, stderr], [0, ""]);
    assertEquals(stdout, text(SHAKESPEARE));
    await stopCleanly(server);
  },
});
