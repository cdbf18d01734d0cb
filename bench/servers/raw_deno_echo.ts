/**
 * Baseline: a raw `Deno.Conn` echo server, one read/write loop per
 * connection. It is the runtime's ceiling the other servers are compared to.
 *
 * ```sh
 * deno run --allow-net bench/servers/raw_deno_echo.ts PORT [--buffer=BYTES]
 * ```
 *
 * `PORT` 0 picks a free port; the server prints
 * `listening on 127.0.0.1:PORT` once it accepts connections.
 *
 * @module
 */

import { parseArgs } from "@std/cli";

const DEFAULT_BUFFER = 64 * 1024;

function parseOptions(args: string[]): { port: number; buffer: number } {
  const flags = parseArgs(args, {
    string: ["buffer"],
    unknown: (arg: string) => {
      if (arg.startsWith("-")) throw new TypeError(`unknown option ${arg}`);
    },
  });
  const port = Number(flags._[0] ?? 0);
  const buffer = flags.buffer === undefined
    ? DEFAULT_BUFFER
    : Number(flags.buffer);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`PORT must be an integer in 0..65535, got ${port}`);
  }
  if (!Number.isInteger(buffer) || buffer < 1) {
    throw new RangeError(`--buffer must be a positive integer, got ${buffer}`);
  }
  return { port, buffer };
}

async function serve(conn: Deno.TcpConn, bufferSize: number): Promise<void> {
  conn.setNoDelay(true);
  const buf = new Uint8Array(bufferSize);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
  } catch {
    // The peer went away mid-read or mid-write; nothing to report.
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

const { port, buffer } = parseOptions(Deno.args);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`listening on 127.0.0.1:${listener.addr.port}`);
for await (const conn of listener) serve(conn, buffer);
