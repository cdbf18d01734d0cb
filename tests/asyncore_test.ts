// Tests of asyncore.ts over real loopback sockets: the dispatcher's life
// cycle on IPv4, IPv6 and Unix sockets, with poll() and poll2(); resets,
// errors, quick connects, backpressure, and the event semantics of Python's
// asyncore.

import {
  assert,
  assertEquals,
  assertFalse,
  assertGreaterOrEqual,
  assertInstanceOf,
  AssertionError,
  assertLess,
  assertMatch,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { concat } from "@std/bytes";
import { getAvailablePort } from "@std/net";
import {
  type ChannelMap,
  closeAll,
  compactTraceback,
  Dispatcher,
  DispatcherWithSend,
  ExitNow,
  loop,
  poll,
  poll2,
  read,
  readwrite,
  socketMap,
  write,
} from "../asyncore.ts";
import {
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
  connectAddress,
  dial,
  FAMILIES,
  isPattern,
  pattern,
  portOf,
  runLoop,
  settlesWithin,
  timeWaitPorts,
  unixEndpoint,
  within,
} from "./_helpers.ts";
import { EchoClient, EchoServer, Quiet } from "./_dispatchers.ts";

const decoder = new TextDecoder();
const MODES = [
  { name: "poll", usePoll: false },
  { name: "poll2", usePoll: true },
] as const;

for (const family of FAMILIES) {
  for (const mode of MODES) {
    Deno.test({
      name:
        `Dispatcher: connect, accept, read, write and close over ${family.name} (${mode.name})`,
      ignore: family.ignore,
      async fn() {
        using endpoint = family.endpoint();
        const map: ChannelMap = new Map();
        const server = new EchoServer(map, endpoint);
        const address = server.address;
        assert(server.accepting);
        assertFalse(server.connected);
        assertEquals(server.addr, server.getsockname());
        const message = pattern(200_000); // several sends and reads
        const client = new EchoClient(map, address, message);
        assert(client.connecting);
        assertFalse(client.connected);
        assertEquals(
          client.addr,
          endpoint.transport === "unix"
            ? {
              transport: "unix",
              path: (address as { path: string }).path,
            }
            : {
              ...(address as { hostname: string; port: number }),
              transport: "tcp",
            },
        );
        assertEquals(map.size, 2);

        await runLoop(map, { usePoll: mode.usePoll });

        // The client saw its connect first, then wrote and read.
        assertEquals(client.events[0], "connect");
        assert(client.events.includes("write"));
        assert(client.events.includes("read"));
        // As in Python, handleConnect runs before the flags change.
        assertEquals(client.inHandleConnect, {
          connected: false,
          connecting: true,
        });
        assertEquals(client.errors, []);
        assertEquals(client.received, message.length);
        assert(isPattern(client.reply), "the echo came back intact");

        // The server was handed the socket and the peer's address.
        assertEquals(server.accepted.length, 1);
        const [{ sock, addr, peer }] = server.accepted;
        assertEquals(addr, peer);
        assertStrictEquals(server.handlers[0].socket, sock);
        assertEquals(server.handlers[0].addr, addr);
        if (addr.transport === "tcp") {
          assertEquals(
            addr.hostname,
            (address as Deno.NetAddr).hostname,
          );
        } else {
          assertEquals(addr.transport, "unix");
        }
        // End of stream reached the handler as handleClose.
        assertEquals(server.handlers[0].closes, 1);
        for (const channel of [server, client, server.handlers[0]]) {
          assertFalse(channel.connected);
          assertFalse(channel.accepting);
          assert(channel.socket!.closed);
        }
        assertEquals(server.errors, []);
        assertEquals(socketMap.size, 0, "the default map was left alone");
      },
    });
  }

  for (const mode of MODES) {
    Deno.test({
      name:
        `Dispatcher: close after the peer resets over ${family.name} (${mode.name})`,
      ignore: family.ignore,
      async fn() {
        // The peer reads one byte and closes with the rest unread: the kernel
        // resets the connection (RST on TCP, ECONNRESET on Unix sockets).
        using endpoint = family.endpoint();
        const map: ChannelMap = new Map();
        const closes: string[] = [];
        class Pusher extends Quiet {
          override writable(): boolean {
            return true;
          }
          override handleWrite(): void {
            this.send(new Uint8Array(16384));
          }
          override handleRead(): void {
            this.recv(1024);
          }
          override handleClose(): void {
            closes.push("pusher");
            this.close();
            server.close();
          }
        }
        let pusher: Pusher | null = null;
        class Server extends Quiet {
          override handleAccepted(sock: Socket): void {
            pusher = new Pusher(sock, map);
          }
        }
        const server = new Server(undefined, map);
        server.createSocket({ transport: endpoint.transport });
        server.bind(endpoint.bindAddress);
        server.listen(5);
        const addr = server.getsockname();
        const peer = addr.transport === "unix"
          ? await Deno.connect({ transport: "unix", path: addr.path! })
          : await dial(addr);
        const resetting = (async () => {
          const one = new Uint8Array(1);
          try {
            assertEquals(await peer.read(one), 1);
          } finally {
            peer.close();
          }
        })();
        await Promise.all([
          runLoop(map, { usePoll: mode.usePoll }),
          within(5000, "the peer", resetting),
        ]);
        assertEquals(closes, ["pusher"]);
        assert(pusher !== null);
        assertEquals((pusher as Pusher).errors, [], "a reset is not an error");
        assertEquals(server.errors, []);
      },
    });

    Deno.test({
      name:
        `Dispatcher: a quick connect delivers every byte over ${family.name} (${mode.name})`,
      ignore: family.ignore,
      async fn() {
        using endpoint = family.endpoint();
        const map: ChannelMap = new Map();
        const received: Uint8Array[][] = [];
        class Collector extends Quiet {
          chunks: Uint8Array[] = [];
          override writable(): boolean {
            return false;
          }
          override handleRead(): void {
            const data = this.recv(65536);
            if (data.length > 0) this.chunks.push(data.slice());
          }
          override handleClose(): void {
            received.push(this.chunks);
            this.close();
            if (received.length === 3) server.close();
          }
        }
        class Server extends Quiet {
          override handleAccepted(sock: Socket): void {
            new Collector(sock, map);
          }
        }
        const server = new Server(undefined, map);
        server.createSocket({ transport: endpoint.transport });
        server.bind(endpoint.bindAddress);
        server.listen(5);
        const address = connectAddress(server.getsockname());
        // Sends and closes in handleConnect, the bytes fitting the buffer.
        class Quick extends Quiet {
          readonly #data: Uint8Array;
          get size(): number {
            return this.#data.length;
          }
          constructor(data: Uint8Array) {
            super(undefined, map);
            this.#data = data;
            this.createSocket({
              transport: endpoint.transport,
              sendBufferSize: Math.max(data.length, 1),
            });
            this.connect(address);
          }
          override handleConnect(): void {
            if (this.#data.length > 0) {
              assertEquals(this.send(this.#data), this.#data.length);
            }
            this.close();
          }
        }
        const small = new Quick(new TextEncoder().encode("hello"));
        // The kernel caps a socket's send buffer (net.core.wmem_max): on
        // the epoll backend a Unix socket takes less than 1 MiB at once.
        const big = new Quick(
          pattern(
            BACKEND === "epoll" && endpoint.transport === "unix"
              ? 1 << 16
              : 1 << 20,
          ),
        );
        const empty = new Quick(new Uint8Array(0));
        await runLoop(map, { usePoll: mode.usePoll });
        for (const quick of [small, big, empty]) assertEquals(quick.errors, []);
        const sizes = received.map((chunks) => concat(chunks).length).sort((
          a,
          b,
        ) => a - b);
        const bigSize = big.size;
        assertEquals(sizes, [0, 5, bigSize]);
        const whole = received.map(concat).find((data) =>
          data.length === bigSize
        )!;
        assert(isPattern(whole), "the big one arrived in order");
        assertEquals(server.errors, []);
      },
    });
  }
}

for (const mode of MODES) {
  Deno.test(`Dispatcher: a handler that throws goes to handleError; the others are served (${mode.name})`, async () => {
    using endpoint = unixEndpoint();
    const map: ChannelMap = new Map();
    const server = new EchoServer(map, endpoint, 2);
    class Faulty extends EchoClient {
      override handleRead(): void {
        super.handleRead();
        throw new TypeError("a bug in handleRead");
      }
    }
    const faulty = new Faulty(map, server.address, pattern(10));
    const good = new EchoClient(map, server.address, pattern(100_000));
    await runLoop(map, { usePoll: mode.usePoll });
    assertEquals(faulty.errors.length, 1);
    assertInstanceOf(faulty.errors[0], TypeError);
    assertEquals((faulty.errors[0] as Error).message, "a bug in handleRead");
    assertEquals(good.errors, []);
    assertEquals(good.received, 100_000);
    assert(isPattern(good.reply));
  });

  Deno.test(`Dispatcher: connection refused goes to handleError and the loop goes on (${mode.name})`, async () => {
    const map: ChannelMap = new Map();
    using endpoint = FAMILIES[0].endpoint();
    const server = new EchoServer(map, endpoint);
    const refused = new EchoClient(
      map,
      { hostname: "127.0.0.1", port: getAvailablePort() },
      pattern(10),
    );
    const good = new EchoClient(map, server.address, pattern(1000));
    await runLoop(map, { usePoll: mode.usePoll });
    assertEquals(refused.errors.length, 1);
    assertInstanceOf(refused.errors[0], Deno.errors.ConnectionRefused);
    assertFalse(refused.events.includes("connect"));
    assert(refused.socket!.closed);
    assertEquals(good.received, 1000);
    assertEquals(good.errors, []);
  });

  Deno.test(`Dispatcher: a failed lookup goes to handleError as a refused connect does (${mode.name})`, async () => {
    const map: ChannelMap = new Map();
    const unknown = new EchoClient(
      map,
      { hostname: "no-such-host.invalid", port: 80 },
      pattern(10),
    );
    await runLoop(map, { usePoll: mode.usePoll });
    assertEquals(unknown.errors.length, 1);
    assertMatch(
      (unknown.errors[0] as Error).message,
      /^failed to lookup address information: /,
    );
    assertFalse(unknown.events.includes("connect"));
    assert(unknown.socket!.closed);
  });

  Deno.test(`Dispatcher: handleConnect comes before any read or write event (${mode.name})`, async () => {
    // The server speaks first and the client's first pass finds it readable
    // and writable at once; as in Python, the connect is reported first.
    const serverMap: ChannelMap = new Map();
    const map: ChannelMap = new Map();
    class Greeter extends Quiet {
      override handleAccepted(sock: Socket): void {
        const handler = new DispatcherWithSend(sock, serverMap);
        handler.send("220 hello\r\n");
        handler.close(); // the greeting is still delivered
        this.close();
      }
    }
    class Greeted extends Quiet {
      events: string[] = [];
      text = "";
      override handleConnect(): void {
        this.events.push("connect");
      }
      override handleRead(): void {
        this.events.push("read");
        this.text += decoder.decode(this.recv(100));
      }
      override handleWrite(): void {
        this.events.push("write");
      }
      override writable(): boolean {
        return !this.events.includes("write");
      }
      override handleClose(): void {
        this.events.push("close");
        this.close();
      }
    }
    const server = new Greeter(undefined, serverMap);
    server.createSocket();
    server.bind({ hostname: "127.0.0.1", port: 0 });
    server.listen(5);
    const client = new Greeted(undefined, map);
    client.createSocket();
    client.connect(connectAddress(server.getsockname()));
    await runLoop(serverMap);
    const [readable] = await select([client.socket!], [], [], 5000);
    assertEquals(readable.length, 1, "the greeting is there");
    await runLoop(map, { usePoll: mode.usePoll });
    assertEquals(client.events, ["connect", "read", "write", "read", "close"]);
    assertEquals(client.text, "220 hello\r\n");
    assertEquals(client.errors, []);
  });
}

Deno.test("Dispatcher: bind sets addr; errors are thrown synchronously", () => {
  const map: ChannelMap = new Map();
  try {
    const first = new Quiet(undefined, map);
    first.createSocket();
    assertEquals(map.get(first.fileno()), first, "createSocket registers");
    first.setReuseAddr();
    first.bind({ hostname: "127.0.0.1", port: 0 });
    assertEquals(first.addr, first.getsockname());
    first.listen(5);
    assert(first.accepting);
    const second = new Quiet(undefined, map);
    second.createSocket();
    assertThrows(
      () => second.bind(connectAddress(first.getsockname())),
      Deno.errors.AddrInUse,
    );
    assertThrows(() =>
      second.bind({ hostname: "no-such-host.invalid", port: 0 })
    );
    assertThrows(() => second.bind({ port: 70000 }), RangeError, "port");
    const bare = new Quiet(undefined, map);
    assertEquals(bare.fileno(), -1);
    assertThrows(
      () => bare.bind({ port: 0 }),
      TypeError,
      "createSocket",
    );
    bare.close(); // no socket: nothing to do
  } finally {
    closeAll(map);
  }
});

Deno.test("Dispatcher: an address can be rebound while the old connection is in TIME_WAIT", async () => {
  const map: ChannelMap = new Map();
  // The server closes first, so its end goes through TIME_WAIT.
  class Closer extends Quiet {
    override handleRead(): void {
      if (this.recv(100).length > 0) this.close();
    }
    override writable(): boolean {
      return false;
    }
  }
  class Server extends Quiet {
    override handleAccepted(sock: Socket): void {
      new Closer(sock, map);
      this.close();
    }
  }
  class Client extends Quiet {
    override handleConnect(): void {
      this.send("bye");
    }
    override writable(): boolean {
      return !this.connected;
    }
    override handleRead(): void {
      this.recv(100);
    }
    override handleClose(): void {
      this.close();
    }
  }
  const first = new Server(undefined, map);
  first.createSocket();
  first.bind({ hostname: "127.0.0.1", port: 0 });
  first.listen(5);
  const port = portOf(first.getsockname());
  const client = new Client(undefined, map);
  client.createSocket();
  client.connect({ hostname: "127.0.0.1", port });
  await runLoop(map);
  assertEquals(client.errors, []);

  // The same port again, at once.
  const second = new EchoServer(map, {
    transport: "tcp",
    bindAddress: { hostname: "127.0.0.1", port },
    [Symbol.dispose]() {},
  });
  assertEquals(portOf(second.getsockname()), port);
  const echo = new EchoClient(
    map,
    { hostname: "127.0.0.1", port },
    pattern(100),
  );
  await runLoop(map);
  assertEquals(echo.received, 100);
  const waiting = timeWaitPorts();
  if (waiting !== null) {
    assert(waiting.has(port), `a connection on port ${port} is in TIME_WAIT`);
  }
});

Deno.test("Dispatcher: a client that connects and goes at once does not upset the server", async () => {
  using endpoint = FAMILIES[0].endpoint();
  const map: ChannelMap = new Map();
  const server = new EchoServer(map, endpoint, 3);
  const address = server.getsockname();
  const clients = (async () => {
    for (let i = 0; i < 3; i++) (await dial(address)).close();
  })();
  await Promise.all([runLoop(map), within(5000, "the clients", clients)]);
  assertEquals(server.accepted.length, 3);
  assertEquals(server.handlers.map((handler) => handler.closes), [1, 1, 1]);
  assertEquals(server.errors, []);
});

Deno.test("Dispatcher: two maps served by two loops at once", async () => {
  using a = unixEndpoint();
  using b = FAMILIES[0].endpoint();
  const mapA: ChannelMap = new Map();
  const mapB: ChannelMap = new Map();
  const serverA = new EchoServer(mapA, a);
  const serverB = new EchoServer(mapB, b);
  const clientA = new EchoClient(mapA, serverA.address, pattern(300_000));
  const clientB = new EchoClient(mapB, serverB.address, pattern(300_000, 7));
  assertFalse(
    mapB.has(clientA.fileno()) && mapB.get(clientA.fileno()) === clientA,
  );
  // One loop polls with select, the other with Poll.
  await Promise.all([runLoop(mapA), runLoop(mapB, { usePoll: true })]);
  assertEquals(clientA.received, 300_000);
  assertEquals(clientB.received, 300_000);
  assert(isPattern(clientA.reply));
  assert(isPattern(clientB.reply, 7));
  assertEquals(socketMap.size, 0);
});

Deno.test("Dispatcher: send returns 0 once the peer stops reading; recv at end of stream calls handleClose", async () => {
  const map: ChannelMap = new Map();
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const peer = await dial(listener.getsockname());
  await select([listener], [], [], 5000);
  const channel = new Quiet(listener.accept()[0], map);
  assert(channel.connected);
  let closes = 0;
  channel.handleClose = () => {
    closes++;
    channel.close();
  };
  try {
    let total = 0;
    let zero = false;
    const chunk = new Uint8Array(65536);
    const deadline = performance.now() + 8000;
    while (performance.now() < deadline) {
      const sent = channel.send(chunk);
      if (sent > 0) {
        total += sent;
        continue;
      }
      zero = true;
      // select() takes the dispatcher itself.
      const [, writable] = await select([], [channel], [], 150);
      if (writable.length === 0) break;
    }
    assert(zero, "send returned 0");
    assertLess(total, 32 << 20);
    // The epoll backend's send buffer is the kernel's: the socket holds none.
    assertEquals(
      channel.sendBuffered,
      BACKEND === "deno" ? channel.socket!.sendBufferSize : 0,
    );
  } finally {
    peer.close(); // unread data: a reset
  }
  // The reset surfaces; recv then reports it as a close, and returns nothing.
  await select([channel], [], [], 5000);
  assertEquals(channel.recv(10).length, 0);
  assertEquals(closes, 1);
  assertEquals(channel.send("x"), 0, "send after close: 0, no throw");
  assertEquals(map.size, 0);
});

Deno.test("Dispatcher: recvInto fills the caller's buffer; end of stream and a reset call handleClose and return 0", async () => {
  const map: ChannelMap = new Map();
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const buffer = new Uint8Array(16);
  for (const ending of ["end of stream", "reset"]) {
    const peer = await dial(listener.getsockname());
    await select([listener], [], [], 5000);
    const channel = new Quiet(listener.accept()[0], map);
    let closes = 0;
    channel.handleClose = () => {
      closes++;
      channel.close();
    };
    await peer.write(new TextEncoder().encode("hello"));
    await select([channel], [], [], 5000);
    assertEquals(channel.recvInto(buffer), 5);
    assertEquals(new TextDecoder().decode(buffer.subarray(0, 5)), "hello");
    if (ending === "reset") {
      // Unread data at the peer's close makes its kernel reset.
      assertEquals(channel.send("unread"), 6);
      await select([], [channel], [], 5000);
    }
    peer.close();
    await select([channel], [], [], 5000);
    assertEquals(channel.recvInto(buffer), 0, ending);
    assertEquals(closes, 1, ending);
    assertEquals(map.size, 0, ending);
  }
});

Deno.test("loop: ExitNow from a handler rejects the loop", async () => {
  // From handleConnect (on the connect event) and from handleError, with
  // poll and poll2.
  for (const usePoll of [false, true]) {
    for (const where of ["handleConnect", "handleError"]) {
      const map: ChannelMap = new Map();
      using endpoint = FAMILIES[0].endpoint();
      const server = new EchoServer(map, endpoint);
      let handled = 0;
      class Quitter extends EchoClient {
        override handleConnect(): void {
          throw where === "handleConnect"
            ? new ExitNow("enough")
            : new Error("not yet");
        }
        override handleError(_error: unknown): void {
          handled++;
          throw new ExitNow("enough");
        }
      }
      const quitter = new Quitter(map, server.address, pattern(1));
      try {
        await within(
          5000,
          "the loop",
          assertRejects(
            () => loop({ map, timeout: 1000, usePoll }),
            ExitNow,
            "enough",
          ),
        );
        assertEquals(handled, where === "handleConnect" ? 0 : 1);
        assert(
          map.has(quitter.fileno()),
          "the channels are left as they were",
        );
      } finally {
        closeAll(map);
      }
    }
  }
});

Deno.test("loop: count ends it after that many passes", async () => {
  for (const usePoll of [false, true]) {
    const map: ChannelMap = new Map();
    let passes = 0;
    class Counted extends Quiet {
      override readable(): boolean {
        passes++;
        return true;
      }
    }
    const server = new Counted(undefined, map);
    server.createSocket();
    server.bind({ hostname: "127.0.0.1", port: 0 });
    server.listen(5);
    try {
      const start = performance.now();
      await loop({ map, count: 3, timeout: 0, usePoll });
      assertEquals(passes, 3);
      assertLess(performance.now() - start, 1000);
      await loop({ map, count: 0 });
      assertEquals(passes, 3);
      assertEquals(map.size, 1);
    } finally {
      closeAll(map);
    }
  }
});

Deno.test("loop: an abort signal ends it, during a wait or between passes", async () => {
  const map: ChannelMap = new Map();
  const server = new Quiet(undefined, map);
  server.createSocket();
  server.bind({ hostname: "127.0.0.1", port: 0 });
  server.listen(5);
  try {
    // Aborted during a long wait.
    const controller = new AbortController();
    const running = loop({ map, timeout: 30_000, signal: controller.signal });
    assertEquals(await settlesWithin(20, running), false);
    controller.abort();
    await within(1000, "the aborted loop", running);
    // Aborted by a handler.
    const second = new AbortController();
    let passes = 0;
    server.readable = () => {
      if (++passes === 2) second.abort();
      return true;
    };
    await within(
      1000,
      "the loop",
      loop({ map, timeout: 0, signal: second.signal }),
    );
    assertEquals(passes, 2);
    // Already aborted: no pass at all.
    await loop({ map, signal: AbortSignal.abort() });
    assertEquals(passes, 2);
    assertEquals(map.size, 1);
  } finally {
    closeAll(map);
  }
});

Deno.test("poll: a pass with nothing to wait on sleeps the timeout", async () => {
  const map: ChannelMap = new Map();
  const idle = new Quiet(undefined, map);
  idle.createSocket();
  idle.readable = () => false;
  idle.writable = () => false;
  try {
    for (const pass of [poll, poll2]) {
      const start = performance.now();
      await pass(40, map);
      const elapsed = performance.now() - start;
      assertGreaterOrEqual(elapsed, 39);
      assertLess(elapsed, 1000);
    }
    const start = performance.now();
    await loop({ map, timeout: 25, count: 2 });
    assertGreaterOrEqual(performance.now() - start, 49);
    assertEquals(idle.logs, []);
  } finally {
    closeAll(map);
  }
});

Deno.test("poll: one pass dispatches what is ready", async () => {
  using endpoint = FAMILIES[0].endpoint();
  for (const pass of [poll, poll2]) {
    const map: ChannelMap = new Map();
    const server = new EchoServer(map, endpoint);
    const client = new EchoClient(map, server.address, pattern(10));
    try {
      const deadline = performance.now() + 5000;
      while (map.size > 0 && performance.now() < deadline) {
        await pass(1000, map);
      }
      assertEquals(client.received, 10);
    } finally {
      closeAll(map);
    }
  }
});

Deno.test("Dispatcher: unhandled events log warnings through logInfo", async () => {
  const map: ChannelMap = new Map();
  const server = new Quiet(undefined, map);
  server.createSocket();
  server.bind({ hostname: "127.0.0.1", port: 0 });
  server.listen(5);
  const client = new Quiet(undefined, map);
  client.createSocket();
  client.connect(connectAddress(server.getsockname()));
  const readWarning = () =>
    client.logs.some(([, message]) => message === "unhandled read event");
  try {
    // Default handlers everywhere: the server closes what it accepts and the
    // client, always writable, never reads; so run it a pass at a time until
    // the client has seen end of stream.
    const deadline = performance.now() + 5000;
    while (!readWarning() && performance.now() < deadline) {
      await loop({ map, count: 1, timeout: 200 });
    }
  } finally {
    closeAll(map);
  }
  assertEquals(server.logs[0], ["warning", "unhandled accepted event"]);
  const clientLogs = new Set(
    client.logs.map(([type, message]) => `${type}: ${message}`),
  );
  assert(
    clientLogs.has("warning: unhandled connect event"),
    [...clientLogs].join(),
  );
  assert(clientLogs.has("warning: unhandled write event"));
  assert(
    clientLogs.has("warning: unhandled read event"),
    "end of stream is a read event",
  );

  const bare = new Quiet(undefined, new Map());
  bare.handleExpt();
  bare.handleClose();
  assertEquals(bare.logs.slice(0, 2), [
    ["warning", "unhandled incoming priority event"],
    ["warning", "unhandled close event"],
  ]);
});

Deno.test("Dispatcher: logInfo leaves out ignoreLogTypes and prints the rest", () => {
  const printed: string[] = [];
  const original = console.log;
  console.log = (...args: unknown[]) => printed.push(args.join(" "));
  try {
    const channel = new Dispatcher(undefined, new Map());
    assert(channel.ignoreLogTypes.has("warning"));
    channel.logInfo("hidden", "warning");
    channel.logInfo("shown");
    channel.logInfo("also shown", "error");
    channel.ignoreLogTypes = new Set();
    channel.logInfo("now shown", "warning");
    assert(new Dispatcher(undefined, new Map()).ignoreLogTypes.has("warning"));
  } finally {
    console.log = original;
  }
  assertEquals(printed, [
    "info: shown",
    "error: also shown",
    "warning: now shown",
  ]);
});

Deno.test("Dispatcher: the default handleError logs a compact traceback and closes", async () => {
  const map: ChannelMap = new Map();
  using endpoint = FAMILIES[0].endpoint();
  const server = new EchoServer(map, endpoint);
  const logs: [string, string][] = [];
  class Broken extends Dispatcher {
    override handleConnect(): void {
      this.send("x");
    }
    override writable(): boolean {
      return !this.connected;
    }
    override handleRead(): void {
      failInHandler();
    }
    override logInfo(message: string, type = "info"): void {
      logs.push([type, message]);
    }
  }
  const broken = new Broken(undefined, map);
  broken.createSocket();
  broken.connect(server.address);
  await runLoop(map);
  assert(broken.socket!.closed, "the channel was closed");
  // Python's order: the connect event is also a write event (a warning),
  // then the read fails.
  assertEquals(logs.map(([type]) => type), ["warning", "error", "warning"]);
  assertEquals(logs[0], ["warning", "unhandled write event"]);
  const [type, message] = logs[1];
  assertEquals(type, "error");
  assertStringIncludes(
    message,
    "uncaptured exception, closing channel <Broken",
  );
  assertStringIncludes(message, "RangeError:deliberate failure");
  assertMatch(message, /\[[^|\]]*asyncore_test\.ts\|failInHandler\|\d+\]\)$/);
  assertEquals(logs[2], ["warning", "unhandled close event"]);
});

function failInHandler(): never {
  throw new RangeError("deliberate failure");
}

Deno.test("compactTraceback: the innermost frame, the type, the message and every frame", () => {
  let error: unknown;
  try {
    failInHandler();
  } catch (caught) {
    error = caught;
  }
  const tb = compactTraceback(error);
  assertStringIncludes(tb.file, "asyncore_test.ts");
  assertEquals(tb.func, "failInHandler");
  assertMatch(tb.line, /^\d+$/);
  assertEquals(tb.type, "RangeError");
  assertEquals(tb.value, "deliberate failure");
  const frames = tb.info.split(" ");
  assertGreaterOrEqual(frames.length, 2);
  for (const frame of frames) assertMatch(frame, /^\[.*\|.*\|\d+\]$/);
  assertEquals(
    frames.at(-1),
    `[${tb.file}|${tb.func}|${tb.line}]`,
    "innermost last",
  );

  const odd = compactTraceback("just a string");
  assertEquals([odd.type, odd.value, odd.file, odd.info], [
    "string",
    "just a string",
    "?",
    "",
  ]);
  assertEquals(
    compactTraceback(new Deno.errors.BadResource("gone")).type,
    "BadResource",
  );
});

Deno.test("closeAll: closes every channel and empties the map", async () => {
  using endpoint = unixEndpoint();
  const map: ChannelMap = new Map();
  const server = new EchoServer(map, endpoint);
  const client = new EchoClient(map, server.address, pattern(5));
  await select([server], [], [], 5000);
  const accepted = new Dispatcher(server.socket!.accept()[0], map);
  assertEquals(map.size, 3);
  closeAll(map);
  assertEquals(map.size, 0);
  for (const channel of [server, client, accepted]) {
    assert(channel.socket!.closed);
    assertFalse(channel.connected || channel.accepting || channel.connecting);
  }

  // Errors from close(): BadResource is swallowed, others only with ignoreAll.
  class Faulty extends Dispatcher {
    #error: Error;
    constructor(error: Error, map: ChannelMap) {
      super(undefined, map);
      this.#error = error;
      this.createSocket();
    }
    override close(): void {
      super.close();
      throw this.#error;
    }
  }
  new Faulty(new Deno.errors.BadResource("gone"), map);
  closeAll(map);
  assertEquals(map.size, 0);
  new Faulty(new Error("close failed"), map);
  assertThrows(() => closeAll(map), Error, "close failed");
  new Faulty(new Error("close failed"), map);
  closeAll(map, true);
  assertEquals(map.size, 0);
  new Faulty(new ExitNow("stop"), map);
  assertThrows(() => closeAll(map, true), ExitNow);
  closeAll(map, true);
});

Deno.test("DispatcherWithSend: send buffers everything, before and after the connect, and drains", async () => {
  const map: ChannelMap = new Map();
  using endpoint = FAMILIES[0].endpoint();
  let total = 0;
  let intact = true;
  class Counter extends Quiet {
    override writable(): boolean {
      return false;
    }
    override handleRead(): void {
      const data = this.recv(65536);
      if (intact && !isPattern(data, total % 251)) intact = false;
      total += data.length;
      if (total === 3 << 20) {
        this.send("done");
        this.close();
        server.close();
      }
    }
  }
  class Server extends Quiet {
    override handleAccepted(sock: Socket): void {
      new Counter(sock, map);
    }
  }
  const server = new Server(undefined, map);
  server.createSocket({ transport: endpoint.transport });
  server.bind(endpoint.bindAddress);
  server.listen(5);
  const data = pattern(3 << 20);
  let drained: number | null = null;
  class Sender extends DispatcherWithSend {
    override handleRead(): void {
      if (decoder.decode(this.recv(100)) === "done") {
        drained = this.sendBuffered;
        this.close();
      }
    }
  }
  const sender = new Sender(undefined, map);
  sender.createSocket();
  sender.connect(connectAddress(server.getsockname()));
  assert(sender.writable(), "writable until connected");
  // Before the connect: all of it is buffered.
  assertEquals(sender.send(data.subarray(0, 1 << 20)), 1 << 20);
  assertEquals(sender.sendBuffered, 1 << 20);
  const deadline = performance.now() + 5000;
  while (!sender.connected && performance.now() < deadline) {
    await loop({ map, count: 1, timeout: 1000 });
  }
  assert(sender.connected);
  // After it: still all of it, more than the socket takes at once.
  assertEquals(sender.send(data.subarray(1 << 20)), 2 << 20);
  assertGreaterOrEqual(sender.sendBuffered, 2 << 20);
  assert(sender.writable());
  await runLoop(map);
  assertEquals(total, 3 << 20);
  assert(intact, "every byte arrived in order");
  assertEquals(drained, 0);
});

Deno.test("readwrite, read and write dispatch as Python's do", () => {
  const calls: string[] = [];
  class Recorder extends Dispatcher {
    throwOn = "";
    #record(name: string): void {
      calls.push(name);
      if (this.throwOn === name) {
        throw this.throwOn === "read"
          ? new Deno.errors.ConnectionReset("reset")
          : new TypeError("bug");
      }
    }
    override handleReadEvent(): void {
      this.#record("read");
    }
    override handleWriteEvent(): void {
      this.#record("write");
    }
    override handleExptEvent(): void {
      this.#record("expt");
    }
    override handleClose(): void {
      calls.push("close");
    }
    override handleError(error: unknown): void {
      calls.push(`error:${(error as Error).name}`);
    }
  }
  const obj = new Recorder(undefined, new Map());
  const cases: [number, string[]][] = [
    [POLLIN, ["read"]],
    [POLLOUT, ["write"]],
    [POLLPRI, ["expt"]],
    [POLLHUP, ["close"]],
    [POLLERR, ["close"]],
    [POLLNVAL, ["close"]],
    [POLLIN | POLLOUT | POLLHUP, ["read", "write", "close"]],
    [0, []],
  ];
  for (const [flags, expected] of cases) {
    calls.length = 0;
    readwrite(obj, flags);
    assertEquals(calls, expected, `flags ${flags}`);
  }
  // A disconnect error closes; any other error goes to handleError.
  obj.throwOn = "read";
  calls.length = 0;
  readwrite(obj, POLLIN);
  assertEquals(calls, ["read", "close"]);
  obj.throwOn = "write";
  calls.length = 0;
  readwrite(obj, POLLOUT);
  assertEquals(calls, ["write", "error:TypeError"]);
  // read() and write() send every error to handleError.
  calls.length = 0;
  write(obj);
  obj.throwOn = "read";
  read(obj);
  assertEquals(calls, [
    "write",
    "error:TypeError",
    "read",
    "error:ConnectionReset",
  ]);
  // ExitNow goes through.
  obj.handleReadEvent = () => {
    throw new ExitNow();
  };
  assertThrows(() => read(obj), ExitNow);
  assertThrows(() => readwrite(obj, POLLIN), ExitNow);
});

Deno.test("Dispatcher: bad arguments throw errors naming them", async () => {
  // @ts-expect-error: not a socket
  assertThrows(() => new Dispatcher("socket"), TypeError, "sock");
  // @ts-expect-error: not a map
  assertThrows(() => new Dispatcher(undefined, {}), TypeError, "map");
  const map: ChannelMap = new Map();
  const channel = new Dispatcher(undefined, map);
  channel.createSocket();
  try {
    assertThrows(() => channel.recv(0), RangeError, "bufsize");
    assertThrows(() => channel.recv(-2), RangeError, "bufsize");
    // @ts-expect-error: not bytes
    assertThrows(() => channel.send(1), TypeError, "data");
    // @ts-expect-error: not a Socket
    assertThrows(() => channel.setSocket({}), TypeError, "sock");
    // @ts-expect-error: not an address
    assertThrows(() => channel.connect("localhost:80"), TypeError, "address");
    await assertRejects(
      () => loop({ map, timeout: -1 }),
      RangeError,
      "timeout",
    );
    await assertRejects(() => loop({ map, count: 1.5 }), RangeError, "count");
    // @ts-expect-error: not options
    await assertRejects(() => loop(5), TypeError, "options");
    await assertRejects(() => poll(-5, map), RangeError, "timeout");
  } finally {
    closeAll(map);
  }
});

Deno.test("Dispatcher: wraps a Deno.Conn, and a closed channel's socket is not served", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = listener.accept();
  const map: ChannelMap = new Map();
  const conn = await dial(listener.addr);
  await using peer = await within(1000, "accept", accepting);
  const channel = new Quiet(conn, map);
  assert(channel.connected);
  assertEquals(channel.addr, conn.remoteAddr);
  assertStringIncludes(String(channel), "connected");
  // Closing the socket behind the channel's back: the next pass closes it.
  channel.socket!.close();
  let closed = 0;
  channel.handleClose = () => {
    closed++;
    channel.close();
  };
  await within(1000, "a pass", poll(0, map));
  assertEquals(closed, 1);
  assertEquals(map.size, 0);
  assertEquals(await peer.read(new Uint8Array(1)), null);
});

Deno.test("poll: an empty map returns at once, as in Python", async () => {
  for (const pass of [poll, poll2]) {
    const start = performance.now();
    await within(5000, "a pass", pass(2000, new Map()));
    assertLess(performance.now() - start, 500);
  }
});

Deno.test("poll: a bad timeout rejects rather than throws", async () => {
  const map: ChannelMap = new Map();
  for (const pass of [poll, poll2]) {
    let result: Promise<void> | undefined;
    try {
      result = pass(-5, map);
    } catch (error) {
      throw new AssertionError(`${pass.name} threw synchronously: ${error}`);
    }
    await assertRejects(() => result!, RangeError, "timeout");
  }
});

Deno.test("loop: a channel added from outside while the loop waits is served at once", async () => {
  const map: ChannelMap = new Map();
  const server = new Quiet(undefined, map);
  server.createSocket();
  server.bind({ hostname: "127.0.0.1", port: 0 });
  server.listen(5);
  using other = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = other.accept();
  let connected = false;
  class Client extends Quiet {
    override writable(): boolean {
      return !this.connected;
    }
    override handleConnect(): void {
      connected = true;
      closeAll(map);
    }
  }
  const running = loop({ map, timeout: 30_000 });
  try {
    // The loop is waiting on the listening socket alone.
    assertEquals(await settlesWithin(20, running), false);
    const client = new Client(undefined, map);
    client.createSocket();
    client.connect(connectAddress(other.addr));
    await within(2000, "the loop", running);
    assert(connected, "handleConnect ran");
  } finally {
    closeAll(map);
    await running.catch(() => {});
    (await accepting).close();
  }
});

Deno.test("loop: emptying the map from outside ends a waiting or idle loop at once", async () => {
  for (const idle of [false, true]) {
    const map: ChannelMap = new Map();
    const channel = new Quiet(undefined, map);
    channel.createSocket();
    channel.bind({ hostname: "127.0.0.1", port: 0 });
    channel.listen(5);
    if (idle) channel.readable = () => false;
    const running = loop({ map, timeout: 30_000 });
    try {
      assertEquals(await settlesWithin(20, running), false);
      closeAll(map);
      await within(2000, `the ${idle ? "idle" : "waiting"} loop`, running);
    } finally {
      closeAll(map);
      await running.catch(() => {});
    }
  }
});

Deno.test("Dispatcher: recv before the connect completes would block; it does not close", async () => {
  const map: ChannelMap = new Map();
  using listener = new Socket();
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  const channel = new Quiet(undefined, map);
  channel.createSocket();
  channel.connect(connectAddress(listener.getsockname()));
  try {
    assertThrows(() => channel.recv(10), Deno.errors.WouldBlock);
    assert(channel.connecting);
    assertEquals(map.get(channel.fileno()), channel, "still in the map");
    assertEquals(channel.logs, []);
  } finally {
    closeAll(map);
  }
  // The connection reached the listener: take it, so nothing is left over.
  const [readable] = await select([listener], [], [], 5000);
  assertEquals(readable, [listener]);
  listener.accept()[0].close();
});

Deno.test("loop: a channel that is always ready starves neither another loop nor timers", async () => {
  // A connected channel that is always writable and never has anything to
  // write keeps its loop busy, as in Python. Another map's loop, and a
  // timer, still get their turns.
  using endpoint = unixEndpoint();
  const busyMap: ChannelMap = new Map();
  const busyServer = new EchoServer(busyMap, endpoint);
  let writes = 0;
  class Busy extends Quiet {
    override handleWrite(): void {
      writes++;
    }
    override handleRead(): void {
      this.recv(100);
    }
  }
  const busy = new Busy(undefined, busyMap);
  busy.createSocket({ transport: "unix" });
  busy.connect(busyServer.address);
  const controller = new AbortController();
  const spinning = loop({ map: busyMap, signal: controller.signal });
  try {
    let fired = false;
    await within(
      2000,
      "a timer",
      new Promise<void>((resolve) =>
        setTimeout(() => {
          fired = true;
          resolve();
        }, 10)
      ),
    );
    assert(fired);
    using other = FAMILIES[0].endpoint();
    const map: ChannelMap = new Map();
    const server = new EchoServer(map, other);
    const client = new EchoClient(map, server.address, pattern(200_000));
    await runLoop(map);
    assertEquals(client.received, 200_000);
    assertGreaterOrEqual(writes, 100, "the busy loop kept going meanwhile");
  } finally {
    controller.abort();
    await within(2000, "the busy loop", spinning);
    closeAll(busyMap);
  }
});

Deno.test("loop, poll and closeAll use socketMap when no map is given", async () => {
  assertEquals(socketMap.size, 0);
  using endpoint = FAMILIES[0].endpoint();
  try {
    const server = new EchoServer(socketMap, endpoint);
    const client = new EchoClient(socketMap, server.address, pattern(5000));
    const plain = new Quiet(); // no map: the default one
    plain.createSocket();
    assertEquals(socketMap.get(plain.fileno()), plain);
    plain.close();
    await poll(); // one pass, timeout 0
    await runLoop(socketMap);
    assertEquals(client.received, 5000);
    const idle = new Quiet();
    idle.createSocket();
    closeAll();
    assert(idle.socket!.closed);
    assertEquals(socketMap.size, 0);
  } finally {
    closeAll();
  }
});

Deno.test("Dispatcher: a closed socket is refused and leaves the map alone", () => {
  const map: ChannelMap = new Map();
  const sock = new Socket();
  sock.close();
  assertThrows(() => new Dispatcher(sock, map), Deno.errors.BadResource);
  assertEquals(map.size, 0);
});

Deno.test("Dispatcher: unhandled events print what Python's print, log() goes to stderr", () => {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...args: unknown[]) => out.push(args.join(" "));
  console.error = (...args: unknown[]) => err.push(args.join(" "));
  try {
    const d = new Dispatcher(undefined, new Map());
    assert(d.readable());
    assert(d.writable());
    d.ignoreLogTypes = new Set();
    d.handleExpt();
    d.handleRead();
    d.handleWrite();
    d.handleConnect();
    d.logInfo("Lovely spam! Wonderful spam!", "EGGS");
    d.log("Spam, spam, spam");
  } finally {
    console.log = log;
    console.error = error;
  }
  assertEquals(out, [
    "warning: unhandled incoming priority event",
    "warning: unhandled read event",
    "warning: unhandled write event",
    "warning: unhandled connect event",
    "EGGS: Lovely spam! Wonderful spam!",
  ]);
  assertEquals(err, ["log: Spam, spam, spam"]);
});

Deno.test("Dispatcher: toString says what the channel is, like Python's repr", () => {
  const map: ChannelMap = new Map();
  try {
    const server = new Quiet(undefined, map);
    assertMatch(String(server), /^<Quiet at #-1>$/);
    server.createSocket();
    server.bind({ hostname: "127.0.0.1", port: 0 });
    server.listen(5);
    const port = portOf(server.getsockname());
    assertEquals(
      String(server),
      `<Quiet listening 127.0.0.1:${port} at #${server.fileno()}>`,
    );
  } finally {
    closeAll(map);
  }
});

Deno.test("Dispatcher: toString names an anonymous subclass by its nearest named class", () => {
  const map: ChannelMap = new Map();
  try {
    const anonymous = new (class extends Quiet {})(undefined, map);
    assertEquals(String(anonymous), "<Quiet at #-1>");
    const made = (base: typeof Quiet) => class extends base {};
    assertEquals(
      String(new (made(made(Quiet)))(undefined, map)),
      "<Quiet at #-1>",
    );
    // A shadowed `constructor` property does not stop it.
    const odd = new Quiet(undefined, map);
    Object.defineProperty(odd, "constructor", { value: 42 });
    assertEquals(String(odd), "<Quiet at #-1>");
  } finally {
    closeAll(map);
  }
});

for (const mode of MODES) {
  Deno.test(`Dispatcher: handleClose after the connection broke under a writer (${mode.name})`, async () => {
    // CPython's test_handle_close_after_conn_broken: the server reads 128
    // bytes and closes with more unread (a reset); the client, writing all
    // the time, sees handleClose (or handleExpt), never handleError.
    const map: ChannelMap = new Map();
    const data = new Uint8Array(128);
    let flag = false;
    class TestClient extends Quiet {
      override handleWrite(): void {
        this.send(data);
      }
      override handleClose(): void {
        flag = true;
        this.close();
        server.close();
      }
      override handleExpt(): void {
        flag = true;
        this.close();
        server.close();
      }
    }
    class TestHandler extends Quiet {
      override handleRead(): void {
        this.recv(data.length);
        this.close();
      }
      override writable(): boolean {
        return false;
      }
    }
    class Server extends Quiet {
      override handleAccepted(sock: Socket): void {
        new TestHandler(sock, map);
      }
    }
    const server = new Server(undefined, map);
    server.createSocket();
    server.bind({ hostname: "127.0.0.1", port: 0 });
    server.listen(5);
    const client = new TestClient(undefined, map);
    client.createSocket();
    client.connect(connectAddress(server.getsockname()));
    await runLoop(map, { usePoll: mode.usePoll });
    assert(flag);
    assertEquals(client.errors, []);
  });
}
