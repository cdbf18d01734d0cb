/**
 * What the load generators share: options, message bytes, latency samples
 * and the result records the orchestrator parses.
 *
 * @module
 */

/** Options of a load generator run (times in ms). */
export interface LoadgenOptions {
  /** Server address: only loopback targets are allowed. */
  host: string;
  /** Server port. */
  port: number;
  /** Connections driving load. */
  conns: number;
  /** Bytes per message, the final `"\n"` included. */
  size: number;
  /** Length of the measured window. */
  duration: number;
  /** Load before the measured window, not counted. */
  warmup: number;
  /** With a positive count: open that many idle connections instead. */
  idle: number;
  /** Longest an idle run holds its connections without being told to close. */
  hold: number;
  /** Bound on opening all connections (and, idle, on the first echoes). */
  connectTimeout: number;
  /** Connects (and first echoes) in flight at once. */
  parallelConnects: number;
  /** Bound on waiting for round trips in flight when the window ends. */
  drainTimeout: number;
  /** Latency samples kept; round trips past it are counted, not kept. */
  maxSamples: number;
  /** A safety bound on round trips (warmup included); the run stops there. */
  maxRtts: number;
}

/** The JSON line a load run ends with. */
export interface LoadResult {
  kind: "load";
  generator: "deno" | "node";
  conns: number;
  connected: number;
  size: number;
  seconds: number;
  rtts: number;
  rtPerSec: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  /** Fewest round trips one connection completed in the window. */
  perConnMin: number;
  /** Most round trips one connection completed in the window. */
  perConnMax: number;
  errors: number;
  errorSamples: string[];
}

/** The JSON line an idle run ends with. */
export interface IdleResult {
  kind: "idle";
  generator: "deno" | "node";
  requested: number;
  opened: number;
  echoed: number;
  openMs: number;
  errors: number;
  errorSamples: string[];
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/** Parses `--name=value` arguments into {@linkcode LoadgenOptions}. */
export function parseLoadgenArgs(args: string[]): LoadgenOptions {
  const opts: LoadgenOptions = {
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
  const names: Record<string, keyof LoadgenOptions> = {
    "host": "host",
    "port": "port",
    "conns": "conns",
    "size": "size",
    "duration": "duration",
    "warmup": "warmup",
    "idle": "idle",
    "hold": "hold",
    "connect-timeout": "connectTimeout",
    "parallel-connects": "parallelConnects",
    "drain-timeout": "drainTimeout",
    "max-samples": "maxSamples",
    "max-rtts": "maxRtts",
  };
  for (const arg of args) {
    const match = /^--([a-z-]+)=(.*)$/.exec(arg);
    const key = match ? names[match[1]] : undefined;
    if (!match || key === undefined) {
      throw new TypeError(`unknown argument ${JSON.stringify(arg)}`);
    }
    if (key === "host") {
      opts.host = match[2];
    } else {
      const value = Number(match[2]);
      if (!Number.isFinite(value) || value < 0) {
        throw new RangeError(`--${match[1]} must be a number >= 0, got ${arg}`);
      }
      opts[key] = value;
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

const A = 0x61;
const NEWLINE = 0x0a;

/**
 * A message of `size` bytes: lower-case letters shifted by `id`, so echoes
 * crossed between connections differ, and a final `"\n"`.
 */
export function fillMessage(size: number, id: number): Uint8Array {
  const message = new Uint8Array(size);
  for (let i = 0; i < size - 1; i++) message[i] = A + (i + id) % 26;
  message[size - 1] = NEWLINE;
  return message;
}

/**
 * Writes `seq` into the head of the message in base 36 (at most 8 digits),
 * so a stale or repeated echo does not match the message in flight.
 */
export function stampMessage(message: Uint8Array, seq: number): void {
  const digits = Math.min(8, message.length - 1);
  let n = seq;
  for (let i = digits - 1; i >= 0; i--) {
    const d = n % 36;
    message[i] = d < 10 ? 0x30 + d : A + d - 10;
    n = Math.floor(n / 36);
  }
}

/** Latency samples in ms, kept up to a bound and counted past it. */
export class SampleBuffer {
  #data: Float64Array = new Float64Array(1024);
  #kept = 0;
  #max: number;
  /** Samples added, kept or not. */
  count = 0;

  constructor(max: number) {
    this.#max = max;
  }

  add(ms: number): void {
    this.count++;
    if (this.#kept === this.#data.length) {
      if (this.#kept >= this.#max) return;
      const grown = new Float64Array(Math.min(this.#max, this.#kept * 2));
      grown.set(this.#data);
      this.#data = grown;
    }
    this.#data[this.#kept++] = ms;
  }

  /** The kept samples, ascending. */
  sorted(): Float64Array {
    return this.#data.slice(0, this.#kept).sort();
  }
}

/** Nearest-rank percentile of ascending `sorted`; 0 when empty. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil(p * sorted.length));
  return sorted[rank - 1];
}
