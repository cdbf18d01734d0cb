// When a program exits: sockets that nothing waits on do not keep it alive
// (a script that ends with sockets open exits, as Python's does), while a
// loop or poll waiting on them does, as a blocking select() would. Each case
// runs in its own process, on the backend this run of the suite uses.

import { assert, assertEquals } from "@std/assert";
import { TextLineStream } from "@std/streams";
import { BACKEND, killQuietly, within } from "./_helpers.ts";

const ROOT = new URL("../", import.meta.url).href;
// How long a script that should exit may run before it counts as hung.
const EXIT_TIMEOUT = 15_000;

interface Script extends AsyncDisposable {
  child: Deno.ChildProcess;
  lines: ReadableStreamDefaultReader<string>;
  stderr: Promise<string>;
}

/** Runs `source` (with `ROOT/` standing for this checkout) in a new process. */
function runScript(source: string, args: string[] = []): Script {
  const dir = Deno.makeTempDirSync({ prefix: "asyncore_exit_" });
  const file = `${dir}/script.ts`;
  Deno.writeTextFileSync(file, source.replaceAll("ROOT/", ROOT));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-lock",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-ffi",
      file,
      dir,
      ...args,
    ],
    env: { ASYNCORE_BACKEND: BACKEND },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new TextLineStream())
    .getReader();
  const stderr = new Response(child.stderr).text();
  return {
    child,
    lines,
    stderr,
    async [Symbol.asyncDispose]() {
      killQuietly(child, "SIGKILL");
      await child.status;
      await lines.cancel();
      await stderr;
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** The next line the script prints. */
async function nextLine(script: Script): Promise<string> {
  const { value, done } = await within(
    EXIT_TIMEOUT,
    "the script's next line",
    script.lines.read(),
  );
  if (done) {
    throw new Error(`the script ended early; stderr:\n${await script.stderr}`);
  }
  return value;
}

/** Waits for the script to exit by itself; kills it and fails if it hangs. */
async function exited(script: Script): Promise<Deno.CommandStatus> {
  const status = await within(
    EXIT_TIMEOUT,
    "the script to exit by itself",
    script.child.status,
    () => script.child.kill("SIGKILL"),
  );
  assertEquals(
    [status.code, status.signal],
    [0, null],
    `stderr:\n${await script.stderr}`,
  );
  return status;
}

const OPEN_SOCKETS = `
import { Socket } from "ROOT/socket.ts";
import { select } from "ROOT/select.ts";

const dir = Deno.args[0];
const server = new Socket();
server.bind({ hostname: "127.0.0.1", port: 0 });
server.listen();
const { port } = server.getsockname() as Deno.NetAddr;
const unix = new Socket({ transport: "unix" });
unix.bind({ path: dir + "/listener.sock" });
unix.listen();
const client = new Socket();
client.connect({ hostname: "127.0.0.1", port });
if ((await select([server], [], [], 5000))[0].length !== 1) throw new Error("no accept");
const [accepted] = server.accept();
if ((await select([], [client], [], 5000))[1].length !== 1) throw new Error("no connect");
// Bytes each side never reads; the reads waiting for more stay pending.
client.send("to the server");
accepted.send("to the client");
// In progress when the script ends.
const pending = new Socket();
pending.connect({ hostname: "127.0.0.1", port });
const unixClient = new Socket({ transport: "unix" });
unixClient.connect({ path: dir + "/listener.sock" });
console.log("end of script");
`;

Deno.test(`a script that ends with sockets open exits [${BACKEND}]`, async () => {
  await using script = runScript(OPEN_SOCKETS);
  assertEquals(await nextLine(script), "end of script");
  await exited(script);
});

// The loop waits with no timeout (no timer of its own), its channel reading;
// it announces each wait, and the test answers only then: a process that a
// waiting loop did not keep alive would be gone before the answer came.
const RUNNING_LOOP = `
import { Dispatcher, loop } from "ROOT/asyncore.ts";

const encoder = new TextEncoder();
class Echo extends Dispatcher {
  override readable(): boolean {
    Deno.stdout.writeSync(encoder.encode("waiting\\n"));
    return true;
  }
  override writable(): boolean {
    return false;
  }
  override handleRead(): void {
    const data = new TextDecoder().decode(this.recv(100));
    if (data === "bye") this.close();
    else if (data !== "") this.send("pong");
  }
}
class Server extends Dispatcher {
  override writable(): boolean {
    return false;
  }
  override handleAccepted(sock: Parameters<Dispatcher["handleAccepted"]>[0]): void {
    new Echo(sock);
    this.close();
  }
}
const server = new Server();
server.createSocket();
server.bind({ hostname: "127.0.0.1", port: 0 });
server.listen(5);
console.log((server.socket!.getsockname() as Deno.NetAddr).port);
// Not awaited: a pending top-level await keeps Deno running by itself, while
// a loop started from a callback (or a script's main() not awaited) has only
// its own wait to keep the process alive.
loop({ timeout: Infinity }).then(() => console.log("loop over"));
`;

Deno.test(`a loop waiting on a channel keeps the script alive until the channel closes [${BACKEND}]`, async () => {
  await using script = runScript(RUNNING_LOOP);
  const port = Number(await nextLine(script));
  assert(port > 0);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buffer = new Uint8Array(16);
  for (let i = 0; i < 5; i++) {
    assertEquals(await nextLine(script), "waiting");
    await conn.write(new TextEncoder().encode("ping"));
    const count = await within(EXIT_TIMEOUT, "pong", conn.read(buffer));
    if (count === null) {
      throw new Error(`the script hung up; stderr:\n${await script.stderr}`);
    }
    assertEquals(new TextDecoder().decode(buffer.subarray(0, count)), "pong");
  }
  assertEquals(await nextLine(script), "waiting");
  await conn.write(new TextEncoder().encode("bye"));
  assertEquals(await nextLine(script), "loop over");
  await exited(script);
});
