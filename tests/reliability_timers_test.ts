// Timers and idle timeouts: callLater() runs in order, never early, and not
// much late even while the map is busy; cancel() and reset() do what they
// say; a timer's error is contained; an idle channel is closed on time and an
// active one is left alone. Upper time bounds are generous (the machine is
// shared); lower bounds are exact, since nothing may fire early.

import {
  assert,
  assertEquals,
  assertGreater,
  assertGreaterOrEqual,
  assertLess,
  assertRejects,
  assertThrows,
} from "@std/assert";
import { delay } from "@std/async";
import {
  callLater,
  type ChannelMap,
  closeAll,
  type DelayedCall,
  type Dispatcher,
  ExitNow,
  loop,
} from "../asyncore.ts";
import type { Socket } from "../select.ts";
import { AsyncChat } from "../asynchat.ts";
import {
  captureLogs,
  hashToEnd,
  randInt,
  seeded,
  serve,
  Server,
  until,
  within,
} from "./_reliability_helpers.ts";
import { BoundedEchoHandler } from "./_dispatchers.ts";
import { testSeed, withSeed, writeAll } from "./_helpers.ts";

/** How late a timer may be on a loaded, shared machine. */
const LATE = 1500;

/** A map with a listening channel (so the loop has something to wait on). */
function listeningMap(): { map: ChannelMap; server: Server } {
  const map: ChannelMap = new Map();
  const server = new Server(map, (sock, m) => new BoundedEchoHandler(sock, m));
  return { map, server };
}

Deno.test("timers: run in due order (ties in the order scheduled), never early", async () => {
  const seed = testSeed();
  await withSeed(seed, async () => {
    const random = seeded(seed);
    const { map } = listeningMap();
    const fired: { index: number; at: number }[] = [];
    const calls: DelayedCall[] = [];
    const COUNT = 60;
    for (let index = 0; index < COUNT; index++) {
      // Few distinct delays, so ties are common.
      const ms = randInt(random, 0, 8) * 5;
      calls.push(callLater(ms, () => {
        fired.push({ index, at: performance.now() });
        if (fired.length === COUNT) closeAll(map);
      }, { map }));
    }
    await serve(map, 10_000, "timers");
    assertEquals(fired.length, COUNT);
    const expected = calls
      .map((call, index) => ({ index, due: call.due }))
      .sort((a, b) => a.due - b.due || a.index - b.index)
      .map(({ index }) => index);
    assertEquals(fired.map(({ index }) => index), expected);
    for (const { index, at } of fired) {
      assertGreaterOrEqual(at, calls[index].due, `timer ${index} ran early`);
      assertLess(at, calls[index].due + LATE, `timer ${index} ran late`);
      assertEquals(calls[index].active, false);
    }
  });
});

Deno.test("timers: cancel() stops a call, even one due in the same pass", async () => {
  const { map } = listeningMap();
  const fired: string[] = [];
  const later = callLater(30, () => fired.push("later"), { map });
  let sameTime: DelayedCall | undefined = undefined;
  callLater(10, () => {
    fired.push("first");
    sameTime!.cancel();
    sameTime!.cancel(); // twice is fine
  }, { map });
  sameTime = callLater(10, () => fired.push("cancelled"), { map });
  const never = callLater(20, () => fired.push("never"), { map });
  never.cancel();
  assertEquals(never.active, false);
  callLater(60, () => closeAll(map), { map });
  await serve(map, 10_000, "cancel");
  assertEquals(fired, ["first", "later"]);
  assertEquals(later.active, false);
  assertThrows(() => never.reset(10), Deno.errors.BadResource);
  assertThrows(() => later.reset(10), Deno.errors.BadResource);
});

Deno.test("timers: reset() moves a call later or earlier, and it runs once", async () => {
  const { map } = listeningMap();
  const runs: { name: string; at: number }[] = [];
  const start = performance.now();
  const pushed = callLater(
    10,
    () => runs.push({ name: "pushed", at: performance.now() }),
    {
      map,
    },
  );
  pushed.reset(120);
  const pulled = callLater(60_000, () => {
    runs.push({ name: "pulled", at: performance.now() });
  }, { map });
  const running = serve(map, 20_000, "reset", { timeout: 30_000 });
  // Pulled in from outside the loop while it waits: it must wake for it.
  await delay(20);
  pulled.reset(30);
  const pulledDue = pulled.due;
  await until(() => runs.length === 2, 10_000, "both ran");
  closeAll(map);
  await running;
  assertEquals(runs.map(({ name }) => name), ["pulled", "pushed"]);
  assertGreaterOrEqual(runs[0].at, pulledDue);
  assertLess(runs[0].at, pulledDue + LATE);
  assertGreaterOrEqual(runs[1].at, start + 120);
  assertEquals([pushed.active, pulled.active], [false, false]);
});

Deno.test("timers: the loop sleeps no longer than the next timer, and each map runs its own", async () => {
  const a = listeningMap();
  const b = listeningMap();
  const fired: string[] = [];
  // A 30 s pass timeout: only the timers can end these waits in time.
  const runningA = serve(a.map, 20_000, "map a", { timeout: 30_000 });
  const scheduled = performance.now();
  callLater(25, () => {
    fired.push("a");
    closeAll(a.map);
  }, { map: a.map });
  const bCall = callLater(5, () => fired.push("b"), { map: b.map });
  await runningA;
  const took = performance.now() - scheduled;
  assertGreaterOrEqual(took, 25);
  assertLess(took, 25 + LATE);
  // Map b's loop never ran: its timer is still waiting.
  assertEquals(fired, ["a"]);
  assert(bCall.active);
  callLater(0, () => closeAll(b.map), { map: b.map });
  await serve(b.map, 10_000, "map b", { timeout: 30_000 });
  assertEquals(fired, ["a", "b"]);
});

Deno.test("timers: a timer fires on time while the map is flooded", async () => {
  const { map, server } = listeningMap();
  const running = serve(map, 30_000, "flood");
  // Four clients keep the echo channels ready on every pass.
  let flooding = true;
  let echoed = 0;
  const floods = Array.from({ length: 4 }, async () => {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    const reader = (async () => {
      const buffer = new Uint8Array(65536);
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) return;
        echoed += n;
      }
    })();
    const chunk = new Uint8Array(16384);
    const deadline = performance.now() + 10_000;
    while (flooding && performance.now() < deadline) {
      await writeAll(conn, chunk);
    }
    await conn.closeWrite();
    await reader;
    conn.close();
  });
  await until(() => echoed > 1024 * 1024, 10_000, "flooding");
  // A one-shot timer and a ticking one, scheduled from inside the loop.
  let firedAt = 0;
  let due = 0;
  let ticks = 0;
  let ticker: DelayedCall | undefined;
  const tick = () => {
    ticks++;
    if (flooding) ticker = callLater(10, tick, { map });
  };
  callLater(0, () => {
    const call = callLater(50, () => firedAt = performance.now(), { map });
    due = call.due;
    ticker = callLater(10, tick, { map });
  }, { map });
  await until(() => firedAt > 0, 10_000, "the timer fired");
  const echoedAtFire = echoed;
  await until(() => ticks >= 20, 10_000, "twenty ticks");
  flooding = false;
  await Promise.all(floods);
  ticker?.cancel();
  server.close();
  await running;
  assertGreaterOrEqual(firedAt, due);
  assertLess(firedAt, due + LATE);
  assertGreater(echoed, echoedAtFire, "the flood went on after the timer");
});

Deno.test("timers: an error in a timer is logged and the loop goes on; ExitNow ends it", async () => {
  const { map } = listeningMap();
  const fired: string[] = [];
  await captureLogs(async (lines) => {
    callLater(5, () => {
      throw new RangeError("timer failed");
    }, { map });
    callLater(10, () => {
      throw "not even an Error";
    }, { map });
    callLater(20, () => {
      fired.push("after");
      closeAll(map);
    }, { map });
    await serve(map, 10_000, "timer errors");
    assertEquals(fired, ["after"]);
    assert(lines.some((line) => line.includes("RangeError:timer failed")));
    assert(lines.some((line) => line.includes("not even an Error")));
  });
  const other = listeningMap();
  callLater(5, () => {
    throw new ExitNow("enough");
  }, { map: other.map });
  await assertRejects(
    () => within(10_000, "loop", loop({ map: other.map, timeout: 30_000 })),
    ExitNow,
  );
  assertEquals(other.map.size, 1);
  closeAll(other.map);
});

Deno.test("idle timeouts: a silent client is closed on time, active ones are left alone", async () => {
  const IDLE = 400;
  const map: ChannelMap = new Map();
  const timedOut = new Map<string, number>();
  const acceptedAt = new Map<string, number>();
  class Idle extends BoundedEchoHandler {
    name = "";
    constructor(sock: Socket, m: ChannelMap) {
      super(sock, m);
      this.idleTimeout = IDLE;
    }
    override handleRead(): void {
      const data = this.recv(65536);
      if (data.length === 0) return;
      const text = new TextDecoder().decode(data);
      if (this.name === "") {
        // The first line names the client.
        this.name = text.split("\n")[0];
        acceptedAt.set(this.name, performance.now());
        if (this.name === "listener") this.#push();
      } else {
        this.send(data);
      }
    }
    // The "listener" client only receives: bytes out count as activity.
    #push(): void {
      callLater(50, () => {
        if (this.socket?.closed) return;
        this.send("tick\n");
        this.#push();
      }, { map, channel: this });
    }
    override handleTimeout(): void {
      timedOut.set(this.name, performance.now());
      this.send("bye\n");
      this.close();
    }
  }
  const server = new Server(map, (sock, m) => new Idle(sock, m));
  const running = serve(map, 30_000, "idle");
  const connect = () =>
    Deno.connect({ hostname: "127.0.0.1", port: server.port });

  // Silent after saying its name.
  const silent = await connect();
  await writeAll(silent, new TextEncoder().encode("silent\n"));
  const silentRead = hashToEnd(silent);

  // Speaks every 50 ms for 1 s, then falls silent.
  const talker = await connect();
  await writeAll(talker, new TextEncoder().encode("talker\n"));
  const talkerRead = hashToEnd(talker);
  const talking = (async () => {
    for (let i = 0; i < 20; i++) {
      await delay(50);
      await writeAll(talker, new TextEncoder().encode("."));
    }
    return performance.now();
  })();

  // Only receives.
  const listener = await connect();
  await writeAll(listener, new TextEncoder().encode("listener\n"));
  const listenerRead = hashToEnd(listener);

  const silentEnd = await within(10_000, "silent closed", silentRead);
  const talkerStopped = await talking;
  const talkerEnd = await within(10_000, "talker closed", talkerRead);
  assertEquals(new TextDecoder().decode(silentEnd.bytes[0]), "bye\n");
  assert(
    new TextDecoder().decode(talkerEnd.bytes.at(-1)).endsWith("bye\n"),
  );
  // The silent one: not before IDLE, not long after.
  const silentIdle = timedOut.get("silent")! - acceptedAt.get("silent")!;
  assertGreaterOrEqual(silentIdle, IDLE);
  assertLess(silentIdle, IDLE + LATE);
  // The talker: only once it stopped.
  assertGreaterOrEqual(timedOut.get("talker")!, talkerStopped + IDLE - 5);
  assertLess(timedOut.get("talker")!, talkerStopped + IDLE + LATE);
  // The receiving one was never idle.
  assertEquals(timedOut.has("listener"), false);
  assertEquals(map.size, 2);
  listener.close();
  await listenerRead;
  await until(() => map.size === 1, 5000, "listener's channel closed");
  server.close();
  await running;
  silent.close();
  talker.close();
});

Deno.test("idle timeouts: the default handleTimeout() closes; Infinity never does", async () => {
  const map: ChannelMap = new Map();
  const channels: Dispatcher[] = [];
  const server = new Server(map, (sock, m) => {
    const channel = new BoundedEchoHandler(sock, m);
    channel.idleTimeout = channels.length === 0 ? 50 : Infinity;
    channels.push(channel);
  });
  const running = serve(map, 10_000, "default timeout");
  const first = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.port,
  });
  const firstRead = hashToEnd(first);
  const second = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.port,
  });
  const { error } = await within(5000, "closed by timeout", firstRead);
  assertEquals(error, null);
  assert(channels[0].socket!.closed);
  await until(() => channels.length === 2, 5000, "second accepted");
  assert(!channels[1].socket!.closed);
  first.close();
  second.close();
  await until(() => map.size === 1, 5000, "second closed by its peer");
  server.close();
  await running;
});

Deno.test("loop wake-ups: what other async code adds is served at once, not after the pass timeout", async (t) => {
  // Each loop waits with a 30 s timeout; each step must finish well before.
  const BOUND = 5000;
  await t.step("a channel added from outside", async () => {
    const { map } = listeningMap();
    const running = serve(map, 20_000, "added", { timeout: 30_000 });
    await delay(20); // it waits now
    const server = new Server(
      map,
      (sock, m) => new BoundedEchoHandler(sock, m),
    );
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await writeAll(conn, new Uint8Array([1]));
    assertEquals(
      await within(BOUND, "echo", conn.read(new Uint8Array(1))),
      1,
    );
    conn.close();
    closeAll(map);
    await running;
  });

  for (const how of ["AsyncChat.push", "DispatcherWithSend.send"]) {
    await t.step(`1 MiB queued with ${how} from outside`, async () => {
      const map: ChannelMap = new Map();
      let push: ((data: Uint8Array) => void) | undefined;
      const server = new Server(map, (sock, m) => {
        if (how === "AsyncChat.push") {
          const chat = new AsyncChat(sock, m);
          push = (data) => {
            chat.push(data);
            chat.closeWhenDone();
          };
        } else {
          const channel = new BoundedEchoHandler(sock, m);
          push = (data) => channel.send(data);
        }
      });
      const running = serve(map, 20_000, how, { timeout: 30_000 });
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      await until(() => push !== undefined, BOUND, "accepted");
      await delay(20); // it waits now
      const started = performance.now();
      // More than the socket's buffer takes at once: the rest is queued
      // and needs the loop to wait for writability.
      push!(new Uint8Array(1024 * 1024).fill(7));
      let got = 0;
      const buffer = new Uint8Array(65536);
      while (got < 1024 * 1024) {
        const n = await within(BOUND, "bytes", conn.read(buffer));
        if (n === null) break;
        got += n;
      }
      assertEquals(got, 1024 * 1024);
      assertLess(performance.now() - started, BOUND);
      conn.close();
      closeAll(map);
      await running;
    });
  }
});
