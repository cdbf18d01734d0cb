// The epoll backend's waiting (_epoll.ts): the idle wait on a worker thread,
// its waker, closing under a pending wait, and sharing the thread with Deno's
// own event loop while an epoll loop is busy.

import { assert, assertEquals, assertFalse, assertRejects } from "@std/assert";
import { Epoll, EPOLLIN, EPOLLOUT, EventLoopShare } from "../_epoll/epoll.ts";
import { FdSocket } from "../_epoll/fd_socket.ts";
import { isOwned } from "../_epoll/libc.ts";
import {
  connectedPair,
  EPOLL_FAMILIES,
  epollUnsupported,
  readyWithin,
  SERVER,
  skipNote,
  target,
} from "./_epoll_helpers.ts";
import {
  isPattern,
  pattern,
  Peer,
  readExactly,
  within,
  writeAll,
} from "./_helpers.ts";

const ignore = epollUnsupported !== null;
const IPV4 = EPOLL_FAMILIES[0];

Deno.test({
  name: `Epoll: an idle wait ends when a source becomes ready${skipNote}`,
  ignore,
  async fn() {
    using epoll = new Epoll();
    using pair = await connectedPair(epoll, IPV4);
    epoll.modify(pair.server.fd, SERVER, EPOLLIN);
    assertEquals(epoll.poll(), 0);
    const idle = epoll.idle();
    pair.client.send(new Uint8Array([1, 2, 3]));
    await within(5000, "the idle wait", idle);
    assertEquals(epoll.poll(), 1);
    assertEquals(epoll.token(0), SERVER);
    assertEquals(epoll.readiness(0), EPOLLIN);
    assertEquals(pair.server.recv(10), new Uint8Array([1, 2, 3]));
  },
});

Deno.test({
  name:
    `Epoll: wake() ends an endless idle wait, and poll() hides the waker${skipNote}`,
  ignore,
  async fn() {
    using epoll = new Epoll();
    const idle = epoll.idle();
    epoll.wake();
    await within(5000, "the woken wait", idle);
    assertEquals(epoll.poll(), 0);
    // A wake before the wait ends the next one at once, then is spent: a
    // short wait after it times out instead of returning at once again.
    epoll.wake();
    epoll.wake();
    await within(5000, "the pre-woken wait", epoll.idle());
    assertEquals(epoll.poll(), 0);
    let timedOut = false;
    await epoll.idle(20).then(() => timedOut = true);
    assert(timedOut);
    assertEquals(epoll.poll(), 0);
  },
});

Deno.test({
  name: `Epoll: one idle wait at a time${skipNote}`,
  ignore,
  async fn() {
    using epoll = new Epoll();
    const idle = epoll.idle();
    try {
      await assertRejects(
        async () => await epoll.idle(),
        Deno.errors.Busy,
        "a wait is already pending",
      );
    } finally {
      epoll.wake();
      await idle;
    }
  },
});

Deno.test({
  name:
    `Epoll: close() under a pending idle wait wakes it, then frees the descriptors${skipNote}`,
  ignore,
  async fn() {
    const epoll = new Epoll();
    const fd = epoll.fd;
    const idle = epoll.idle();
    epoll.close();
    assert(epoll.closed);
    // The descriptors outlive close() until the worker thread lets go.
    assert(isOwned(fd));
    await within(5000, "the wait closed under", idle);
    assertFalse(isOwned(fd));
    epoll.close();
    epoll.wake(); // harmless once closed
  },
});

Deno.test({
  name:
    `Epoll: registered sources survive their registry; deleted ones go quiet${skipNote}`,
  ignore,
  async fn() {
    using epoll = new Epoll();
    using pair = await connectedPair(epoll, IPV4);
    epoll.modify(pair.client.fd, 7, EPOLLOUT);
    assertEquals(await readyWithin(epoll, 7, EPOLLOUT), EPOLLOUT);
    epoll.delete(pair.client.fd);
    assertEquals(epoll.poll(), 0);
    // The socket is untouched by its registry.
    assertEquals(pair.client.send(new Uint8Array(1)), 1);
  },
});

Deno.test({
  name:
    `Epoll: Deno's timers and a Deno.Conn keep flowing while an epoll loop is busy${skipNote}`,
  ignore,
  async fn() {
    using epoll = new Epoll();
    using share = await EventLoopShare.open(1);
    // The busy part: PAIRS loopback ping-pongs of 64 B in the epoll loop.
    const PAIRS = 10;
    using listener = FdSocket.open("ipv4");
    listener.bind({ hostname: "127.0.0.1", port: 0 });
    listener.listen(PAIRS);
    const sockets: FdSocket[] = [];
    using _cleanup = {
      [Symbol.dispose]: () => sockets.forEach((s) => s.close()),
    };
    for (let i = 0; i < PAIRS; i++) {
      const client = FdSocket.open("ipv4");
      sockets.push(client);
      client.connect(target(listener.getsockname()));
    }
    epoll.add(listener.fd, 0, EPOLLIN);
    while (sockets.length < 2 * PAIRS) {
      await readyWithin(epoll, 0, EPOLLIN);
      try {
        sockets.push(listener.accept()[0]);
      } catch (error) {
        if (!(error instanceof Deno.errors.WouldBlock)) throw error;
      }
    }
    epoll.delete(listener.fd);
    const message = new Uint8Array(64);
    const buffer = new Uint8Array(4096);
    sockets.forEach((s, i) => epoll.add(s.fd, i, EPOLLIN));
    for (let i = 0; i < PAIRS; i++) sockets[i].send(message);

    // Deno's side: a timer that, every 2 ms, pings over a Deno.Conn pair
    // echoing back; each step is an op that needs Deno's event loop to run.
    const denoListener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const [a, b] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: denoListener.addr.port }),
      denoListener.accept(),
    ]);
    denoListener.close();
    const echoing = (async () => {
      const data = new Uint8Array(64);
      for (let n; (n = await b.read(data)) !== null;) {
        await b.write(data.subarray(0, n));
      }
      b.close();
    })();
    let denoRoundTrips = 0;
    const counting = (async () => {
      const data = new Uint8Array(64);
      for (let n; (n = await a.read(data)) !== null;) denoRoundTrips += n;
    })();
    let ticks = 0;
    let writing = Promise.resolve(0);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = () => {
      ticks++;
      writing = writing.then(() => a.write(message.subarray(0, 1)));
      timer = setTimeout(tick, 2);
    };
    timer = setTimeout(tick, 2);

    const TIMER_TICKS = 10;
    const DENO_ROUND_TRIPS = 10;
    let epollRoundTrips = 0;
    const deadline = performance.now() + 10_000;
    try {
      while (ticks < TIMER_TICKS || denoRoundTrips < DENO_ROUND_TRIPS) {
        assert(
          performance.now() < deadline,
          `after 10 s: ${ticks} timer ticks, ${denoRoundTrips} Deno.Conn round trips`,
        );
        const count = epoll.poll();
        for (let i = 0; i < count; i++) {
          const sock = sockets[epoll.token(i)];
          const n = sock.recvInto(buffer);
          assert(n > 0);
          sock.send(buffer.subarray(0, n));
          epollRoundTrips++;
        }
        if (share.due) await share.turn();
      }
    } finally {
      clearTimeout(timer);
      await writing;
      await a.closeWrite();
      await echoing;
      await counting;
      a.close();
    }
    // And the epoll loop kept working all the while (about 90 round trips
    // per tick here): it shared the thread rather than giving it up.
    assert(
      epollRoundTrips >= 20 * ticks,
      `${epollRoundTrips} epoll round trips for ${ticks} timer ticks`,
    );
  },
});

Deno.test({
  name:
    `bench/servers/epoll_echo.ts echoes 1 MiB to two clients at once${skipNote}`,
  ignore,
  async fn() {
    const script = new URL("../bench/servers/epoll_echo.ts", import.meta.url);
    await using server = new Peer(Deno.execPath(), [
      "run",
      "--allow-ffi",
      script.pathname,
      "0",
    ]);
    const port = Number(
      (await server.line(30_000)).match(/^listening on 127\.0\.0\.1:(\d+)$/)
        ?.[1],
    );
    assert(port > 0);
    const echo = async (size: number) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const message = pattern(size);
      const writing = writeAll(conn, message);
      const received = await readExactly(conn, size, 20_000);
      await writing;
      assert(isPattern(received));
    };
    await within(
      20_000,
      "both echoes",
      Promise.all([echo(1 << 20), echo(1 << 20)]),
    );
  },
});
