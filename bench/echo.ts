/**
 * The echo benchmark: every echo server under the same closed-loop load, in
 * one run, compared with a raw `Deno.Conn` echo server.
 *
 * Each server runs in its own process, the load generator in another; the
 * server's own CPU time per round trip (user and system, from
 * `/proc/PID/stat`) and its peak RSS are measured over the measured window.
 * The generator is `loadgen.c` (built with `cc -O2` into a temporary
 * directory for the run) unless `--loadgen=node` picks `loadgen_node.mjs`,
 * the same program on Node's `net`: on 2 cores the Node one spent a whole
 * core at 50 × 64 B and bounded every server at about the same round trips/s,
 * which the C one, at a fraction of the CPU per round trip, does not.
 * (`--loadgen=auto`, the default, falls back to Node when `cc` is missing.)
 * Ratios are to the raw Deno server; for CPU per round trip, to its runs on
 * either side of each server's in a round (it runs again after every few
 * servers), since the host's speed drifts by tens of percent within minutes.
 *
 * The report ends with issue 23's targets checked against the run
 * (`TARGETS`): on the epoll backend, CPU per round trip in every load
 * scenario against the bare epoll echo (the floor) and against CPython's
 * asyncore and asynchat, p99 at 1000 connections and RSS per idle connection
 * against the floor; on the default backend, CPU per round trip against raw
 * Deno. A CPU ratio to a server other than raw Deno divides the two servers'
 * ratios to the raw Deno runs beside them, so the drift cancels. A target
 * whose rows the run did not measure (`--only`, `--scenarios`, no FFI) is
 * n/a.
 *
 * ```sh
 * deno task bench                     # everything, moderate defaults
 * deno task bench --quick             # 1 s per run
 * deno task bench --only=asyncore,asynchat --scenarios=50x64,idle10k
 * ```
 *
 * Options: `--duration=SECONDS` (measured window per run, default 3),
 * `--warmup=SECONDS` (default 0.5), `--repeat=N` (runs per server and
 * scenario, in rounds; medians are shown; default 3), `--quick`, `--only=ID,...` (servers; the
 * raw Deno reference always runs), `--scenarios=ID,...`,
 * `--idle=N` (idle connections, default 10000), `--loadgen=auto|c|node`,
 * `--out=PATH` (Markdown report; a full run writes `bench/results/latest.md`,
 * a partial one `bench/results/last-partial.md`), `--compare=DIR` (each of
 * our servers also runs from DIR, another checkout such as a git worktree of
 * the commit before, as `ID@base` in the same rounds), `--help`.
 *
 * @module
 */

import {
  Child,
  clockTicks,
  countOpenFiles,
  type CpuTicks,
  describeExit,
  hardOpenFilesLimit,
  loadEnded,
  loadResult,
  maxOpenFiles,
  readCmdline,
  readCpu,
  readMachineTicks,
  readMemory,
  RunFailed,
  runText,
  startLoad,
} from "./_proc.ts";
import { delay } from "@std/async";
import { parseFlags } from "./_cli.ts";
import {
  detectNode,
  type Loadgen,
  type LoadgenChoice,
  LoadgenUnavailable,
  loadgenUsage,
  type NodeRuntime,
  parseLoadgenChoice,
  resolveLoadgen,
} from "./_loadgen.ts";
import { unsupportedReason } from "../_epoll/libc.ts";
import {
  cpuPerRt,
  type IdleResult,
  type IdleRow,
  type LoadRow,
  median,
  PAIR_EVERY,
  renderIdleTable,
  renderLoadTable,
  renderReport,
  type Report,
  type Row,
  type ScenarioResult,
  type SkippedRow,
  type TargetCheck,
} from "./_report.ts";

/** A server under test. */
export interface ServerSpec {
  /** Short id used by `--only` and in the tables. */
  id: string;
  /** What it is, for the tables. */
  label: string;
  /** Ours (built on this module) or a baseline. */
  group: "ours" | "baseline";
  /** The runtime it needs. */
  runtime: "deno" | "python" | "node";
  /** The script, relative to `bench/servers/`. */
  script: string;
  /** Extra arguments after the port. */
  extraArgs?: string[];
  /**
   * The `bench/` folder of another checkout of this project the script is
   * taken from (`--compare`), instead of this one.
   */
  benchDir?: string;
  /** Deno's permission flags for it; `["--allow-net"]` when absent. */
  permissions?: string[];
  /** Scenarios it runs in; all when absent. */
  scenarios?: string[];
  /**
   * One of ours run unmodified on the epoll backend: `ASYNCORE_BACKEND=epoll`
   * with `--allow-ffi --allow-env` added.
   */
  backend?: "epoll";
}

/** A load scenario: `conns` connections of `size`-byte messages, or idle. */
export interface Scenario {
  id: string;
  label: string;
  conns: number;
  size: number;
  /** Idle connections instead of load. */
  idle?: boolean;
}

/** The reference every ratio is taken against. */
export const REFERENCE = "raw-deno";

/** Every server, in table order. */
export const SERVERS: ServerSpec[] = [
  {
    id: REFERENCE,
    label: "raw Deno.Conn echo (64 KiB buffer)",
    group: "baseline",
    runtime: "deno",
    script: "raw_deno_echo.ts",
  },
  {
    id: "raw-deno-512",
    label: "raw Deno.Conn echo (512 B buffer)",
    group: "baseline",
    runtime: "deno",
    script: "raw_deno_echo.ts",
    extraArgs: ["--buffer=512"],
    scenarios: ["idle10k"],
  },
  {
    id: "epoll",
    label: "bare epoll echo through FFI (the floor; Linux)",
    group: "baseline",
    runtime: "deno",
    script: "epoll_echo.ts",
    permissions: ["--allow-ffi"],
  },
  {
    id: "asyncore",
    label: "Dispatcher echo (own buffer)",
    group: "ours",
    runtime: "deno",
    script: "asyncore_echo.ts",
  },
  {
    id: "with-send",
    label: "DispatcherWithSend echo",
    group: "ours",
    runtime: "deno",
    script: "dispatcher_with_send_echo.ts",
  },
  {
    id: "asynchat",
    label: "AsyncChat line echo",
    group: "ours",
    runtime: "deno",
    script: "asynchat_echo.ts",
  },
  {
    id: "asyncore-epoll",
    label: "Dispatcher echo (own buffer), epoll backend",
    group: "ours",
    runtime: "deno",
    script: "asyncore_echo.ts",
    backend: "epoll",
  },
  {
    id: "asyncore-into-epoll",
    label:
      "Dispatcher echo reading with recvInto() into one reused buffer, epoll backend",
    group: "ours",
    runtime: "deno",
    script: "asyncore_echo.ts",
    extraArgs: ["--recv-into"],
    backend: "epoll",
    scenarios: ["50x64", "10x16k"],
  },
  {
    id: "with-send-epoll",
    label: "DispatcherWithSend echo, epoll backend",
    group: "ours",
    runtime: "deno",
    script: "dispatcher_with_send_echo.ts",
    backend: "epoll",
  },
  {
    id: "asynchat-epoll",
    label: "AsyncChat line echo, epoll backend",
    group: "ours",
    runtime: "deno",
    script: "asynchat_echo.ts",
    backend: "epoll",
  },
  {
    id: "py-asyncore",
    label: "CPython asyncore echo (poll)",
    group: "baseline",
    runtime: "python",
    script: "asyncore_echo.py",
  },
  {
    id: "py-asynchat",
    label: "CPython asynchat line echo (poll)",
    group: "baseline",
    runtime: "python",
    script: "asynchat_echo.py",
  },
  {
    id: "py-asyncio",
    label: "CPython asyncio echo (Protocol)",
    group: "baseline",
    runtime: "python",
    script: "asyncio_echo.py",
  },
  {
    id: "node",
    label: "Node net echo",
    group: "baseline",
    runtime: "node",
    script: "node_echo.mjs",
  },
];

/** Every scenario, in run order. */
export const SCENARIOS: Scenario[] = [
  { id: "1x64", label: "1 connection × 64 B", conns: 1, size: 64 },
  { id: "50x64", label: "50 connections × 64 B", conns: 50, size: 64 },
  { id: "1000x64", label: "1000 connections × 64 B", conns: 1000, size: 64 },
  { id: "10x16k", label: "10 connections × 16 KiB", conns: 10, size: 16384 },
  {
    id: "idle10k",
    label: "10,000 idle connections",
    conns: 10_000,
    size: 64,
    idle: true,
  },
];

interface Options {
  durationS: number;
  warmupS: number;
  only: string[] | null;
  scenarios: string[] | null;
  idle: number;
  out: string | null;
  quick: boolean;
  repeat: number;
  loadgen: LoadgenChoice;
  compare: string | null;
}

const USAGE = `Usage: deno task bench [options]
  --duration=SECONDS   measured window per run (default 3; --quick: 1)
  --warmup=SECONDS     load before the window, not measured (default 0.5)
  --repeat=N           runs per server and load scenario, in rounds; the
                       tables show medians (default 3; --quick: 1)
  --quick              short runs (1 s window, 0.25 s warmup, 1 run,
                       2000 idle connections)
  --only=ID,...        servers to run (raw-deno always runs): ${
  SERVERS.map((s) => s.id).join(", ")
}
  --scenarios=ID,...   scenarios to run: ${
  SCENARIOS.map((s) => s.id).join(", ")
}
  --idle=N             connections in the idle scenario (default 10000)
${loadgenUsage(23)}
  --out=PATH           where to write the Markdown report
  --compare=DIR        also run each of our servers from DIR, another
                       checkout of this project (e.g. a git worktree of
                       the commit before), as ID@base in the same rounds`;

function parseOptions(args: string[]): Options {
  const flags = parseFlags(args, USAGE, {
    string: [
      "duration",
      "warmup",
      "repeat",
      "idle",
      "only",
      "scenarios",
      "out",
      "loadgen",
      "compare",
    ],
  });
  const quick = flags.boolean("quick");
  const duration = flags.string("duration");
  const warmup = flags.string("warmup");
  const repeat = flags.string("repeat");
  const idle = flags.string("idle");
  const only = flags.string("only");
  const scenarios = flags.string("scenarios");
  let warmupS = quick ? 0.25 : 0.5;
  if (warmup !== undefined) {
    warmupS = Number(warmup);
    if (!(warmupS >= 0)) {
      throw new RangeError(`--warmup must be >= 0, got ${warmup}`);
    }
  }
  return {
    durationS: duration === undefined
      ? (quick ? 1 : 3)
      : positive("--duration", duration),
    warmupS,
    repeat: repeat === undefined
      ? (quick ? 1 : 3)
      : Math.round(positive("--repeat", repeat)),
    idle: idle === undefined
      ? (quick ? 2000 : 10_000)
      : Math.round(positive("--idle", idle)),
    only: only === undefined
      ? null
      : listOf("--only", only, SERVERS.map((s) => s.id)),
    scenarios: scenarios === undefined
      ? null
      : listOf("--scenarios", scenarios, SCENARIOS.map((s) => s.id)),
    out: flags.string("out") ?? null,
    compare: flags.string("compare") ?? null,
    quick,
    loadgen: parseLoadgenChoice(flags.string("loadgen")),
  };
}

function positive(name: string, value: string): number {
  const n = Number(value);
  if (!(n > 0)) throw new RangeError(`${name} must be > 0, got ${value}`);
  return n;
}

function listOf(name: string, value: string, known: string[]): string[] {
  const ids = value.split(",").filter((id) => id !== "");
  for (const id of ids) {
    if (!known.includes(id)) {
      throw new TypeError(`${name}: unknown id ${id} (known: ${known})`);
    }
  }
  return ids;
}

/** How to start each runtime, or why it cannot be used. */
interface Runtimes {
  deno: { exe: string; version: string };
  python: { exe: string; version: string } | { missing: string };
  /** Why CPython's asyncore and asynchat cannot be used, or null. */
  pythonAsyncore: string | null;
  node: NodeRuntime;
}

async function detectRuntimes(): Promise<Runtimes> {
  const deno = {
    exe: Deno.execPath(),
    version: `Deno ${Deno.version.deno} (V8 ${Deno.version.v8})`,
  };
  let python: Runtimes["python"] = { missing: "python3 not found" };
  let pythonAsyncore: string | null = "python3 not found";
  const pyOut = await runText("python3", [
    "-c",
    "import sys; print(sys.executable); print(sys.version.split()[0])",
  ]);
  if (pyOut !== null) {
    const [exe, version] = pyOut.trim().split("\n");
    python = { exe, version: `CPython ${version}` };
    // asyncore and asynchat left the standard library in Python 3.12.
    pythonAsyncore = await runText(exe, [
        "-W",
        "ignore",
        "-c",
        "import asyncore, asynchat",
      ]) === null
      ? `CPython ${version} has no asyncore and asynchat modules`
      : null;
  }
  return { deno, python, pythonAsyncore, node: await detectNode() };
}

/** The baseline scripts that need CPython's asyncore and asynchat. */
const PYTHON_ASYNCORE_SCRIPTS = ["asyncore_echo.py", "asynchat_echo.py"];

const BENCH_DIR = decodeURIComponent(new URL(".", import.meta.url).pathname);

/** The command that starts `server`, or the reason it cannot run here. */
function serverCommand(
  server: ServerSpec,
  runtimes: Runtimes,
): { cmd: string; args: string[] } | { skip: string } {
  const script = `${server.benchDir ?? BENCH_DIR}servers/${server.script}`;
  const extra = server.extraArgs ?? [];
  switch (server.runtime) {
    case "deno":
      try {
        Deno.statSync(script);
      } catch {
        return { skip: `bench/servers/${server.script} does not exist yet` };
      }
      if (
        server.permissions?.includes("--allow-ffi") ||
        server.backend === "epoll"
      ) {
        const reason = unsupportedReason();
        if (reason !== null) return { skip: reason };
      }
      if (server.backend === "epoll") {
        return {
          cmd: "env",
          args: [
            "ASYNCORE_BACKEND=epoll",
            runtimes.deno.exe,
            "run",
            ...(server.permissions ?? ["--allow-net"]),
            "--allow-ffi",
            "--allow-env",
            script,
            "0",
            ...extra,
          ],
        };
      }
      return {
        cmd: runtimes.deno.exe,
        args: [
          "run",
          ...(server.permissions ?? ["--allow-net"]),
          script,
          "0",
          ...extra,
        ],
      };
    case "python":
      if ("missing" in runtimes.python) {
        return { skip: runtimes.python.missing };
      }
      if (
        PYTHON_ASYNCORE_SCRIPTS.includes(server.script) &&
        runtimes.pythonAsyncore
      ) {
        return { skip: runtimes.pythonAsyncore };
      }
      return {
        cmd: runtimes.python.exe,
        args: ["-W", "ignore", script, "0", ...extra],
      };
    case "node":
      if ("missing" in runtimes.node) return { skip: runtimes.node.missing };
      return { cmd: runtimes.node.exe, args: [script, "0", ...extra] };
  }
}

const LISTENING = /listening on (?:127\.0\.0\.1|\[?::1\]?):(\d+)/;

async function startServer(
  server: ServerSpec,
  command: { cmd: string; args: string[] },
): Promise<{ child: Child; port: number }> {
  const child = new Child(command.cmd, command.args);
  const match = await child.waitFor(LISTENING, 15_000);
  if (match === null) {
    await child.stop(500);
    throw new RunFailed(
      `no "listening on" line within 15 s${describeExit(child)}`,
    );
  }
  // The pid must be the server itself (sh exec'd it), or /proc lies.
  if (!readCmdline(child.pid).includes(server.script)) {
    await child.stop(500);
    throw new RunFailed(`pid ${child.pid} is not the server process`);
  }
  return { child, port: Number(match[1]) };
}

/** Everything a run needs to know about the whole benchmark. */
interface Context {
  opts: Options;
  runtimes: Runtimes;
  ticks: number;
  loadgen: Loadgen;
}

function ticksBetween(a: CpuTicks, b: CpuTicks): CpuTicks {
  return { user: b.user - a.user, system: b.system - a.system };
}

async function runLoad(
  ctx: Context,
  server: ServerSpec,
  command: { cmd: string; args: string[] },
  scenario: Scenario,
): Promise<LoadRow> {
  const durationMs = Math.round(ctx.opts.durationS * 1000);
  const warmupMs = Math.round(ctx.opts.warmupS * 1000);
  const { child, port } = await startServer(server, command);
  let gen: Child | null = null;
  try {
    gen = await startLoad(ctx.loadgen.cmd, ctx.loadgen.args, {
      port,
      conns: scenario.conns,
      size: scenario.size,
      durationMs,
      warmupMs,
    });
    const cpu0 = readCpu(child.pid);
    const gen0 = readCpu(gen.pid);
    const machine0 = readMachineTicks();
    const t0 = performance.now();
    await loadEnded(gen, durationMs);
    const cpu1 = readCpu(child.pid);
    const gen1 = readCpu(gen.pid);
    const machine1 = readMachineTicks();
    const seconds = (performance.now() - t0) / 1000;
    const memory = readMemory(child.pid);
    if (
      cpu0 === null || cpu1 === null || memory === null || child.exited ||
      Number.isNaN(memory.hwmKiB)
    ) {
      throw new RunFailed(`the server died under load${describeExit(child)}`);
    }
    const result = await loadResult(gen);
    const cpu = ticksBetween(cpu0, cpu1);
    const genCpu = gen0 && gen1 ? ticksBetween(gen0, gen1) : null;
    const usPerTick = 1e6 / ctx.ticks;
    const rtts = Math.max(1, result.rtts);
    const pct = (ticks: number): number => ticks * 100 / ctx.ticks / seconds;
    const genTicks = genCpu === null ? NaN : genCpu.user + genCpu.system;
    const softirq = machine0 === null || machine1 === null
      ? NaN
      : machine1.softirq - machine0.softirq;
    const other = machine0 === null || machine1 === null
      ? NaN
      : machine1.busy - machine0.busy - softirq - cpu.user - cpu.system -
        genTicks;
    return {
      kind: "load",
      server: server.id,
      result,
      userUsPerRt: cpu.user * usPerTick / rtts,
      sysUsPerRt: cpu.system * usPerTick / rtts,
      serverCpuPct: pct(cpu.user + cpu.system),
      genCpuPct: pct(genTicks),
      genUsPerRt: genTicks * usPerTick / rtts,
      softirqPct: pct(softirq),
      otherCpuPct: Math.max(0, pct(other)),
      runs: 1,
      peakRssMiB: memory.hwmKiB / 1024,
    };
  } finally {
    await gen?.stop();
    await child.stop();
  }
}

/** Part of the idle connections, opened by one generator that holds them. */
interface IdleBatch {
  gen: Child;
  echoed: number;
}

async function openIdle(
  ctx: Context,
  port: number,
  count: number,
): Promise<IdleBatch> {
  const gen = new Child(ctx.loadgen.cmd, [
    ...ctx.loadgen.args,
    `--port=${port}`,
    `--idle=${count}`,
    "--connect-timeout=60000",
    "--hold=120000",
  ], { stdin: true });
  const ready = await gen.waitFor(/^ready (\d+)$/, 130_000);
  if (ready === null) {
    await gen.stop();
    throw new RunFailed(`load generator never got ready${describeExit(gen)}`);
  }
  return { gen, echoed: Number(ready[1]) };
}

async function closeIdle(batch: IdleBatch): Promise<IdleResult | null> {
  await batch.gen.writeLine("close");
  const json = await batch.gen.waitFor(/^\{.*\}$/, 30_000);
  return json === null ? null : (JSON.parse(json[0]) as IdleResult);
}

/**
 * Opens the idle connections in two batches, a tenth then the rest, and
 * reads the server's RSS before, between and after: the growth over the
 * second batch alone is what each further connection costs, without the
 * one-off costs the first connections bring (code paged in, heap grown).
 */
async function runIdle(
  ctx: Context,
  server: ServerSpec,
  command: { cmd: string; args: string[] },
  count: number,
): Promise<IdleRow> {
  const { child, port } = await startServer(server, command);
  const batches: IdleBatch[] = [];
  try {
    const limit = maxOpenFiles(child.pid);
    if (limit !== null && limit < count + 64) {
      throw new RunFailed(
        `the server may open only ${limit} files, ${count} connections need more`,
      );
    }
    await delay(500);
    const before = readMemory(child.pid);
    const filesBefore = countOpenFiles(child.pid);
    const first = Math.ceil(count / 10);
    batches.push(await openIdle(ctx, port, first));
    await delay(1000);
    const between = readMemory(child.pid);
    if (count > first) batches.push(await openIdle(ctx, port, count - first));
    const echoed = batches.reduce((sum, b) => sum + b.echoed, 0);
    const laterEchoed = echoed - batches[0].echoed;
    // Let the connections settle, then see what holding them costs.
    await delay(1000);
    const cpu0 = readCpu(child.pid);
    const t0 = performance.now();
    await delay(2000);
    const cpu1 = readCpu(child.pid);
    const seconds = (performance.now() - t0) / 1000;
    const after = readMemory(child.pid);
    const files = countOpenFiles(child.pid);
    if (
      before === null || between === null || after === null ||
      cpu0 === null || cpu1 === null || child.exited ||
      Number.isNaN(after.rssKiB)
    ) {
      throw new RunFailed(`the server died${describeExit(child)}`);
    }
    const results: (IdleResult | null)[] = [];
    for (const batch of batches) results.push(await closeIdle(batch));
    const cpu = ticksBetween(cpu0, cpu1);
    const perConn = (grown: number, conns: number) =>
      conns > 0 ? grown / conns : NaN;
    return {
      kind: "idle",
      server: server.id,
      requested: count,
      echoed,
      errors: results.reduce((sum, r) => sum + (r?.errors ?? NaN), 0),
      errorSamples: results.flatMap((r) =>
        r?.errorSamples ?? ["no result from the generator"]
      ),
      openSeconds: results.reduce((sum, r) => sum + (r?.openMs ?? NaN), 0) /
        1000,
      rssBeforeMiB: before.rssKiB / 1024,
      rssAfterMiB: after.rssKiB / 1024,
      peakRssMiB: after.hwmKiB / 1024,
      kibPerConn: perConn(after.rssKiB - before.rssKiB, echoed),
      anonKibPerConn: perConn(after.anonKiB - before.anonKiB, echoed),
      laterKibPerConn: perConn(after.rssKiB - between.rssKiB, laterEchoed),
      firstBatch: first,
      idleCpuPct: (cpu.user + cpu.system) * 100 / ctx.ticks / seconds,
      serverFiles: files !== null && filesBefore !== null
        ? files - filesBefore
        : NaN,
    };
  } finally {
    for (const batch of batches) await batch.gen.stop();
    await child.stop();
  }
}

/** The bare epoll echo: the epoll backend's floor (no library). */
const FLOOR = "epoll";

/**
 * A target of issue 23, a ratio within one run: a figure of `server` at most
 * `bound` × the same figure of `against`.
 */
type Target =
  | {
    /** CPU per round trip, in every load scenario. */
    kind: "cpu";
    server: string;
    against: string;
    bound: number;
    /** Also say what this server (the backend's floor) reached. */
    floor?: string;
  }
  | {
    /** p99 latency in one load scenario. */
    kind: "p99";
    scenario: string;
    server: string;
    against: string;
    bound: number;
  }
  | {
    /** RSS per idle connection over all but the first tenth of them. */
    kind: "idle-rss";
    server: string;
    against: string;
    bound: number;
  };

/** Issue 23's targets: the epoll backend's, then the default backend's. */
const TARGETS: Target[] = [
  { kind: "cpu", server: "asyncore-epoll", against: FLOOR, bound: 1.10 },
  { kind: "cpu", server: "asynchat-epoll", against: FLOOR, bound: 1.25 },
  {
    kind: "cpu",
    server: "asyncore-epoll",
    against: "py-asyncore",
    bound: 1,
    floor: FLOOR,
  },
  {
    kind: "cpu",
    server: "asynchat-epoll",
    against: "py-asynchat",
    bound: 1,
    floor: FLOOR,
  },
  {
    kind: "p99",
    scenario: "1000x64",
    server: "asyncore-epoll",
    against: FLOOR,
    bound: 1.1,
  },
  { kind: "idle-rss", server: "asyncore-epoll", against: FLOOR, bound: 1.2 },
  { kind: "cpu", server: "asyncore", against: REFERENCE, bound: 1.15 },
  { kind: "cpu", server: "asynchat", against: REFERENCE, bound: 1.30 },
];

/** How the target lines name the servers they compare with. */
const CALLED: Record<string, string> = {
  [FLOOR]: "floor",
  [REFERENCE]: "raw Deno",
  "py-asyncore": "CPython asyncore",
  "py-asynchat": "CPython asynchat",
};

/** `ratio` with two decimals, or three when two would show the bound itself. */
function showRatio(ratio: number, bound: number): string {
  const two = ratio.toFixed(2);
  return `${two === bound.toFixed(2) ? ratio.toFixed(3) : two}×`;
}

function checkTargets(scenarios: ScenarioResult[]): TargetCheck[] {
  // `server`'s row in `scenario`, or why there is no usable one.
  const rowOf = (scenario: string, server: string): Row | string => {
    const ran = scenarios.find((s) => s.scenario.id === scenario);
    if (ran === undefined) return `${scenario} not run`;
    const row = ran.rows.find((r) => r.server === server);
    if (row === undefined) return `${server} not run`;
    if (row.kind !== "load" && row.kind !== "idle") {
      return `${server} ${row.kind}`;
    }
    const errors = row.kind === "load" ? row.result.errors : row.errors;
    return errors === 0 ? row : `${server} had ${errors} errors`;
  };
  const load = (scenario: string, server: string): LoadRow | string => {
    const row = rowOf(scenario, server);
    return typeof row === "string" || row.kind === "load"
      ? row
      : `${server} not run`;
  };
  const idleScenario = SCENARIOS.find((s) => s.idle)!.id;
  const idle = (server: string): IdleRow | string => {
    const row = rowOf(idleScenario, server);
    return typeof row === "string" || row.kind === "idle"
      ? row
      : `${server} not run`;
  };
  // One check, `ratio(ours, theirs) ≤ bound`; n/a, saying why, when either
  // row is missing.
  const check = <R extends object>(
    text: string,
    bound: number,
    ours: R | string,
    theirs: R | string,
    show: (row: R) => string,
    unit: string,
    ratio: (ours: R, theirs: R) => { value: number; how: string },
  ): TargetCheck => {
    if (typeof ours === "string" || typeof theirs === "string") {
      const why = [ours, theirs].filter((r) => typeof r === "string");
      return {
        text,
        pass: null,
        detail: `not measured (${[...new Set(why)].join(", ")})`,
      };
    }
    const { value, how } = ratio(ours, theirs);
    return {
      text,
      pass: value <= bound,
      detail: `${show(ours)} vs ${show(theirs)} ${unit}: ${
        showRatio(value, bound)
      } (${how})`,
    };
  };
  // CPU per round trip over `theirs`: the runs' own ratios to the raw Deno
  // runs beside them (for a server other than raw Deno, one over the other,
  // so the host's drift cancels), or a ratio of medians without them.
  const cpuRatio = (
    ours: LoadRow,
    theirs: LoadRow,
  ): { value: number; how: string } => {
    if (theirs.server === REFERENCE && ours.cpuRatio !== undefined) {
      return {
        value: ours.cpuRatio,
        how: "paired with the raw Deno runs beside each run",
      };
    }
    if (ours.cpuRatio !== undefined && theirs.cpuRatio !== undefined) {
      return {
        value: ours.cpuRatio / theirs.cpuRatio,
        how: `paired through raw Deno: ${ours.cpuRatio.toFixed(2)}× / ${
          theirs.cpuRatio.toFixed(2)
        }×`,
      };
    }
    return { value: cpuPerRt(ours) / cpuPerRt(theirs), how: "medians" };
  };
  const loadScenarios = SCENARIOS.filter((s) => !s.idle).map((s) => s.id);
  const checks: TargetCheck[] = [];
  for (const target of TARGETS) {
    const { server, against, bound } = target;
    const than = `≤ ${bound.toFixed(2)}× ${CALLED[against] ?? against}`;
    switch (target.kind) {
      case "cpu":
        for (const scenario of loadScenarios) {
          const theirs = load(scenario, against);
          const result = check(
            `${server} CPU per round trip at ${scenario} ${than}`,
            bound,
            load(scenario, server),
            theirs,
            (row) => cpuPerRt(row).toFixed(1),
            "µs",
            cpuRatio,
          );
          const floor = target.floor === undefined
            ? undefined
            : load(scenario, target.floor);
          if (
            result.pass !== null && typeof floor === "object" &&
            typeof theirs === "object"
          ) {
            // So a bound below what the bare floor reaches shows as such.
            result.detail += `; the floor: ${
              cpuRatio(floor, theirs).value.toFixed(2)
            }×`;
          }
          checks.push(result);
        }
        break;
      case "p99":
        checks.push(check(
          `${server} p99 at ${target.scenario} ${than}`,
          bound,
          load(target.scenario, server),
          load(target.scenario, against),
          (row) => (row.result.p99Us / 1000).toFixed(2),
          "ms",
          (ours, theirs) => ({
            value: ours.result.p99Us / theirs.result.p99Us,
            how: "medians",
          }),
        ));
        break;
      case "idle-rss": {
        const ours = idle(server);
        const theirs = idle(against);
        const measured = [ours, theirs].find((r): r is IdleRow =>
          typeof r === "object"
        );
        const first = measured?.firstBatch.toLocaleString("en-US") ?? "tenth";
        checks.push(check(
          `${server} RSS per idle connection after the first ${first} ${than}`,
          bound,
          ours,
          theirs,
          (row) => row.laterKibPerConn.toFixed(2),
          "KiB",
          (ours, theirs) => ({
            value: ours.laterKibPerConn / theirs.laterKibPerConn,
            how: `one run each, ${
              ours.echoed.toLocaleString("en-US")
            } connections`,
          }),
        ));
        break;
      }
    }
  }
  return checks;
}

async function machine(): Promise<Report["machine"]> {
  let cpu = "unknown CPU";
  let cores = navigator.hardwareConcurrency;
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1].trim() ?? cpu;
    cores = info.match(/^processor\s*:/gm)?.length ?? cores;
  } catch {
    // Not Linux: keep what the runtime says.
  }
  const load = (await Deno.readTextFile("/proc/loadavg").catch(() => ""))
    .split(" ").slice(0, 3).join(" ");
  return {
    cpu,
    cores,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    loadAverage: load,
  };
}

async function main(): Promise<void> {
  const opts = parseOptions(Deno.args);
  if (Deno.build.os !== "linux") {
    console.error("The echo benchmark reads /proc and needs Linux.");
    Deno.exit(1);
  }
  let loadgen: Loadgen | null = null;
  Child.killAllOnSignal(() => loadgen?.[Symbol.dispose]());

  const runtimes = await detectRuntimes();
  try {
    loadgen = await resolveLoadgen(opts.loadgen, runtimes.node);
  } catch (error) {
    if (!(error instanceof LoadgenUnavailable)) throw error;
    console.error(`--loadgen=${opts.loadgen}: ${error.message}.`);
    Deno.exit(1);
  }
  using _ = loadgen;
  const ctx: Context = {
    opts,
    runtimes,
    ticks: await clockTicks(),
    loadgen,
  };
  const servers = SERVERS.filter((s) =>
    s.id === REFERENCE || opts.only === null || opts.only.includes(s.id)
  ).flatMap((s) =>
    s.group === "ours" && opts.compare !== null
      ? [s, {
        ...s,
        id: `${s.id}@base`,
        label: `${s.label}, from ${opts.compare}`,
        benchDir: `${opts.compare.replace(/\/$/, "")}/bench/`,
      }]
      : [s]
  );
  const scenarios = SCENARIOS.filter((s) =>
    opts.scenarios === null || opts.scenarios.includes(s.id)
  );
  const hardLimit = await hardOpenFilesLimit();
  const started = new Date();
  const machineInfo = await machine();
  const log = (line: string): void => console.error(line);
  log(
    `echo benchmark: ${servers.length} servers × ${scenarios.length} scenarios, ` +
      `load generator ${loadgen.description}, ` +
      `${opts.repeat} × ${opts.durationS} s per server and scenario ` +
      `(+${opts.warmupS} s warmup each)`,
  );

  const results: ScenarioResult[] = [];
  for (const baseScenario of scenarios) {
    const scenario = baseScenario.idle
      ? {
        ...baseScenario,
        conns: opts.idle,
        label: `${opts.idle.toLocaleString("en-US")} idle connections`,
      }
      : baseScenario;
    let scenarioSkip: string | null = null;
    if (
      scenario.idle && hardLimit !== null && hardLimit < scenario.conns + 64
    ) {
      scenarioSkip = `the hard open-files limit (${hardLimit}) is below ${
        scenario.conns + 64
      }`;
    }
    const plan = servers.filter((s) =>
      !s.scenarios || s.scenarios.includes(baseScenario.id)
    );
    const outcome = new Map<string, Row[] | SkippedRow>();
    for (const server of plan) {
      const command = serverCommand(server, runtimes);
      if (scenarioSkip !== null || "skip" in command) {
        const reason = scenarioSkip ?? (command as { skip: string }).skip;
        outcome.set(server.id, { kind: "skipped", server: server.id, reason });
        log(
          `${scenario.id.padEnd(8)} ${server.id.padEnd(12)} skipped: ${reason}`,
        );
      } else {
        outcome.set(server.id, []);
      }
    }
    // Rounds over all servers, so interference from outside hits them alike.
    const rounds = scenario.idle ? 1 : opts.repeat;
    for (let round = 1; round <= rounds; round++) {
      const order = scenario.idle ? plan : withReferenceRuns(plan);
      const done: Row[] = [];
      for (const server of order) {
        const runs = outcome.get(server.id);
        if (!Array.isArray(runs)) continue;
        const command = serverCommand(server, runtimes) as {
          cmd: string;
          args: string[];
        };
        const label = `${scenario.id.padEnd(8)} ${server.id.padEnd(12)}` +
          (rounds > 1 ? ` ${round}/${rounds}` : "");
        try {
          const row = scenario.idle
            ? await runIdle(ctx, server, command, scenario.conns)
            : await runLoad(ctx, server, command, scenario);
          runs.push(row);
          done.push(row);
          log(`${label} ${summarize(row)}`);
        } catch (error) {
          const why = error instanceof RunFailed
            ? error.message
            : `harness error: ${
              error instanceof Error ? error.stack ?? error.message : error
            }`;
          const reason = rounds > 1 ? `run ${round}/${rounds}: ${why}` : why;
          outcome.set(server.id, { kind: "failed", server: server.id, reason });
          log(`${label} FAILED: ${why}`);
        }
      }
      pairWithReference(done);
    }
    const rows: Row[] = plan.map((server) => {
      const runs = outcome.get(server.id)!;
      if (!Array.isArray(runs)) return runs;
      const load = runs.filter((r): r is LoadRow => r.kind === "load");
      return load.length > 0 ? medianRow(load) : runs[0];
    });
    const result = { scenario, rows };
    results.push(result);
    console.log(`\n### ${scenario.label}\n`);
    console.log(
      (scenario.idle ? renderIdleTable(result) : renderLoadTable(result))
        .join("\n"),
    );
  }

  const report: Report = {
    started,
    machine: machineInfo,
    runtimes: [
      runtimes.deno.version,
      "missing" in runtimes.python ? null : runtimes.python.version,
      "missing" in runtimes.node ? null : runtimes.node.version,
    ].filter((v): v is string => v !== null),
    loadgen: loadgen.description,
    durationS: opts.durationS,
    warmupS: opts.warmupS,
    repeat: opts.repeat,
    clockTicks: ctx.ticks,
    servers: servers.map((s) => ({ id: s.id, label: s.label, group: s.group })),
    scenarios: results,
    targets: checkTargets(results),
  };
  const markdown = renderReport(report);
  console.log(
    "\n" + markdown.split("## Targets")[1]?.replace(/^/, "## Targets"),
  );
  const full = opts.only === null && opts.scenarios === null && !opts.quick &&
    opts.compare === null;
  const out = opts.out ??
    `${BENCH_DIR}results/${full ? "latest" : "last-partial"}.md`;
  await Deno.mkdir(out.slice(0, out.lastIndexOf("/") + 1) || ".", {
    recursive: true,
  });
  await Deno.writeTextFile(out, markdown);
  await Deno.writeTextFile(
    out.replace(/\.md$/, "") + ".json",
    JSON.stringify(report, null, 2) + "\n",
  );
  log(`\nwrote ${out}`);
}

/** `plan` with the reference server run again between every few servers. */
function withReferenceRuns(plan: ServerSpec[]): ServerSpec[] {
  const reference = plan.find((s) => s.id === REFERENCE);
  if (reference === undefined) return plan;
  const order: ServerSpec[] = [reference];
  let since = 0;
  for (const server of plan) {
    if (server === reference) continue;
    if (since === PAIR_EVERY) {
      order.push(reference);
      since = 0;
    }
    order.push(server);
    since++;
  }
  if (since > 0) order.push(reference);
  return order;
}

/**
 * Sets each load run's `cpuRatio` from `round` (its runs in order): its CPU
 * per round trip over the mean of the nearest reference runs before and
 * after it (one of them, when the other is missing).
 */
function pairWithReference(round: Row[]): void {
  let before: number | null = null;
  let waiting: LoadRow[] = [];
  const settle = (after: number | null): void => {
    const near = before !== null && after !== null
      ? (before + after) / 2
      : before ?? after;
    for (const row of waiting) {
      if (near !== null && near > 0) row.cpuRatio = cpuPerRt(row) / near;
    }
    waiting = [];
  };
  for (const row of round) {
    if (row.kind !== "load") continue;
    if (row.server !== REFERENCE) {
      waiting.push(row);
      continue;
    }
    settle(cpuPerRt(row));
    before = cpuPerRt(row);
  }
  settle(null);
}

/** One row from repeated runs: the median of each figure, errors summed. */
function medianRow(runs: LoadRow[]): LoadRow {
  if (runs.length === 1) return runs[0];
  const of = (pick: (row: LoadRow) => number): number => median(runs.map(pick));
  const first = runs[0];
  return {
    ...first,
    result: {
      ...first.result,
      rtts: runs.reduce((n, r) => n + r.result.rtts, 0),
      rtPerSec: of((r) => r.result.rtPerSec),
      p50Us: of((r) => r.result.p50Us),
      p99Us: of((r) => r.result.p99Us),
      maxUs: Math.max(...runs.map((r) => r.result.maxUs)),
      perConnMin: of((r) => r.result.perConnMin),
      perConnMax: of((r) => r.result.perConnMax),
      errors: runs.reduce((n, r) => n + r.result.errors, 0),
      errorSamples: runs.flatMap((r) => r.result.errorSamples).slice(0, 10),
    },
    userUsPerRt: of((r) => r.userUsPerRt),
    sysUsPerRt: of((r) => r.sysUsPerRt),
    serverCpuPct: of((r) => r.serverCpuPct),
    genCpuPct: of((r) => r.genCpuPct),
    genUsPerRt: of((r) => r.genUsPerRt),
    softirqPct: of((r) => r.softirqPct),
    otherCpuPct: of((r) => r.otherCpuPct),
    peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)),
    cpuRatio: runs.every((r) => r.cpuRatio !== undefined)
      ? of((r) => r.cpuRatio!)
      : undefined,
    runs: runs.length,
    perRun: runs.map((r) => ({
      rtPerSec: r.result.rtPerSec,
      p99Us: r.result.p99Us,
      cpuUsPerRt: cpuPerRt(r),
      cpuRatio: r.cpuRatio,
      otherCpuPct: r.otherCpuPct,
    })),
  };
}

function summarize(row: Row): string {
  if (row.kind === "load") {
    const r = row.result;
    return `${Math.round(r.rtPerSec)} rt/s, p99 ${
      (r.p99Us / 1000).toFixed(2)
    } ms, cpu ${cpuPerRt(row).toFixed(1)} µs/rt, ` +
      `gen ${row.genUsPerRt.toFixed(1)} µs/rt, softirq ${
        row.softirqPct.toFixed(0)
      }%, other ${row.otherCpuPct.toFixed(0)}%` +
      (r.errors > 0 ? `, ${r.errors} ERRORS` : "");
  }
  if (row.kind === "idle") {
    return `${row.echoed} conns, ${row.kibPerConn.toFixed(2)} KiB/conn, ` +
      `${row.laterKibPerConn.toFixed(2)} after the first tenth` +
      (row.errors > 0 ? `, ${row.errors} ERRORS` : "");
  }
  return row.reason;
}

if (import.meta.main) {
  try {
    await main();
  } finally {
    Child.killAll();
  }
}
