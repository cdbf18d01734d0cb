/**
 * The event-loop sharing benchmark: does an asyncore server under load leave
 * the rest of its program running? One process runs the asyncore echo server
 * (`Dispatcher`s and `loop()`, as in `servers/asyncore_echo.ts`), kept busy by
 * the echo benchmark's load generator (`loadgen.c` or `loadgen_node.mjs`, see
 * `_loadgen.ts`; in another
 * process), and beside it, in the same process and on Deno's own event loop:
 *
 * - a `setTimeout` series (every `--timer` ms), measuring how late each fires;
 * - a `fetch()` to a `Deno.serve` on 127.0.0.1 every `--fetch-every` ms;
 * - a ping-pong between two `Deno.Conn`s (`--ping-size` bytes), closed-loop
 *   (as fast as it goes) unless `--ping-every` paces it.
 *
 * Each backend runs in its own processes (`ASYNCORE_BACKEND=deno` or
 * `epoll`): once with that side work and no load, then per load scenario once
 * without the side work and once with it, so the echo's round trips/s with and
 * without show what sharing the thread costs the server. On the epoll backend
 * the library's loop must yield to Deno's event loop now and then; on the
 * default one everything is Deno's event loop already, so it is the reference
 * for what fair looks like.
 *
 * ```sh
 * deno task bench:share                      # both backends, 50 and 1000 × 64 B
 * deno task bench:share --backend=epoll --scenarios=1000x64 --quick
 * ```
 *
 * Options: `--backend=deno|epoll` (default both), `--scenarios=ID,...`
 * (`CONNSxSIZE`, default `50x64,1000x64`), `--duration=SECONDS` (measured
 * window per run, default 3), `--warmup=SECONDS` (default 0.5), `--repeat=N`
 * (runs per cell, in rounds; the tables show medians and the largest max;
 * default 3), `--quick` (1 s window, 0.25 s warmup, 1 run), `--timer=MS` (default 5), `--fetch-every=MS`
 * (default 20), `--ping-size=BYTES` (default 64), `--ping-every=MS` (pause
 * between round trips, default 0), `--help`. `--serve` and `--side`
 * are the benchmark's own child mode, `--loadgen=auto|c|node` picks the load
 * generator (default: C if `cc` builds it, else Node). Linux only (it reads
 * `/proc`); every address is loopback and every run is bounded in time.
 *
 * @module
 */

import {
  Child,
  clockTicks,
  type CpuTicks,
  describeExit,
  loadEnded,
  loadResult,
  readCpu,
  readMachineTicks,
  RunFailed,
  startLoad,
} from "./_proc.ts";
import { fixed, type LoadResult, median, table } from "./_report.ts";
import { EchoHandler } from "./servers/asyncore_echo.ts";
import { announce, EchoListener } from "./servers/_listen.ts";
import { closeAll, loop } from "../asyncore.ts";
import { type Backend, getDefaultBackend } from "../socket.ts";
import { delay } from "@std/async";
import { parseFlags } from "./_cli.ts";
import {
  detectNode,
  type Loadgen,
  type LoadgenChoice,
  LoadgenUnavailable,
  loadgenUsage,
  parseLoadgenChoice,
  resolveLoadgen,
} from "./_loadgen.ts";
import { TextLineStream } from "@std/streams";

const BACKENDS: Backend[] = ["deno", "epoll"];
const SCRIPT = new URL(import.meta.url).pathname;
/** The most latency samples one series keeps (later ones are counted only). */
const MAX_SAMPLES = 1 << 22;
/** Stalls longer than this (ms) are flagged in the report. */
const STALL_MS = 100;
/** Timer lateness at p99 above this (ms) is flagged in the report. */
const LATE_TIMER_MS = 5;

interface Scenario {
  id: string;
  conns: number;
  size: number;
}

interface Options {
  backends: Backend[];
  scenarios: Scenario[];
  durationS: number;
  warmupS: number;
  timerMs: number;
  fetchEveryMs: number;
  pingSize: number;
  pingEveryMs: number;
  repeat: number;
  loadgen: LoadgenChoice;
}

const USAGE = `Usage: deno task bench:share [options]
  --backend=deno|epoll  one backend (default: both)
  --scenarios=ID,...    loads as CONNSxSIZE (default 50x64,1000x64)
  --duration=SECONDS    measured window per run (default 3; --quick: 1)
  --warmup=SECONDS      load before the window (default 0.5; --quick: 0.25)
  --repeat=N            runs per cell, in rounds; tables show medians
                        (default 3; --quick: 1)
  --quick               short runs (1 s window, 0.25 s warmup, 1 run)
  --timer=MS            the setTimeout series' delay (default 5)
  --fetch-every=MS      pause between fetch() calls (default 20)
  --ping-size=BYTES     the Deno.Conn ping-pong's message (default 64)
  --ping-every=MS       pause between its round trips (default 0: none)
${loadgenUsage(24)}`;

function parseOptions(
  args: string[],
): Options & { serve: boolean; side: boolean } {
  const flags = parseFlags(args, USAGE, {
    boolean: ["serve", "side"],
    string: [
      "backend",
      "scenarios",
      "duration",
      "warmup",
      "timer",
      "fetch-every",
      "ping-size",
      "ping-every",
      "repeat",
      "loadgen",
    ],
  });
  const quick = flags.boolean("quick");
  const number = (name: string, fallback: number, min: number): number => {
    const text = flags.string(name);
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!(n >= min)) {
      throw new RangeError(`--${name} must be >= ${min}, got ${text}`);
    }
    return n;
  };
  const backend = flags.string("backend");
  if (backend !== undefined && !BACKENDS.includes(backend as Backend)) {
    throw new TypeError(`--backend must be deno or epoll, got ${backend}`);
  }
  const scenarios = (flags.string("scenarios") ?? "50x64,1000x64").split(",")
    .filter((id) => id !== "").map((id): Scenario => {
      const match = /^(\d+)x(\d+)$/.exec(id);
      const conns = Number(match?.[1]);
      const size = Number(match?.[2]);
      if (!match || conns < 1 || conns > 10_000 || size < 2) {
        throw new RangeError(
          `--scenarios: ${id} is not CONNSxSIZE with 1..10000 connections of >= 2 bytes`,
        );
      }
      return { id, conns, size };
    });
  return {
    serve: flags.boolean("serve"),
    side: flags.boolean("side"),
    backends: backend === undefined ? BACKENDS : [backend as Backend],
    scenarios,
    durationS: number("duration", quick ? 1 : 3, 0.1),
    warmupS: number("warmup", quick ? 0.25 : 0.5, 0),
    timerMs: number("timer", 5, 1),
    fetchEveryMs: number("fetch-every", 20, 0),
    pingSize: Math.round(number("ping-size", 64, 1)),
    pingEveryMs: number("ping-every", 0, 0),
    repeat: Math.round(number("repeat", quick ? 1 : 3, 1)),
    loadgen: parseLoadgenChoice(flags.string("loadgen")),
  };
}

// ---------------------------------------------------------------------------
// The child: the echo server, and the side work on Deno's event loop.

/** A latency series, in ms. */
interface Series {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** What the child reports for the measured window. */
interface ServeResult {
  backend: Backend;
  seconds: number;
  /** How late each timer fired. */
  timers: Series | null;
  fetch: Series | null;
  conn: Series | null;
}

/** Latency samples of one kind, with the one in flight (a stall) at the end. */
class Samples {
  #values: number[] = [];
  #count = 0;
  /** When the operation in flight started; null when none is. */
  pending: number | null = null;

  add(ms: number): void {
    this.#count++;
    if (this.#values.length < MAX_SAMPLES) this.#values.push(ms);
  }

  reset(): void {
    this.#values = [];
    this.#count = 0;
  }

  /** The series so far; an operation still in flight counts in `max`. */
  summary(now: number): Series {
    const sorted = Float64Array.from(this.#values).sort();
    const at = (p: number): number =>
      sorted.length === 0
        ? NaN
        : sorted[Math.max(1, Math.ceil(p * sorted.length)) - 1];
    const stalled = this.pending === null ? 0 : now - this.pending;
    return {
      count: this.#count,
      p50: at(0.5),
      p99: at(0.99),
      max: Math.max(stalled, sorted.length === 0 ? 0 : sorted.at(-1)!),
    };
  }
}

/** The timers, fetches and Deno.Conn ping-pong the server shares its thread with. */
class SideWork {
  readonly timers = new Samples();
  readonly fetches = new Samples();
  readonly pings = new Samples();
  #stopped = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #http: Deno.HttpServer<Deno.NetAddr>;
  #client: Deno.Conn;
  #peer: Deno.Conn;

  private constructor(
    http: Deno.HttpServer<Deno.NetAddr>,
    client: Deno.Conn,
    peer: Deno.Conn,
  ) {
    this.#http = http;
    this.#client = client;
    this.#peer = peer;
  }

  static async start(opts: Options): Promise<SideWork> {
    const http = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("ok"),
    );
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const [client, peer] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      listener.accept(),
    ]);
    listener.close();
    client.setNoDelay(true);
    peer.setNoDelay(true);
    const work = new SideWork(http, client, peer);
    work.#tick(opts.timerMs, performance.now() + opts.timerMs);
    work.#guard(work.#fetchLoop(opts.fetchEveryMs));
    work.#guard(work.#echo());
    work.#guard(work.#pingLoop(opts.pingSize, opts.pingEveryMs));
    return work;
  }

  reset(): void {
    this.timers.reset();
    this.fetches.reset();
    this.pings.reset();
  }

  #tick(delayMs: number, due: number): void {
    this.timers.pending = due;
    this.#timer = setTimeout(() => {
      const now = performance.now();
      this.timers.add(now - due);
      if (!this.#stopped) this.#tick(delayMs, now + delayMs);
    }, delayMs);
  }

  async #fetchLoop(everyMs: number): Promise<void> {
    const url = `http://127.0.0.1:${this.#http.addr.port}/`;
    while (!this.#stopped) {
      const t0 = performance.now();
      this.fetches.pending = t0;
      const response = await fetch(url);
      await response.text();
      this.fetches.pending = null;
      this.fetches.add(performance.now() - t0);
      await delay(everyMs);
    }
  }

  async #pingLoop(size: number, everyMs: number): Promise<void> {
    const message = new Uint8Array(size).fill(0x61);
    const reply = new Uint8Array(size);
    while (!this.#stopped) {
      const t0 = performance.now();
      this.pings.pending = t0;
      await writeAll(this.#client, message);
      for (let got = 0; got < size;) {
        const n = await this.#client.read(reply.subarray(got));
        if (n === null) throw new Error("the ping-pong peer closed");
        got += n;
      }
      this.pings.pending = null;
      this.pings.add(performance.now() - t0);
      if (everyMs > 0) await delay(everyMs);
    }
  }

  async #echo(): Promise<void> {
    const buffer = new Uint8Array(65536);
    for (;;) {
      const n = await this.#peer.read(buffer);
      if (n === null) return;
      await writeAll(this.#peer, buffer.subarray(0, n));
    }
  }

  /** Reports a side loop's failure, unless it came from stopping. */
  #guard(work: Promise<void>): void {
    work.catch((error) => {
      if (!this.#stopped) console.error(`side work failed: ${error}`);
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#client.close();
    this.#peer.close();
    await this.#http.shutdown();
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) {
    off += await conn.write(data.subarray(off));
  }
}

/**
 * The child: serves echo on a free port, runs the side work if asked, and
 * measures between the `start` and `end` lines on stdin.
 */
async function serve(opts: Options, side: boolean): Promise<void> {
  const listener = new EchoListener(0, (sock) => new EchoHandler(sock));
  const work = side ? await SideWork.start(opts) : null;
  console.log(`backend ${getDefaultBackend()}`);
  announce(listener);
  const stop = new AbortController();
  const looping = loop({ signal: stop.signal });
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream())
    .pipeThrough(new TextLineStream());
  let t0 = performance.now();
  for await (const line of lines) {
    if (line === "start") {
      work?.reset();
      t0 = performance.now();
    } else if (line === "end") {
      const now = performance.now();
      const result: ServeResult = {
        backend: getDefaultBackend(),
        seconds: (now - t0) / 1000,
        timers: work?.timers.summary(now) ?? null,
        fetch: work?.fetches.summary(now) ?? null,
        conn: work?.pings.summary(now) ?? null,
      };
      console.log(JSON.stringify(result));
      break;
    }
  }
  stop.abort();
  closeAll();
  await work?.stop();
  await looping;
  Deno.exit(0);
}

// ---------------------------------------------------------------------------
// The parent: runs the children and the load generator, prints the tables.

/** One measured run. */
interface Run {
  backend: Backend;
  scenario: Scenario | null;
  side: boolean;
  serve: ServeResult;
  load: LoadResult | null;
  /** The server process's CPU use over the window, % of one core. */
  cpuPct: number;
  /**
   * CPU use of everything outside the benchmark over the window, % of one
   * core: interference on a shared machine.
   */
  otherCpuPct: number;
  /** Ping-pong round trips per second. */
  pingsPerSec: number;
  /** Runs whose medians this is. */
  runs: number;
}

const LISTENING = /listening on 127\.0\.0\.1:(\d+)/;
const JSON_LINE = /^\{.*\}$/;

async function runOnce(
  opts: Options,
  loadgen: Loadgen,
  ticks: number,
  backend: Backend,
  scenario: Scenario | null,
  side: boolean,
): Promise<Run> {
  const durationMs = Math.round(opts.durationS * 1000);
  const warmupMs = Math.round(opts.warmupS * 1000);
  const server = new Child("env", [
    `ASYNCORE_BACKEND=${backend}`,
    Deno.execPath(),
    "run",
    "-A",
    SCRIPT,
    "--serve",
    ...(side ? ["--side"] : []),
    `--timer=${opts.timerMs}`,
    `--fetch-every=${opts.fetchEveryMs}`,
    `--ping-size=${opts.pingSize}`,
    `--ping-every=${opts.pingEveryMs}`,
  ], { stdin: true });
  let gen: Child | null = null;
  try {
    const chosen = await server.waitFor(/^backend (\w+)$/, 15_000);
    const listening = await server.waitFor(LISTENING, 15_000);
    if (chosen === null || listening === null) {
      throw new RunFailed(`the server did not start${describeExit(server)}`);
    }
    if (chosen[1] !== backend) {
      throw new RunFailed(`the server runs on ${chosen[1]}, not ${backend}`);
    }
    if (scenario === null) {
      await delay(warmupMs);
    } else {
      gen = await startLoad(loadgen.cmd, loadgen.args, {
        port: Number(listening[1]),
        conns: scenario.conns,
        size: scenario.size,
        durationMs,
        warmupMs,
      });
    }
    await server.writeLine("start");
    const cpu0 = readCpu(server.pid);
    const gen0 = gen === null ? null : readCpu(gen.pid);
    const machine0 = readMachineTicks();
    const t0 = performance.now();
    if (gen === null) {
      await delay(durationMs);
    } else {
      await loadEnded(gen, durationMs);
    }
    const cpu1 = readCpu(server.pid);
    const gen1 = gen === null ? null : readCpu(gen.pid);
    const machine1 = readMachineTicks();
    const seconds = (performance.now() - t0) / 1000;
    await server.writeLine("end");
    const served = await server.waitFor(JSON_LINE, 10_000);
    if (served === null || cpu0 === null || cpu1 === null) {
      throw new RunFailed(`the server gave no result${describeExit(server)}`);
    }
    const load = gen === null ? null : await loadResult(gen);
    const used = (a: CpuTicks | null, b: CpuTicks | null): number =>
      a === null || b === null ? 0 : b.user + b.system - a.user - a.system;
    const busy = used(cpu0, cpu1);
    // Everything else the machine did (softirq aside: loopback packets).
    const other = machine0 === null || machine1 === null
      ? NaN
      : machine1.busy - machine0.busy - (machine1.softirq - machine0.softirq) -
        busy - used(gen0, gen1);
    const serve = JSON.parse(served[0]) as ServeResult;
    return {
      backend,
      scenario,
      side,
      serve,
      load,
      cpuPct: busy * 100 / ticks / seconds,
      otherCpuPct: Math.max(0, other * 100 / ticks / seconds),
      pingsPerSec: (serve.conn?.count ?? 0) / serve.seconds,
      runs: 1,
    };
  } finally {
    await gen?.stop();
    await server.stop();
  }
}

function ms(n: number): string {
  return fixed(n, n < 10 ? 2 : n < 100 ? 1 : 0);
}

function series(s: Series | null): string {
  return s === null ? "–" : `${ms(s.p50)} / ${ms(s.p99)} / ${ms(s.max)}`;
}

function loadLabel(scenario: Scenario | null): string {
  return scenario === null ? "none" : `${scenario.conns} × ${scenario.size} B`;
}

/** What the side work got, one row per run with it. */
function sideTable(runs: Run[], opts: Options): string[] {
  const rows = runs.filter((r) => r.side).map((r) => {
    const { timers, fetch, conn, seconds } = r.serve;
    return [
      r.backend,
      loadLabel(r.scenario),
      series(timers),
      `${fixed(fetch?.count ?? 0, 0)} in ${fixed(seconds, 1)} s`,
      series(fetch),
      fixed(r.pingsPerSec, 0),
      series(conn),
      fixed(r.cpuPct, 0),
      fixed(r.otherCpuPct, 0),
      stalls(r, opts).join("; ") || "none",
    ];
  });
  return table([
    "backend",
    "echo load",
    "timer lateness p50 / p99 / max ms",
    "fetches",
    "fetch p50 / p99 / max ms",
    "Deno.Conn rt/s",
    "Deno.Conn p50 / p99 / max ms",
    "server CPU %",
    "other CPU %",
    "flags",
  ], rows);
}

/** What sharing costs the echo: the same load with and without side work. */
function costTable(runs: Run[]): string[] {
  const rows: string[][] = [];
  for (const alone of runs.filter((r) => !r.side && r.load !== null)) {
    const shared = runs.find((r) =>
      r.side && r.backend === alone.backend && r.scenario === alone.scenario
    );
    const a = alone.load!;
    const s = shared?.load ?? null;
    const errors = a.errors + (s?.errors ?? 0);
    rows.push([
      alone.backend,
      loadLabel(alone.scenario),
      fixed(a.rtPerSec, 0),
      s === null ? "–" : fixed(s.rtPerSec, 0),
      s === null ? "–" : `${fixed(s.rtPerSec / a.rtPerSec, 2)}×`,
      `${ms(a.p99Us / 1000)} → ${s === null ? "–" : ms(s.p99Us / 1000)}`,
      `${fixed(alone.cpuPct, 0)} → ${shared ? fixed(shared.cpuPct, 0) : "–"}`,
      `${fixed(alone.otherCpuPct, 0)} → ${
        shared ? fixed(shared.otherCpuPct, 0) : "–"
      }`,
      errors === 0
        ? "0"
        : `${errors}: ${
          (a.errorSamples[0] ?? s?.errorSamples[0] ?? "")
            .replaceAll("|", "\\|").slice(0, 80)
        }`,
    ]);
  }
  return table([
    "backend",
    "echo load",
    "echo rt/s alone",
    "with side work",
    "ratio",
    "echo p99 ms alone → with",
    "server CPU % alone → with",
    "other CPU % alone → with",
    "errors",
  ], rows);
}

/** One cell from repeated runs: the median of each figure, the largest max. */
function medianRun(runs: Run[]): Run {
  if (runs.length === 1) return runs[0];
  const of = <T>(items: T[], pick: (item: T) => number): number =>
    median(items.map(pick));
  const series = (pick: (serve: ServeResult) => Series | null) => {
    const all = runs.map((r) => pick(r.serve)).filter((s) => s !== null);
    return all.length === 0 ? null : {
      count: of(all, (s) => s.count),
      p50: of(all, (s) => s.p50),
      p99: of(all, (s) => s.p99),
      max: Math.max(...all.map((s) => s.max)),
    };
  };
  const loads = runs.map((r) => r.load).filter((l) => l !== null);
  const first = runs[0];
  return {
    ...first,
    serve: {
      backend: first.serve.backend,
      seconds: of(runs, (r) => r.serve.seconds),
      timers: series((s) => s.timers),
      fetch: series((s) => s.fetch),
      conn: series((s) => s.conn),
    },
    load: loads.length === 0 ? null : {
      ...loads[0],
      rtPerSec: of(loads, (l) => l.rtPerSec),
      p50Us: of(loads, (l) => l.p50Us),
      p99Us: of(loads, (l) => l.p99Us),
      maxUs: Math.max(...loads.map((l) => l.maxUs)),
      errors: loads.reduce((n, l) => n + l.errors, 0),
      errorSamples: loads.flatMap((l) => l.errorSamples).slice(0, 10),
    },
    cpuPct: of(runs, (r) => r.cpuPct),
    otherCpuPct: of(runs, (r) => r.otherCpuPct),
    pingsPerSec: of(runs, (r) => r.pingsPerSec),
    runs: runs.length,
  };
}

/** Where the side work starved: late timers, a stalled fetch or Deno.Conn. */
function stalls(run: Run, opts: Options): string[] {
  const { timers, fetch, conn, seconds } = run.serve;
  const out: string[] = [];
  if (timers && timers.p99 > LATE_TIMER_MS) {
    out.push(`timers p99 > ${LATE_TIMER_MS} ms`);
  }
  const expected = seconds * 1000 / (opts.fetchEveryMs + 1);
  if (fetch && (fetch.max > STALL_MS || fetch.count < expected / 4)) {
    out.push("fetch stalled");
  }
  if (conn && (conn.max > STALL_MS || conn.count === 0)) {
    out.push("Deno.Conn stalled");
  }
  return out;
}

async function main(): Promise<void> {
  const opts = parseOptions(Deno.args);
  if (opts.serve) {
    await serve(opts, opts.side);
    return;
  }
  if (Deno.build.os !== "linux") {
    console.error("The sharing benchmark reads /proc and needs Linux.");
    Deno.exit(1);
  }
  let loadgen: Loadgen | null = null;
  Child.killAllOnSignal(() => loadgen?.[Symbol.dispose]());
  try {
    loadgen = await resolveLoadgen(opts.loadgen, await detectNode());
  } catch (error) {
    if (!(error instanceof LoadgenUnavailable)) throw error;
    console.error(`--loadgen=${opts.loadgen}: ${error.message}.`);
    Deno.exit(1);
  }
  using _ = loadgen;
  const ticks = await clockTicks();
  const plan: { backend: Backend; scenario: Scenario | null; side: boolean }[] =
    [];
  for (const backend of opts.backends) {
    plan.push({ backend, scenario: null, side: true });
    for (const scenario of opts.scenarios) {
      plan.push({ backend, scenario, side: false });
      plan.push({ backend, scenario, side: true });
    }
  }
  console.error(
    `event-loop sharing: ${plan.length} cells × ${opts.repeat} runs of ` +
      `${opts.durationS} s ` +
      `(+${opts.warmupS} s warmup each), ` +
      `load generator ${loadgen.description}`,
  );
  const measured: Run[][] = plan.map(() => []);
  for (let round = 1; round <= opts.repeat; round++) {
    for (const [i, step] of plan.entries()) {
      const label =
        `${step.backend.padEnd(5)} ${loadLabel(step.scenario).padEnd(12)} ` +
        (step.side ? "with side work" : "echo alone") +
        (opts.repeat > 1 ? ` ${round}/${opts.repeat}` : "");
      try {
        const run = await runOnce(
          opts,
          loadgen,
          ticks,
          step.backend,
          step.scenario,
          step.side,
        );
        measured[i].push(run);
        const { timers } = run.serve;
        const parts = [
          run.load && `echo ${fixed(run.load.rtPerSec, 0)} rt/s`,
          timers && `timers p99 ${ms(timers.p99)} ms late`,
          `server CPU ${fixed(run.cpuPct, 0)}%`,
        ];
        console.error(`${label}: ${parts.filter(Boolean).join(", ")}`);
      } catch (error) {
        const why = error instanceof RunFailed
          ? error.message
          : `harness error: ${error instanceof Error ? error.stack : error}`;
        console.error(`${label}: FAILED: ${why}`);
      }
    }
  }
  const runs = measured.filter((cell) => cell.length > 0).map(medianRun);
  const note = opts.repeat > 1
    ? [`Medians of ${opts.repeat} runs per cell; each max is the largest.`, ""]
    : [];
  console.log(
    [
      "",
      `### What the rest of the program gets (timers every ${opts.timerMs} ms, ` +
      `fetch every ${opts.fetchEveryMs} ms, ${opts.pingSize} B Deno.Conn ping-pong` +
      (opts.pingEveryMs > 0
        ? ` every ${opts.pingEveryMs} ms)`
        : ", closed-loop)"),
      "",
      ...note,
      ...sideTable(runs, opts),
      "",
      "### What sharing costs the echo server",
      "",
      ...costTable(runs),
      "",
    ].join("\n"),
  );
}

if (import.meta.main) {
  try {
    await main();
  } finally {
    Child.killAll();
  }
}
