/**
 * Shows how Deno hands completed reads to JavaScript when many are ready at
 * once, the cause of the tail latency at 1000 connections (see README,
 * "Performance"). No asyncore code is involved.
 *
 * A CPython child process opens `N` connections to this one and writes 4
 * bytes on each, in order, while one read is in flight on every connection
 * here. The script prints how many reads complete per turn of the event loop,
 * and how many connections were read only after connections that wrote later.
 *
 * ```sh
 * deno run --allow-net --allow-run bench/io_budget.ts [N]
 * ```
 *
 * On Deno 2.9.6 the turns hold at most 128 reads each, the tokio scheduler's
 * budget per task poll. The reads left over are put back in reverse order, so
 * under load a connection can wait many turns while newer ones are served.
 *
 * @module
 */

const HOST = "127.0.0.1";

// The writer is CPython with blocking sockets, so the bytes arrive in the
// order of the connections (a Deno writer reorders its own writes).
const CLIENT = `
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
conns = [socket.create_connection(("${HOST}", port)) for _ in range(count)]
sys.stdin.readline()
for i, conn in enumerate(conns):
    conn.sendall(i.to_bytes(4, "big"))
conns[0].recv(1)
for conn in conns:
    conn.close()
`;

async function main(count: number): Promise<void> {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("python3", {
      args: ["-c", CLIENT, String(listener.addr.port), String(count)],
      stdin: "piped",
    }).spawn();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    console.error("io_budget.ts needs python3 on the PATH as the writer");
    Deno.exit(1);
  }
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < count; i++) conns.push(await listener.accept());

  // A turn's completions run back to back; a microtask queued by the first
  // runs after the last, and closes the turn.
  const turns: number[][] = [];
  let turn: number[] | null = null;
  const reads = conns.map((conn) => {
    const buffer = new Uint8Array(4);
    return conn.read(buffer).then(() => {
      if (turn === null) {
        turn = [];
        turns.push(turn);
        queueMicrotask(() => turn = null);
      }
      turn.push(new DataView(buffer.buffer).getUint32(0));
    });
  });
  const writer = child.stdin.getWriter();
  await writer.write(new Uint8Array([10]));
  await Promise.all(reads);

  // For each connection: how many that wrote after it were read before it.
  const order = turns.flat();
  const overtaken = new Array<number>(count).fill(0);
  for (let i = 0; i < order.length; i++) {
    for (let j = 0; j < i; j++) if (order[j] > order[i]) overtaken[order[i]]++;
  }
  const worst = overtaken.indexOf(Math.max(...overtaken));
  const sizes = turns.map((t) => t.length);
  console.log(
    `${count} reads completed over ${turns.length} turns of the event loop; ` +
      `the largest turn held ${Math.max(...sizes)} (first turns: ${
        sizes.slice(0, 8).join(", ")
      })`,
  );
  console.log(
    `connections read after at least 100 that wrote later: ${
      overtaken.filter((n) => n >= 100).length
    } of ${count}`,
  );
  console.log(
    `worst: connection ${worst} was read after ${
      overtaken[worst]
    } that wrote later`,
  );

  await conns[0].write(new Uint8Array(1));
  await writer.close();
  for (const conn of conns) conn.close();
  await child.status;
}

if (import.meta.main) {
  const count = Number(Deno.args[0] ?? 1000);
  if (!Number.isInteger(count) || count < 1 || count > 10_000) {
    throw new RangeError(
      `N must be an integer in 1..10000, got ${Deno.args[0]}`,
    );
  }
  await main(count);
}
