// The hostile-caller cases: every public call that takes caller memory or a
// descriptor, given typed arrays that lie about themselves (own `length`,
// `byteLength`, `byteOffset` or `buffer` properties, getters that throw,
// subclasses, Proxies, imitations), detached, resizable and shared buffers,
// and descriptors that are not what they claim. tests/hostile_test.ts runs
// each in its own process (tests/fixtures/hostile_case.ts) under the suite's
// backend and compares the line the case prints with `expect`: a crash, or a
// byte read or written outside the caller's view, shows as a signal or a
// different line.

import {
  Dispatcher,
  DispatcherWithSend,
  FileDispatcher,
  FileWrapper,
} from "../asyncore.ts";
import { AsyncChat, findPrefixAtEnd } from "../asynchat.ts";
import { BufferListProducer, SimpleProducer } from "../producers.ts";
import { Poll, POLLIN, select, Socket } from "../select.ts";
import { StreamChannel } from "../streams.ts";
import type { Backend } from "../socket.ts";
import { pipe } from "./_epoll_helpers.ts";
import { socketPair, waitReady } from "./_helpers.ts";

/** One case: what it does, and the line it must print on each backend. */
export interface HostileCase {
  /** Runs the case; what it returns is printed as JSON. */
  run(): Promise<unknown>;
  /** `result <JSON>` or `throws <class>: <message>`, per backend or both. */
  expect: string | Record<Backend, string>;
}

const SIZE = 16;
// What a lying array claims: far past the 16 bytes it holds.
const CLAIM = 1 << 20;

/** 16 bytes, 0x00 to 0x0f, in an array of their own. */
function sixteen(): Uint8Array<ArrayBuffer> {
  return Uint8Array.from({ length: SIZE }, (_, i) => i);
}

function define(array: Uint8Array, key: string, value: unknown): Uint8Array {
  Object.defineProperty(array, key, { value, configurable: true });
  return array;
}

function throwing(array: Uint8Array, keys: string[]): Uint8Array {
  for (const key of keys) {
    Object.defineProperty(array, key, {
      get() {
        throw new Error(`${key} getter called`);
      },
    });
  }
  return array;
}

/** A subclass whose size getters and copying methods all lie. */
class LyingBytes extends Uint8Array {
  override get length(): number {
    return CLAIM;
  }
  override get byteLength(): number {
    return CLAIM;
  }
  override get byteOffset(): number {
    return CLAIM;
  }
  override get buffer(): ArrayBuffer {
    return new ArrayBuffer(CLAIM);
  }
  override subarray(): Uint8Array<ArrayBuffer> {
    return new Uint8Array(CLAIM).fill(0xee);
  }
  override slice(): Uint8Array<ArrayBuffer> {
    return new Uint8Array(CLAIM).fill(0xee);
  }
  override set(): void {
    throw new Error("set called");
  }
}

/** A subclass whose methods throw when called. */
class ThrowingBytes extends Uint8Array {
  override subarray(): Uint8Array<ArrayBuffer> {
    throw new Error("subarray called");
  }
  override slice(): Uint8Array<ArrayBuffer> {
    throw new Error("slice called");
  }
  override set(): void {
    throw new Error("set called");
  }
}

/** The hostile arrays: each views 16 bytes, 0x00 to 0x0f (or none at all). */
export const ARRAYS: Record<string, () => unknown> = {
  ownLength: () => define(sixteen(), "length", CLAIM),
  ownByteLength: () => define(sixteen(), "byteLength", CLAIM),
  ownByteOffset: () => define(sixteen(), "byteOffset", CLAIM),
  ownBuffer: () => define(sixteen(), "buffer", new ArrayBuffer(CLAIM)),
  throwingGetters: () =>
    throwing(sixteen(), ["length", "byteLength", "byteOffset", "buffer"]),
  // Reading its length would pull the memory away under the call.
  detachingGetter: () => {
    const array = sixteen();
    Object.defineProperty(array, "length", {
      get() {
        array.buffer.transfer();
        return SIZE;
      },
    });
    return array;
  },
  lyingSubclass: () => new LyingBytes(sixteen()),
  throwingSubclass: () => new ThrowingBytes(sixteen()),
  // 16 bytes in the middle of 64, claiming the rest.
  lyingWindow: () => {
    const whole = new Uint8Array(64).fill(0xee);
    whole.set(sixteen(), 24);
    return define(whole.subarray(24, 40), "length", 40);
  },
  proxy: () => new Proxy(sixteen(), {}),
  lyingProxy: () =>
    new Proxy(sixteen(), {
      get: (target, key) =>
        key === "length" || key === "byteLength"
          ? CLAIM
          : Reflect.get(target, key),
    }),
  imitation: () => {
    const fake = Object.create(Uint8Array.prototype);
    Object.defineProperty(fake, "length", { value: CLAIM });
    return fake;
  },
  detached: () => {
    const array = sixteen();
    array.buffer.transfer();
    return array;
  },
  // A fixed view that a resizable buffer shrank below.
  outOfBounds: () => {
    const buffer = new ArrayBuffer(64, { maxByteLength: 64 });
    const array = new Uint8Array(buffer, 32, SIZE);
    buffer.resize(8);
    return array;
  },
  // A length-tracking view of a buffer shrunk to 16 bytes.
  resizable: () => {
    const buffer = new ArrayBuffer(64, { maxByteLength: 64 });
    const array = new Uint8Array(buffer);
    buffer.resize(SIZE);
    array.set(sixteen());
    return array;
  },
  shared: () => {
    const array = new Uint8Array(new SharedArrayBuffer(SIZE));
    array.set(sixteen());
    return array;
  },
};

const WRONG_TYPE =
  "a Uint8Array that is not one (a Proxy, or an object not made by a typed array constructor)";
const NO_MEMORY =
  "views no memory: its ArrayBuffer is detached (transferred), or it is out of bounds of a resizable ArrayBuffer that shrank";

/** How a call must answer each array, by the array's kind. */
function outcome(
  kind: string,
  name: string,
  expected: string,
  right: string,
): string {
  if (kind === "proxy" || kind === "lyingProxy" || kind === "imitation") {
    return `throws TypeError: ${name} must be ${expected}, got ${WRONG_TYPE}`;
  }
  if (kind === "detached" || kind === "outOfBounds") {
    return `throws TypeError: ${name} ${NO_MEMORY}`;
  }
  return right;
}

// ---- Setting up: real loopback sockets on the suite's backend.

/** A connected pair: [ours, the peer's]. */
async function connectedPair(): Promise<[Socket, Socket]> {
  const { listener, client, server } = await socketPair();
  listener.close();
  return [client, server];
}

/** Everything `sock` receives until end of stream, as hex. */
async function receiveAll(sock: Socket): Promise<string> {
  const parts: string[] = [];
  let total = 0;
  for (;;) {
    await waitReady(sock, "read");
    const data = sock.recv(65536);
    if (data.length === 0) break;
    total += data.length;
    // More than anyone sent: memory that was not the caller's.
    if (total > CLAIM) throw new Error(`received ${total} bytes`);
    parts.push(hex(data));
  }
  return parts.join("");
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const SENT = hex(sixteen());
const FILLED = "ab".repeat(SIZE);

/** Sends with `send`, closes, and reports its count and what the peer got. */
async function sent(
  send: (sock: Socket) => unknown,
): Promise<{ count: unknown; peer: string }> {
  const [sock, peer] = await connectedPair();
  let count: unknown;
  try {
    count = send(sock);
  } finally {
    sock.close();
  }
  return { count, peer: await receiveAll(peer) };
}

/**
 * Makes 64 KiB wait to be received, receives with `receive` into `array`,
 * and reports its count and the 16 bytes `array` really views.
 */
async function received(
  array: unknown,
  receive: (sock: Socket, array: unknown) => unknown,
): Promise<{ count: unknown; array: string }> {
  const [sock, peer] = await connectedPair();
  peer.send(new Uint8Array(65536).fill(0xab));
  await waitReady(sock, "read");
  const count = receive(sock, array);
  return { count, array: hex(new Uint8Array(realBytes(array))) };
}

/** The bytes an array views, read past anything it says of itself. */
function realBytes(array: unknown): ArrayBuffer {
  const TypedArray = Object.getPrototypeOf(Uint8Array.prototype);
  const get = (key: string) =>
    Reflect.apply(
      Object.getOwnPropertyDescriptor(TypedArray, key)!.get!,
      array,
      [],
    );
  const buffer = get("buffer") as ArrayBuffer;
  const offset = get("byteOffset") as number;
  return buffer.slice(offset, offset + (get("byteLength") as number));
}

// ---- The cases.

const cases: Record<string, HostileCase> = {};

const SEND_RIGHT = `result {"count":16,"peer":"${SENT}"}`;
const RECEIVE_RIGHT = `result {"count":16,"array":"${FILLED}"}`;

for (const [kind, make] of Object.entries(ARRAYS)) {
  cases[`Socket.send(${kind})`] = {
    run: () => sent((sock) => sock.send(make() as Uint8Array)),
    expect: outcome(kind, "data", "a Uint8Array or a string", SEND_RIGHT),
  };
  // Receiving into a proxy or an imitation has no real bytes to report.
  cases[`Socket.recvInto(${kind})`] = {
    run: () =>
      received(make(), (sock, array) => sock.recvInto(array as Uint8Array)),
    expect: outcome(kind, "buffer", "a Uint8Array", RECEIVE_RIGHT),
  };
}

const LIARS = ["ownLength", "lyingSubclass", "proxy", "detached"];
for (const kind of LIARS) {
  const make = ARRAYS[kind];
  cases[`Dispatcher.send(${kind})`] = {
    run: () =>
      sent((sock) =>
        new Dispatcher(sock, new Map()).send(make() as Uint8Array)
      ),
    expect: outcome(kind, "data", "a Uint8Array or a string", SEND_RIGHT),
  };
  // Proxies and detached buffers reach these through the checks above.
  if (kind === "ownLength" || kind === "lyingSubclass") {
    cases[`Dispatcher.recvInto(${kind})`] = {
      run: () =>
        received(
          make(),
          (sock, array) =>
            new Dispatcher(sock, new Map()).recvInto(array as Uint8Array),
        ),
      expect: outcome(kind, "buffer", "a Uint8Array", RECEIVE_RIGHT),
    };
    cases[`DispatcherWithSend.send(${kind})`] = {
      run: () =>
        sent((sock) =>
          new DispatcherWithSend(sock, new Map()).send(make() as Uint8Array)
        ),
      expect: outcome(kind, "data", "a Uint8Array or a string", SEND_RIGHT),
    };
  }
  cases[`AsyncChat.push(${kind})`] = {
    run: () =>
      sent((sock) => new AsyncChat(sock, new Map()).push(make() as Uint8Array)),
    expect: outcome(
      kind,
      "data",
      "a Uint8Array or a string",
      `result {"peer":"${SENT}"}`,
    ),
  };
  cases[`FileWrapper.write(${kind})`] = {
    run: () => {
      using fds = pipe();
      using wrapper = new FileWrapper(fds.write.fd);
      const count = wrapper.write(make() as Uint8Array);
      wrapper.close();
      fds.write.close();
      using reader = new FileWrapper(fds.read.fd);
      return Promise.resolve({ count, peer: hex(reader.read(CLAIM)) });
    },
    expect: outcome(kind, "data", "a Uint8Array or a string", SEND_RIGHT),
  };
  cases[`FileWrapper.recvInto(${kind})`] = {
    run: () => {
      using fds = pipe();
      using writer = new FileWrapper(fds.write.fd);
      writer.write(new Uint8Array(4096).fill(0xab));
      using wrapper = new FileWrapper(fds.read.fd);
      const array = make();
      const count = wrapper.recvInto(array as Uint8Array);
      return Promise.resolve({
        count,
        array: hex(new Uint8Array(realBytes(array))),
      });
    },
    expect: outcome(kind, "buffer", "a Uint8Array", RECEIVE_RIGHT),
  };
}

cases["Socket.recvInto(ownLength, 32)"] = {
  run: () =>
    received(
      ARRAYS.ownLength(),
      (sock, array) => sock.recvInto(array as Uint8Array, 32),
    ),
  expect:
    "throws RangeError: nbytes must be at most the buffer's length (16), got 32",
};
// The mixed-up kinds once each for the rest of the calls taking bytes.
cases["AsyncChat.pushWithProducer(lyingSubclass)"] = {
  run: () =>
    sent((sock) =>
      new AsyncChat(sock, new Map()).pushWithProducer(
        ARRAYS.lyingSubclass() as Uint8Array,
      )
    ),
  expect: `result {"peer":"${SENT}"}`,
};
cases["AsyncChat.pushWithProducer(producer of lyingSubclass)"] = {
  run: () =>
    sent((sock) => {
      let given = false;
      new AsyncChat(sock, new Map()).pushWithProducer({
        more: () => {
          if (given) return new Uint8Array(0);
          given = true;
          return ARRAYS.lyingSubclass() as Uint8Array;
        },
      });
    }),
  expect: `result {"peer":"${SENT}"}`,
};
cases["AsyncChat.setTerminator(ownLength)"] = {
  run: async () => {
    const [sock, peer] = await connectedPair();
    const records: string[] = [];
    const chat = new class extends AsyncChat {
      override foundTerminator(): void {
        records.push(hex(this.getData()));
      }
    }(sock, new Map());
    chat.setTerminator(ARRAYS.ownLength() as Uint8Array);
    peer.send(new Uint8Array([0xab, 0xab, ...sixteen(), 0xcd]));
    peer.close();
    while (records.length === 0 && chat.connected) {
      await waitReady(sock, "read");
      chat.handleRead();
    }
    return records;
  },
  expect: `result ["abab"]`,
};
cases["AsyncChat.setTerminator(proxy)"] = {
  run: async () => {
    const [sock] = await connectedPair();
    new AsyncChat(sock, new Map()).setTerminator(
      ARRAYS.proxy() as Uint8Array,
    );
  },
  expect:
    `throws TypeError: term must be a string, a Uint8Array, a number or null, got ${WRONG_TYPE}`,
};
cases["SimpleProducer(lyingSubclass)"] = {
  run: () => {
    const producer = new SimpleProducer(ARRAYS.lyingSubclass() as Uint8Array);
    return Promise.resolve([hex(producer.more()), hex(producer.more())]);
  },
  expect: `result ["${SENT}",""]`,
};
cases["BufferListProducer([ownLength, lyingWindow])"] = {
  run: () => {
    const producer = new BufferListProducer([
      ARRAYS.ownLength() as Uint8Array,
      ARRAYS.lyingWindow() as Uint8Array,
    ]);
    return Promise.resolve([hex(producer.more()), hex(producer.more())]);
  },
  expect: `result ["${SENT}","${SENT}"]`,
};
cases["findPrefixAtEnd(lyingSubclass, ownLength)"] = {
  run: () => {
    const haystack = ARRAYS.lyingSubclass() as Uint8Array;
    const needle = define(
      new Uint8Array([14, 15, 99]),
      "length",
      CLAIM,
    );
    return Promise.resolve(findPrefixAtEnd(haystack, needle));
  },
  expect: "result 2",
};
cases["StreamChannel writableStream.write(lyingSubclass)"] = {
  run: async () => {
    const [sock, peer] = await connectedPair();
    const channel = new StreamChannel(sock, new Map());
    const writer = channel.writableStream.getWriter();
    // Resolves once the socket took it all (no loop needed: it is connected).
    await writer.write(ARRAYS.lyingSubclass() as Uint8Array);
    channel.close();
    return { peer: await receiveAll(peer) };
  },
  expect: `result {"peer":"${SENT}"}`,
};

// ---- Descriptors.

/** A descriptor number that was just closed. */
function closedFd(): number {
  const fds = pipe();
  const fd = fds.read.fd;
  fds[Symbol.dispose]();
  return fd;
}

const badFileno = {
  fileno() {
    throw new Error("fileno failed");
  },
};

const FD_TYPE = "fd must be a descriptor number (an integer from 0), got";
for (
  const [label, value] of [
    ["-1", -1],
    ["NaN", NaN],
    ["2**31", 2 ** 31],
    ['"0"', "0"],
    ["1.5", 1.5],
  ] as const
) {
  cases[`FileWrapper(${label})`] = {
    run: () => Promise.resolve(new FileWrapper(value as number).fileno()),
    expect: `throws TypeError: ${FD_TYPE} ${
      typeof value === "string" ? JSON.stringify(value) : String(value)
    }`,
  };
}
/** Runs `call` on a descriptor just closed; its error without the number. */
async function onClosedFd(
  call: (fd: number) => unknown,
): Promise<string | undefined> {
  const fd = closedFd();
  try {
    await call(fd);
  } catch (error) {
    const { name, message } = error as Error;
    return `${name}: ${message.replaceAll(String(fd), "<fd>")}`;
  }
}

cases["FileWrapper(closed descriptor)"] = {
  run: () => onClosedFd((fd) => new FileWrapper(fd)),
  expect:
    'result "BadResource: duplicate of descriptor <fd>: bad file descriptor (EBADF, os error 9)"',
};
// Descriptors that are not the library's: it works on a duplicate.
cases["FileWrapper(0), standard input at its end"] = {
  run: () => {
    using input = new FileWrapper(0);
    return Promise.resolve(hex(input.read(16)));
  },
  expect: 'result ""',
};
cases["FileWrapper(1), standard output"] = {
  run: () => {
    using output = new FileWrapper(1);
    const text = new TextEncoder().encode("0123456789abcdef");
    return Promise.resolve(output.write(define(text, "length", CLAIM)));
  },
  // The 16 bytes come out before the line, and nothing else.
  expect: "0123456789abcdefresult 16",
};
cases["FileDispatcher(fileno() throws)"] = {
  run: () =>
    Promise.resolve(new FileDispatcher(badFileno, new Map()).connected),
  expect: "throws Error: fileno failed",
};
cases["FileDispatcher(fileno() is -5)"] = {
  run: () =>
    Promise.resolve(
      new FileDispatcher({ fileno: () => -5 }, new Map()).connected,
    ),
  expect: `throws TypeError: ${FD_TYPE} -5`,
};
cases["select(fileno() throws)"] = {
  run: () => select([badFileno], [], [], 0),
  expect: "throws Error: fileno failed",
};
cases["select(fileno() is NaN)"] = {
  run: () => select([{ fileno: () => NaN }], [], [], 0),
  expect: "throws BadResource: rlist: NaN is not a live socket",
};
cases["select(-1)"] = {
  run: () => select([-1], [], [], 0),
  expect: "throws BadResource: rlist: -1 is not a live socket",
};
cases["select(closed socket)"] = {
  run: () => {
    const sock = new Socket();
    sock.close();
    return select([sock], [], [], 0);
  },
  expect: "throws BadResource: rlist: select on a closed socket",
};
cases["select(closed descriptor)"] = {
  run: () => onClosedFd((fd) => select([fd], [], [], 0)),
  expect: {
    deno: 'result "BadResource: rlist: <fd> is not a live socket"',
    epoll:
      'result "BadResource: rlist: <fd> is not an open descriptor (EBADF)"',
  },
};
cases["select(list whose iteration throws)"] = {
  run: () => {
    const list = new Proxy([] as number[], {
      get(target, key) {
        if (key === "length" || key === Symbol.iterator) {
          throw new Error("list read");
        }
        return Reflect.get(target, key);
      },
    });
    return select(list, [], [], 0);
  },
  expect: "throws Error: list read",
};
cases["Poll.register(-1)"] = {
  run: () => Promise.resolve(new Poll().register(-1, POLLIN)),
  expect:
    "throws TypeError: fd must be a socket number or an object with fileno(), got -1",
};
cases["Poll.register(fileno() throws)"] = {
  run: () => Promise.resolve(new Poll().register(badFileno, POLLIN)),
  expect: "throws Error: fileno failed",
};
cases["Poll.poll(closed descriptor)"] = {
  run: async () => {
    const poller = new Poll();
    poller.register(closedFd(), POLLIN);
    return (await poller.poll(0)).map(([, events]) => events);
  },
  expect: "result [32]",
};

export const CASES: Readonly<Record<string, HostileCase>> = cases;
