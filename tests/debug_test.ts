// Debug mode: slow handlers, channels left open or collected while open, the
// trace of each pass, ASYNCORE_DEBUG, and nothing at all when off.

import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import {
  type ChannelMap,
  closeAll,
  Dispatcher,
  loop,
  type LoopOptions,
} from "../asyncore.ts";
import type { Socket } from "../socket.ts";
import { finalized } from "../_loop/debug.ts";
import { fixture, portOf, within } from "./_helpers.ts";

const encoder = new TextEncoder();

function busy(ms: number): void {
  const start = performance.now();
  while (performance.now() - start < ms) {
    // Busy on purpose: the handler under test must be slow.
  }
}

/** Reads one byte, spending `busyMs` in handleRead, then closes. */
class Reader extends Dispatcher {
  busyMs = 0;
  override writable(): boolean {
    return false;
  }
  override handleRead(): void {
    busy(this.busyMs);
    if (this.recv(16).length > 0) this.close();
  }
}

class SlowReader extends Reader {
  override busyMs = 50;
}

class FastReader extends Reader {}

/** A listening channel that gives each accepted socket to `make`. */
class Server extends Dispatcher {
  constructor(map: ChannelMap, readonly make: (sock: Socket) => void) {
    super(undefined, map);
    this.createSocket();
    this.bind({ hostname: "127.0.0.1", port: 0 });
    this.listen(5);
  }
  override handleAccepted(sock: Socket): void {
    this.make(sock);
  }
}

/** Runs `loop()` on `map` until it is empty, failing (and closing all) after 5 s. */
async function runDebugLoop(
  map: ChannelMap,
  options: Omit<LoopOptions, "map">,
): Promise<void> {
  const controller = new AbortController();
  try {
    await within(
      5000,
      "the debug loop",
      loop({ map, timeout: 1000, signal: controller.signal, ...options }),
      () => controller.abort(),
    );
  } finally {
    closeAll(map);
  }
}

Deno.test("debug: a slow handler is named with its channel, a fast one is not", async () => {
  const map: ChannelMap = new Map();
  const readers: Reader[] = [];
  const server = new Server(map, (sock) => {
    readers.push(
      readers.length === 0
        ? new SlowReader(sock, map)
        : new FastReader(sock, map),
    );
    if (readers.length === 2) server.close();
  });
  const port = portOf(server);
  // The first accepted (the slow one) is the first to connect.
  const first = await Deno.connect({ hostname: "127.0.0.1", port });
  const second = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await first.write(encoder.encode("a"));
    await second.write(encoder.encode("b"));
    const messages: string[] = [];
    await runDebugLoop(map, {
      debug: { slowHandlerMs: 25, log: (m) => messages.push(m) },
    });
    assertEquals(readers.length, 2);
    const slow = messages.filter((m) => m.includes(".handleRead() took"));
    assertEquals(slow.length, 1, messages.join("\n"));
    assertMatch(
      slow[0],
      /^<SlowReader connected 127\.0\.0\.1:\d+ at #\d+>\.handleRead\(\) took \d+\.\d ms \(slowHandlerMs: 25\)$/,
    );
    assert(
      !messages.some((m) => m.includes("FastReader")),
      messages.join("\n"),
    );
  } finally {
    first.close();
    second.close();
  }
});

Deno.test("debug: a slow timer callback and a slow readable() are named", async () => {
  const map: ChannelMap = new Map();
  class SlowToAsk extends Dispatcher {
    override readable(): boolean {
      busy(25);
      return true;
    }
  }
  const channel = new SlowToAsk(undefined, map);
  channel.createSocket();
  channel.bind({ hostname: "127.0.0.1", port: 0 });
  channel.listen(5);
  const { callLater } = await import("../timers.ts");
  callLater(0, function closeLater() {
    busy(25);
    channel.close();
  }, { map });
  const messages: string[] = [];
  await runDebugLoop(map, {
    debug: { slowHandlerMs: 20, log: (m) => messages.push(m) },
  });
  assert(
    messages.some((m) =>
      /^<SlowToAsk listening 127\.0\.0\.1:\d+ at #\d+>\.readable\(\) took/
        .test(m)
    ),
    messages.join("\n"),
  );
  assert(
    messages.some((m) => /^timer callback closeLater took \d/.test(m)),
    messages.join("\n"),
  );
});

Deno.test("debug: channels left open when a count-limited loop exits are named", async () => {
  const map: ChannelMap = new Map();
  const server = new Server(map, (sock) => sock.close());
  const messages: string[] = [];
  try {
    const name = String(server);
    await loop({
      map,
      count: 2,
      timeout: 0,
      debug: { log: (m) => messages.push(m) },
    });
    assertEquals(messages, [
      `loop exited (count reached) with 1 channel(s) still open: ${name}`,
    ]);
  } finally {
    server.close();
  }
});

Deno.test("debug: an aborted loop names what it left open; an emptied one says nothing", async () => {
  const map: ChannelMap = new Map();
  const server = new Server(map, (sock) => sock.close());
  const messages: string[] = [];
  const log = (m: string) => messages.push(m);
  try {
    const controller = new AbortController();
    const { callLater } = await import("../timers.ts");
    callLater(0, () => controller.abort(), { map });
    await loop({ map, signal: controller.signal, debug: { log } });
    assertEquals(messages.length, 1);
    assertStringIncludes(messages[0], "(signal aborted)");
    assertStringIncludes(messages[0], String(server));
    callLater(0, () => server.close(), { map });
    await loop({ map, timeout: 1000, debug: { log } });
    assertEquals(messages.length, 1);
  } finally {
    server.close();
  }
});

Deno.test("debug: the trace shows the read and write sets, what was ready and what ran", async () => {
  const map: ChannelMap = new Map();
  let reader: Reader | null = null;
  const server = new Server(map, (sock) => {
    reader = new FastReader(sock, map);
    server.close();
  });
  const serverName = String(server);
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: portOf(server),
  });
  try {
    await conn.write(encoder.encode("x"));
    const messages: string[] = [];
    await runDebugLoop(map, {
      debug: { trace: true, log: (m) => messages.push(m) },
    });
    assert(reader !== null);
    const passes = messages.filter((m) => m.startsWith("pass "));
    assert(passes.length >= 2, messages.join("\n"));
    // The pass that accepted: the listener was in the read set, not the
    // write set (a listening channel is never waited on for writing).
    const accepting = passes.find((m) => m.includes(".handleAccept()"));
    assert(accepting !== undefined, passes.join("\n"));
    assertStringIncludes(accepting, `read set: [${serverName}]`);
    assertStringIncludes(accepting, "write set: []");
    assertStringIncludes(accepting, `${serverName} r`); // in the ready list
    assertMatch(
      accepting,
      new RegExp(`ran: \\[${escape(serverName)}\\.handleAccept\\(\\) \\d`),
    );
    // Then the reader: asked to read only (its writable() is false), until
    // its byte came and it ran.
    const reading = passes.find((m) =>
      /ran: \[<FastReader connected [^\]]*\.handleRead\(\)/.test(m)
    );
    assert(reading !== undefined, passes.join("\n"));
    assertMatch(reading, /read set: \[<FastReader connected [^\]]*\]/);
    assertStringIncludes(reading, "write set: []");
    assertMatch(reading, /ready: \[[^\]]*<FastReader connected [^\]]*> r/);
  } finally {
    conn.close();
  }
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("debug: off, a loop logs nothing and leaves its channels as they were", async () => {
  const map: ChannelMap = new Map();
  const server = new Server(map, (sock) => sock.close());
  const own = (): string[] =>
    Object.getOwnPropertyNames(server).filter((name) =>
      name === "readable" || name.startsWith("handle")
    );
  const ownClose = () => server.close();
  server.handleClose = ownClose;
  const messages: string[] = [];
  try {
    await loop({ map, count: 1, timeout: 0, debug: false });
    assertEquals(own(), ["handleClose"]);
    // On, it wraps the handlers it times (as own properties); with a
    // threshold of 0 every call it times is reported.
    let during: string[] = [];
    const { callLater } = await import("../timers.ts");
    callLater(0, () => during = own(), { map });
    await loop({
      map,
      count: 1,
      timeout: 0,
      debug: { slowHandlerMs: 0, log: (m) => messages.push(m) },
    });
    assert(during.includes("handleRead") && during.includes("readable"));
    assert(
      messages.some((m) => m.includes(".readable() took")),
      messages.join("\n"),
    );
    // Once it is over, the channel is as it was, and says nothing more.
    assertEquals(own(), ["handleClose"]);
    assertEquals(server.handleClose, ownClose);
    const reported = messages.length;
    await loop({ map, count: 1, timeout: 0, debug: false });
    assertEquals(messages.length, reported);
  } finally {
    server.close();
  }
});

Deno.test("debug: bad options are clear errors", async () => {
  const map: ChannelMap = new Map();
  const cases: [unknown, ErrorConstructor, string][] = [
    [
      "yes",
      TypeError,
      'options.debug must be a boolean or an object, got "yes"',
    ],
    [
      { slowHandlerMs: "5" },
      TypeError,
      "options.debug.slowHandlerMs must be a number",
    ],
    [
      { slowHandlerMs: -1 },
      RangeError,
      "options.debug.slowHandlerMs must be a non-negative number of ms, got -1",
    ],
    [{ trace: 1 }, TypeError, "options.debug.trace must be a boolean, got 1"],
    [
      { log: "console" },
      TypeError,
      'options.debug.log must be a function, got "console"',
    ],
  ];
  for (const [debug, type, message] of cases) {
    await assertRejects(
      () => loop({ map, debug: debug as LoopOptions["debug"] }),
      type,
      message,
    );
  }
});

Deno.test("debug: a channel collected while open is reported (finalizer seam)", () => {
  const messages: string[] = [];
  const log = (m: string) => messages.push(m);
  const channel = new Dispatcher(undefined, new Map());
  channel.createSocket();
  const socket = channel.socket;
  finalized({ socket, repr: "<Lost at #7>", log });
  assertEquals(messages, [
    "channel <Lost at #7> was garbage-collected while its socket was still open; close() it",
  ]);
  channel.close();
  finalized({ socket, repr: "<Lost at #7>", log });
  assertEquals(messages.length, 1);
});

async function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  // The child sees ASYNCORE_DEBUG only if `env` sets it.
  const inherited = Deno.env.toObject();
  delete inherited.ASYNCORE_DEBUG;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...args],
    env: { ...inherited, ...env },
    clearEnv: true,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("debug: a channel collected while open is reported (real collection)", async () => {
  const { code, stdout, stderr } = await run([
    "--v8-flags=--expose-gc",
    "--allow-net",
    fixture("debug_gc_program.ts"),
  ]);
  assertEquals(code, 0, stderr);
  assertMatch(
    stdout.trim(),
    /^channel <Dispatcher listening 127\.0\.0\.1:\d+ at #\d+> was garbage-collected while its socket was still open; close\(\) it$/,
  );
});

Deno.test("debug: ASYNCORE_DEBUG=1 turns it on; unset, or unreadable, it stays off", async () => {
  const program = fixture("debug_env_program.ts");
  const on = await run(["--allow-net", "--allow-env=ASYNCORE_DEBUG", program], {
    ASYNCORE_DEBUG: "1",
  });
  assertEquals([on.code, on.stdout], [0, "done\n"], on.stderr);
  assertMatch(
    on.stderr,
    /^asyncore debug: loop exited \(count reached\) with 1 channel\(s\) still open: <Dispatcher listening 127\.0\.0\.1:\d+ at #\d+>\n$/,
  );
  for (
    const [args, env] of [
      [["--allow-env=ASYNCORE_DEBUG"], { ASYNCORE_DEBUG: "0" }],
      [["--allow-env=ASYNCORE_DEBUG"], {}],
      // Without permission it is not read (and neither throws nor prompts).
      [[], { ASYNCORE_DEBUG: "1" }],
    ] as [string[], Record<string, string>][]
  ) {
    const off = await run(["--allow-net", ...args, program], env);
    assertEquals([off.code, off.stdout, off.stderr], [0, "done\n", ""]);
  }
});

Deno.test("debug: a log function that throws fails no handler; the console gets the message", async () => {
  const map: ChannelMap = new Map();
  const server = new Server(map, (sock) => sock.close());
  const warned: string[] = [];
  const warn = console.warn;
  console.warn = (message: string) => warned.push(message);
  try {
    await loop({
      map,
      count: 1,
      timeout: 0,
      debug: {
        slowHandlerMs: 0,
        log: () => {
          throw new Error("log is broken");
        },
      },
    });
  } finally {
    console.warn = warn;
    server.close();
  }
  assert(
    warned.some((m) =>
      /^asyncore debug: <Server listening .*\.readable\(\) took/.test(m)
    ),
    warned.join("\n"),
  );
  assert(
    warned.includes(
      "asyncore debug: options.debug.log threw Error: log is broken",
    ),
    warned.join("\n"),
  );
});
