// Tests of select.ts: Socket over real loopback sockets (IPv4, IPv6, Unix),
// select(), Poll, backpressure, and argument checking.

import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertInstanceOf,
  assertLess,
  assertLessOrEqual,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import { delay } from "@std/async";
import { getAvailablePort } from "@std/net";
import {
  Poll,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
  POLLPRI,
  select,
  Socket,
} from "../select.ts";
import {
  BACKEND,
  closeQuietly,
  connectAddress,
  denoBackendOnly,
  dial,
  FAMILIES,
  hasIPv6,
  hostOf,
  isPattern,
  loopbackHostName,
  pattern,
  portOf,
  recvAll,
  settlesWithin,
  type SocketPair,
  socketPair,
  unixEndpoint,
  within,
  writeAll,
} from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Waits (bounded) until `sock` is readable and takes up to `size` bytes. */
async function recvSoon(sock: Socket, size = 65536): Promise<Uint8Array> {
  const [readable] = await select([sock], [], [], 5000);
  assertEquals(readable, [sock], "the socket became readable");
  return sock.recv(size);
}

for (const family of FAMILIES) {
  Deno.test({
    name:
      `Socket: bind, listen, connect, accept, send, recv, shutdown and close over ${family.name}`,
    ignore: family.ignore,
    async fn() {
      using endpoint = family.endpoint();
      const { transport } = endpoint;
      using listener = new Socket({ transport });
      assertEquals(listener.transport, transport);
      listener.bind(endpoint.bindAddress);
      const bound = listener.getsockname();
      if (bound.transport === "unix") {
        assertEquals(
          bound.path,
          (endpoint.bindAddress as { path: string }).path,
        );
      } else {
        assertEquals(
          hostOf(bound),
          (endpoint.bindAddress as { hostname: string }).hostname,
        );
        assertGreaterOrEqual(portOf(bound), 1);
      }
      listener.listen(5);
      assertThrows(() => listener.accept(), Deno.errors.WouldBlock);

      using client = new Socket({ transport });
      client.connect(connectAddress(bound));
      // A non-blocking connect: send and recv would block until it
      // completes (EAGAIN, as a kernel says, not ENOTCONN). On the epoll
      // backend a loopback connect may have completed already.
      if (BACKEND === "deno") {
        assertThrows(() => client.send("x"), Deno.errors.WouldBlock);
        assertThrows(
          () => client.connect(connectAddress(bound)),
          Deno.errors.Busy,
        );
      }
      assertThrows(() => client.recv(10), Deno.errors.WouldBlock);

      assertEquals(await select([listener], [], [], 5000), [
        [listener],
        [],
        [],
      ]);
      const [server, addr] = listener.accept();
      using _server = server;
      assertEquals(addr, server.getpeername());
      assertEquals(server.getsockname(), bound);
      assertEquals(await select([], [client], [], 5000), [[], [client], []]);
      assertEquals(client.getpeername(), bound);
      if (addr.transport === "tcp") {
        assertEquals(portOf(addr), portOf(client.getsockname()));
      }
      assertThrows(() => server.recv(10), Deno.errors.WouldBlock);

      // Both directions.
      assertEquals(client.send("ping"), 4);
      assertEquals(decoder.decode(await recvSoon(server)), "ping");
      assertEquals(server.send(encoder.encode("pong")), 4);
      assertEquals(decoder.decode(await recvSoon(client)), "pong");

      // recv(n) takes no more than n bytes and leaves the rest.
      client.send("abcdef");
      const first = await recvSoon(server, 2);
      assertEquals(decoder.decode(first), "ab");
      assertEquals(server.recvBuffered, 4);
      assertEquals(decoder.decode(server.recv(100)), "cdef");

      // Half-close: the server reads end of stream but can still send.
      client.shutdown("write");
      assertEquals((await recvSoon(server)).length, 0);
      assertThrows(() => client.send("late"), Deno.errors.BrokenPipe);
      server.send("bye");
      assertEquals(decoder.decode(await recvSoon(client)), "bye");

      // Close: the client reads end of stream.
      const fd = server.fileno();
      server.close();
      assert(server.closed);
      assertEquals(server.fileno(), -1);
      assertNotEquals(fd, -1);
      server.close(); // twice is fine
      assertEquals((await recvSoon(client)).length, 0);
      assertEquals(client.error, null);
    },
  });

  Deno.test({
    name:
      `Socket: bytes sent just before close() are all delivered over ${family.name}`,
    ignore: family.ignore,
    async fn() {
      using endpoint = family.endpoint();
      using pair = await socketPair({ endpoint, sendBufferSize: 1 << 20 });
      const big = pattern(1 << 20);
      assertEquals(pair.client.send(big), big.length, "1 MiB fits the buffer");
      pair.client.close();
      const received = await recvAll(pair.server);
      assertEquals(received.length, big.length);
      assert(isPattern(received), "the bytes arrived in order");
    },
  });
}

for (const family of FAMILIES) {
  Deno.test({
    name:
      `Socket: recvInto fills the caller's buffer, up to nbytes, then reads 0 at end of stream, over ${family.name}`,
    ignore: family.ignore,
    async fn() {
      using endpoint = family.endpoint();
      using pair = await socketPair({ endpoint });
      const { client, server } = pair;
      const buffer = new Uint8Array(8).fill(0x2e); // "."
      assertThrows(() => server.recvInto(buffer), Deno.errors.WouldBlock);

      client.send("abcdefghij");
      assertEquals(await select([server], [], [], 5000), [[server], [], []]);
      assertEquals(server.recvInto(buffer, 3), 3);
      assertEquals(decoder.decode(buffer), "abc.....");
      assertEquals(server.recvInto(buffer), 7);
      assertEquals(decoder.decode(buffer), "defghij.");
      // nbytes 0 means the whole buffer, as in Python.
      client.send("k");
      assertEquals(await select([server], [], [], 5000), [[server], [], []]);
      assertEquals(server.recvInto(buffer.subarray(7), 0), 1);
      assertEquals(decoder.decode(buffer), "defghijk");

      client.shutdown("write");
      assertEquals(await select([server], [], [], 5000), [[server], [], []]);
      assertEquals(server.recvInto(buffer), 0);
      assertEquals(
        decoder.decode(buffer),
        "defghijk",
        "end of stream writes nothing",
      );
    },
  });
}

Deno.test("Socket: 8 MiB through recvInto with one reused buffer arrive whole and in order", async () => {
  using endpoint = FAMILIES[0].endpoint();
  using pair = await socketPair({ endpoint });
  const { client, server } = pair;
  const data = pattern(8 * 1024 * 1024);
  const buffer = new Uint8Array(5000); // not a divisor of anything sent
  const received = new Uint8Array(data.length);
  let sent = 0;
  let got = 0;
  const deadline = performance.now() + 20_000;
  while (got < data.length) {
    assert(performance.now() < deadline, `only ${got} bytes in time`);
    const [readable, writable] = await select(
      [server],
      sent < data.length ? [client] : [],
      [],
      5000,
    );
    if (writable.length > 0) {
      try {
        sent += client.send(data.subarray(sent, sent + 65536));
      } catch (error) {
        if (!(error instanceof Deno.errors.WouldBlock)) throw error;
      }
    }
    if (readable.length > 0) {
      const count = server.recvInto(buffer);
      assert(count > 0, "no end of stream before everything came");
      received.set(buffer.subarray(0, count), got);
      got += count;
    }
  }
  assert(isPattern(received));
});

Deno.test("Socket: recvInto refuses what it cannot fill, naming the argument", async () => {
  using endpoint = FAMILIES[0].endpoint();
  using pair = await socketPair({ endpoint });
  const { server } = pair;
  const buffer = new Uint8Array(4);
  for (
    const [args, type, text] of [
      [["bytes"], TypeError, `buffer must be a Uint8Array, got "bytes"`],
      [[new ArrayBuffer(4)], TypeError, "buffer must be a Uint8Array"],
      [
        [buffer, 5],
        RangeError,
        "nbytes must be at most the buffer's length (4), got 5",
      ],
      [[buffer, -1], RangeError, "nbytes must be a positive integer, got -1"],
      [[buffer, 1.5], RangeError, "nbytes must be a positive integer"],
      [[buffer, "2"], TypeError, "nbytes must be a number"],
      [
        [new Uint8Array(0)],
        RangeError,
        "buffer must have room for at least one byte",
      ],
    ] as const
  ) {
    assertThrows(
      // deno-lint-ignore no-explicit-any
      () => (server.recvInto as any)(...args),
      type,
      text,
    );
  }
  server.close();
  assertThrows(
    () => server.recvInto(buffer),
    Deno.errors.BadResource,
    "recvInto",
  );
});

Deno.test("Socket: what recv returned stays intact while other sockets keep reading", async () => {
  // Reads from every socket share arenas; a view once handed out must never
  // be written again, whatever the sizes and the order of the reads.
  using endpoint = FAMILIES[0].endpoint(); // IPv4, port 0: one per pair
  const pairs: SocketPair[] = [];
  try {
    for (let i = 0; i < 8; i++) pairs.push(await socketPair({ endpoint }));
    const kept: { data: Uint8Array; offset: number }[] = [];
    const sent = new Array<number>(pairs.length).fill(0);
    const received = new Array<number>(pairs.length).fill(0);
    for (let round = 0; round < 40; round++) {
      for (const [i, { client }] of pairs.entries()) {
        // Short messages, with an occasional long one that grows the reads.
        const size = (round + i) % 13 === 0
          ? 20_000 + i * 7
          : 1 + (round * 31 + i * 17) % 200;
        assertEquals(client.send(pattern(size, sent[i])), size);
        sent[i] += size;
      }
      for (const [i, { server }] of pairs.entries()) {
        while (received[i] < sent[i]) {
          const data = await recvSoon(server);
          assert(data.length > 0, "no end of stream yet");
          kept.push({ data, offset: received[i] });
          received[i] += data.length;
        }
      }
    }
    assertGreaterOrEqual(kept.length, 8 * 40);
    for (const { data, offset } of kept) {
      assert(
        isPattern(data, offset),
        "a view handed out earlier was overwritten",
      );
    }
  } finally {
    for (const pair of pairs) pair[Symbol.dispose]();
  }
});

Deno.test("Socket: fromConn wraps a Deno.Conn as a connected socket", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = listener.accept();
  const sock = Socket.fromConn(await dial(listener.addr));
  using _sock = sock;
  await using peer = await within(5000, "accept", accepting);
  assertEquals(sock.getpeername(), listener.addr);
  assertEquals(sock.transport, "tcp");
  assertEquals(await select([], [sock], [], 0), [[], [sock], []]);
  sock.send("hi");
  const buffer = new Uint8Array(8);
  const n = await within(1000, "read", peer.read(buffer));
  assertEquals(decoder.decode(buffer.subarray(0, n ?? 0)), "hi");
  await peer.write(encoder.encode("yo"));
  assertEquals(decoder.decode(await recvSoon(sock)), "yo");
});

Deno.test("Socket: fromConn of a closed Deno.Conn fails with an error that says so", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = listener.accept();
  const conn = await dial(listener.addr);
  await using _peer = await within(5000, "accept", accepting);
  conn.close();
  using sock = Socket.fromConn(conn);
  // Deno cannot tell at once: the failure shows as a pending error (the
  // socket is writable before then: its send buffer has room).
  const [, , failed] = await within(
    5000,
    "the socket to show its error",
    select([], [], [sock], 5000),
  );
  assertEquals(failed, [sock]);
  assertEquals(await select([sock], [sock], [], 0), [[sock], [sock], []]);
  assertInstanceOf(sock.error, Deno.errors.BadResource);
  assertMatch(sock.error.message, /Deno\.Conn .*closed outside/);
  assertThrows(() => sock.send("x"), Deno.errors.BadResource, "closed outside");
  assertThrows(() => sock.recv(8), Deno.errors.BadResource, "closed outside");
});

Deno.test("Socket: fromConn refuses what is not a Deno.Conn", () => {
  for (const value of [undefined, null, 3, "conn", {}, { read() {} }]) {
    assertThrows(
      () => Socket.fromConn(value as unknown as Deno.Conn),
      TypeError,
      "conn must be a Deno.Conn",
    );
  }
});

Deno.test("select: timeout 0 returns at once", async () => {
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const start = performance.now();
  assertEquals(await select([listener], [listener], [listener], 0), [
    [],
    [],
    [],
  ]);
  assertLess(performance.now() - start, 50);
});

Deno.test("select: a bound returns empty after the bound, not before", async () => {
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  for (const bound of [30, 80]) {
    const start = performance.now();
    const result = await within(
      bound + 2000,
      "select with a bound",
      select([listener], [], [listener], bound),
    );
    const elapsed = performance.now() - start;
    assertEquals(result, [[], [], []]);
    assertGreaterOrEqual(elapsed, bound - 1, "did not return early");
    assertLess(elapsed, bound + 1000, "returned near the bound");
  }
});

Deno.test("select: timeout undefined waits until a socket is ready", async () => {
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const waiting = select([listener], [], []);
  assertEquals(await settlesWithin(30, waiting), false, "nothing is ready yet");
  using client = new Socket();
  client.connect(connectAddress(listener.getsockname()));
  assertEquals(await within(5000, "select", waiting), [[listener], [], []]);
  listener.accept()[0].close();
});

Deno.test("select: an abort signal ends the wait early", async () => {
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const controller = new AbortController();
  const waiting = select([listener], [], [], undefined, {
    signal: controller.signal,
  });
  controller.abort();
  assertEquals(await within(1000, "select", waiting), [[], [], []]);
});

Deno.test("select: a socket closed during the wait rejects it with BadResource", async () => {
  for (const timeout of [undefined, 30_000]) {
    using listener = new Socket();
    listener.bind({ hostname: "127.0.0.1", port: 0 });
    listener.listen();
    using other = new Socket();
    other.bind({ hostname: "127.0.0.1", port: 0 });
    other.listen();
    const waiting = select([listener, other], [], [], timeout);
    assertEquals(await settlesWithin(20, waiting), false);
    listener.close();
    await within(
      1000,
      "select",
      assertRejects(() => waiting, Deno.errors.BadResource, "select"),
    );
  }
});

Deno.test("select: hands back the objects it was given", async () => {
  using endpoint = unixEndpoint();
  using pair = await socketPair({ endpoint });
  const wrapper = { fileno: () => pair.client.fileno(), name: "wrapper" };
  const fd = pair.client.fileno();
  const [r, w, x] = await select([wrapper], [wrapper, fd], [fd], 1000);
  assertEquals(r, []);
  assertStrictEquals(w[0], wrapper);
  assertStrictEquals(w[1], fd);
  assertEquals(x, []);
  pair.server.send("x");
  const [r2] = await select([fd, pair.listener], [], [], 5000);
  assertEquals(r2, [fd]);
});

Deno.test("select: wakes for a socket that becomes writable again", async () => {
  using endpoint = FAMILIES[0].endpoint();
  using pair = await socketPair({ endpoint, sendBufferSize: 1024 });
  const { client, server } = pair;
  // Fill the send buffer (and, on the epoll backend, the peer's receive
  // buffer too); it drains in the background.
  let sent = 0;
  for (let i = 0; i < 100_000; i++) {
    try {
      sent += client.send(pattern(4096, sent));
    } catch (error) {
      assertInstanceOf(error, Deno.errors.WouldBlock);
      break;
    }
  }
  if (BACKEND === "deno") assertEquals(sent, 1024);
  assertThrows(() => client.send("x"), Deno.errors.WouldBlock);
  const receiving = recvAll(server);
  assertEquals(await select([], [client], [], 5000), [[], [client], []]);
  assertEquals(client.send(pattern(10, sent)), 10);
  client.shutdown("write");
  const received = await receiving;
  assertEquals(received.length, sent + 10);
  assert(isPattern(received));
});

Deno.test("select: a refused connect is readable, writable and exceptional", async () => {
  const port = getAvailablePort();
  using client = new Socket();
  client.connect({ hostname: "127.0.0.1", port });
  // On the epoll backend the kernel may know at once.
  if (BACKEND === "deno") {
    assertEquals(client.error, null, "the connect is in progress");
  }
  const result = await select([client], [client], [client], 5000);
  assertEquals(result, [[client], [client], [client]]);
  assertInstanceOf(client.error, Deno.errors.ConnectionRefused);
  assertThrows(() => client.recv(10), Deno.errors.ConnectionRefused);
  assertThrows(() => client.send("x"), Deno.errors.ConnectionRefused);
});

Deno.test({
  name: `select: a connect to a host name is writable only once connected${
    loopbackHostName ? "" : " [no loopback name in /etc/hosts]"
  }`,
  ignore: loopbackHostName === undefined,
  async fn() {
    // The classic client: connect, wait for writable, send. The name is
    // resolved first, and the socket must not look writable before then.
    using listener = new Socket();
    listener.bind({ hostname: "127.0.0.1", port: 0 });
    listener.listen(16);
    const port = portOf(listener.getsockname());
    for (let i = 0; i < 10; i++) {
      using client = new Socket();
      client.connect({ hostname: loopbackHostName!, port });
      assertEquals(await select([], [client], [], 5000), [[], [client], []]);
      assertEquals(client.error, null);
      assertEquals(client.send(`hello ${i}`), `hello ${i}`.length);
      client.shutdown("write");
      const [readable] = await select([listener], [], [], 5000);
      assertEquals(readable, [listener]);
      const [server] = listener.accept();
      using _ = server;
      assertEquals(decoder.decode(await recvAll(server)), `hello ${i}`);
    }
  },
});

Deno.test("select: a failed lookup is the connect's error, as a refused connect's is", async () => {
  using client = new Socket();
  client.connect({ hostname: "no-such-host.invalid", port: 80 });
  const result = await select([client], [client], [client], 10_000);
  assertEquals(result, [[client], [client], [client]]);
  const error = client.error;
  assertInstanceOf(error, Error);
  assertMatch(error.message, /^failed to lookup address information: /);
  assertThrows(() => client.send("x"), Error, error.message);
  assertThrows(() => client.recv(10), Error, error.message);
});

Deno.test("select: bad arguments are rejected with errors naming them", async () => {
  using sock = new Socket();
  await assertRejects(
    // @ts-expect-error: not an array
    () => select(sock, [], []),
    TypeError,
    "rlist must be an array",
  );
  await assertRejects(
    // @ts-expect-error: not a socket
    () => select([], ["x"], []),
    TypeError,
    "wlist must hold sockets",
  );
  await assertRejects(
    () => select([], [], [{ fileno: () => 999_999 }]),
    Deno.errors.BadResource,
    "xlist",
  );
  await assertRejects(
    () => select([sock], [], [], -1),
    RangeError,
    "timeout",
  );
  await assertRejects(
    // @ts-expect-error: not a number
    () => select([sock], [], [], "10"),
    TypeError,
    "timeout",
  );
  const closed = new Socket();
  closed.close();
  await assertRejects(
    () => select([closed], [], [], 0),
    Deno.errors.BadResource,
  );
});

Deno.test("Poll: register, modify and unregister", async () => {
  using endpoint = unixEndpoint();
  using pair = await socketPair({ endpoint });
  const { client, server } = pair;
  const poller = new Poll();
  poller.register(client);
  // Connected with room to send: POLLOUT, nothing to read.
  assertEquals(await poller.poll(0), [[client.fileno(), POLLOUT]]);
  poller.modify(client, POLLIN | POLLPRI);
  assertEquals(await poller.poll(0), []);
  const start = performance.now();
  assertEquals(await poller.poll(40), []);
  assertGreaterOrEqual(performance.now() - start, 39);
  server.send("data");
  assertEquals(await within(5000, "poll", poller.poll()), [[
    client.fileno(),
    POLLIN,
  ]]);
  // Registering again replaces the mask; numbers work as well as objects.
  poller.register(client.fileno(), POLLIN | POLLOUT);
  assertEquals(await poller.poll(0), [[client.fileno(), POLLIN | POLLOUT]]);
  poller.unregister(client);
  assertEquals(await poller.poll(0), []);
  assertThrows(() => poller.unregister(client), Deno.errors.NotFound);
  assertThrows(() => poller.modify(client, POLLIN), Deno.errors.NotFound);
  assertThrows(() => poller.register(client, -1), RangeError, "eventmask");
  assertThrows(() => poller.register(client, 1.5), RangeError, "eventmask");
  // @ts-expect-error: not a socket
  assertThrows(() => poller.register("x"), TypeError, "fd");
  assertThrows(() => poller.register(-3), TypeError, "fd");
});

Deno.test("Poll: a negative timeout waits until an event", async () => {
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const poller = new Poll();
  poller.register(listener, POLLIN);
  const waiting = poller.poll(-1);
  assertEquals(await settlesWithin(30, waiting), false);
  using client = new Socket();
  client.connect(connectAddress(listener.getsockname()));
  assertEquals(await within(5000, "poll", waiting), [[
    listener.fileno(),
    POLLIN,
  ]]);
  listener.accept()[0].close();
});

Deno.test("Poll: POLLNVAL for a closed socket, even one closed during the wait", async () => {
  const a = new Socket();
  const b = new Socket();
  a.bind({ hostname: "127.0.0.1", port: 0 });
  a.listen();
  b.bind({ hostname: "127.0.0.1", port: 0 });
  b.listen();
  const poller = new Poll();
  const fdA = a.fileno();
  const fdB = b.fileno();
  poller.register(a, POLLIN);
  poller.register(b, POLLIN);
  a.close();
  assertEquals(await poller.poll(0), [[fdA, POLLNVAL]]);
  poller.unregister(fdA); // the number can still be unregistered
  const waiting = poller.poll();
  assertEquals(await settlesWithin(20, waiting), false);
  b.close();
  assertEquals(await within(1000, "poll", waiting), [[fdB, POLLNVAL]]);
});

Deno.test("Poll: POLLHUP once both directions are over, POLLERR|POLLHUP on an error", async () => {
  using pair = await socketPair();
  const { client, server } = pair;
  const poller = new Poll();
  poller.register(server, POLLIN);
  // The peer ends its stream: readable at end of stream, but not hung up yet.
  client.shutdown("write");
  assertEquals(await within(5000, "poll", poller.poll()), [[
    server.fileno(),
    POLLIN,
  ]]);
  assertEquals(server.recv(10).length, 0);
  // Once this side ends its own stream as well, the connection is over.
  server.shutdown("write");
  assertEquals(await poller.poll(0), [[server.fileno(), POLLIN | POLLHUP]]);
  poller.modify(server, POLLOUT);
  assertEquals(await poller.poll(0), [[server.fileno(), POLLOUT | POLLHUP]]);

  // A failed connect: POLLERR and POLLHUP are reported even with no events asked.
  using refused = new Socket();
  refused.connect({ hostname: "127.0.0.1", port: getAvailablePort() });
  const errors = new Poll();
  errors.register(refused, 0);
  const events = await within(5000, "poll", errors.poll(5000));
  assertEquals(events, [[refused.fileno(), POLLERR | POLLHUP]]);
  errors.modify(refused, POLLIN | POLLOUT);
  assertEquals(await errors.poll(0), [[
    refused.fileno(),
    POLLIN | POLLOUT | POLLERR | POLLHUP,
  ]]);
});

const SEND_BOUND = denoBackendOnly(
  "Socket: send stops at the bound when the peer never reads",
  "the kernel's send buffer is the bound there",
);
Deno.test(SEND_BOUND, async () => {
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const peer = await dial(listener.getsockname());
  await select([listener], [], [], 5000);
  const [sock] = listener.accept();
  const chunk = new Uint8Array(65536);
  const cap = 64 << 20;
  let total = 0;
  let wouldBlock = 0;
  let stalled = false;
  try {
    const deadline = performance.now() + 8000;
    while (total < cap && performance.now() < deadline) {
      try {
        total += sock.send(chunk);
      } catch (error) {
        assertInstanceOf(error, Deno.errors.WouldBlock);
        wouldBlock++;
        assertEquals(sock.sendBuffered, sock.sendBufferSize);
        const [, writable] = await select([], [sock], [], 150);
        if (writable.length === 0) {
          stalled = true;
          break;
        }
      }
    }
    assert(stalled, `send never stalled after ${total} bytes`);
    assertGreaterOrEqual(wouldBlock, 1);
    assertGreaterOrEqual(total, sock.sendBufferSize);
    // sendBufferSize plus what the kernels hold, far from the cap.
    assertLess(total, 32 << 20);
    assertEquals(sock.sendBuffered, sock.sendBufferSize);
  } finally {
    // The peer closes with unread data: a reset, which fails the pending write.
    peer.close();
  }
  const [r, w, x] = await select([sock], [sock], [sock], 5000);
  assertEquals([r.length, w.length, x.length], [1, 1, 1]);
  assert(sock.error !== null, "the write failed");
  assertThrows(() => sock.send("x"));
  sock.close();
});

const RECV_BOUND = denoBackendOnly(
  "Socket: the receive buffer stops at recvBufferSize and the peer's writes stall",
  "the kernel's receive buffer is the bound there",
);
Deno.test(RECV_BOUND, async () => {
  using listener = new Socket({ recvBufferSize: 16384 });
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const peer = await dial(listener.getsockname());
  await select([listener], [], [], 5000);
  const [sock] = listener.accept();
  using _sock = sock;
  assertEquals(
    sock.recvBufferSize,
    16384,
    "accepted sockets inherit the bound",
  );

  const total = 32 << 20;
  const chunkSize = 65536;
  let written = 0;
  // The peer writes 32 MiB of a pattern as fast as it is let.
  const writing = (async () => {
    const chunk = new Uint8Array(chunkSize);
    while (written < total) {
      for (let i = 0; i < chunkSize; i++) chunk[i] = (written + i) % 251;
      await writeAll(peer, chunk);
      written += chunkSize;
    }
    peer.close();
  })();
  try {
    const rss = Deno.memoryUsage().rss;
    // Nobody calls recv: the peer's writes stop making progress.
    let stalled = false;
    const deadline = performance.now() + 8000;
    while (performance.now() < deadline) {
      const before = written;
      if (
        !(await settlesWithin(150, writing)) && written === before
      ) {
        stalled = true;
        break;
      }
    }
    assert(stalled, `the peer's writes never stalled (${written} written)`);
    assertLess(written, 16 << 20, "the kernels hold a few MiB at most");
    assertEquals(sock.recvBuffered, 16384, "the receive buffer is full");
    assertLess(
      Deno.memoryUsage().rss - rss,
      12 << 20,
      "memory stayed flat while the peer pushed",
    );

    // Reading lets the peer go on; every byte arrives, in order.
    let received = 0;
    let inOrder = true;
    const readDeadline = performance.now() + 15000;
    for (;;) {
      assert(performance.now() < readDeadline, "reading took too long");
      const [readable] = await select([sock], [], [], 5000);
      assertEquals(readable.length, 1);
      const data = sock.recv(65536);
      if (data.length === 0) break;
      assertLessOrEqual(sock.recvBuffered, 16384);
      if (inOrder && !isPattern(data, received % 251)) inOrder = false;
      received += data.length;
    }
    assertEquals(received, total);
    assert(inOrder, "the bytes arrived in order");
    assertLess(
      Deno.memoryUsage().rss - rss,
      16 << 20,
      "memory stayed flat while 32 MiB went through",
    );
    await within(1000, "the writer", writing);
  } finally {
    closeQuietly(peer);
    await writing.catch(() => {});
  }
});

Deno.test("Socket: bad arguments throw RangeError or TypeError naming them", async () => {
  using endpoint = unixEndpoint();
  using pair = await socketPair({ endpoint });
  const { client } = pair;
  assertThrows(() => client.recv(0), RangeError, "bufsize");
  assertThrows(() => client.recv(-1), RangeError, "bufsize");
  assertThrows(() => client.recv(1.5), RangeError, "bufsize");
  assertThrows(() => client.recv(NaN), RangeError, "bufsize");
  // @ts-expect-error: not a number
  assertThrows(() => client.recv("10"), TypeError, "bufsize");
  // @ts-expect-error: not bytes
  assertThrows(() => client.send(42), TypeError, "data");
  // @ts-expect-error: not bytes
  assertThrows(() => client.send([1, 2]), TypeError, "data");
  // @ts-expect-error: not a direction
  assertThrows(() => client.shutdown("sideways"), TypeError, "how");

  using tcp = new Socket();
  assertThrows(() => tcp.recv(10), Deno.errors.NotConnected, "not connected");
  // @ts-expect-error: not an address
  assertThrows(() => tcp.bind("127.0.0.1:80"), TypeError, "address");
  // @ts-expect-error: not an address
  assertThrows(() => tcp.bind(null), TypeError, "address");
  // @ts-expect-error: not an address
  assertThrows(() => tcp.connect({ host: "x" }), TypeError, "address");
  assertThrows(() => tcp.bind({ port: -1 }), RangeError, "address.port");
  assertThrows(() => tcp.bind({ port: 65536 }), RangeError, "address.port");
  assertThrows(() => tcp.bind({ port: 1.5 }), RangeError, "address.port");
  // @ts-expect-error: not a number
  assertThrows(() => tcp.bind({ port: "80" }), TypeError, "address.port");
  // @ts-expect-error: not a string
  assertThrows(() => tcp.bind({ hostname: 1, port: 0 }), TypeError, "hostname");
  assertThrows(() => tcp.bind({ path: "/tmp/x.sock" }), TypeError, "address");
  assertThrows(() => tcp.listen(-1), RangeError, "backlog");
  assertThrows(() => tcp.listen(2.5), RangeError, "backlog");
  using unix = new Socket({ transport: "unix" });
  assertThrows(() => unix.bind({ path: "" }), TypeError, "address.path");
  assertThrows(() => unix.bind({ port: 0 }), TypeError, "address");
  assertThrows(
    () => new Socket({ recvBufferSize: 0 }),
    RangeError,
    "recvBufferSize",
  );
  assertThrows(
    () => new Socket({ sendBufferSize: -5 }),
    RangeError,
    "sendBufferSize",
  );
  assertThrows(
    // @ts-expect-error: not a transport
    () => new Socket({ transport: "udp" }),
    TypeError,
    "transport",
  );
  assertThrows(
    () => {
      tcp.recvBufferSize = 0.5;
    },
    RangeError,
    "recvBufferSize",
  );
});

Deno.test("Socket: bind errors are thrown synchronously", () => {
  using first = new Socket();
  first.bind({ hostname: "127.0.0.1", port: 0 });
  first.listen();
  using second = new Socket();
  assertThrows(
    () => second.bind(connectAddress(first.getsockname())),
    Deno.errors.AddrInUse,
  );
  // The failed bind left the socket usable.
  second.bind({ hostname: "127.0.0.1", port: 0 });
  assertThrows(
    () => second.bind({ hostname: "127.0.0.1", port: 0 }),
    Deno.errors.AlreadyExists,
  );
  using third = new Socket();
  assertThrows(() => third.bind({ hostname: "no-such-host.invalid", port: 0 }));
  assertThrows(() => third.bind({ hostname: "bad host!", port: 0 }));
  using endpoint = unixEndpoint();
  using unix = new Socket({ transport: "unix" });
  unix.bind(endpoint.bindAddress);
  using unix2 = new Socket({ transport: "unix" });
  assertThrows(() => unix2.bind(endpoint.bindAddress), Deno.errors.AddrInUse);
  using unbound = new Socket({ transport: "unix" });
  assertThrows(() => unbound.listen(), Deno.errors.NotConnected);
});

Deno.test("Socket: operations on a closed socket throw BadResource", async () => {
  using endpoint = unixEndpoint();
  const pair = await socketPair({ endpoint });
  pair[Symbol.dispose]();
  for (const sock of [pair.client, pair.server, pair.listener]) {
    assert(sock.closed);
    assertThrows(() => sock.recv(1), Deno.errors.BadResource);
    assertThrows(() => sock.send("x"), Deno.errors.BadResource);
    assertThrows(() => sock.accept(), Deno.errors.BadResource);
    assertThrows(() => sock.listen(), Deno.errors.BadResource);
    assertThrows(() => sock.bind({ path: "/nope" }), Deno.errors.BadResource);
    assertThrows(
      () => sock.connect({ path: "/nope" }),
      Deno.errors.BadResource,
    );
    assertThrows(() => sock.shutdown("both"), Deno.errors.BadResource);
    assertThrows(() => sock.getsockname(), Deno.errors.BadResource);
    assertThrows(() => sock.getpeername(), Deno.errors.BadResource);
    assertThrows(() => sock.setNoDelay(), Deno.errors.BadResource);
    await within(
      1000,
      "select on a closed socket",
      assertRejects(() => select([sock], [], []), Deno.errors.BadResource),
    );
    sock.close();
  }
  // A socket closed while connecting neither hangs nor leaks the connection.
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const client = new Socket();
  client.connect(connectAddress(listener.getsockname()));
  client.close();
  assertThrows(() => client.send("x"), Deno.errors.BadResource);
  const [readable] = await select([listener], [], [], 5000);
  assertEquals(readable, [listener]);
  using accepted = listener.accept()[0];
  assertEquals((await recvSoon(accepted)).length, 0, "end of stream");
});

const LINGER = denoBackendOnly(
  "Socket: a closed socket gives up on a peer that never reads after lingerTimeout",
  "the kernel delivers after close() on its own schedule there",
);
Deno.test(LINGER, async () => {
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const peer = await dial(listener.getsockname());
  try {
    await select([listener], [], [], 5000);
    const [sock] = listener.accept();
    assertEquals(sock.lingerTimeout, 30_000);
    assertThrows(
      () => {
        sock.lingerTimeout = -1;
      },
      RangeError,
      "lingerTimeout",
    );
    assertThrows(
      () => {
        sock.lingerTimeout = Infinity;
      },
      RangeError,
      "lingerTimeout",
    );
    // Fill everything up to the peer, which is not reading.
    let total = 0;
    const chunk = new Uint8Array(65536);
    const deadline = performance.now() + 8000;
    while (performance.now() < deadline) {
      try {
        total += sock.send(chunk);
      } catch (error) {
        if (!(error instanceof Deno.errors.WouldBlock)) throw error;
        const [, writable] = await select([], [sock], [], 150);
        if (writable.length === 0) break;
      }
    }
    const held = sock.sendBuffered;
    assertEquals(held, sock.sendBufferSize);
    sock.lingerTimeout = 0;
    sock.close();
    // Timers of equal delay run in order: this one runs after the linger's.
    await delay(0);
    // The peer now reads what the kernels hold, then end of stream: the
    // bytes still in the socket's own buffer were dropped.
    let received = 0;
    const buffer = new Uint8Array(65536);
    for (;;) {
      const n = await within(5000, "the peer's read", peer.read(buffer));
      if (n === null) break;
      received += n;
    }
    assertLess(received, total, "the held bytes were dropped");
    assertGreaterOrEqual(received, total - held);
  } finally {
    peer.close();
  }
});

for (const hostname of ["127.0.0.1", "::1"]) {
  Deno.test({
    name: `Socket: waitClosed() frees a closed listener's port on ${hostname}`,
    ignore: hostname === "::1" && !hasIPv6,
    async fn() {
      // A listening socket always has an accept in flight; the port is free
      // again once close() has cancelled it, which waitClosed() reports.
      const first = new Socket();
      first.bind({ hostname, port: 0 });
      first.listen(5);
      const port = portOf(first.getsockname());
      first.close();
      await within(5000, "waitClosed()", first.waitClosed());
      using second = new Socket();
      second.bind({ hostname, port });
      second.listen(5);
      assertEquals(portOf(second.getsockname()), port);
      // It serves: the port is really this socket's now.
      const peer = await dial(second.getsockname());
      try {
        assertEquals(await select([second], [], [], 5000), [[second], [], []]);
        second.accept()[0].close();
      } finally {
        peer.close();
      }
      // Called again, or on a socket that never listened, it resolves too.
      await within(5000, "waitClosed() again", first.waitClosed());
      const fresh = new Socket();
      const waiting = fresh.waitClosed();
      fresh.close();
      await within(5000, "a fresh socket's waitClosed()", waiting);
    },
  });
}

Deno.test("Socket: waitClosed() resolves once the bytes send() accepted are delivered", async () => {
  using endpoint = FAMILIES[0].endpoint();
  using pair = await socketPair({ endpoint, sendBufferSize: 1 << 20 });
  const big = pattern(1 << 20);
  assertEquals(pair.client.send(big), big.length);
  pair.client.close();
  const waiting = pair.client.waitClosed();
  const received = await recvAll(pair.server);
  await within(5000, "waitClosed()", waiting);
  assertEquals(received.length, big.length);
  assert(isPattern(received), "the bytes arrived in order");
});
