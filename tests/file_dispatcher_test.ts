// FileWrapper and FileDispatcher (Python's file_wrapper and file_dispatcher):
// descriptors that are not sockets (pipes, regular files) served in the loop,
// beside real loopback sockets of whichever backend is the default. The
// first cases follow CPython's FileWrapperTest.

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertNotEquals,
  assertThrows,
} from "@std/assert";
import { concat } from "@std/bytes";
import {
  type ChannelMap,
  Dispatcher,
  DispatcherWithSend,
  FileDispatcher,
  FileWrapper,
  loop,
} from "../asyncore.ts";
import { Poll, POLLIN, POLLOUT, select } from "../select.ts";
import {
  getDefaultBackend,
  setDefaultBackend,
  type Socket,
} from "../socket.ts";
import { libc } from "../_epoll/libc.ts";
import {
  epollUnsupported,
  O_APPEND,
  O_RDONLY,
  O_WRONLY,
  openFd,
  pipe,
  skipNote,
} from "./_epoll_helpers.ts";
import { isPattern, pattern, runLoop } from "./_helpers.ts";

const ignore = epollUnsupported !== null;
const text = new TextEncoder();
const DATA = text.encode("It's not dead, it's sleeping!");

/** A temporary file holding DATA, removed at dispose. */
function dataFile(): { path: string } & Disposable {
  const path = Deno.makeTempFileSync({ prefix: "asyncore-file-" });
  Deno.writeFileSync(path, DATA);
  return { path, [Symbol.dispose]: () => Deno.removeSync(path) };
}

/** Writes all of `data` to a blocking descriptor (a test's own pipe end). */
function writeAll(fd: number, data: Uint8Array): void {
  for (let at = 0; at < data.length;) {
    const count = libc().write(fd, data.subarray(at), BigInt(data.length - at));
    if (count < 0) throw new Error(`write to descriptor ${fd} failed`);
    at += count;
  }
}

Deno.test({
  name:
    `FileWrapper: reads a file through a duplicate of its descriptor${skipNote}`,
  ignore,
  fn() {
    using file = dataFile();
    const fd = openFd(file.path, O_RDONLY);
    const w = new FileWrapper(fd.fd);
    fd.close(); // the wrapper holds its own duplicate
    assertNotEquals(w.fileno(), fd.fd);
    assertEquals(w.recv(13), text.encode("It's not dead"));
    assertEquals(w.read(6), text.encode(", it's"));
    w.close();
    assertEquals(w.fileno(), -1);
    assertThrows(() => w.read(1), Deno.errors.BadResource);
    w.close(); // twice is harmless
  },
});

Deno.test({
  name: `FileWrapper: write() and send() append to a file${skipNote}`,
  ignore,
  fn() {
    using file = dataFile();
    const d1 = text.encode("Come again?");
    const d2 = text.encode("I want to buy some cheese.");
    using fd = openFd(file.path, O_WRONLY | O_APPEND);
    using w = new FileWrapper(fd.fd);
    assertEquals(w.write(d1), d1.length);
    assertEquals(w.send(d2), d2.length);
    w.close();
    assertEquals(Deno.readFileSync(file.path), concat([DATA, d1, d2]));
  },
});

Deno.test({
  name:
    `FileWrapper: a pipe is WouldBlock while empty, then its bytes, then end of input${skipNote}`,
  ignore,
  fn() {
    using p = pipe();
    using reader = new FileWrapper(p.read.fd);
    assertThrows(() => reader.recv(64), Deno.errors.WouldBlock);
    writeAll(p.write.fd, text.encode("hello"));
    assertEquals(reader.recv(64), text.encode("hello"));
    const into = new Uint8Array(8);
    writeAll(p.write.fd, text.encode("abc"));
    assertEquals(reader.recvInto(into), 3);
    assertEquals(into.subarray(0, 3), text.encode("abc"));
    p.write.close();
    assertEquals(reader.recv(64).length, 0);
  },
});

Deno.test({
  name:
    `FileWrapper: a full pipe takes what fits, then WouldBlock; every byte taken arrives${skipNote}`,
  ignore,
  fn() {
    using p = pipe();
    using writer = new FileWrapper(p.write.fd);
    const data = pattern(1 << 20);
    const taken = writer.send(data);
    assert(taken > 0 && taken < data.length, `took ${taken}`);
    assertThrows(
      () => writer.send(data.subarray(taken)),
      Deno.errors.WouldBlock,
    );
    using reader = new FileWrapper(p.read.fd);
    const got: Uint8Array[] = [];
    let length = 0;
    while (length < taken) {
      const chunk = reader.recv(65536);
      got.push(chunk);
      length += chunk.length;
    }
    assertEquals(length, taken);
    assert(isPattern(concat(got)));
  },
});

Deno.test({
  name:
    `FileWrapper: writing to a pipe whose reader is gone throws BrokenPipe${skipNote}`,
  ignore,
  fn() {
    using p = pipe();
    using writer = new FileWrapper(p.write.fd);
    p.read.close();
    assertThrows(() => writer.send(text.encode("x")), Deno.errors.BrokenPipe);
  },
});

Deno.test({
  name:
    `FileWrapper: bad descriptors and socket-only calls fail clearly${skipNote}`,
  ignore,
  fn() {
    for (const bad of [-1, 1.5, Number.NaN, "3", null]) {
      assertThrows(
        () => new FileWrapper(bad as number),
        TypeError,
        "fd must be a descriptor number",
      );
    }
    const p = pipe();
    const closed = p.read.fd;
    p[Symbol.dispose]();
    assertThrows(
      () => new FileWrapper(closed),
      Deno.errors.BadResource,
      `descriptor ${closed}`,
    );
    using q = pipe();
    using w = new FileWrapper(q.read.fd);
    assertThrows(() => w.startTls(), Deno.errors.NotSupported, "not a socket");
    assertThrows(() => w.getpeername(), Deno.errors.BadResource, "ENOTSOCK");
    assertThrows(() => w.setNoDelay(), Deno.errors.BadResource, "ENOTSOCK");
    assertThrows(() => w.bind({ path: "unused" }), Deno.errors.AlreadyExists);
    assertThrows(() => w.accept(), Deno.errors.NotConnected);
    assertThrows(
      () => new FileDispatcher({} as unknown as number, new Map()),
      TypeError,
    );
  },
});

Deno.test({
  name:
    `FileDispatcher: reads a file in two passes of poll2, as CPython's test_dispatcher${skipNote}`,
  ignore,
  async fn() {
    using file = dataFile();
    const map: ChannelMap = new Map();
    const data: Uint8Array[] = [];
    class Reader extends FileDispatcher {
      override handleRead(): void {
        data.push(this.recv(29));
      }
      override handleClose(): void {
        this.close();
      }
    }
    const fd = openFd(file.path, O_RDONLY);
    const channel = new Reader(fd.fd, map);
    fd.close();
    assert(channel.connected);
    assertEquals(map.get(channel.fileno()), channel);
    await loop({ map, timeout: 10, usePoll: true, count: 2 });
    assertEquals(concat(data), DATA);
    // The second pass read the end of the file: the channel closed.
    assertEquals(map.size, 0);
  },
});

Deno.test({
  name:
    `FileDispatcher: a pipe relayed to a socket in one loop, every byte in order${skipNote}`,
  ignore,
  async fn() {
    const map: ChannelMap = new Map();
    const size = 300_000;
    const source = pattern(size);
    const received: Uint8Array[] = [];
    using p = pipe();

    // Writes `source` into the pipe as it takes it, then closes its end.
    class PipeWriter extends FileDispatcher {
      #sent = 0;
      override readable(): boolean {
        return false;
      }
      override writable(): boolean {
        return true;
      }
      override handleWrite(): void {
        this.#sent += this.send(source.subarray(this.#sent));
        if (this.#sent === size) this.close();
      }
    }
    class Client extends DispatcherWithSend {
      closeWhenSent = false;
      override writable(): boolean {
        return super.writable() || this.closeWhenSent;
      }
      override handleWrite(): void {
        super.handleWrite();
        if (this.closeWhenSent && this.sendBuffered === 0) this.close();
      }
      override handleClose(): void {
        this.close();
      }
    }
    // Forwards what the pipe brings to the socket; at its end, closes both.
    class PipeReader extends FileDispatcher {
      constructor(fd: number, readonly out: Client) {
        super(fd, map);
      }
      override writable(): boolean {
        return false;
      }
      override handleRead(): void {
        const data = this.recv(8192);
        if (data.length > 0) this.out.send(data);
      }
      override handleClose(): void {
        this.close();
        this.out.closeWhenSent = true;
      }
    }
    class Collector extends Dispatcher {
      override handleRead(): void {
        const data = this.recv(65536);
        if (data.length > 0) received.push(data);
      }
      override writable(): boolean {
        return false;
      }
      override handleClose(): void {
        this.close();
      }
    }
    class Listener extends Dispatcher {
      override handleAccepted(sock: Socket): void {
        new Collector(sock, map);
        this.close();
      }
    }
    const listener = new Listener(undefined, map);
    listener.createSocket();
    listener.bind({ hostname: "127.0.0.1", port: 0 });
    listener.listen(1);
    const client = new Client(undefined, map);
    client.createSocket();
    client.connect(listener.socket!.getsockname() as Deno.NetAddr);
    new PipeWriter(p.write.fd, map);
    new PipeReader(p.read.fd, client);
    // The wrappers hold duplicates: the test's own ends go now, so the reader
    // sees the end of input once the writer closes its duplicate.
    p[Symbol.dispose]();
    await runLoop(map, { timeout: 100, bound: 10_000 });
    const all = concat(received);
    assertEquals(all.length, size);
    assert(isPattern(all), "the bytes arrived in order");
  },
});

Deno.test({
  name:
    `select() and Poll: a regular file and /dev/null, which epoll cannot watch, are always ready${skipNote}`,
  ignore,
  async fn() {
    const before = getDefaultBackend();
    // Only with epoll the default is a number that names no socket a
    // descriptor (see select()).
    setDefaultBackend("epoll");
    try {
      using file = dataFile();
      using fd = openFd(file.path, O_RDONLY);
      using nul = openFd("/dev/null", O_WRONLY);
      assertEquals(
        await select([fd.fd], [fd.fd, nul.fd], [], 1000),
        [[fd.fd], [fd.fd, nul.fd], []],
      );
      const poll = new Poll();
      poll.register(fd.fd, POLLIN);
      poll.register(nul.fd, POLLOUT);
      const events = await poll.poll(1000);
      assertEquals(
        events.sort((a, b) => a[0] - b[0]),
        [[fd.fd, POLLIN], [nul.fd, POLLOUT]].sort((a, b) => a[0] - b[0]),
      );
    } finally {
      setDefaultBackend(before);
    }
  },
});

Deno.test({
  name:
    `FileDispatcher: the description is left non-blocking, as in Python${skipNote}`,
  ignore,
  fn() {
    using p = pipe();
    const map: ChannelMap = new Map();
    const channel = new FileDispatcher(p.read.fd, map);
    // A read on the test's own end now fails at once instead of waiting.
    const result = libc().read(p.read.fd, new Uint8Array(1), 1n);
    assertEquals(result, -1);
    channel.close();
    assertInstanceOf(channel, Dispatcher);
  },
});

Deno.test({
  name:
    `FileDispatcher: a pipe whose reader is gone is a close, not an error${skipNote}`,
  ignore,
  async fn() {
    using p = pipe();
    const map: ChannelMap = new Map();
    const calls: string[] = [];
    class Writer extends FileDispatcher {
      override readable(): boolean {
        return false;
      }
      override handleWrite(): void {
        calls.push(`sent ${this.send(text.encode("anyone there?"))}`);
      }
      override handleClose(): void {
        calls.push("close");
        this.close();
      }
      override handleError(error: unknown): void {
        calls.push(`error ${error}`);
        this.close();
      }
    }
    new Writer(p.write.fd, map);
    p[Symbol.dispose]();
    await runLoop(map, { timeout: 100 });
    // As Python's dispatcher.send(): EPIPE calls handle_close(), returns 0.
    assertEquals(calls, ["close", "sent 0"]);
  },
});
