// Tests of TLS: listening and connecting with `SocketOptions.tls`, failed
// handshakes, and STARTTLS (Socket.startTls / Dispatcher.startTls) with data
// pipelined around the upgrade. Real loopback sockets; the certificates are
// the fixtures in tests/fixtures/tls (see generate.sh there).

import {
  assert,
  assertEquals,
  assertFalse,
  assertInstanceOf,
  assertMatch,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import { concat, equals } from "@std/bytes";
import {
  type ChannelMap,
  closeAll,
  Dispatcher,
  DispatcherWithSend,
  loop,
} from "../asyncore.ts";
import { AsyncChat } from "../asynchat.ts";
import { LinesProducer } from "../producers.ts";
import { Poll, POLLIN, POLLOUT, select, Socket } from "../select.ts";
import { EchoHandler } from "./_dispatchers.ts";
import {
  BACKEND,
  hasPythonSsl,
  pattern,
  portOf,
  recvAll,
  runLoop,
  type SocketPair,
  socketPair,
  text,
  waitReady,
} from "./_helpers.ts";

const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`./fixtures/tls/${name}`, import.meta.url));
const CERT = fixture("localhost.crt");
const KEY = fixture("localhost.key");
const CA = fixture("ca.crt");
const OTHER_CERT = fixture("other.crt");
const OTHER_KEY = fixture("other.key");

const SERVER_TLS = { cert: CERT, key: KEY };
const CLIENT_TLS = { hostname: "localhost", caCerts: [CA] };

const encoder = new TextEncoder();

/** Reads until `count` bytes have arrived (or end of stream). */
async function recvExactly(sock: Socket, count: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let got = 0;
  while (got < count) {
    await waitReady(sock, "read");
    const data = sock.recv(count - got);
    if (data.length === 0) break;
    chunks.push(data);
    got += data.length;
  }
  return concat(chunks);
}

/** Sends all of `data`, waiting for room. */
async function sendAll(sock: Socket, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    await waitReady(sock, "write");
    offset += sock.send(data.subarray(offset));
  }
}

/** Runs the loop over `map` until it is empty, failing after 10 s. */
function run(map: ChannelMap, usePoll = false): Promise<void> {
  return runLoop(map, { usePoll, bound: 10_000 });
}

/** A TLS listener, a TLS client connected to it, and the accepted end. */
async function tlsPair(): Promise<SocketPair> {
  const pair = await socketPair({
    listenerOptions: { tls: SERVER_TLS },
    clientOptions: { tls: CLIENT_TLS },
  });
  try {
    await waitReady(pair.server, "write"); // the server's side of the handshake
  } catch (error) {
    pair[Symbol.dispose]();
    throw error;
  }
  return pair;
}

Deno.test("Socket: echo over a TLS listener and a TLS connect", async () => {
  using pair = await tlsPair();
  const { client, server } = pair;
  assert(client.secure && server.secure);
  assertFalse(pair.listener.secure);
  assertEquals(client.getpeername(), server.getsockname());
  const message = pattern(200_000);
  const sending = sendAll(client, message);
  const echoed: Uint8Array[] = [];
  let got = 0;
  while (got < message.length) {
    await waitReady(server, "read");
    const data = server.recv(65536);
    await sendAll(server, data);
    got += data.length;
  }
  await sending;
  echoed.push(await recvExactly(client, message.length));
  assertEquals(concat(echoed), message);
  client.shutdown("write");
  assertEquals(await recvAll(server), new Uint8Array(0), "close_notify: EOF");
});

Deno.test("Socket: TLS over IPv6 (::1 is in the certificate)", async () => {
  const listener = new Socket({ tls: SERVER_TLS });
  try {
    listener.bind({ hostname: "::1", port: 0 });
  } catch (error) {
    listener.close();
    if (error instanceof Deno.errors.AddrNotAvailable) return; // no IPv6
    throw error;
  }
  using _ = listener;
  listener.listen();
  using client = new Socket({ tls: { caCerts: [CA] } }); // name: "::1"
  client.connect({ hostname: "::1", port: portOf(listener) });
  await waitReady(listener, "read");
  using server = listener.accept()[0];
  await waitReady(client, "write");
  client.send("over v6");
  assertEquals(text(await recvExactly(server, 7)), "over v6");
});

Deno.test("Socket: an accepted TLS connection shows nothing before its handshake", async () => {
  using listener = new Socket({ tls: SERVER_TLS });
  listener.bind({ hostname: "127.0.0.1", port: 0 });
  listener.listen();
  // A TCP client that never starts the handshake.
  const raw = await Deno.connect({
    hostname: "127.0.0.1",
    port: portOf(listener),
  });
  await waitReady(listener, "read");
  using server = listener.accept()[0];
  assertFalse(server.secure);
  assertEquals(await select([server], [server], [server], 0), [[], [], []]);
  const poller = new Poll();
  poller.register(server, POLLIN | POLLOUT);
  assertEquals(await poller.poll(0), []);
  // Data sent now waits for the handshake.
  assertEquals(server.send("hello"), 5);
  raw.close();
  const [r, , x] = await select([server], [], [server], 10_000);
  assertEquals([r, x], [[server], [server]]);
  assertInstanceOf(server.error, Deno.errors.UnexpectedEof);
});

Deno.test("Socket: a TLS connect completes only after the handshake", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using client = new Socket({ tls: CLIENT_TLS });
  client.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const peer = await listener.accept();
  // The ClientHello has arrived, so TCP is connected; the handshake is not.
  const hello = new Uint8Array(1024);
  assert((await peer.read(hello))! > 0);
  assertEquals(hello[0], 0x16, "a TLS handshake record");
  assertEquals(await select([client], [client], [client], 0), [[], [], []]);
  assertThrows(() => client.send("x"), Deno.errors.WouldBlock);
  peer.close();
  const [, w] = await select([], [client], [], 10_000);
  assertEquals(w, [client]);
  assertInstanceOf(client.error, Deno.errors.UnexpectedEof);
  assertFalse(client.secure);
});

Deno.test("Socket: TLS options are checked", () => {
  assertThrows(
    () => new Socket({ transport: "unix", tls: CLIENT_TLS }),
    TypeError,
    '"tcp" transport',
  );
  assertThrows(
    () => new Socket({ tls: { cert: CERT } }),
    TypeError,
    "both cert and key",
  );
  assertThrows(
    // @ts-expect-error: a wrong type on purpose
    () => new Socket({ tls: { caCerts: CA } }),
    TypeError,
    "caCerts must be an array",
  );
  assertThrows(
    () => new Socket({ tls: { hostname: "" } }),
    TypeError,
    "hostname must be a non-empty string",
  );
  {
    using sock = new Socket({ tls: CLIENT_TLS });
    assertThrows(
      () => sock.bind({ hostname: "127.0.0.1", port: 0 }),
      TypeError,
      "needs cert and key",
    );
  }
  {
    using sock = new Socket({ tls: SERVER_TLS });
    assertThrows(
      () => sock.connect({ hostname: "127.0.0.1", port: 1 }),
      Deno.errors.NotSupported,
    );
  }
  {
    using sock = new Socket({ tls: { cert: "not a certificate", key: KEY } });
    assertThrows(() => sock.bind({ hostname: "127.0.0.1", port: 0 }));
  }
  {
    using sock = new Socket();
    assertThrows(() => sock.startTls(CLIENT_TLS), Deno.errors.NotConnected);
  }
});

// ---------------------------------------------------------------------------
// Dispatchers over TLS

class TlsEchoServer extends Dispatcher {
  accepted: EchoHandler[] = [];
  errors: unknown[] = [];
  readonly channels: ChannelMap;
  constructor(map: ChannelMap, cert = CERT, key = KEY) {
    super(undefined, map);
    this.channels = map;
    this.createSocket({ tls: { cert, key } });
    this.bind({ hostname: "127.0.0.1", port: 0 });
    this.listen(5);
  }
  override handleAccepted(sock: Socket): void {
    const errors = this.errors;
    this.accepted.push(
      new (class extends EchoHandler {
        override handleError(error: unknown): void {
          errors.push(error);
          this.close();
        }
      })(sock, this.channels),
    );
  }
}

class TlsClient extends Dispatcher {
  reply = "";
  securedOnConnect: boolean | undefined;
  errors: unknown[] = [];
  closed = false;
  constructor(
    map: ChannelMap,
    port: number,
    tls: { hostname?: string; caCerts?: string[] },
    readonly message = "hello over TLS",
    readonly onDone: () => void = () => {},
  ) {
    super(undefined, map);
    this.createSocket({ tls });
    this.connect({ hostname: "127.0.0.1", port });
  }
  override handleConnect(): void {
    this.securedOnConnect = this.socket!.secure;
    this.send(this.message);
  }
  override writable(): boolean {
    return !this.connected;
  }
  override handleRead(): void {
    this.reply += text(this.recv(8192));
    if (this.reply.length >= this.message.length) {
      this.close();
      this.onDone();
    }
  }
  override handleError(error: unknown): void {
    this.errors.push(error);
    this.close();
    this.onDone();
  }
  override handleClose(): void {
    this.closed = true;
    this.close();
  }
}

for (const usePoll of [false, true]) {
  Deno.test(`Dispatcher: TLS echo through loop (usePoll: ${usePoll})`, async () => {
    const map: ChannelMap = new Map();
    const server = new TlsEchoServer(map);
    const clients: TlsClient[] = [];
    let done = 0;
    for (let i = 0; i < 3; i++) {
      clients.push(
        new TlsClient(map, portOf(server), CLIENT_TLS, `message ${i}`, () => {
          if (++done === clients.length) server.close();
        }),
      );
    }
    await run(map, usePoll);
    for (const [i, client] of clients.entries()) {
      assertEquals(client.errors, []);
      assertEquals(
        client.securedOnConnect,
        true,
        "handleConnect after the handshake",
      );
      assertEquals(client.reply, `message ${i}`);
    }
  });
}

Deno.test("Dispatcher: a failed handshake reaches handleError and the loop goes on", async (t) => {
  const cases = [
    {
      name: "unknown CA",
      tls: { hostname: "localhost" }, // the test CA is not trusted
      cert: CERT,
      key: KEY,
      client: /UnknownIssuer/,
      server: /UnknownCA/,
    },
    {
      name: "wrong name asked for",
      tls: { hostname: "example.com", caCerts: [CA] },
      cert: CERT,
      key: KEY,
      client: /not valid for name "example.com"/,
      server: /BadCertificate/,
    },
    {
      name: "certificate for another name",
      tls: CLIENT_TLS,
      cert: OTHER_CERT,
      key: OTHER_KEY,
      client: /not valid for name "localhost"/,
      server: /BadCertificate/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const map: ChannelMap = new Map();
      const server = new TlsEchoServer(map, c.cert, c.key);
      let finished = 0;
      const done = () => {
        if (++finished === 2) server.close();
      };
      const bad = new TlsClient(map, portOf(server), c.tls, "x", done);
      // A good client on a server with the right certificate, in the same map.
      const goodServer = new TlsEchoServer(map);
      const good = new TlsClient(
        map,
        portOf(goodServer),
        CLIENT_TLS,
        "fine",
        () => {
          goodServer.close();
          done();
        },
      );
      await run(map);
      assertEquals(bad.errors.length, 1);
      assertInstanceOf(bad.errors[0], Deno.errors.InvalidData);
      assertMatch((bad.errors[0] as Error).message, c.client);
      assertEquals(bad.securedOnConnect, undefined, "no handleConnect");
      assertEquals(good.reply, "fine");
      assertEquals(good.errors, []);
      // The server's side of the failed handshake saw the client's alert.
      assertEquals(server.accepted.length, 1);
      assertEquals(server.errors.length, 1);
      assertInstanceOf(server.errors[0], Deno.errors.InvalidData);
      assertMatch((server.errors[0] as Error).message, c.server);
    });
  }
});

Deno.test("Dispatcher: a plaintext server fails a TLS client's handshake", async () => {
  const map: ChannelMap = new Map();
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    await conn.write(encoder.encode("220 plaintext greeting\r\n"));
    const buffer = new Uint8Array(4096);
    while ((await conn.read(buffer).catch(() => null)) !== null) {
      // drain until the client gives up
    }
    conn.close();
  })();
  const client = new TlsClient(map, listener.addr.port, CLIENT_TLS);
  await run(map);
  await serving;
  assertEquals(client.errors.length, 1);
  assertInstanceOf(client.errors[0], Deno.errors.InvalidData);
});

// ---------------------------------------------------------------------------
// STARTTLS

/** Waits until `sock` holds at least `count` received bytes. */
async function buffered(sock: Socket, count: number): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (sock.recvBuffered < count) {
    assert(performance.now() < deadline, `${count} bytes arrived`);
    // Readable already: this lets the event loop turn and the reads land.
    await select([sock], [], [], 10);
  }
}

Deno.test("Socket.startTls: plaintext and TLS pipelined around the upgrade", async () => {
  using pair = await socketPair();
  const { client, server } = pair;
  // The client pipelines plaintext and the command; it waits for the reply.
  const preamble = pattern(50_000, 7);
  const command = encoder.encode("STARTTLS\r\n");
  assertEquals(client.send(concat([preamble, command])), 50_010);
  assertEquals(
    await recvExactly(server, 50_010),
    concat([preamble, command]),
  );
  // The server's reply is still in its send buffer when it upgrades: it goes
  // out in plaintext first; what it sends after startTls() is TLS.
  const reply = concat([pattern(30_000, 3), encoder.encode("220 go\r\n")]);
  assertEquals(server.send(reply), reply.length);
  server.startTls(SERVER_TLS);
  // On the epoll backend send() went to the kernel already.
  if (BACKEND === "deno") {
    assertEquals(server.sendBuffered, reply.length, "nothing flushed yet");
  }
  assertEquals(server.send("encrypted from the server"), 25);
  assertEquals(await select([server], [server], [], 0), [[], [], []]);
  assertEquals(await recvExactly(client, reply.length), reply);
  client.startTls(CLIENT_TLS);
  assertEquals(client.send("encrypted from the client"), 25);
  assertEquals(
    text(await recvExactly(server, 25)),
    "encrypted from the client",
  );
  assertEquals(
    text(await recvExactly(client, 25)),
    "encrypted from the server",
  );
  assert(client.secure && server.secure);
  assertEquals(client.getpeername(), server.getsockname());
});

Deno.test("Socket.startTls: received bytes not yet taken are TLS input", async () => {
  using pair = await socketPair();
  const { client, server } = pair;
  // An eager client: the command, then at once its ClientHello and data.
  client.send("STARTTLS\r\n");
  client.startTls(CLIENT_TLS);
  client.send("early");
  // The ClientHello sits in the server's receive buffer behind the command.
  await buffered(server, 10 + 5);
  assertEquals(text(server.recv(10)), "STARTTLS\r\n");
  assert(server.recvBuffered > 0);
  server.startTls(SERVER_TLS);
  assertEquals(server.recvBuffered, 0, "handed to the TLS engine");
  assertEquals(text(await recvExactly(server, 5)), "early");
  assert(server.secure);
});

Deno.test("Socket.startTls: plaintext injected after STARTTLS fails the handshake", async () => {
  using pair = await socketPair();
  const { client, server } = pair;
  client.send("STARTTLS\r\nINJECTED COMMAND\r\n");
  await buffered(server, 10);
  assertEquals(text(server.recv(10)), "STARTTLS\r\n");
  server.send("220 go\r\n");
  server.startTls(SERVER_TLS);
  assertEquals(text(await recvExactly(client, 8)), "220 go\r\n");
  client.startTls(CLIENT_TLS);
  const [, , x] = await select([], [], [server], 10_000);
  assertEquals(x, [server]);
  assertInstanceOf(server.error, Deno.errors.InvalidData);
  assertFalse(server.secure);
  server.close(); // the client learns it from the alert or the close
  await select([], [client], [], 10_000);
  assert(client.error !== null);
  assertFalse(client.secure);
});

Deno.test("Socket.startTls: state checks", async () => {
  using pair = await tlsPair();
  assertThrows(
    () => pair.client.startTls(CLIENT_TLS),
    Deno.errors.AlreadyExists,
  );
  using plain = await socketPair();
  assertThrows(
    () => plain.client.startTls({ cert: CERT }),
    TypeError,
    "both cert and key",
  );
  plain.client.startTls(CLIENT_TLS);
  assertThrows(
    () => plain.client.startTls(CLIENT_TLS),
    Deno.errors.AlreadyExists,
  );
  plain.server.shutdown("write");
  assertThrows(
    () => plain.server.startTls(SERVER_TLS),
    Deno.errors.BrokenPipe,
  );
});

Deno.test("Socket.startTls: a bad certificate throws and leaves the socket as it was", async () => {
  using pair = await socketPair();
  const { client, server } = pair;
  client.send("before");
  await buffered(server, 6);
  assertThrows(() => server.startTls({ cert: "junk", key: "junk" }));
  assertFalse(server.secure);
  assertEquals(server.recvBuffered, 6, "nothing was handed over");
  assertEquals(text(server.recv(100)), "before");
  server.send("still plaintext");
  assertEquals(text(await recvExactly(client, 15)), "still plaintext");
});

Deno.test("Socket.startTls: closing during the handshake leaks nothing", async () => {
  using pair = await socketPair();
  pair.client.startTls(CLIENT_TLS);
  pair.client.close();
  pair.server.startTls(SERVER_TLS);
  await select([pair.server], [], [], 10_000);
  assert(pair.server.error !== null);
});

Deno.test("Socket.startTls: a megabyte each way, then half-closes", async () => {
  using pair = await socketPair();
  const { client, server } = pair;
  client.startTls(CLIENT_TLS);
  server.startTls(SERVER_TLS);
  const up = pattern(1 << 20, 1);
  const down = pattern(1 << 20, 2);
  const [received, echoed] = await Promise.all([
    (async () => {
      await sendAll(client, up);
      client.shutdown("write");
      return await recvAll(server);
    })(),
    (async () => {
      await sendAll(server, down);
      server.shutdown("write");
      return await recvAll(client);
    })(),
  ]);
  assertEquals(received.length, up.length);
  assertEquals(received, up);
  assertEquals(echoed, down);
});

Deno.test("Socket.startTls: over a Unix socket", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/tls.sock`;
  try {
    using listener = new Socket({ transport: "unix" });
    listener.bind({ path });
    listener.listen();
    using client = new Socket({ transport: "unix" });
    client.connect({ path });
    await waitReady(listener, "read");
    using server = listener.accept()[0];
    await waitReady(client, "write");
    client.startTls(CLIENT_TLS); // the name to verify: given, as Unix has none
    server.startTls(SERVER_TLS);
    client.send("secret");
    assertEquals(text(await recvExactly(server, 6)), "secret");
    assert(server.secure && client.secure);
    assertEquals(client.getpeername().transport, "unix");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

// An SMTP-like exchange with AsyncChat: commands pipelined before STARTTLS,
// the upgrade, then producers over TLS.

class SmtpLikeServer extends Dispatcher {
  sessions: SmtpLikeSession[] = [];
  readonly channels: ChannelMap;
  constructor(map: ChannelMap) {
    super(undefined, map);
    this.channels = map;
    this.createSocket();
    this.bind({ hostname: "127.0.0.1", port: 0 });
    this.listen(5);
  }
  override handleAccepted(sock: Socket): void {
    this.sessions.push(new SmtpLikeSession(sock, this.channels));
  }
}

class SmtpLikeSession extends AsyncChat {
  lines: string[] = [];
  securedEvents = 0;
  constructor(sock: Socket, map: ChannelMap) {
    super(sock, map);
    this.setTerminator("\r\n");
    this.push("220 ready\r\n");
  }
  #line: Uint8Array[] = [];
  override collectIncomingData(data: Uint8Array): void {
    this.#line.push(data);
  }
  override foundTerminator(): void {
    const line = text(concat(this.#line));
    this.#line = [];
    const secure = this.socket!.secure;
    this.lines.push(`${secure ? "tls" : "plain"}: ${line}`);
    if (line === "STARTTLS") {
      this.push("220 go ahead\r\n");
      this.startTls(SERVER_TLS);
    } else if (line === "LIST") {
      this.pushWithProducer(
        new LinesProducer(["alpha", "beta", "gamma", "."]),
      );
    } else if (line === "QUIT") {
      this.push("221 bye\r\n");
      this.closeWhenDone();
    } else {
      this.push(`250 ${line}\r\n`);
    }
  }
  override handleStartTls(): void {
    this.securedEvents++;
  }
}

class SmtpLikeClient extends AsyncChat {
  lines: string[] = [];
  securedEvents = 0;
  #line: Uint8Array[] = [];
  constructor(map: ChannelMap, port: number, readonly tls = CLIENT_TLS) {
    super(undefined, map);
    this.setTerminator("\r\n");
    this.createSocket();
    this.connect({ hostname: "127.0.0.1", port });
  }
  override handleConnect(): void {
    // Pipelined: the greeting, two commands and STARTTLS in one go.
    this.push("HELO one\r\nHELO two\r\nSTARTTLS\r\n");
  }
  override collectIncomingData(data: Uint8Array): void {
    this.#line.push(data);
  }
  override foundTerminator(): void {
    const line = text(concat(this.#line));
    this.#line = [];
    this.lines.push(`${this.socket!.secure ? "tls" : "plain"}: ${line}`);
    if (line === "220 go ahead") {
      this.startTls(this.tls);
      // Queued while the handshake runs; sent encrypted after it.
      this.push("HELO three\r\nLIST\r\n");
    } else if (line === ".") {
      this.push("QUIT\r\n");
    }
  }
  override handleStartTls(): void {
    this.securedEvents++;
  }
  override handleClose(): void {
    this.close();
  }
}

for (const usePoll of [false, true]) {
  Deno.test(`Dispatcher.startTls: an SMTP-like session with AsyncChat and producers (usePoll: ${usePoll})`, async () => {
    const map: ChannelMap = new Map();
    const server = new SmtpLikeServer(map);
    const client = new SmtpLikeClient(map, portOf(server));
    const originalClose = client.close.bind(client);
    client.close = () => {
      originalClose();
      server.close();
    };
    await run(map, usePoll);
    assertEquals(server.sessions.length, 1);
    const session = server.sessions[0];
    assertEquals(session.lines, [
      "plain: HELO one",
      "plain: HELO two",
      "plain: STARTTLS",
      "tls: HELO three",
      "tls: LIST",
      "tls: QUIT",
    ]);
    assertEquals(client.lines, [
      "plain: 220 ready",
      "plain: 250 HELO one",
      "plain: 250 HELO two",
      "plain: 220 go ahead",
      "tls: 250 HELO three",
      "tls: alpha",
      "tls: beta",
      "tls: gamma",
      "tls: .",
      "tls: 221 bye",
    ]);
    assertEquals([session.securedEvents, client.securedEvents], [1, 1]);
  });
}

Deno.test("Dispatcher.startTls: 50 sessions upgrade at once on one loop", async () => {
  const map: ChannelMap = new Map();
  const server = new SmtpLikeServer(map);
  const clients: SmtpLikeClient[] = [];
  let closed = 0;
  for (let i = 0; i < 50; i++) {
    const client = new SmtpLikeClient(map, portOf(server));
    const close = client.close.bind(client);
    client.close = () => {
      close();
      if (++closed === 50) server.close();
    };
    clients.push(client);
  }
  await run(map);
  for (const client of clients) {
    assertEquals(client.lines.at(-1), "tls: 221 bye");
    assertEquals(client.lines.length, 10);
    assertEquals(client.securedEvents, 1);
  }
  assertEquals(server.sessions.length, 50);
});

Deno.test("Dispatcher.startTls: a rejected certificate reaches handleError on both sides", async () => {
  const map: ChannelMap = new Map();
  const server = new SmtpLikeServer(map);
  const errors: unknown[] = [];
  const client = new (class extends SmtpLikeClient {
    override handleError(error: unknown): void {
      errors.push(error);
      this.close();
      server.close();
    }
  })(map, portOf(server), { hostname: "localhost", caCerts: [] });
  let sessionError: unknown;
  const accept = server.handleAccepted.bind(server);
  server.handleAccepted = (sock) => {
    accept(sock);
    server.sessions.at(-1)!.handleError = function (error) {
      sessionError = error;
      this.close();
    };
  };
  await run(map);
  assertEquals(errors.length, 1);
  assertInstanceOf(errors[0], Deno.errors.InvalidData);
  assertMatch((errors[0] as Error).message, /UnknownIssuer/);
  assertEquals(client.securedEvents, 0);
  assertInstanceOf(sessionError, Deno.errors.InvalidData);
  assertStrictEquals(server.sessions[0].securedEvents, 0);
});

// STARTTLS behind a long queue: what a channel queued before startTls() is
// more than any socket buffer holds (the epoll backend's kernel takes about
// 4 MB), so the upgrade has to wait until it has all gone in plaintext.

const LONG_REPLY = pattern(6 << 20);
const PRODUCED = pattern(2 << 20, 5);
const GO = encoder.encode("220 go\r\n");

/** A producer of `data` in pieces of 64 KiB. */
function piecesOf(data: Uint8Array): { more(): Uint8Array } {
  let at = 0;
  return {
    more() {
      const piece = data.subarray(at, at + 65536);
      at += piece.length;
      return piece;
    },
  };
}

/** Listens; hands each accepted socket to `serve`. */
class UpgradeServer extends Dispatcher {
  constructor(map: ChannelMap, readonly serve: (sock: Socket) => void) {
    super(undefined, map);
    this.createSocket();
    this.bind({ hostname: "127.0.0.1", port: 0 });
    this.listen(5);
  }
  override handleAccepted(sock: Socket): void {
    this.serve(sock);
    this.close(); // one client
  }
}

/** Answers "ping" with "pong", noting each line and whether it was TLS. */
class PingSession extends AsyncChat {
  lines: string[] = [];
  securedEvents = 0;
  errors: unknown[] = [];
  constructor(sock: Socket, map: ChannelMap) {
    super(sock, map);
    this.setTerminator("\r\n");
  }
  override foundTerminator(): void {
    const line = text(this.getData());
    this.lines.push(`${this.socket!.secure ? "tls" : "plain"}: ${line}`);
    if (line === "ping") this.push("pong\r\n");
  }
  override handleStartTls(): void {
    this.securedEvents++;
  }
  override handleError(error: unknown): void {
    this.errors.push(error);
    this.close();
  }
}

/** Runs the loop over `map` in the background until `stop()`. */
function serveInBackground(map: ChannelMap): { stop(): Promise<void> } {
  const controller = new AbortController();
  const running = loop({ map, timeout: 1000, signal: controller.signal });
  return {
    async stop() {
      controller.abort();
      await running.catch(() => {});
      closeAll(map, true);
    },
  };
}

/**
 * A client that reads `expected` in plaintext in small pieces, slower than
 * the server sends, then upgrades, pings over TLS and reads `answer`.
 */
async function slowClient(
  client: Socket,
  expected: Uint8Array,
  answer = "pong\r\n",
): Promise<void> {
  const chunks: Uint8Array[] = [];
  let got = 0;
  while (got < expected.length) {
    await waitReady(client, "read");
    const data = client.recv(Math.min(16384, expected.length - got));
    assert(data.length > 0, `end of stream after ${got} plaintext bytes`);
    chunks.push(data);
    got += data.length;
  }
  assert(equals(concat(chunks), expected), "the plaintext arrived intact");
  client.startTls(CLIENT_TLS);
  client.send("ping\r\n");
  assertEquals(text(await recvExactly(client, answer.length)), answer);
  assert(client.secure);
}

Deno.test("AsyncChat.startTls: 8 MiB queued before it (a producer too) go in plaintext to a slow reader, then TLS both ways", async () => {
  const map: ChannelMap = new Map();
  let session: PingSession | undefined;
  let queuedAtCall = 0;
  const server = new UpgradeServer(map, (sock) => {
    session = new PingSession(sock, map);
    session.push(LONG_REPLY);
    session.pushWithProducer(piecesOf(PRODUCED));
    session.push(GO);
    session.startTls(SERVER_TLS);
    // The channel's own queue still holds bytes: the upgrade waits.
    queuedAtCall = session.sendBuffered - session.socket!.sendBuffered;
    session.push("sent after startTls(): encrypted\r\n");
  });
  const serving = serveInBackground(map);
  try {
    using client = new Socket();
    client.connect({ hostname: "127.0.0.1", port: portOf(server) });
    await slowClient(
      client,
      concat([LONG_REPLY, PRODUCED, GO]),
      "sent after startTls(): encrypted\r\npong\r\n",
    );
    assert(queuedAtCall > 0, "the queue outgrew the socket's buffer");
    assertEquals(session!.lines, ["tls: ping"]);
    assertEquals(session!.securedEvents, 1);
    assertEquals(session!.errors, []);
  } finally {
    await serving.stop();
  }
});

Deno.test("AsyncChat.startTls: plaintext a client sends while the upgrade waits is TLS input, never a command", async () => {
  const map: ChannelMap = new Map();
  let session: PingSession | undefined;
  const server = new UpgradeServer(map, (sock) => {
    session = new PingSession(sock, map);
    session.push(LONG_REPLY);
    session.push(GO);
    session.startTls(SERVER_TLS);
  });
  const serving = serveInBackground(map);
  try {
    using client = new Socket();
    client.connect({ hostname: "127.0.0.1", port: portOf(server) });
    // Injected before the client has read the 220.
    await waitReady(client, "write");
    client.send("NOOP\r\n");
    await recvExactly(client, LONG_REPLY.length + GO.length);
    client.startTls(CLIENT_TLS);
    // The server's engine reads "NOOP\r\n" as a malformed record: the
    // handshake fails (had the channel read it, it would succeed).
    const [r, w] = await select([client], [client], [], 10_000);
    assertEquals(r.length + w.length > 0, true, "the handshake ended");
    assertEquals(session!.lines, []);
    assertFalse(client.secure);
    assertInstanceOf(client.error, Error);
    assertEquals(session!.securedEvents, 0);
  } finally {
    await serving.stop();
  }
});

Deno.test("AsyncChat.startTls: the rest of the read that held STARTTLS is dropped, not run as plaintext commands", async () => {
  const map: ChannelMap = new Map();
  let session: PingSession | undefined;
  const server = new UpgradeServer(map, (sock) => {
    session = new (class extends PingSession {
      override foundTerminator(): void {
        super.foundTerminator();
        if (this.lines.at(-1) === "plain: STARTTLS") {
          this.push(GO);
          this.startTls(SERVER_TLS);
        }
      }
    })(sock, map);
  });
  const serving = serveInBackground(map);
  try {
    using client = new Socket();
    client.connect({ hostname: "127.0.0.1", port: portOf(server) });
    await waitReady(client, "write");
    // Pipelined past STARTTLS in one segment (CVE-2011-0411's injection);
    // the held-back "\r" must not prefix the decrypted input either.
    client.send("STARTTLS\r\nping\r\n\r");
    await slowClient(client, GO);
    assertEquals(session!.lines, ["plain: STARTTLS", "tls: ping"]);
    assertEquals(session!.securedEvents, 1);
  } finally {
    await serving.stop();
  }
});

Deno.test("DispatcherWithSend.startTls: 8 MiB buffered before it go in plaintext to a slow reader, then TLS both ways", async () => {
  const map: ChannelMap = new Map();
  const received: string[] = [];
  let queuedAtCall = 0;
  let securedEvents = 0;
  const server = new UpgradeServer(map, (sock) => {
    const channel = new (class extends DispatcherWithSend {
      override handleRead(): void {
        const data = text(this.recv(64));
        received.push(`${this.socket!.secure ? "tls" : "plain"}: ${data}`);
        if (data === "ping\r\n") this.send("pong\r\n");
      }
      override handleStartTls(): void {
        securedEvents++;
      }
    })(sock, map);
    channel.send(concat([LONG_REPLY, PRODUCED]));
    channel.send(GO);
    channel.startTls(SERVER_TLS);
    queuedAtCall = channel.sendBuffered - channel.socket!.sendBuffered;
  });
  const serving = serveInBackground(map);
  try {
    using client = new Socket();
    client.connect({ hostname: "127.0.0.1", port: portOf(server) });
    await slowClient(client, concat([LONG_REPLY, PRODUCED, GO]));
    assert(queuedAtCall > 0, "the buffer outgrew the socket's");
    assertEquals(received, ["tls: ping\r\n"]);
    assertEquals(securedEvents, 1);
  } finally {
    await serving.stop();
  }
});

// ---------------------------------------------------------------------------
// STARTTLS against CPython's ssl module, on both sides.

const FIXTURES = new URL("./fixtures/tls/", import.meta.url).pathname;

const PY_CLIENT = `
import socket, ssl, sys
port, fixtures = int(sys.argv[1]), sys.argv[2]
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
f = sock.makefile("rb", buffering=0)
def line(f):
    out = b""
    while not out.endswith(b"\\r\\n"):
        out += f.read(1)
    return out.decode()
print(line(f), end="")
sock.sendall(b"STARTTLS\\r\\n")
print(line(f), end="")
ctx = ssl.create_default_context(cafile=fixtures + "ca.crt")
tls = ctx.wrap_socket(sock, server_hostname="localhost")
f = tls.makefile("rb", buffering=0)
tls.sendall(b"HELO python\\r\\n")
print(line(f), end="")
tls.sendall(b"QUIT\\r\\n")
print(line(f), end="")
print(tls.version())
`;

const PY_SERVER = `
import socket, ssl, sys
fixtures = sys.argv[1]
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.settimeout(10)
f = conn.makefile("rb", buffering=0)
def line(f):
    out = b""
    while not out.endswith(b"\\r\\n"):
        out += f.read(1)
    return out.decode()
conn.sendall(b"220 python here\\r\\n")
assert line(f) == "STARTTLS\\r\\n"
conn.sendall(b"220 go\\r\\n")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(fixtures + "localhost.crt", fixtures + "localhost.key")
tls = ctx.wrap_socket(conn, server_side=True)
f = tls.makefile("rb", buffering=0)
got = line(f)
tls.sendall(("echo " + got).encode())
print(tls.version(), got, end="")
tls.unwrap()
tls.close()
`;

Deno.test({
  name: "Dispatcher.startTls (server side) with CPython's ssl as the client",
  ignore: !hasPythonSsl,
  async fn() {
    const map: ChannelMap = new Map();
    const server = new SmtpLikeServer(map);
    const python = new Deno.Command("python3", {
      args: ["-c", PY_CLIENT, String(portOf(server)), FIXTURES],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = python.output();
    // The session closes itself after QUIT; then the listener goes too.
    const serving = run(map);
    const { code, stdout, stderr } = await output;
    server.close();
    await serving;
    assertEquals([code, text(stderr)], [0, ""]);
    assertMatch(
      text(stdout),
      /^220 ready\r\n220 go ahead\r\n250 HELO python\r\n221 bye\r\nTLSv1\.[23]\n$/,
    );
    assertEquals(server.sessions[0].lines, [
      "plain: STARTTLS",
      "tls: HELO python",
      "tls: QUIT",
    ]);
  },
});

Deno.test({
  name: "Socket.startTls (client side) with CPython's ssl as the server",
  ignore: !hasPythonSsl,
  async fn() {
    const python = new Deno.Command("python3", {
      args: ["-c", PY_SERVER, FIXTURES],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = python.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let printed = "";
    while (!printed.includes("\n")) {
      const { value, done } = await reader.read();
      assertFalse(done, "python3 printed its port");
      printed += value;
    }
    const port = Number(printed.split("\n")[0]);
    using client = new Socket();
    client.connect({ hostname: "127.0.0.1", port });
    const recvLine = async () => {
      let line = "";
      while (!line.endsWith("\r\n")) line += text(await recvExactly(client, 1));
      return line;
    };
    assertEquals(await recvLine(), "220 python here\r\n");
    client.send("STARTTLS\r\n");
    assertEquals(await recvLine(), "220 go\r\n");
    client.startTls(CLIENT_TLS);
    client.send("ping\r\n");
    assertEquals(await recvLine(), "echo ping\r\n");
    assert(client.secure);
    // Python's unwrap() sends close_notify (a clean end of stream here) and
    // waits for ours, which shutdown("write") sends.
    assertEquals(await recvAll(client), new Uint8Array(0));
    client.shutdown("write");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      printed += value;
    }
    const { code } = await python.status;
    const stderr = await new Response(python.stderr).text();
    assertEquals([code, stderr], [0, ""]);
    assertMatch(printed, /^\d+\nTLSv1\.[23] ping\r\n$/);
  },
});
