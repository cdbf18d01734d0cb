// End-to-end tests of examples/http_server.ts: curl, CPython's http.client
// and urllib, raw sockets and wrk against the running example, on whichever
// backend the suite runs (ASYNCORE_BACKEND).

import {
  assert,
  assertEquals,
  assertFalse,
  assertMatch,
  assertNotEquals,
} from "@std/assert";
import { hasIPv6, isDisconnect, probe, text } from "./_helpers.ts";
import {
  assertUsageError,
  hasPython3,
  pattern,
  runExample,
  runPython,
  startServer,
  stopCleanly,
  within,
} from "./_examples_helpers.ts";
import { get, HttpConn } from "./_http_client.ts";

const hasCurl = probe("curl", ["--version"]);
const hasWrk = probe("wrk", ["--version"]) ||
  probe("sh", ["-c", "command -v wrk"]);

const BIG = 4 * 1048576;
const HUGE = 256 * 1048576;

/** The served tree: one file per media type, a big one, directories, links. */
function makeRoot(): {
  root: string;
  outside: string;
  files: Map<string, Uint8Array>;
} {
  const base = Deno.makeTempDirSync({ prefix: "http_server_test_" });
  const root = `${base}/www`;
  const outside = `${base}/outside`;
  Deno.mkdirSync(`${root}/sub`, { recursive: true });
  Deno.mkdirSync(`${root}/empty`);
  Deno.mkdirSync(outside);
  const files = new Map<string, Uint8Array>();
  const put = (name: string, data: Uint8Array | string) => {
    const bytes = typeof data === "string"
      ? new TextEncoder().encode(data)
      : data;
    Deno.writeFileSync(`${root}/${name}`, bytes);
    files.set(name, bytes);
  };
  put("hello.txt", "Hello, world!");
  put("index.html", "<h1>root</h1>\n");
  put("page.html", "<p>page</p>\n");
  put("style.css", "p { color: red }\n");
  put("app.js", "console.log(1);\n");
  put("data.json", '{"a":1}\n');
  put("img.png", pattern(300, 2));
  put("photo.jpg", pattern(400, 3));
  put("icon.svg", "<svg/>\n");
  put("mod.wasm", pattern(50, 4));
  put("blob.zzq", pattern(70, 5));
  put("a b%.txt", "spaced\n");
  put("sub/index.html", "<h1>sub</h1>\n");
  put("big.bin", pattern(BIG, 6));
  Deno.writeTextFileSync(`${outside}/secret.txt`, "SECRET\n");
  Deno.symlinkSync(`${outside}/secret.txt`, `${root}/out-link.txt`);
  Deno.symlinkSync(outside, `${root}/out-dir`);
  Deno.symlinkSync("hello.txt", `${root}/in-link.txt`);
  // Sparse: 256 MiB of zeros that take no disk.
  const huge = Deno.openSync(`${root}/huge.bin`, { write: true, create: true });
  huge.truncateSync(HUGE);
  huge.close();
  return { root, outside, files };
}

const { root, files } = makeRoot();
const ARGS = ["--root", root];

// The tree goes when the test module ends, whichever tests a filter ran.
globalThis.addEventListener("unload", () => {
  Deno.removeSync(root.replace(/\/www$/, ""), { recursive: true });
});

/** The server's resident memory in KiB (ps: /proc needs --allow-all). */
async function rssKiB(pid: number): Promise<number> {
  const out = await new Deno.Command("ps", {
    args: ["-o", "rss=", "-p", String(pid)],
    stdout: "piped",
  }).output();
  return Number(text(out.stdout).trim());
}

Deno.test("http_server.ts serves files, ranges, HEAD, 304s and errors over raw sockets", async (t) => {
  await using server = await startServer("http_server.ts", ARGS, {
    allowRead: true,
  });
  const { port } = server;

  await t.step(
    "GET of every media type: exact bytes, length, type, dates",
    async () => {
      using conn = await HttpConn.open(port);
      const types: Record<string, string> = {
        "hello.txt": "text/plain; charset=UTF-8",
        "page.html": "text/html; charset=UTF-8",
        "style.css": "text/css; charset=UTF-8",
        "app.js": "text/javascript; charset=UTF-8",
        "data.json": "application/json; charset=UTF-8",
        "img.png": "image/png",
        "photo.jpg": "image/jpeg",
        "icon.svg": "image/svg+xml",
        "mod.wasm": "application/wasm",
        "blob.zzq": "application/octet-stream",
      };
      for (const [name, type] of Object.entries(types)) {
        await conn.write(get(`/${name}`));
        const response = await conn.response();
        assertEquals(response.status, 200, name);
        assertEquals(response.body, files.get(name), name);
        assertEquals(
          response.headers.get("content-length"),
          String(files.get(name)!.length),
        );
        assertEquals(response.headers.get("content-type"), type, name);
        const mtime = Deno.statSync(`${root}/${name}`).mtime!;
        assertEquals(
          response.headers.get("last-modified"),
          new Date(Math.floor(mtime.getTime() / 1000) * 1000).toUTCString(),
        );
        const date = Date.parse(response.headers.get("date")!);
        assert(
          Math.abs(date - Date.now()) < 5000,
          `a Date now: ${response.headers.get("date")}`,
        );
      }
    },
  );

  await t.step("a file larger than a block arrives exact", async () => {
    using conn = await HttpConn.open(port);
    await conn.write(get("/big.bin"));
    const response = await conn.response();
    assertEquals(response.status, 200);
    assert(
      response.body.length === BIG &&
        equalBytes(response.body, files.get("big.bin")!),
    );
  });

  await t.step("HEAD sends GET's fields and no body", async () => {
    using conn = await HttpConn.open(port);
    await conn.write(get("/big.bin"));
    const full = await conn.response();
    await conn.write(get("/big.bin", [], "HEAD") + get("/hello.txt"));
    const head = await conn.response(true);
    assertEquals(head.status, 200);
    for (
      const name of [
        "content-length",
        "content-type",
        "last-modified",
        "accept-ranges",
      ]
    ) {
      assertEquals(head.headers.get(name), full.headers.get(name), name);
    }
    // Had the HEAD carried a body, it would be read as the next response.
    const next = await conn.response();
    assertEquals(text(next.body), "Hello, world!");
  });

  await t.step(
    "If-Modified-Since at or after the file's time is a 304",
    async () => {
      using conn = await HttpConn.open(port);
      await conn.write(get("/hello.txt"));
      const first = await conn.response();
      const lastModified = first.headers.get("last-modified")!;
      await conn.write(
        get("/hello.txt", [`If-Modified-Since: ${lastModified}`]),
      );
      const same = await conn.response();
      assertEquals(same.status, 304);
      assertEquals(same.body.length, 0);
      const later = new Date(Date.parse(lastModified) + 3600_000).toUTCString();
      await conn.write(get("/hello.txt", [`If-Modified-Since: ${later}`]));
      assertEquals((await conn.response()).status, 304);
      const earlier = new Date(Date.parse(lastModified) - 1000).toUTCString();
      await conn.write(get("/hello.txt", [`If-Modified-Since: ${earlier}`]));
      const changed = await conn.response();
      assertEquals([changed.status, text(changed.body)], [
        200,
        "Hello, world!",
      ]);
    },
  );

  await t.step("ranges: a-b, a-, -n, past the end, unsatisfiable", async () => {
    using conn = await HttpConn.open(port);
    const big = files.get("big.bin")!;
    const cases: [string, number, number][] = [
      ["bytes=0-4", 0, 5],
      ["bytes=100000-", 100000, BIG - 100000],
      ["bytes=-10", BIG - 10, 10],
      ["bytes=70000-3000000", 70000, 3000000 - 70000 + 1],
      ["bytes=4194300-9999999", 4194300, BIG - 4194300],
    ];
    for (const [range, start, length] of cases) {
      await conn.write(get("/big.bin", [`Range: ${range}`]));
      const response = await conn.response();
      assertEquals(response.status, 206, range);
      assertEquals(
        response.headers.get("content-range"),
        `bytes ${start}-${start + length - 1}/${BIG}`,
        range,
      );
      assertEquals(response.headers.get("content-length"), String(length));
      assert(
        equalBytes(response.body, big.subarray(start, start + length)),
        range,
      );
    }
    await conn.write(get("/hello.txt", ["Range: bytes=2-5"]));
    assertEquals(text((await conn.response()).body), "llo,");
    for (const range of ["bytes=13-", "bytes=100-200", "bytes=-0"]) {
      await conn.write(get("/hello.txt", [`Range: ${range}`]));
      const response = await conn.response();
      assertEquals(response.status, 416, range);
      assertEquals(response.headers.get("content-range"), "bytes */13");
    }
    // Still served on the same connection.
    await conn.write(get("/hello.txt"));
    assertEquals((await conn.response()).status, 200);
  });

  await t.step("directories serve index.html, else 404", async () => {
    using conn = await HttpConn.open(port);
    for (
      const [path, status, body] of [
        ["/", 200, "<h1>root</h1>\n"],
        ["/sub/", 200, "<h1>sub</h1>\n"],
        ["/sub", 200, "<h1>sub</h1>\n"],
        ["/empty/", 404, null],
        ["/missing.txt", 404, null],
        ["/hello.txt/more", 404, null],
      ] as const
    ) {
      await conn.write(get(path));
      const response = await conn.response();
      assertEquals(response.status, status, path);
      if (body !== null) assertEquals(text(response.body), body);
    }
  });

  await t.step("paths are decoded and never leave the root", async () => {
    using conn = await HttpConn.open(port);
    await conn.write(
      get("/a%20b%25.txt") + get("/in-link.txt") +
        get("/./sub/../hello.txt?x=1"),
    );
    assertEquals(text((await conn.response()).body), "spaced\n");
    assertEquals(text((await conn.response()).body), "Hello, world!");
    assertEquals(text((await conn.response()).body), "Hello, world!");
    for (
      const path of [
        "/../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2E%2Foutside%2Fsecret.txt",
        "/sub/..%2f..%2foutside/secret.txt",
        "//..//outside/secret.txt",
        "/out-link.txt",
        "/out-dir/secret.txt",
        "/hello.txt%00.html",
      ]
    ) {
      await conn.write(get(path));
      const response = await conn.response();
      assert(
        response.status === 400 || response.status === 404,
        `${path}: ${response.status}`,
      );
      assertFalse(text(response.body).includes("SECRET"), path);
    }
  });

  await t.step("pipelined requests are answered in order", async () => {
    using conn = await HttpConn.open(port);
    const names = [
      "hello.txt",
      "style.css",
      "big.bin",
      "app.js",
      "data.json",
      "hello.txt",
    ];
    await conn.write(names.map((n) => get(`/${n}`)).join(""));
    for (const name of names) {
      const response = await conn.response();
      assert(equalBytes(response.body, files.get(name)!), name);
    }
  });

  await t.step(
    "keep-alive: HTTP/1.1 unless close, HTTP/1.0 only when asked",
    async () => {
      {
        using conn = await HttpConn.open(port);
        await conn.write(get("/hello.txt", ["Connection: close"]));
        const response = await conn.response();
        assertEquals(response.headers.get("connection"), "close");
        assert(await conn.closed());
      }
      {
        using conn = await HttpConn.open(port);
        await conn.write("GET /hello.txt HTTP/1.0\r\n\r\n");
        assertEquals(text((await conn.response()).body), "Hello, world!");
        assert(await conn.closed());
      }
      {
        using conn = await HttpConn.open(port);
        for (let i = 0; i < 3; i++) {
          await conn.write(
            "GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
          );
          const response = await conn.response();
          assertEquals(response.headers.get("connection"), "keep-alive");
          assertEquals(text(response.body), "Hello, world!");
        }
      }
    },
  );

  await t.step(
    "a malformed request line is a 400, and the connection closes",
    async () => {
      for (
        const line of [
          "GARBAGE",
          "GET /hello.txt",
          "GET  /hello.txt HTTP/1.1",
          "GET /hello.txt HTTP/x",
        ]
      ) {
        using conn = await HttpConn.open(port);
        await conn.write(`${line}\r\nHost: x\r\n\r\n`);
        const response = await conn.response();
        assertEquals(response.status, 400, line);
        assert(await conn.closed(), line);
      }
    },
  );

  await t.step(
    "a request line over 8 KiB is a 414, headers over 8 KiB a 431, and both close",
    async () => {
      {
        using conn = await HttpConn.open(port);
        await conn.write(
          `GET /${"a".repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
        );
        assertEquals((await conn.response()).status, 414);
        assert(await conn.closed());
      }
      {
        // Without a line end at all.
        using conn = await HttpConn.open(port);
        await conn.write(`GET /${"a".repeat(20000)}`);
        assertEquals((await conn.response()).status, 414);
        assert(await conn.closed());
      }
      {
        using conn = await HttpConn.open(port);
        const fields = Array.from(
          { length: 100 },
          (_, i) => `X-Field-${i}: ${"v".repeat(90)}`,
        );
        await conn.write(get("/hello.txt", fields));
        assertEquals((await conn.response()).status, 431);
        assert(await conn.closed());
      }
      {
        using conn = await HttpConn.open(port);
        await conn.write(get("/hello.txt", [`X-Long: ${"v".repeat(10000)}`]));
        assertEquals((await conn.response()).status, 431);
        assert(await conn.closed());
      }
    },
  );

  await t.step(
    "other methods are a 405 with Allow; bodies are read past",
    async () => {
      using conn = await HttpConn.open(port);
      const body = "x".repeat(100000);
      await conn.write(
        `POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
          get("/style.css") +
          "PUT /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
          "5\r\nGET /\r\n1b;ext=1\r\nGET /hello.txt HTTP/1.1\r\n\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n" +
          get("/hello.txt", ["Content-Length: 3"]) + "abc" +
          "DELETE /x HTTP/1.1\r\nHost: x\r\n\r\n" +
          get("/app.js"),
      );
      const post = await conn.response();
      assertEquals([post.status, post.headers.get("allow")], [
        405,
        "GET, HEAD",
      ]);
      assertEquals(text((await conn.response()).body), "p { color: red }\n");
      assertEquals((await conn.response()).status, 405);
      assertEquals(text((await conn.response()).body), "Hello, world!");
      assertEquals((await conn.response()).status, 405);
      assertEquals(text((await conn.response()).body), "console.log(1);\n");
    },
  );

  await t.step(
    "Expect: 100-continue gets a 100 before the body is sent",
    async () => {
      using conn = await HttpConn.open(port);
      await conn.write(
        get(
          "/hello.txt",
          ["Content-Length: 5", "Expect: 100-continue"],
          "POST",
        ),
      );
      assertEquals((await conn.response(true)).status, 100);
      await conn.write("hello" + get("/hello.txt"));
      assertEquals((await conn.response()).status, 405);
      assertEquals(text((await conn.response()).body), "Hello, world!");
    },
  );

  await t.step(
    "a client that shuts down its side after its requests gets their answers",
    async () => {
      using conn = await HttpConn.open(port);
      await conn.write(get("/hello.txt") + get("/big.bin"));
      await (conn.conn as Deno.TcpConn).closeWrite();
      assertEquals(text((await conn.response()).body), "Hello, world!");
      assert(equalBytes((await conn.response()).body, files.get("big.bin")!));
      assert(await conn.closed());
    },
  );

  await t.step("bad framing is a 400 and closes", async () => {
    for (
      const fields of [["Content-Length: abc"], [
        "Content-Length: 3",
        "Transfer-Encoding: chunked",
      ], ["Transfer-Encoding: gzip"]]
    ) {
      using conn = await HttpConn.open(port);
      await conn.write(get("/hello.txt", fields));
      assertEquals((await conn.response()).status, 400, fields.join());
      assert(await conn.closed());
    }
  });

  const finished = await stopCleanly(server);
  await t.step("a Common Log Format line per request", () => {
    const lines = finished.stdout.split("\n");
    assertEquals(lines[0], `listening on 127.0.0.1:${port}`);
    const clf =
      /^127\.0\.0\.1 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "(.*)" (\d{3}) (\d+|-)$/;
    for (const line of lines.slice(1, -1)) assertMatch(line, clf);
    assert(
      lines.includes(
        lines.find((l) => l.endsWith('"GET /hello.txt HTTP/1.1" 200 13'))!,
      ),
    );
    assert(lines.some((l) => /"HEAD \/big\.bin HTTP\/1\.1" 200 -$/.test(l)));
    assert(lines.some((l) => / "GET \/big\.bin HTTP\/1\.1" 206 5$/.test(l)));
    assert(lines.some((l) => /"GARBAGE" 400 \d+$/.test(l)));
  });
});

Deno.test("http_server.ts streams large bodies under backpressure", async (t) => {
  await using server = await startServer(
    "http_server.ts",
    [...ARGS, "--quiet"],
    { allowRead: true },
  );
  const { port } = server;

  await t.step(
    "256 MiB to a slow reader grows RSS by under 64 MiB",
    async () => {
      using conn = await HttpConn.open(port);
      const pid = server.child.pid;
      const before = await rssKiB(pid);
      let peak = before;
      let nextSample = 0;
      const sample = async () => {
        if (performance.now() < nextSample) return;
        peak = Math.max(peak, await rssKiB(pid));
        nextSample = performance.now() + 100;
      };
      await conn.write(get("/huge.bin"));
      const buffer = new Uint8Array(65536);
      let head = new Uint8Array(0);
      let headLength = -1;
      let received = 0;
      let nonZero = 0;
      const slowUntil = performance.now() + 1500;
      const giveUp = performance.now() + 60_000;
      while (headLength < 0 || received < headLength + HUGE) {
        const n = await within(10_000, "a read", conn.conn.read(buffer));
        assert(n !== null, `end of stream after ${received} bytes`);
        const chunk = buffer.subarray(0, n);
        if (headLength < 0) {
          head = new Uint8Array([...head, ...chunk.subarray(0, 1024)]);
          const end = text(head).indexOf("\r\n\r\n");
          if (end >= 0) headLength = end + 4;
        }
        if (headLength >= 0) {
          for (let i = Math.max(0, headLength - received); i < n; i++) {
            if (chunk[i] !== 0) nonZero++;
          }
        }
        received += n;
        await sample();
        // First a slow reader (64 KiB every 20 ms), then as fast as it comes.
        if (performance.now() < slowUntil) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert(performance.now() < giveUp, `only ${received} bytes in 60 s`);
      }
      nextSample = 0;
      await sample();
      assertMatch(
        text(head),
        new RegExp(`^HTTP/1.1 200 OK\r\n[^]*Content-Length: ${HUGE}\r\n`),
      );
      assertEquals(received, headLength + HUGE);
      assertEquals(nonZero, 0);
      const grown = (peak - before) / 1024;
      assert(grown < 64, `RSS grew by ${grown.toFixed(1)} MiB`);
    },
  );

  await t.step(
    "ten parallel fetches of a large file arrive exact",
    async () => {
      const big = files.get("big.bin")!;
      const bodies = await Promise.all(Array.from({ length: 10 }, async () => {
        const response = await fetch(`http://127.0.0.1:${port}/big.bin`);
        return new Uint8Array(await response.arrayBuffer());
      }));
      for (const body of bodies) assert(equalBytes(body, big));
    },
  );

  const finished = await stopCleanly(server);
  await t.step("--quiet prints only the listening line", () => {
    assertEquals(finished.stdout, `listening on 127.0.0.1:${port}\n`);
  });
});

Deno.test("http_server.ts times out slow heads and idle connections, never a slow download", async (t) => {
  await using server = await startServer("http_server.ts", [
    ...ARGS,
    "--quiet",
    "--header-timeout",
    "1",
    "--idle-timeout",
    "1",
  ], { allowRead: true });
  const { port } = server;

  await t.step(
    "a head trickled a byte every 100 ms is cut; others are served meanwhile",
    async () => {
      using conn = await HttpConn.open(port);
      const started = performance.now();
      let cut = false;
      const trickle = (async () => {
        const request = get(
          "/hello.txt",
          Array.from({ length: 100 }, (_, i) => `X-${i}: y`),
        );
        for (const byte of request) {
          try {
            await conn.write(byte);
          } catch (error) {
            if (!isDisconnect(error)) throw error;
            cut = true;
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
          if (performance.now() - started > 6000) return;
        }
      })();
      // Meanwhile, others are served.
      for (let i = 0; i < 5; i++) {
        const response = await fetch(`http://127.0.0.1:${port}/hello.txt`);
        assertEquals(await response.text(), "Hello, world!");
      }
      const response = await conn.response(false, 8000);
      assertEquals(response.status, 408);
      assert(await conn.closed(8000));
      const took = performance.now() - started;
      assert(took < 4000, `cut after ${took.toFixed(0)} ms`);
      await trickle;
      void cut;
    },
  );

  await t.step("an idle keep-alive connection is closed", async () => {
    using conn = await HttpConn.open(port);
    await conn.write(get("/hello.txt"));
    assertEquals((await conn.response()).status, 200);
    const started = performance.now();
    assert(await conn.closed(8000));
    const took = performance.now() - started;
    assert(took > 500 && took < 5000, `closed after ${took.toFixed(0)} ms`);
  });

  await t.step("a connection that never sends is closed", async () => {
    using conn = await HttpConn.open(port);
    assert(await conn.closed(8000));
  });

  await t.step("a download slower than both timeouts is not cut", async () => {
    using conn = await HttpConn.open(port);
    await conn.write(get("/huge.bin"));
    const started = performance.now();
    // 2.5 s at about 5 MiB/s (64 KiB every 12 ms), past both timeouts...
    const chunk = new Uint8Array(65536);
    let received = 0;
    while (performance.now() - started < 2500) {
      const n = await within(5000, "a slow read", conn.conn.read(chunk));
      assert(n !== null, `cut after ${received} bytes`);
      received += n;
      await new Promise((resolve) => setTimeout(resolve, 12));
    }
    // ...then 32 MiB more, more than the sockets' buffers hold: the server
    // was still sending after the timeouts.
    const until = received + 32 * 1048576;
    while (received < until) {
      const n = await within(5000, "a read", conn.conn.read(chunk));
      assert(n !== null, `cut after ${received} bytes`);
      received += n;
    }
  });

  await stopCleanly(server);
});

Deno.test({
  name: `http_server.ts with curl: keep-alive across URLs, ranges, HEAD${
    hasCurl ? "" : " [skipped: curl not installed]"
  }`,
  ignore: !hasCurl,
}, async () => {
  await using server = await startServer(
    "http_server.ts",
    [...ARGS, "--quiet"],
    { allowRead: true },
  );
  const base = `http://127.0.0.1:${server.port}`;
  const curl = async (args: string[]) => {
    const out = await new Deno.Command("curl", {
      args: ["-sS", "--max-time", "10", ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, stdout: out.stdout, stderr: text(out.stderr) };
  };
  const reuse = await curl([
    "-v",
    `${base}/hello.txt`,
    `${base}/style.css`,
    `${base}/big.bin`,
    "-o",
    "/dev/null",
    "-o",
    "/dev/null",
    "-o",
    "/dev/null",
  ]);
  assertEquals(reuse.code, 0, reuse.stderr);
  assertMatch(reuse.stderr, /Re-using existing connection|Reusing existing/);
  assertEquals(
    (reuse.stderr.match(/Connected to/g) ?? []).length,
    1,
    reuse.stderr,
  );
  const both = await curl([`${base}/hello.txt`, `${base}/data.json`]);
  assertEquals(text(both.stdout), 'Hello, world!{"a":1}\n');
  const range = await curl(["-r", "7-11", `${base}/hello.txt`]);
  assertEquals(text(range.stdout), "world");
  const suffix = await curl(["-r", "-6", `${base}/hello.txt`]);
  assertEquals(text(suffix.stdout), "world!");
  const head = await curl(["-I", `${base}/big.bin`]);
  assertMatch(text(head.stdout), /^HTTP\/1\.1 200 OK\r\n/);
  assertMatch(text(head.stdout), new RegExp(`Content-Length: ${BIG}\r\n`));
  const status = await curl([
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    "-r",
    "99-",
    `${base}/hello.txt`,
  ]);
  assertEquals(text(status.stdout), "416");
  await stopCleanly(server);
});

Deno.test({
  name: `http_server.ts with CPython's http.client and urllib${
    hasPython3 ? "" : " [skipped: python3 not installed]"
  }`,
  ignore: !hasPython3,
}, async () => {
  await using server = await startServer(
    "http_server.ts",
    [...ARGS, "--quiet"],
    { allowRead: true },
  );
  const script = `
import http.client, json, sys, urllib.request, urllib.error
port = int(sys.argv[1])
out = {}
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
results = []
for method, path, headers in [
    ("GET", "/hello.txt", {}),
    ("HEAD", "/big.bin", {}),
    ("GET", "/big.bin", {"Range": "bytes=10-19"}),
    ("GET", "/missing", {}),
    ("POST", "/hello.txt", {"Content-Length": "3"}),
    ("GET", "/data.json", {}),
]:
    body = b"abc" if method == "POST" else None
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    results.append([r.status, r.getheader("Content-Type"), r.getheader("Content-Range"), len(data), data[:20].hex()])
out["sock_reused"] = conn.sock is not None
out["results"] = results
with urllib.request.urlopen(f"http://127.0.0.1:{port}/img.png", timeout=10) as r:
    out["png"] = [r.status, r.headers["Content-Type"], r.read().hex()]
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing-here", timeout=10)
except urllib.error.HTTPError as e:
    out["missing"] = e.code
print(json.dumps(out))
`;
  const { code, stdout, stderr } = await runPython(script, [
    String(server.port),
  ]);
  assertEquals(code, 0, stderr);
  const out = JSON.parse(stdout);
  const big = files.get("big.bin")!;
  const hex = (data: Uint8Array) =>
    Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
  assertEquals(out.results, [
    [
      200,
      "text/plain; charset=UTF-8",
      null,
      13,
      hex(new TextEncoder().encode("Hello, world!")),
    ],
    [200, "application/octet-stream", null, 0, ""],
    [
      206,
      "application/octet-stream",
      `bytes 10-19/${BIG}`,
      10,
      hex(big.subarray(10, 20)),
    ],
    [
      404,
      "text/html; charset=UTF-8",
      null,
      out.results[3][3],
      out.results[3][4],
    ],
    [
      405,
      "text/html; charset=UTF-8",
      null,
      out.results[4][3],
      out.results[4][4],
    ],
    [
      200,
      "application/json; charset=UTF-8",
      null,
      8,
      hex(new TextEncoder().encode('{"a":1}\n')),
    ],
  ]);
  assert(out.sock_reused);
  assertEquals(out.png, [200, "image/png", hex(files.get("img.png")!)]);
  assertEquals(out.missing, 404);
  await stopCleanly(server);
});

Deno.test({
  name: `http_server.ts under wrk: no errors${
    hasWrk ? "" : " [skipped: wrk not installed]"
  }`,
  ignore: !hasWrk,
}, async () => {
  await using server = await startServer(
    "http_server.ts",
    [...ARGS, "--quiet"],
    { allowRead: true },
  );
  for (const path of ["/hello.txt", "/big.bin"]) {
    const out = await new Deno.Command("wrk", {
      args: [
        "-t1",
        "-c20",
        "-d1s",
        "--timeout",
        "5s",
        `http://127.0.0.1:${server.port}${path}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const report = text(out.stdout);
    assertEquals(out.code, 0, text(out.stderr));
    const requests = Number(/(\d+) requests in/.exec(report)?.[1]);
    assert(requests > 0, report);
    assertFalse(/Socket errors|Non-2xx/.test(report), report);
  }
  await stopCleanly(server);
});

Deno.test({
  name: `http_server.ts on IPv6 with --host ::1${
    hasIPv6 ? "" : " [skipped: no IPv6 loopback]"
  }`,
  ignore: !hasIPv6,
}, async () => {
  await using server = await startServer("http_server.ts", [
    ...ARGS,
    "--host",
    "::1",
  ], { allowRead: true });
  assertEquals(server.hostname, "::1");
  const response = await fetch(`http://[::1]:${server.port}/hello.txt`);
  assertEquals(await response.text(), "Hello, world!");
  const finished = await stopCleanly(server);
  assertMatch(
    finished.stdout,
    /^::1 - - \[.*\] "GET \/hello\.txt HTTP\/1\.1" 200 13$/m,
  );
});

Deno.test("http_server.ts --help and bad options", async () => {
  const help = await runExample("http_server.ts", ["--help"], {
    allowRead: true,
  });
  assertEquals(help.code, 0);
  for (
    const option of [
      "--root",
      "--host",
      "--port",
      "--quiet",
      "--header-timeout",
      "--idle-timeout",
    ]
  ) {
    assert(text(help.stdout).includes(option), option);
  }
  await assertUsageError(
    "http_server.ts",
    ["--root", `${root}/hello.txt`],
    /--root/,
    { allowRead: true },
  );
  await assertUsageError(
    "http_server.ts",
    ["--idle-timeout", "soon"],
    /--idle-timeout/,
    { allowRead: true },
  );
  assertNotEquals(help.stdout.length, 0);
});

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
