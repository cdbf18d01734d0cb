// The epoll backend's sockets (_fd_socket.ts, _sockaddr.ts, _libc.ts) over
// real loopback TCP (IPv4, IPv6) and Unix sockets.

import {
  assert,
  assertEquals,
  assertFalse,
  assertInstanceOf,
  assertThrows,
} from "@std/assert";
import {
  Epoll,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
} from "../_epoll/epoll.ts";
import { FdSocket } from "../_epoll/fd_socket.ts";
import { isOwned } from "../_epoll/libc.ts";
import { errnoError } from "../_errors.ts";
import {
  decodeAddress,
  encodeAddress,
  formatIPv6,
  parseIPv4,
  parseIPv6,
} from "../_epoll/sockaddr.ts";
import {
  CLIENT,
  connectedPair,
  EPOLL_FAMILIES,
  epollUnsupported,
  LISTENER,
  readyWithin,
  SERVER,
  skipNote,
  target,
} from "./_epoll_helpers.ts";
import { concat } from "@std/bytes";
import { fixture, isPattern, pattern } from "./_helpers.ts";

const ignore = epollUnsupported !== null;

Deno.test("sockaddr: IPv6 addresses format as Deno's own do", () => {
  const cases: [string, string][] = [
    ["::1", "::1"],
    ["::", "::"],
    ["1::", "1::"],
    ["FE80::1", "fe80::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
    ["0:0:1:0:0:0:1:0", "0:0:1::1:0"],
    ["::ffff:1.2.3.4", "::ffff:1.2.3.4"],
    ["[::1]", "::1"],
  ];
  for (const [text, formatted] of cases) {
    const parsed = parseIPv6(text);
    assert(parsed !== null, text);
    assertEquals(formatIPv6(parsed.address), formatted, text);
  }
  assertEquals(parseIPv6("fe80::1%2")?.scopeId, 2);
  for (
    const bad of [
      ":::",
      "1::2::3",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "12345::",
      "fe80::1%eth0",
      "::1.2.3",
      "example.com",
      "",
    ]
  ) {
    assertEquals(parseIPv6(bad), null, bad);
  }
  for (
    const bad of ["1.2.3", "01.2.3.4", "256.1.1.1", "1.2.3.4.5", " 1.2.3.4"]
  ) {
    assertEquals(parseIPv4(bad), null, bad);
  }
});

Deno.test("sockaddr: addresses survive encoding and decoding", () => {
  const v4 = encodeAddress("a", { hostname: "10.1.2.3", port: 8080 });
  assertEquals(v4.bytes.length, 16);
  assertEquals(decodeAddress(v4.bytes, v4.bytes.length), {
    transport: "tcp",
    hostname: "10.1.2.3",
    port: 8080,
  });
  const v6 = encodeAddress("a", { hostname: "2001:db8::7", port: 65535 });
  assertEquals(v6.bytes.length, 28);
  assertEquals(decodeAddress(v6.bytes, v6.bytes.length), {
    transport: "tcp",
    hostname: "2001:db8::7",
    port: 65535,
  });
  const unix = encodeAddress("a", { path: "/tmp/é.sock" });
  assertEquals(unix.bytes.length, 2 + 12 + 1);
  assertEquals(decodeAddress(unix.bytes, unix.bytes.length), {
    transport: "unix",
    path: "/tmp/é.sock",
  });
  assertEquals(decodeAddress(unix.bytes, 2), { transport: "unix", path: "" });
  assertEquals(
    decodeAddress(encodeAddress("a", { port: 1 }).bytes, 16),
    { transport: "tcp", hostname: "127.0.0.1", port: 1 },
  );
});

Deno.test("sockaddr: bad addresses are clear TypeErrors and RangeErrors", () => {
  assertThrows(
    () => encodeAddress("address", { hostname: "example.com", port: 1 }),
    TypeError,
    "resolve names first",
  );
  assertThrows(
    () => encodeAddress("address", { hostname: "::1", port: 65536 }),
    RangeError,
    "address.port",
  );
  assertThrows(
    () => encodeAddress("address", { path: "/tmp/" + "x".repeat(103) }),
    RangeError,
    "at most 107 bytes",
  );
  assertThrows(
    () => encodeAddress("address", { path: "a\0b" }),
    TypeError,
    "NUL",
  );
  assertThrows(
    () => encodeAddress("address", null as unknown as { path: string }),
    TypeError,
    "address must be",
  );
  assertThrows(
    () => decodeAddress(new Uint8Array(16), 8),
    TypeError,
    "cannot be decoded",
  );
});

Deno.test("errno: errors are Deno's classes, named after the operation and errno", () => {
  const refused = errnoError("connect", 111);
  assertInstanceOf(refused, Deno.errors.ConnectionRefused);
  assertEquals(
    refused.message,
    "connect: connection refused (ECONNREFUSED, os error 111)",
  );
  assertEquals((refused as Error & { code: string }).code, "ECONNREFUSED");
  assertInstanceOf(errnoError("recv", 11), Deno.errors.WouldBlock);
  assertInstanceOf(errnoError("recv", 104), Deno.errors.ConnectionReset);
  assertInstanceOf(errnoError("send", 32), Deno.errors.BrokenPipe);
  assertInstanceOf(errnoError("bind", 98), Deno.errors.AddrInUse);
  assertInstanceOf(errnoError("bind", 99), Deno.errors.AddrNotAvailable);
  assertInstanceOf(errnoError("send", 107), Deno.errors.NotConnected);
  assertInstanceOf(errnoError("connect", 110), Deno.errors.TimedOut);
  assertInstanceOf(errnoError("bind", 13), Deno.errors.PermissionDenied);
  assertInstanceOf(errnoError("close", 9), Deno.errors.BadResource);
  const emfile = errnoError("accept", 24);
  assertEquals(emfile.constructor, Error);
  assertEquals((emfile as Error & { code: string }).code, "EMFILE");
  assertEquals(
    errnoError("x", 9999).message,
    "x: unknown error (errno 9999, os error 9999)",
  );
});

Deno.test("without --allow-ffi: the modules import, and using them names the fix", async () => {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", fixture("epoll_without_ffi.ts")],
    stdin: "null",
    stderr: "inherit",
  }).output();
  assertEquals(code, 0);
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  assertEquals(lines.length, 2);
  for (const line of lines) {
    if (Deno.build.os === "linux") {
      assertEquals(
        line,
        "NotCapable: the epoll backend calls libc through FFI: run Deno with --allow-ffi (it lifts Deno's sandbox for this process), or use the default backend",
      );
    } else {
      assert(
        line.startsWith("NotSupported: the epoll backend needs Linux"),
        line,
      );
    }
  }
});

Deno.test({
  name: `FdSocket: bad arguments are clear errors, never a crash${skipNote}`,
  ignore,
  fn() {
    assertThrows(
      () => FdSocket.open("ipx" as "ipv4"),
      TypeError,
      'family must be "ipv4", "ipv6" or "unix"',
    );
    using sock = FdSocket.open("ipv4");
    assertThrows(
      () => sock.bind({ hostname: "::1", port: 0 }),
      TypeError,
      "address is ipv6, but the socket is ipv4",
    );
    assertThrows(() => sock.bind({ path: "/tmp/x" }), TypeError, "unix");
    assertThrows(() => sock.bind({ port: -1 }), RangeError, "port");
    assertThrows(() => sock.listen(-1), RangeError, "backlog");
    assertThrows(
      () => sock.recvInto("x" as unknown as Uint8Array),
      TypeError,
      "buffer must be a Uint8Array",
    );
    assertThrows(
      () => sock.send("x" as unknown as Uint8Array),
      TypeError,
      "data must be a Uint8Array",
    );
    assertThrows(() => sock.recv(0), RangeError, "bufsize");
    assertThrows(() => sock.recv(1.5), RangeError, "bufsize");
    assertThrows(
      () => sock.shutdown("up" as "read"),
      TypeError,
      'how must be "read", "write" or "both"',
    );
    assertThrows(
      () => sock.setNoDelay("yes" as unknown as boolean),
      TypeError,
      "setNoDelay takes a boolean",
    );
    // Not connected: the kernel's answers, as Deno's classes.
    assertThrows(() => sock.recv(10), Deno.errors.NotConnected, "ENOTCONN");
    // Linux (and so Python) says EPIPE for a send on an unconnected socket.
    assertThrows(
      () => sock.send(new Uint8Array(1)),
      Deno.errors.BrokenPipe,
      "EPIPE",
    );
    assertThrows(() => sock.getpeername(), Deno.errors.NotConnected);
    assertThrows(() => sock.accept(), TypeError, "EINVAL");
    sock.close();
    sock.close();
    assertEquals(sock.fd, -1);
    assertThrows(() => sock.recv(1), Deno.errors.BadResource, "closed socket");
    assertThrows(() => sock.setReuseAddr(), Deno.errors.BadResource);
  },
});

Deno.test({
  name: `Epoll: bad arguments are clear errors${skipNote}`,
  ignore,
  fn() {
    using epoll = new Epoll(8);
    assertThrows(() => new Epoll(0), RangeError, "capacity");
    assertThrows(() => epoll.add(-1, 1, EPOLLIN), RangeError, "fd");
    assertThrows(() => epoll.add(1.5, 1, EPOLLIN), RangeError, "fd");
    assertThrows(
      () => epoll.add("3" as unknown as number, 1, EPOLLIN),
      TypeError,
      "fd must be a number",
    );
    using sock = FdSocket.open("ipv4");
    assertThrows(
      () => epoll.add(sock.fd, 2 ** 32, EPOLLIN),
      RangeError,
      "token",
    );
    assertThrows(() => epoll.add(sock.fd, 1, 0x100), RangeError, "interest");
    assertThrows(
      () => epoll.add(epoll.fd, 1, EPOLLIN),
      Deno.errors.PermissionDenied,
      "this epoll's own descriptor",
    );
    assertThrows(() => epoll.modify(sock.fd, 1, EPOLLIN), Deno.errors.NotFound);
    assertThrows(() => epoll.delete(sock.fd), Deno.errors.NotFound);
    epoll.add(sock.fd, 1, EPOLLIN);
    assertThrows(
      () => epoll.add(sock.fd, 1, EPOLLIN),
      Deno.errors.AlreadyExists,
    );
    assertThrows(() => epoll.idle(-1), TypeError, "timeout");
    assertThrows(() => epoll.poll(-1), RangeError, "timeout");
    assertThrows(() => epoll.poll(NaN), RangeError, "timeout");
    assertThrows(() => epoll.poll(1001), RangeError, "timeout");
    // An unconnected socket shows as hung up.
    assertEquals(epoll.poll(1), 1);
    assertEquals(epoll.readiness(0) & EPOLLHUP, EPOLLHUP);
    epoll.delete(sock.fd);
    assertEquals(epoll.poll(1), 0);
    // A fraction of a millisecond (epoll_pwait2) waits, then finds nothing.
    assertEquals(epoll.poll(0.25), 0);
    epoll.close();
    assertThrows(() => epoll.poll(), Deno.errors.BadResource, "closed epoll");
  },
});

Deno.test({
  name: `FdSocket: close never touches a descriptor it does not own${skipNote}`,
  ignore,
  fn() {
    const sock = FdSocket.open("ipv4");
    const fd = sock.fd;
    assert(isOwned(fd));
    sock.close();
    assertFalse(isOwned(fd));
    // The number is free: the next descriptor Deno opens takes it.
    using file = Deno.openSync(Deno.execPath());
    sock.close();
    assertEquals(file.readSync(new Uint8Array(4)), 4);
  },
});

Deno.test({
  name: `FdSocket: socket options are set${skipNote}`,
  ignore,
  fn() {
    using sock = FdSocket.open("ipv4");
    assertEquals(sock.getOption("noDelay"), 0);
    sock.setNoDelay(true);
    sock.setKeepAlive(true);
    sock.setReuseAddr(true);
    sock.setReusePort(true);
    assertEquals(sock.getOption("noDelay"), 1);
    assertEquals(sock.getOption("keepAlive"), 1);
    assertEquals(sock.getOption("reuseAddr"), 1);
    assertEquals(sock.getOption("reusePort"), 1);
    sock.setNoDelay(false);
    assertEquals(sock.getOption("noDelay"), 0);
  },
});

for (const family of EPOLL_FAMILIES) {
  Deno.test({
    name:
      `FdSocket ${family.name}: echo through epoll, then end of stream${skipNote}`,
    ignore: family.ignore,
    async fn() {
      using epoll = new Epoll();
      using pair = await connectedPair(epoll, family);
      const { client, server, listener } = pair;
      const local = listener.getsockname();
      assertEquals(server.getsockname(), local);
      assertEquals(client.getpeername(), local);
      if (family.family !== "unix") {
        assertEquals(server.getpeername(), client.getsockname());
      }
      const message = pattern(256 * 1024);
      const echoed: Uint8Array[] = [];
      let echoedBytes = 0;
      let sent = 0;
      let pending: Uint8Array | null = null;
      const buffer = new Uint8Array(8192);
      epoll.modify(client.fd, CLIENT, EPOLLIN | EPOLLOUT);
      epoll.modify(server.fd, SERVER, EPOLLIN);
      const deadline = performance.now() + 10_000;
      while (echoedBytes < message.length) {
        assert(performance.now() < deadline, "echo not done within 10 s");
        const count = epoll.poll();
        if (count === 0) await epoll.idle(deadline - performance.now());
        for (let i = 0; i < count; i++) {
          const token = epoll.token(i);
          const bits = epoll.readiness(i);
          if (token === CLIENT && bits & EPOLLOUT && sent < message.length) {
            sent += client.send(message.subarray(sent, sent + 65536));
            if (sent === message.length) {
              epoll.modify(client.fd, CLIENT, EPOLLIN);
            }
          }
          if (token === CLIENT && bits & EPOLLIN) {
            const data = client.recv(65536);
            echoed.push(data);
            echoedBytes += data.length;
          }
          if (token === SERVER) {
            if (pending !== null) {
              const n = server.send(pending);
              pending = n === pending.length ? null : pending.slice(n);
              if (pending === null) epoll.modify(server.fd, SERVER, EPOLLIN);
            } else if (bits & EPOLLIN) {
              const n = server.recvInto(buffer);
              assert(n > 0);
              const taken = server.send(buffer.subarray(0, n));
              if (taken < n) {
                pending = buffer.slice(taken, n);
                epoll.modify(server.fd, SERVER, EPOLLOUT);
              }
            }
          }
        }
      }
      const all = concat(echoed);
      assertEquals(all.length, message.length);
      assert(isPattern(all));
      // End of stream both ways.
      client.shutdown("write");
      await readyWithin(epoll, SERVER, EPOLLIN);
      assertEquals(server.recv(10).length, 0);
      server.close();
      await readyWithin(epoll, CLIENT, EPOLLIN);
      assertEquals(client.recv(10).length, 0);
      assertEquals(client.recvInto(buffer), 0);
    },
  });

  Deno.test({
    name:
      `FdSocket ${family.name}: WouldBlock when nothing is there or the kernel is full${skipNote}`,
    ignore: family.ignore,
    async fn() {
      using epoll = new Epoll();
      using pair = await connectedPair(epoll, family);
      assertThrows(
        () => pair.listener.accept(),
        Deno.errors.WouldBlock,
        "accept: no connection is pending",
      );
      assertThrows(() => pair.server.recv(10), Deno.errors.WouldBlock);
      assertThrows(
        () => pair.server.recvInto(new Uint8Array(10)),
        Deno.errors.WouldBlock,
      );
      assertEquals(pair.server.recvInto(new Uint8Array(0)), 0);
      // The peer never reads: the kernel's buffers fill, then send refuses.
      const chunk = new Uint8Array(65536);
      let total = 0;
      let blocked = false;
      while (total < 256 * 1024 * 1024) {
        try {
          total += pair.client.send(chunk);
        } catch (error) {
          assertInstanceOf(error, Deno.errors.WouldBlock);
          blocked = true;
          break;
        }
      }
      assert(blocked, `send took ${total} bytes and never blocked`);
      // What was taken all arrives.
      let received = 0;
      epoll.modify(pair.server.fd, SERVER, EPOLLIN);
      while (received < total) {
        await readyWithin(epoll, SERVER, EPOLLIN);
        received += pair.server.recvInto(chunk);
      }
      assertEquals(received, total);
    },
  });

  Deno.test({
    name:
      `FdSocket ${family.name}: a connect in progress completes as writability${skipNote}`,
    ignore: family.ignore,
    async fn() {
      using endpoint = family.endpoint();
      using listener = FdSocket.open(family.family);
      listener.bind(endpoint.address);
      listener.listen(4);
      const address = target(listener.getsockname());
      assertEquals(FdSocket.familyOf(address), family.family);
      using epoll = new Epoll();
      using client = FdSocket.open(family.family);
      // TCP always says EINPROGRESS; a Unix socket connects at once.
      assertEquals(client.connect(address), family.family === "unix");
      epoll.add(client.fd, CLIENT, EPOLLOUT);
      assertEquals(await readyWithin(epoll, CLIENT, EPOLLOUT), EPOLLOUT);
      assertEquals(client.takeError(), null);
      assertEquals(client.getpeername(), listener.getsockname());
      // Connecting again: TCP reports the finished connect once, then
      // EISCONN, as Unix does at once.
      if (family.family !== "unix") assert(client.connect(address));
      assertThrows(
        () => client.connect(address),
        Deno.errors.AlreadyExists,
        "EISCONN",
      );
    },
  });

  Deno.test({
    name:
      `FdSocket ${family.name}: a refused connect is ConnectionRefused${skipNote}`,
    ignore: family.ignore,
    async fn() {
      using endpoint = family.endpoint();
      // A bound socket that does not listen refuses connections.
      using closed = FdSocket.open(family.family);
      closed.bind(endpoint.address);
      using epoll = new Epoll();
      using client = FdSocket.open(family.family);
      let error: Error | null;
      try {
        const connected = client.connect(target(closed.getsockname()));
        assertFalse(connected);
        epoll.add(client.fd, CLIENT, EPOLLOUT);
        const bits = await readyWithin(epoll, CLIENT, EPOLLOUT | EPOLLERR);
        assert(bits & (EPOLLERR | EPOLLHUP));
        error = client.takeError();
      } catch (thrown) {
        // Unix sockets refuse at once.
        assertEquals(family.family, "unix");
        error = thrown as Error;
      }
      assertInstanceOf(error, Deno.errors.ConnectionRefused);
      assertEquals((error as Error & { code: string }).code, "ECONNREFUSED");
      assertEquals(client.takeError(), null);
    },
  });

  Deno.test({
    name:
      `FdSocket ${family.name}: a reset from the peer is ConnectionReset${skipNote}`,
    ignore: family.ignore,
    async fn() {
      using epoll = new Epoll();
      using pair = await connectedPair(epoll, family);
      pair.client.send(new Uint8Array(100));
      epoll.modify(pair.server.fd, SERVER, EPOLLIN);
      await readyWithin(epoll, SERVER, EPOLLIN);
      // Closing with unread bytes sends RST, not FIN.
      pair.server.close();
      epoll.modify(pair.client.fd, CLIENT, EPOLLIN);
      const bits = await readyWithin(epoll, CLIENT, EPOLLIN | EPOLLERR);
      assert(bits & (EPOLLERR | EPOLLHUP), `readiness ${bits}`);
      assertThrows(
        () => pair.client.recv(10),
        Deno.errors.ConnectionReset,
        "recv: connection reset (ECONNRESET",
      );
      // The reset is reported once; then the socket is merely dead.
      assertThrows(
        () => pair.client.send(new Uint8Array(1)),
        Deno.errors.BrokenPipe,
        "EPIPE",
      );
    },
  });
}

Deno.test({
  name:
    `FdSocket: a Unix listener in use is AddrInUse; a missing path NotFound${skipNote}`,
  ignore,
  fn() {
    const family = EPOLL_FAMILIES[2];
    using endpoint = family.endpoint();
    using a = FdSocket.open("unix");
    a.bind(endpoint.address);
    using b = FdSocket.open("unix");
    assertThrows(() => b.bind(endpoint.address), Deno.errors.AddrInUse);
    using c = FdSocket.open("unix");
    assertThrows(
      () =>
        c.connect({
          path: `${(endpoint.address as { path: string }).path}.missing`,
        }),
      Deno.errors.NotFound,
      "ENOENT",
    );
  },
});

Deno.test({
  name: `FdSocket: EMFILE on accept is reported and survived${skipNote}`,
  ignore,
  async fn() {
    using epoll = new Epoll();
    using listener = FdSocket.open("ipv4");
    listener.bind({ hostname: "127.0.0.1", port: 0 });
    listener.listen(8);
    epoll.add(listener.fd, LISTENER, EPOLLIN);
    using client = FdSocket.open("ipv4");
    client.connect(target(listener.getsockname()));
    await readyWithin(epoll, LISTENER, EPOLLIN);
    // From here to the end of `finally` nothing awaits: Deno's own ops get no
    // chance to run out of descriptors.
    using limits = lowerOpenFileLimit();
    const fillers: FdSocket[] = [];
    try {
      for (;;) {
        assert(fillers.length <= limits.room, "never ran out of descriptors");
        try {
          fillers.push(FdSocket.open("ipv4"));
        } catch (error) {
          assertEquals((error as Error & { code?: string }).code, "EMFILE");
          break;
        }
      }
      const error = assertThrows(() => listener.accept(), Error, "EMFILE");
      assertEquals((error as Error & { code?: string }).code, "EMFILE");
      // Still pending, the listener still works: free one and accept.
      assertEquals(epoll.poll(), 1);
      fillers.pop()!.close();
      const [conn, peer] = listener.accept();
      assertEquals(peer, client.getsockname());
      conn.close();
    } finally {
      for (const sock of fillers) sock.close();
    }
  },
});

/**
 * Lowers RLIMIT_NOFILE's soft limit to a few above the lowest free descriptor
 * (through libc's setrlimit: Deno has no API for it), restored on dispose.
 * Descriptors open above the new limit stay open; new ones must fit below it.
 */
function lowerOpenFileLimit(): Disposable & { room: number } {
  const lib = Deno.dlopen("libc.so.6", {
    getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
    setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  });
  const RLIMIT_NOFILE = 7;
  // struct rlimit { rlim_t cur, max; }: two u64.
  const saved = new BigUint64Array(2);
  const savedBytes = new Uint8Array(saved.buffer);
  assertEquals(lib.symbols.getrlimit(RLIMIT_NOFILE, savedBytes), 0);
  const ROOM = 8;
  const probe = FdSocket.open("ipv4");
  const lowest = probe.fd;
  probe.close();
  const lowered = new BigUint64Array([BigInt(lowest + ROOM), saved[1]]);
  assertEquals(
    lib.symbols.setrlimit(RLIMIT_NOFILE, new Uint8Array(lowered.buffer)),
    0,
  );
  return {
    room: ROOM,
    [Symbol.dispose]() {
      lib.symbols.setrlimit(RLIMIT_NOFILE, savedBytes);
      lib.close();
    },
  };
}
