/**
 * The echo load generator, in its own process, on raw `Deno.Conn`s.
 *
 * Closed loop: each of `--conns` connections sends one `--size`-byte message
 * ending in `"\n"`, reads exactly `--size` bytes back, checks them byte for
 * byte, records the latency and repeats until the measured window ends.
 *
 * ```sh
 * deno run --allow-net bench/loadgen.ts --port=PORT --conns=50 --size=64 \
 *   --duration=5000 --warmup=500
 * deno run --allow-net bench/loadgen.ts --port=PORT --idle=10000
 * ```
 *
 * It writes lines to stdout, which the orchestrator (`echo.ts`) follows:
 * `connected N`, then `start` and `end` at the edges of the measured window,
 * then one JSON {@linkcode LoadResult}. With `--idle=N` it opens N
 * connections, echoes one message on each, prints `ready N`, holds them until
 * a line arrives on stdin (or stdin closes, or `--hold` ms pass), closes
 * them and prints one JSON {@linkcode IdleResult}.
 *
 * @module
 */

import {
  fillMessage,
  type IdleResult,
  type LoadgenOptions,
  type LoadResult,
  parseLoadgenArgs,
  percentile,
  SampleBuffer,
  stampMessage,
} from "./_loadgen_common.ts";

const encoder = new TextEncoder();

function emit(line: string): void {
  Deno.stdout.writeSync(encoder.encode(line + "\n"));
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Reads exactly `buf.length` bytes; false at a premature end of stream. */
async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<boolean> {
  let got = 0;
  while (got < buf.length) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) return false;
    got += n;
  }
  return true;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Opens `count` connections, at most `parallel` at a time, within `deadline`. */
async function openConnections(
  opts: LoadgenOptions,
  count: number,
  deadline: number,
  errors: string[],
): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count && performance.now() < deadline) {
      next++;
      try {
        const conn = await Deno.connect({
          hostname: opts.host,
          port: opts.port,
        });
        conn.setNoDelay(true);
        conns.push(conn);
      } catch (error) {
        errors.push(`connect: ${String(error)}`);
        if (errors.length > 20) return;
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < Math.min(opts.parallelConnects, count); i++) {
    workers.push(worker());
  }
  await Promise.all(workers);
  return conns;
}

function closeAll(conns: Deno.Conn[]): void {
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // Already closed by an error path.
    }
  }
}

async function runLoad(opts: LoadgenOptions): Promise<LoadResult> {
  const errorSamples: string[] = [];
  let errors = 0;
  const openStart = performance.now();
  const conns = await openConnections(
    opts,
    opts.conns,
    openStart + opts.connectTimeout,
    errorSamples,
  );
  errors += errorSamples.length;
  emit(`connected ${conns.length}`);

  const samples = new SampleBuffer(opts.maxSamples);
  const perConn = new Uint32Array(conns.length);
  const windowStart = performance.now() + opts.warmup;
  const windowEnd = windowStart + opts.duration;
  let stopping = false;
  let total = 0;

  const fail = (id: number, message: string): void => {
    errors++;
    if (errorSamples.length < 10) errorSamples.push(`conn ${id}: ${message}`);
  };

  const drive = async (conn: Deno.Conn, id: number): Promise<void> => {
    const message = fillMessage(opts.size, id);
    const reply = new Uint8Array(opts.size);
    let seq = 0;
    try {
      while (!stopping) {
        stampMessage(message, seq++);
        const t0 = performance.now();
        await writeAll(conn, message);
        if (!await readFull(conn, reply)) {
          fail(id, "end of stream before the whole echo");
          return;
        }
        const t1 = performance.now();
        if (!sameBytes(message, reply)) {
          fail(id, "echo differs from the message");
          return;
        }
        if (t1 >= windowStart && t1 <= windowEnd) {
          samples.add(t1 - t0);
          perConn[id]++;
        }
        if (++total >= opts.maxRtts && !stopping) {
          stopping = true;
          fail(id, `stopped at the ${opts.maxRtts}-round-trip bound`);
        }
      }
    } catch (error) {
      if (!stopping) fail(id, String(error));
    }
  };

  const drivers = conns.map((conn, id) => drive(conn, id));
  const edges = (async (): Promise<void> => {
    await sleep(windowStart - performance.now());
    emit("start");
    await sleep(windowEnd - performance.now());
    emit("end");
    stopping = true;
  })();
  await edges;
  // Round trips in flight finish on their own; a stuck one must not hang us.
  await Promise.race([Promise.all(drivers), sleep(opts.drainTimeout)]);
  closeAll(conns);

  const sorted = samples.sorted();
  let min = Infinity;
  let max = 0;
  for (const n of perConn) {
    if (n < min) min = n;
    if (n > max) max = n;
  }
  return {
    kind: "load",
    generator: "deno",
    conns: opts.conns,
    connected: conns.length,
    size: opts.size,
    seconds: opts.duration / 1000,
    rtts: samples.count,
    rtPerSec: samples.count / (opts.duration / 1000),
    p50Us: percentile(sorted, 0.5) * 1000,
    p99Us: percentile(sorted, 0.99) * 1000,
    maxUs: sorted.length > 0 ? sorted[sorted.length - 1] * 1000 : 0,
    perConnMin: conns.length > 0 ? min : 0,
    perConnMax: max,
    errors,
    errorSamples,
  };
}

async function runIdle(opts: LoadgenOptions): Promise<IdleResult> {
  const errorSamples: string[] = [];
  const openStart = performance.now();
  const conns = await openConnections(
    opts,
    opts.idle,
    openStart + opts.connectTimeout,
    errorSamples,
  );
  let errors = errorSamples.length;
  // One echo on each, so every connection is known to be served, not queued.
  let echoed = 0;
  const size = Math.min(opts.size, 64);
  let next = 0;
  const worker = async (): Promise<void> => {
    const message = fillMessage(size, 0);
    const reply = new Uint8Array(size);
    while (next < conns.length) {
      const id = next++;
      try {
        stampMessage(message, id);
        await writeAll(conns[id], message);
        if (await readFull(conns[id], reply) && sameBytes(message, reply)) {
          echoed++;
        } else {
          errors++;
        }
      } catch (error) {
        errors++;
        if (errorSamples.length < 10) errorSamples.push(String(error));
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < opts.parallelConnects; i++) workers.push(worker());
  const echoDeadline = sleep(opts.connectTimeout);
  await Promise.race([Promise.all(workers), echoDeadline]);
  const openMs = performance.now() - openStart;
  emit(`ready ${echoed}`);

  await Promise.race([waitForStdinLine(), sleep(opts.hold)]);
  closeAll(conns);
  return {
    kind: "idle",
    generator: "deno",
    requested: opts.idle,
    opened: conns.length,
    echoed,
    openMs,
    errors,
    errorSamples,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Resolves at the first line on stdin or when stdin closes. */
async function waitForStdinLine(): Promise<void> {
  const buf = new Uint8Array(64);
  for (;;) {
    const n = await Deno.stdin.read(buf);
    if (n === null || buf.subarray(0, n).includes(10)) return;
  }
}

if (import.meta.main) {
  const opts = parseLoadgenArgs(Deno.args);
  const result = opts.idle > 0 ? await runIdle(opts) : await runLoad(opts);
  emit(JSON.stringify(result));
  // Open reads on half-dead connections must not keep the process alive.
  Deno.exit(0);
}
