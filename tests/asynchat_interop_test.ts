// Interop with CPython's asynchat: a CPython server against our client and
// our server against a CPython client, speaking a small protocol of CRLF
// lines and counted binary payloads (so both line and byte-count
// terminators, pipelining and output queues are crossed). Skipped, with a
// message, when python3 with asyncore/asynchat (3.11 or older) is absent.

import { AsyncChat } from "../asynchat.ts";
import { type ChannelMap, Dispatcher } from "../asyncore.ts";
import type { Socket } from "../select.ts";
import { assertEquals } from "@std/assert";
import { concat } from "@std/bytes";
import { runLoop, text } from "./_asynchat_helpers.ts";
import { hasPythonAsyncore, Peer } from "./_helpers.ts";

if (!hasPythonAsyncore) {
  console.log(
    "asynchat interop tests skipped: python3 with asyncore and asynchat (3.11 or older) is not installed",
  );
}

// The protocol. Requests, each ending in CRLF:
//   HELLO <name>          -> "250 hello <name>"
//   DATA <n> + n bytes    -> "250 <n> <checksum>"
//   ECHO <n> + n bytes    -> "DATA <n>" + the n bytes
//   QUIT                  -> "221 bye", then the server closes
// A client records a DATA reply as "DATA <n> <checksum>".

/** Payload bytes: `(i * 31 + seed) % 256`, so CR and LF turn up inside. */
function payload(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) % 256;
  return out;
}

function checksum(data: Uint8Array): number {
  let sum = 0;
  for (const b of data) sum = (sum + b) % 65521;
  return sum;
}

const SMALL = 1000;
const LARGE = 200_000; // larger than every buffer on the way

function script(): Uint8Array {
  const enc = new TextEncoder();
  return concat([
    enc.encode("HELLO deno\r\n"),
    enc.encode(`DATA ${SMALL}\r\n`),
    payload(SMALL, 1),
    enc.encode(`ECHO ${LARGE}\r\n`),
    payload(LARGE, 2),
    enc.encode("HELLO again\r\nQUIT\r\n"),
  ]);
}

const EXPECTED = [
  "250 hello deno",
  `250 ${SMALL} ${checksum(payload(SMALL, 1))}`,
  `DATA ${LARGE} ${checksum(payload(LARGE, 2))}`,
  "250 hello again",
  "221 bye",
];

const PYTHON_COMMON = `
import asyncore, asynchat, json, signal, socket, sys
signal.alarm(30)

def payload(n, seed):
    return bytes((i * 31 + seed) % 256 for i in range(n))

def checksum(data):
    return sum(data) % 65521
`;

const PYTHON_SERVER = PYTHON_COMMON + `
class Handler(asynchat.async_chat):
    def __init__(self, sock):
        asynchat.async_chat.__init__(self, sock)
        self.set_terminator(b"\\r\\n")
        self.buf = []
        self.mode = None

    def collect_incoming_data(self, data):
        self.buf.append(data)

    def found_terminator(self):
        data = b"".join(self.buf)
        self.buf = []
        if self.mode:
            kind, self.mode = self.mode, None
            self.set_terminator(b"\\r\\n")
            if kind == "DATA":
                self.push(b"250 %d %d\\r\\n" % (len(data), checksum(data)))
            else:
                self.push(b"DATA %d\\r\\n" % len(data) + data)
            return
        words = data.decode().split(" ")
        if words[0] == "HELLO":
            self.push(("250 hello %s\\r\\n" % words[1]).encode())
        elif words[0] in ("DATA", "ECHO"):
            self.mode = words[0]
            self.set_terminator(int(words[1]))
        elif words[0] == "QUIT":
            self.push(b"221 bye\\r\\n")
            self.close_when_done()

class Server(asyncore.dispatcher):
    def __init__(self):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(5)

    def handle_accepted(self, sock, addr):
        Handler(sock)
        self.close()

server = Server()
print(server.socket.getsockname()[1], flush=True)
asyncore.loop(timeout=0.05, use_poll=sys.argv[1] == "poll")
print("done", flush=True)
`;

const PYTHON_CLIENT = PYTHON_COMMON + `
class Client(asynchat.async_chat):
    def __init__(self, port):
        asynchat.async_chat.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(("127.0.0.1", port))
        self.set_terminator(b"\\r\\n")
        self.buf = []
        self.replies = []
        self.echo = False
        self.push(b"HELLO python\\r\\n")
        self.push(b"DATA 1000\\r\\n" + payload(1000, 1))
        self.push_with_producer(asynchat.simple_producer(
            b"ECHO 200000\\r\\n" + payload(200000, 2), 4096))
        self.push(b"HELLO again\\r\\nQUIT\\r\\n")

    def handle_connect(self):
        pass

    def collect_incoming_data(self, data):
        self.buf.append(data)

    def found_terminator(self):
        data = b"".join(self.buf)
        self.buf = []
        if self.echo:
            self.echo = False
            self.set_terminator(b"\\r\\n")
            self.replies.append("DATA %d %d" % (len(data), checksum(data)))
            return
        line = data.decode()
        if line.startswith("DATA "):
            self.echo = True
            self.set_terminator(int(line.split(" ")[1]))
        else:
            self.replies.append(line)

    def handle_close(self):
        self.close()

client = Client(int(sys.argv[1]))
asyncore.loop(timeout=0.05)
print(json.dumps(client.replies), flush=True)
`;

/** Our side of the protocol, server end. */
class Handler extends AsyncChat {
  #mode: "DATA" | "ECHO" | null = null;

  constructor(sock: Socket, map: ChannelMap) {
    super(sock, map);
    this.setTerminator("\r\n");
  }

  override foundTerminator(): void {
    const data = this.getData();
    if (this.#mode !== null) {
      const kind = this.#mode;
      this.#mode = null;
      this.setTerminator("\r\n");
      if (kind === "DATA") {
        this.push(`250 ${data.length} ${checksum(data)}\r\n`);
      } else {
        this.push(`DATA ${data.length}\r\n`);
        this.push(data);
      }
      return;
    }
    const [verb, arg] = text(data).split(" ");
    if (verb === "HELLO") {
      this.push(`250 hello ${arg}\r\n`);
    } else if (verb === "DATA" || verb === "ECHO") {
      this.#mode = verb;
      this.setTerminator(Number(arg));
    } else if (verb === "QUIT") {
      this.push("221 bye\r\n");
      this.closeWhenDone();
    }
  }
}

class Server extends Dispatcher {
  constructor(readonly map: ChannelMap) {
    super(undefined, map);
    this.createSocket();
    this.bind({ hostname: "127.0.0.1", port: 0 });
    this.listen(5);
  }
  override handleAccepted(sock: Socket): void {
    new Handler(sock, this.map);
    this.close();
  }
}

/** Our side of the protocol, client end. */
class Client extends AsyncChat {
  replies: string[] = [];
  #echo = false;

  constructor(port: number, map: ChannelMap) {
    super(undefined, map);
    this.createSocket();
    this.connect({ hostname: "127.0.0.1", port });
    this.setTerminator("\r\n");
    this.push(script());
  }

  override handleConnect(): void {}

  override foundTerminator(): void {
    const data = this.getData();
    if (this.#echo) {
      this.#echo = false;
      this.setTerminator("\r\n");
      this.replies.push(`DATA ${data.length} ${checksum(data)}`);
      return;
    }
    const line = text(data);
    if (line.startsWith("DATA ")) {
      this.#echo = true;
      this.setTerminator(Number(line.split(" ")[1]));
    } else {
      this.replies.push(line);
    }
  }
}

Deno.test("asynchat interop: our client and our server (control)", async () => {
  const map: ChannelMap = new Map();
  const server = new Server(map);
  const client = new Client(
    (server.getsockname() as Deno.NetAddr).port,
    map,
  );
  await runLoop(map);
  assertEquals(client.replies, EXPECTED);
});

for (const flavour of ["select", "poll"]) {
  Deno.test({
    name:
      `asynchat interop: a CPython asynchat server (${flavour}) and our client`,
    ignore: !hasPythonAsyncore,
    async fn() {
      await using python = Peer.pythonCode(PYTHON_SERVER, [flavour]);
      const port = Number(await python.line());
      const map: ChannelMap = new Map();
      const client = new Client(port, map);
      await runLoop(map, { usePoll: flavour === "poll" });
      assertEquals(client.replies, EXPECTED);
      assertEquals(await python.line(), "done");
      await python.exit();
    },
  });
}

Deno.test({
  name: "asynchat interop: our server and a CPython asynchat client",
  ignore: !hasPythonAsyncore,
  async fn() {
    const map: ChannelMap = new Map();
    const server = new Server(map);
    await using python = Peer.pythonCode(PYTHON_CLIENT, [
      String((server.getsockname() as Deno.NetAddr).port),
    ]);
    await runLoop(map);
    const replies = JSON.parse(await python.line());
    assertEquals(replies, ["250 hello python", ...EXPECTED.slice(1)]);
    await python.exit();
  },
});
