// Tests of the readiness layer (_selector.ts) over real loopback sockets:
// level-triggered events, interest changes, deregistration, closure, the
// waker, timeouts and abort signals.

import { assert, assertEquals } from "@std/assert";
import { getAvailablePort } from "@std/net";
import { Socket } from "../socket.ts";
import { select } from "../select.ts";
import { sourceOf } from "../_socket_table.ts";
import {
  CLOSED,
  ERROR,
  Events,
  Interest,
  READABLE,
  Selector,
  SENT,
  Waker,
  WRITABLE,
} from "../_readiness.ts";
import { socketPair, within } from "./_helpers.ts";

function list(events: Events): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < events.length; i++) {
    out.push([events.token(i), events.readiness(i)]);
  }
  return out;
}

Deno.test("Selector: a ready socket is reported by every poll while it stays ready", async () => {
  using sockets = await socketPair();
  const { client, server: conn } = sockets;
  const selector = new Selector();
  const events = new Events();
  selector.registry.register(sourceOf(conn), 7, Interest.READABLE);
  await selector.poll(events, 0);
  assertEquals(list(events), []);
  client.send("hi");
  await within(5000, "the poll", selector.poll(events, 5000));
  assertEquals(list(events), [[7, READABLE]]);
  await selector.poll(events, 0);
  assertEquals(list(events), [[7, READABLE]], "level-triggered");
  assertEquals(new TextDecoder().decode(conn.recv(16)), "hi");
  await selector.poll(events, 0);
  assertEquals(list(events), [], "no longer ready");
  selector.registry.deregister(sourceOf(conn));
});

Deno.test("Selector: a poll that finds something ready without waiting is done when it returns, with no promise to await", async () => {
  using sockets = await socketPair();
  const selector = new Selector();
  const events = new Events();
  selector.registry.register(sourceOf(sockets.server), 5, Interest.WRITABLE);
  // A poll may still take a turn of the event loop now and then (a busy
  // loop owes one every millisecond or so), which it returns as a promise.
  let atOnce = 0;
  for (let i = 0; i < 20; i++) {
    const waiting = selector.poll(events, 0);
    if (waiting === undefined) {
      atOnce++;
      assertEquals(list(events), [[5, WRITABLE]]);
    } else {
      await waiting;
    }
  }
  assert(atOnce > 0, "every poll returned a promise");
  selector.registry.deregister(sourceOf(sockets.server));
});

Deno.test("Selector: reregister changes the interest; deregister stops the reports", async () => {
  using sockets = await socketPair();
  const { client, server: conn } = sockets;
  const selector = new Selector();
  const { registry } = selector;
  const events = new Events();
  registry.register(sourceOf(conn), 3, Interest.WRITABLE);
  await selector.poll(events, 0);
  assertEquals(list(events), [[3, WRITABLE]]);
  registry.reregister(sourceOf(conn), 4, Interest.READABLE);
  await selector.poll(events, 0);
  assertEquals(list(events), []);
  client.send("x");
  await selector.poll(events, 5000);
  assertEquals(list(events), [[4, READABLE]]);
  registry.deregister(sourceOf(conn));
  await selector.poll(events, 0);
  assertEquals(list(events), []);
});

Deno.test("Selector: a socket that starts wanting to write is reported while writable, in one event with its readability, and not while its send buffer is full", async () => {
  using sockets = await socketPair();
  const { client, server: conn } = sockets;
  const selector = new Selector();
  const { registry } = selector;
  const events = new Events();
  const token = conn.fileno();
  registry.register(sourceOf(conn), token, Interest.READABLE);
  client.send("x");
  await within(5000, "the poll", selector.poll(events, 5000));
  assertEquals(list(events), [[token, READABLE]]);
  registry.reregister(sourceOf(conn), token, Interest.BOTH);
  await selector.poll(events, 0);
  assertEquals(list(events), [[token, READABLE | WRITABLE]]);
  await selector.poll(events, 0);
  assertEquals(list(events), [[token, READABLE | WRITABLE]], "level-triggered");
  assertEquals(conn.recv(16).length, 1);
  registry.reregister(sourceOf(conn), token, Interest.READABLE);
  await selector.poll(events, 0);
  assertEquals(list(events), []);
  if (conn.backend !== "epoll") return; // its own buffer drains meanwhile
  // The peer reads nothing: fill the kernel's buffers, then ask to write.
  const chunk = new Uint8Array(1 << 16);
  for (let i = 0; i < 10_000; i++) {
    try {
      conn.send(chunk);
    } catch (error) {
      if (!(error instanceof Deno.errors.WouldBlock)) throw error;
      break; // full
    }
  }
  registry.reregister(sourceOf(conn), token, Interest.BOTH);
  await selector.poll(events, 0);
  assertEquals(list(events), [], "not writable while full");
  await selector.poll(events, 0);
  assertEquals(list(events), [], "still not writable");
  // The peer reads: the socket is reported writable again.
  for (let i = 0; i < 10_000 && events.length === 0; i++) {
    await select([client], [], [], 5000);
    client.recv(1 << 16);
    await selector.poll(events, 0);
  }
  assertEquals(list(events), [[token, WRITABLE]]);
  registry.deregister(sourceOf(conn));
});

Deno.test("Selector: a registered socket that is closed is reported once as CLOSED", async () => {
  using sockets = await socketPair();
  const selector = new Selector();
  const events = new Events();
  selector.registry.register(sourceOf(sockets.server), 9, Interest.READABLE);
  const waiting = selector.poll(events, 5000);
  sockets.server.close();
  await within(1000, "the poll", waiting);
  assertEquals(list(events), [[9, CLOSED]]);
  await selector.poll(events, 0);
  assertEquals(list(events), []);
});

Deno.test("Selector: an error is reported whatever the interest", async () => {
  const port = getAvailablePort();
  using client = new Socket();
  const selector = new Selector();
  const events = new Events();
  selector.registry.register(sourceOf(client), 5, Interest.NONE);
  client.connect({ hostname: "127.0.0.1", port }); // nothing listens there
  await within(5000, "the poll", selector.poll(events, 5000));
  assertEquals(events.length, 1);
  assertEquals(events.token(0), 5);
  assert(events.readiness(0) & ERROR);
  assert(client.error !== null);
  selector.registry.deregister(sourceOf(client));
});

// Only the "deno" backend keeps a send buffer of its own to report on; an
// epoll socket's is the kernel's, which (as in CPython) wakes no one as it
// drains.
Deno.test("Selector: Interest.OUTPUT reports SENT once each time bytes leave the send buffer (the deno backend's own buffer)", async () => {
  using sockets = await socketPair({ backend: "deno" });
  const { client, server: conn } = sockets;
  const selector = new Selector();
  const events = new Events();
  selector.registry.register(sourceOf(conn), 2, Interest.OUTPUT);
  await selector.poll(events, 0);
  assertEquals(list(events), []);
  conn.send("out");
  await within(5000, "the poll", selector.poll(events, 5000));
  assertEquals(list(events), [[2, SENT]]);
  await selector.poll(events, 0);
  assertEquals(list(events), [], "once per write");
  await select([client], [], [], 5000);
  assertEquals(new TextDecoder().decode(client.recv(16)), "out");
  selector.registry.deregister(sourceOf(conn));
});

Deno.test("Waker: wakes a waiting poll with one event; a wake with no poll waiting is dropped", async () => {
  const selector = new Selector();
  const waker = new Waker(selector.registry, 99);
  const events = new Events();
  const waiting = selector.poll(events, 30_000);
  waker.wake();
  await within(1000, "the woken poll", waiting);
  assertEquals(list(events), [[99, READABLE]]);
  waker.wake();
  await selector.poll(events, 0);
  assertEquals(list(events), []);
});

Deno.test("Selector: a timeout or an abort ends an idle poll with no events", async () => {
  const selector = new Selector();
  const events = new Events();
  await within(1000, "the timed poll", selector.poll(events, 10));
  assertEquals(events.length, 0);
  const controller = new AbortController();
  const waiting = selector.poll(events, undefined, controller.signal);
  controller.abort();
  await within(1000, "the aborted poll", waiting);
  assertEquals(events.length, 0);
});
