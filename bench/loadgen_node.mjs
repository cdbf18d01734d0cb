// The echo benchmark's load generator (bench/echo.ts starts it), on Node's
// `net`, in its own process.
//   node bench/loadgen_node.mjs --port=PORT --conns=50 --size=64 \
//     --duration=5000 --warmup=500
//   node bench/loadgen_node.mjs --port=PORT --idle=10000
//
// Closed loop: each of --conns connections sends one --size-byte message
// ending in "\n", reads the echo back, checks it byte for byte, records the
// latency and repeats until the measured window ends. It writes lines to
// stdout, which echo.ts follows: `connected N`, then `start` and `end` at the
// edges of the measured window, then one JSON LoadResult (bench/_report.ts).
// With --idle=N it opens N connections, echoes one message on each, prints
// `ready N`, holds them until a line arrives on stdin (or stdin closes, or
// --hold ms pass), closes them and prints one JSON IdleResult.
// Times are in ms; only loopback targets are allowed.
import net from "node:net";
import process from "node:process";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

const DEFAULTS = {
  host: "127.0.0.1",
  port: 0,
  conns: 1,
  size: 64,
  duration: 5000,
  warmup: 500,
  idle: 0,
  hold: 120_000,
  connectTimeout: 30_000,
  parallelConnects: 100,
  drainTimeout: 2000,
  maxSamples: 1 << 24,
  maxRtts: 100_000_000,
};
const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);
const A = 0x61;
const NEWLINE = 0x0a;

/** `connectTimeout` -> `connect-timeout`, the option's name. */
const optionName = (key) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function parseOptions(args) {
  const { values } = parseArgs({
    args,
    options: Object.fromEntries(
      Object.keys(DEFAULTS).map((key) => [optionName(key), { type: "string" }]),
    ),
  });
  const opts = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) {
    const value = values[optionName(key)];
    if (value === undefined) continue;
    if (key === "host") {
      opts.host = value;
    } else {
      opts[key] = Number(value);
      if (!Number.isFinite(opts[key]) || opts[key] < 0) {
        throw new RangeError(
          `--${optionName(key)} must be a number >= 0, got ${value}`,
        );
      }
    }
  }
  if (!LOOPBACK.has(opts.host)) {
    throw new RangeError(`--host must be a loopback address, got ${opts.host}`);
  }
  if (opts.port < 1 || opts.port > 65535) {
    throw new RangeError(`--port must be in 1..65535, got ${opts.port}`);
  }
  if (!Number.isInteger(opts.size) || opts.size < 2) {
    throw new RangeError(`--size must be an integer >= 2, got ${opts.size}`);
  }
  if (!Number.isInteger(opts.conns) || opts.conns < 1) {
    throw new RangeError(`--conns must be an integer >= 1, got ${opts.conns}`);
  }
  return opts;
}

function fillMessage(size, id) {
  const message = Buffer.alloc(size);
  for (let i = 0; i < size - 1; i++) message[i] = A + (i + id) % 26;
  message[size - 1] = NEWLINE;
  return message;
}

function stampMessage(message, seq) {
  const digits = Math.min(8, message.length - 1);
  let n = seq;
  for (let i = digits - 1; i >= 0; i--) {
    const d = n % 36;
    message[i] = d < 10 ? 0x30 + d : A + d - 10;
    n = Math.floor(n / 36);
  }
}

function emit(line) {
  process.stdout.write(line + "\n");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function connectOne(opts) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: opts.host, port: opts.port });
    socket.setNoDelay(true);
    const onError = (error) => reject(error);
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

async function openConnections(opts, count, deadline, errorSamples) {
  const conns = [];
  let next = 0;
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      next++;
      try {
        conns.push(await connectOne(opts));
      } catch (error) {
        errorSamples.push(`connect: ${String(error)}`);
        if (errorSamples.length > 20) return;
      }
    }
  };
  const workers = [];
  for (let i = 0; i < Math.min(opts.parallelConnects, count); i++) {
    workers.push(worker());
  }
  await Promise.all(workers);
  return conns;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.max(1, Math.ceil(p * sorted.length)) - 1];
}

async function runLoad(opts) {
  const errorSamples = [];
  const conns = await openConnections(
    opts,
    opts.conns,
    performance.now() + opts.connectTimeout,
    errorSamples,
  );
  let errors = errorSamples.length;
  emit(`connected ${conns.length}`);

  let samples = new Float64Array(1024);
  let kept = 0;
  let count = 0;
  const perConn = new Uint32Array(conns.length);
  const windowStart = performance.now() + opts.warmup;
  const windowEnd = windowStart + opts.duration;
  let stopping = false;
  let total = 0;
  let running = conns.length;
  let allDone;
  const done = new Promise((resolve) => (allDone = resolve));
  if (running === 0) allDone();

  const record = (id, ms, t1) => {
    if (t1 < windowStart || t1 > windowEnd) return;
    perConn[id]++;
    count++;
    if (kept === samples.length) {
      if (kept >= opts.maxSamples) return;
      const grown = new Float64Array(Math.min(opts.maxSamples, kept * 2));
      grown.set(samples);
      samples = grown;
    }
    samples[kept++] = ms;
  };

  conns.forEach((socket, id) => {
    const message = fillMessage(opts.size, id);
    let seq = 0;
    let got = 0;
    let t0 = 0;
    let finished = false;
    const finish = (reason) => {
      if (finished) return;
      finished = true;
      if (reason !== undefined && !stopping) {
        errors++;
        if (errorSamples.length < 10) {
          errorSamples.push(`conn ${id}: ${reason}`);
        }
      }
      if (--running === 0) allDone();
    };
    const send = () => {
      stampMessage(message, seq++);
      got = 0;
      t0 = performance.now();
      socket.write(message);
    };
    socket.on("data", (chunk) => {
      if (finished) return;
      if (got + chunk.length > message.length) {
        finish("more bytes than the message");
        return;
      }
      if (message.compare(chunk, 0, chunk.length, got, got + chunk.length)) {
        finish("echo differs from the message");
        return;
      }
      got += chunk.length;
      if (got < message.length) return;
      const t1 = performance.now();
      record(id, t1 - t0, t1);
      if (++total >= opts.maxRtts && !stopping) {
        stopping = true;
        errors++;
        errorSamples.push(`stopped at the ${opts.maxRtts}-round-trip bound`);
      }
      if (stopping) finish();
      else send();
    });
    socket.on("error", (error) => finish(String(error)));
    socket.on("close", () => finish("closed by the server"));
    send();
  });

  await sleep(windowStart - performance.now());
  emit("start");
  await sleep(windowEnd - performance.now());
  emit("end");
  stopping = true;
  await Promise.race([done, sleep(opts.drainTimeout)]);
  for (const socket of conns) socket.destroy();

  const sorted = samples.slice(0, kept).sort();
  let min = Infinity;
  let max = 0;
  for (const n of perConn) {
    if (n < min) min = n;
    if (n > max) max = n;
  }
  return {
    kind: "load",
    generator: "node",
    conns: opts.conns,
    connected: conns.length,
    size: opts.size,
    seconds: opts.duration / 1000,
    rtts: count,
    rtPerSec: count / (opts.duration / 1000),
    p50Us: percentile(sorted, 0.5) * 1000,
    p99Us: percentile(sorted, 0.99) * 1000,
    maxUs: sorted.length > 0 ? sorted[sorted.length - 1] * 1000 : 0,
    perConnMin: conns.length > 0 ? min : 0,
    perConnMax: max,
    errors,
    errorSamples,
  };
}

function echoOnce(socket, message) {
  return new Promise((resolve) => {
    let got = 0;
    let ok = true;
    const onData = (chunk) => {
      if (
        got + chunk.length > message.length ||
        message.compare(chunk, 0, chunk.length, got, got + chunk.length)
      ) {
        ok = false;
      }
      got += chunk.length;
      if (got >= message.length) settle(ok);
    };
    const onEnd = () => settle(false);
    const settle = (result) => {
      socket.off("data", onData);
      socket.off("error", onEnd);
      socket.off("close", onEnd);
      resolve(result);
    };
    socket.on("data", onData);
    socket.on("error", onEnd);
    socket.on("close", onEnd);
    socket.write(message);
  });
}

async function runIdle(opts) {
  const errorSamples = [];
  const openStart = performance.now();
  const conns = await openConnections(
    opts,
    opts.idle,
    openStart + opts.connectTimeout,
    errorSamples,
  );
  let errors = errorSamples.length;
  let echoed = 0;
  let next = 0;
  const size = Math.min(opts.size, 64);
  const worker = async () => {
    while (next < conns.length) {
      const id = next++;
      const message = fillMessage(size, 0);
      stampMessage(message, id);
      if (await echoOnce(conns[id], message)) echoed++;
      else errors++;
    }
  };
  const workers = [];
  for (let i = 0; i < opts.parallelConnects; i++) workers.push(worker());
  await Promise.race([Promise.all(workers), sleep(opts.connectTimeout)]);
  const openMs = performance.now() - openStart;
  for (const socket of conns) socket.on("error", () => {});
  emit(`ready ${echoed}`);

  await Promise.race([
    new Promise((resolve) => {
      process.stdin.on("data", (chunk) => {
        if (chunk.includes(NEWLINE)) resolve();
      });
      process.stdin.on("end", resolve);
    }),
    sleep(opts.hold),
  ]);
  for (const socket of conns) socket.destroy();
  return {
    kind: "idle",
    generator: "node",
    requested: opts.idle,
    opened: conns.length,
    echoed,
    openMs,
    errors,
    errorSamples,
  };
}

const opts = parseOptions(process.argv.slice(2));
const result = opts.idle > 0 ? await runIdle(opts) : await runLoad(opts);
emit(JSON.stringify(result));
process.exit(0);
