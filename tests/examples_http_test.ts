// End-to-end tests of examples/http_client.ts against a local Deno.serve.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { bytes, Peer, text, writeAll } from "./_helpers.ts";
import {
  assertUsageError,
  hasPython3,
  pattern,
  runExample,
} from "./_examples_helpers.ts";

/** One `--- URL (N bytes)` section of http_client.ts's output. */
interface Section {
  url: string;
  head: string[];
  body: Uint8Array;
}

/** Splits the client's stdout into its sections, checking the framing. */
function parseSections(stdout: Uint8Array): Section[] {
  const sections: Section[] = [];
  let offset = 0;
  while (offset < stdout.length) {
    const eol = stdout.indexOf(0x0a, offset);
    assert(eol > offset, "a section header line");
    const header = text(stdout.subarray(offset, eol));
    const match = header.match(/^--- (\S+) \((\d+) bytes\)$/);
    assert(match, `a section header, got ${JSON.stringify(header)}`);
    const start = eol + 1;
    const end = start + Number(match[2]);
    const response = stdout.subarray(start, end);
    assertEquals(response.length, Number(match[2]), "the whole response");
    offset = end;
    // A newline follows a response that does not end with one.
    if (response.at(-1) !== 0x0a) {
      assertEquals(stdout[offset], 0x0a);
      offset++;
    }
    let split = -1;
    for (let i = 0; i + 3 < response.length; i++) {
      if (
        response[i] === 13 && response[i + 1] === 10 &&
        response[i + 2] === 13 && response[i + 3] === 10
      ) {
        split = i;
        break;
      }
    }
    assert(split > 0, "a response head");
    sections.push({
      url: match[1],
      head: text(response.subarray(0, split)).split("\r\n"),
      body: response.slice(split + 4),
    });
  }
  return sections;
}

/** A barrier: every waiter is released once `count` arrived (or after `ms`). */
function barrier(count: number, ms: number) {
  let arrived = 0;
  let release!: () => void;
  const open = new Promise<void>((resolve) => release = resolve);
  const timer = setTimeout(release, ms);
  return {
    async arrive(): Promise<boolean> {
      if (++arrived >= count) {
        clearTimeout(timer);
        release();
      }
      await open;
      return arrived >= count;
    },
    dispose(): void {
      clearTimeout(timer);
      release();
    },
  };
}

Deno.test("http_client.ts fetches several URLs at once", async () => {
  const big = pattern(300_000, 7);
  // Every request waits until all three have arrived: a client that fetched
  // one URL after another would time out here.
  const together = barrier(3, 5000);
  const requests: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      requests.push(
        `${request.method} ${url.pathname}${url.search} ${
          request.headers.get("host")
        }`,
      );
      const all = await together.arrive();
      const body = url.pathname === "/big"
        ? big
        : bytes(`poem ${url.pathname}${url.search}\n`);
      return new Response(body, {
        status: url.pathname === "/missing" ? 404 : 200,
        headers: { "x-together": String(all) },
      });
    },
  );
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const urls = [`${base}/a?x=1`, `${base}/big`, `${base}/missing`];
    const { code, stdout, stderr } = await runExample("http_client.ts", urls);
    assertEquals([code, stderr], [0, ""]);
    assertEquals(requests.sort(), [
      `GET /a?x=1 127.0.0.1:${server.addr.port}`,
      `GET /big 127.0.0.1:${server.addr.port}`,
      `GET /missing 127.0.0.1:${server.addr.port}`,
    ]);
    const sections = parseSections(stdout).sort((a, b) =>
      a.url < b.url ? -1 : 1
    );
    assertEquals(sections.map((s) => s.url), urls);
    const expected = [
      { status: "HTTP/1.0 200 OK", body: bytes("poem /a?x=1\n") },
      { status: "HTTP/1.0 200 OK", body: big },
      { status: "HTTP/1.0 404 Not Found", body: bytes("poem /missing\n") },
    ];
    sections.forEach((section, i) => {
      const [status, ...headers] = section.head;
      assertEquals(status, expected[i].status);
      const fields = headers.map((line) => line.toLowerCase());
      assertMatch(
        fields.find((line) => line.startsWith("date: ")) ?? "",
        /^date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d gmt$/,
      );
      assertEquals(
        fields.filter((line) => !line.startsWith("date: ")).sort(),
        [
          `content-length: ${expected[i].body.length}`,
          "x-together: true",
        ],
      );
      assertEquals(section.body, expected[i].body);
    });
  } finally {
    together.dispose();
    await server.shutdown();
  }
});

Deno.test("http_client.ts reports a failed fetch and prints the others", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("ok\n"),
  );
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refused = listener.addr.port;
  listener.close();
  try {
    const good = `http://127.0.0.1:${server.addr.port}/`;
    const bad = `http://127.0.0.1:${refused}/`;
    const { code, stdout, stderr } = await runExample("http_client.ts", [
      bad,
      good,
    ]);
    assertEquals(code, 1);
    assertMatch(stderr, new RegExp(`^http_client.ts: ${bad}: .+\n$`));
    const sections = parseSections(stdout);
    assertEquals(sections.map((s) => s.url), [good]);
    assertEquals(text(sections[0].body), "ok\n");
  } finally {
    await server.shutdown();
  }
});

Deno.test("http_client.ts rejects what it cannot fetch", async () => {
  await assertUsageError(
    "http_client.ts",
    ["ftp://127.0.0.1/file"],
    /HTTP URLs only, please: "ftp:\/\/127\.0\.0\.1\/file"/,
  );
  await assertUsageError(
    "http_client.ts",
    ["http://127.0.0.1/", "ws://127.0.0.1/"],
    /HTTP URLs only, please: "ws:/,
  );
  await assertUsageError("http_client.ts", ["not a url"], /not a URL/);
  await assertUsageError("http_client.ts", [], /missing URL\.\.\./);
});

/**
 * A server that answers each connection with the next of `responses` and
 * closes: for responses cut short, since Deno.serve sends whole ones.
 */
function rawServer(responses: string[]) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for (const response of responses) {
      const conn = await listener.accept();
      try {
        await conn.read(new Uint8Array(4096)); // the request
        await writeAll(conn, bytes(response));
      } finally {
        conn.close();
      }
    }
  })();
  return {
    url: `http://127.0.0.1:${listener.addr.port}/`,
    async close(): Promise<void> {
      try {
        await serving;
      } finally {
        listener.close();
      }
    },
  };
}

Deno.test("http_client.ts reports a response shorter than its Content-Length, or without a whole head", async () => {
  for (
    const [response, problem] of [
      [
        "HTTP/1.0 200 OK\r\nContent-Length: 5000\r\n\r\n" + "z".repeat(1000),
        "the server closed after 1000 of 5000 bytes of body",
      ],
      [
        "HTTP/1.0 200 OK\r\nContent-Le",
        "the server closed before the end of the response head",
      ],
      ["", "the server closed before the end of the response head"],
    ]
  ) {
    const server = rawServer([response]);
    try {
      const { code, stdout, stderr } = await runExample("http_client.ts", [
        server.url,
      ]);
      assertEquals(
        [code, text(stdout), stderr],
        [1, "", `http_client.ts: ${server.url}: ${problem}\n`],
      );
    } finally {
      await server.close();
    }
  }
  // Whole: as long as announced, or no Content-Length (ends at close).
  const server = rawServer([
    "HTTP/1.0 200 OK\r\ncontent-length:  3\r\n\r\nabc",
    "HTTP/1.0 200 OK\r\n\r\nuntil the end",
  ]);
  try {
    for (const body of ["abc", "until the end"]) {
      const { code, stdout, stderr } = await runExample("http_client.ts", [
        server.url,
      ]);
      assertEquals([code, stderr], [0, ""]);
      assertEquals(parseSections(stdout).map((s) => text(s.body)), [body]);
    }
  } finally {
    await server.close();
  }
});

/** CPython: sends a head and part of the body, then resets (SO_LINGER 0). */
const RESETTING_SERVER = `
import socket, struct
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.recv(4096)
conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n" + b"r" * 1000)
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()
listener.close()
`;

Deno.test({
  name:
    "http_client.ts reports a response cut short by a reset from a CPython server",
  ignore: !hasPython3,
  async fn() {
    await using server = Peer.pythonCode(RESETTING_SERVER);
    const url = `http://127.0.0.1:${await server.line()}/`;
    const { code, stdout, stderr } = await runExample("http_client.ts", [url]);
    await server.exit();
    assertEquals([code, text(stdout)], [1, ""]);
    assertMatch(
      stderr,
      new RegExp(`^http_client.ts: ${url}: .*reset.*\n$`, "i"),
    );
  },
});
