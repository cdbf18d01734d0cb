/**
 * Result records of the echo benchmark and their rendering as Markdown
 * tables (printed, and written to `bench/results/`).
 *
 * @module
 */

/** The JSON line a load run of the load generator (`_loadgen.ts`) ends with. */
export interface LoadResult {
  kind: "load";
  generator: "c" | "node";
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

/** The JSON line an idle run of the load generator ends with. */
export interface IdleResult {
  kind: "idle";
  generator: "c" | "node";
  requested: number;
  opened: number;
  echoed: number;
  openMs: number;
  errors: number;
  errorSamples: string[];
}

/** A scenario as the report shows it. */
export interface ScenarioInfo {
  id: string;
  label: string;
  conns: number;
  size: number;
  idle?: boolean;
}

/** One server measured under load. */
export interface LoadRow {
  kind: "load";
  server: string;
  /** What the load generator reported. */
  result: LoadResult;
  /** Server user CPU per round trip, µs. */
  userUsPerRt: number;
  /** Server system CPU per round trip, µs. */
  sysUsPerRt: number;
  /** Server CPU use over the window, % of one core. */
  serverCpuPct: number;
  /** Load generator CPU use over the window, % of one core. */
  genCpuPct: number;
  /** Load generator CPU per round trip, µs. */
  genUsPerRt: number;
  /**
   * Softirq time of the whole machine over the window, % of one core: on
   * loopback mostly the benchmark's own packets, charged to no process.
   */
  softirqPct: number;
  /**
   * CPU use of everything else on the machine over the window (softirq
   * excluded), % of one core: interference from outside the benchmark.
   */
  otherCpuPct: number;
  /**
   * CPU per round trip over raw Deno's in the reference runs on either side
   * of this one (the median over rounds). The host's speed drifts by tens of
   * percent within minutes, so a ratio of medians measured minutes apart
   * would carry that drift. Absent for raw Deno itself.
   */
  cpuRatio?: number;
  /** Runs whose median this row is. */
  runs: number;
  /** Each run's main figures, when there were several. */
  perRun?: {
    rtPerSec: number;
    p99Us: number;
    cpuUsPerRt: number;
    cpuRatio?: number;
    otherCpuPct: number;
  }[];
  /** Server peak RSS (`VmHWM`), MiB. */
  peakRssMiB: number;
}

/** One server holding idle connections. */
export interface IdleRow {
  kind: "idle";
  server: string;
  requested: number;
  /** Connections that echoed their one message. */
  echoed: number;
  errors: number;
  errorSamples: string[];
  /** Seconds to open the connections and echo once on each. */
  openSeconds: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  peakRssMiB: number;
  /** (RSS after − RSS before) / echoed connections, KiB. */
  kibPerConn: number;
  /** The same for the anonymous part of RSS (`RssAnon`), KiB. */
  anonKibPerConn: number;
  /**
   * RSS growth per connection over all but the first tenth of them, KiB:
   * what one more connection costs, without the first ones' one-off costs.
   */
  laterKibPerConn: number;
  /** Connections opened in the first batch, which `laterKibPerConn` leaves out. */
  firstBatch: number;
  /** Server CPU use while the connections sit idle, % of one core. */
  idleCpuPct: number;
  /** Descriptors the server gained. */
  serverFiles: number;
}

/** A server that did not run, and why. */
export interface SkippedRow {
  kind: "skipped" | "failed";
  server: string;
  reason: string;
}

/** Any row of a scenario's table. */
export type Row = LoadRow | IdleRow | SkippedRow;

/** One scenario's rows. */
export interface ScenarioResult {
  scenario: ScenarioInfo;
  rows: Row[];
}

/** One target of the issue, checked against this run. */
export interface TargetCheck {
  text: string;
  /** null when it could not be checked. */
  pass: boolean | null;
  detail: string;
}

/** A whole run. */
export interface Report {
  started: Date;
  machine: { cpu: string; cores: number; os: string; loadAverage: string };
  runtimes: string[];
  /** The load generator, as `Loadgen.description` (`_loadgen.ts`) says. */
  loadgen: string;
  durationS: number;
  warmupS: number;
  repeat: number;
  clockTicks: number;
  servers: { id: string; label: string; group: "ours" | "baseline" }[];
  scenarios: ScenarioResult[];
  targets: TargetCheck[];
}

const REFERENCE = "raw-deno";

/**
 * Raw Deno runs again after every this many servers in a round (and last),
 * so each server's CPU per round trip is compared with raw Deno's measured
 * within seconds of it.
 */
export const PAIR_EVERY = 3;

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[mid]
    : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** `n` with `digits` decimals and thousands separators; "–" if not finite. */
export function fixed(n: number, digits: number): string {
  if (!Number.isFinite(n)) return "–";
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** A load run's server CPU (user and system) per round trip, µs. */
export function cpuPerRt(row: LoadRow): number {
  return row.userUsPerRt + row.sysUsPerRt;
}

/** `value` with its ratio to `reference` when there is one to show. */
function withRatio(
  value: number,
  reference: number | null,
  digits: number,
): string {
  const text = fixed(value, digits);
  if (reference === null || !(reference > 0) || !Number.isFinite(value)) {
    return text;
  }
  return `${text} (${(value / reference).toFixed(2)}×)`;
}

function escapeCell(text: string): string {
  return text.replaceAll("|", "\\|").replace(/\s*\n\s*/g, " ");
}

/** Renders rows as a Markdown table with padded columns. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length))
  );
  const line = (cells: string[]): string =>
    "| " + widths.map((w, i) => (cells[i] ?? "").padEnd(w)).join(" | ") +
    " |";
  return [
    line(header),
    "| " + widths.map((w) => "-".repeat(w)).join(" | ") +
    " |",
    ...rows.map(line),
  ];
}

function notRun(row: SkippedRow, columns: number): string[] {
  const cells = [
    row.server,
    escapeCell(`${row.kind}: ${row.reason}`).slice(0, 300),
  ];
  while (cells.length < columns) cells.push("");
  return cells;
}

/** The table of a load scenario; ratios are to the raw Deno server. */
export function renderLoadTable(result: ScenarioResult): string[] {
  const header = [
    "server",
    "rt/s",
    "p50 µs",
    "p99 µs",
    "user µs/rt",
    "sys µs/rt",
    "CPU µs/rt",
    "peak RSS MiB",
    "server CPU %",
    "gen CPU %",
    "softirq %",
    "other CPU %",
    "rt/conn min–max",
    "errors",
  ];
  const ref = result.rows.find((r): r is LoadRow =>
    r.kind === "load" && r.server === REFERENCE
  );
  const rows = result.rows.map((row): string[] => {
    if (row.kind === "skipped" || row.kind === "failed") {
      return notRun(row, header.length);
    }
    if (row.kind !== "load") return [row.server];
    const r = row.result;
    const isRef = row === ref;
    const refOf = (pick: (x: LoadRow) => number): number | null =>
      ref && !isRef ? pick(ref) : null;
    return [
      row.server,
      withRatio(r.rtPerSec, refOf((x) => x.result.rtPerSec), 0),
      withRatio(r.p50Us, refOf((x) => x.result.p50Us), 0),
      withRatio(r.p99Us, refOf((x) => x.result.p99Us), 0),
      withRatio(row.userUsPerRt, refOf((x) => x.userUsPerRt), 1),
      withRatio(row.sysUsPerRt, refOf((x) => x.sysUsPerRt), 1),
      row.cpuRatio === undefined
        ? withRatio(cpuPerRt(row), refOf(cpuPerRt), 1)
        : `${fixed(cpuPerRt(row), 1)} (${row.cpuRatio.toFixed(2)}×)`,
      withRatio(row.peakRssMiB, refOf((x) => x.peakRssMiB), 1),
      fixed(row.serverCpuPct, 0),
      fixed(row.genCpuPct, 0),
      fixed(row.softirqPct, 0),
      fixed(row.otherCpuPct, 0),
      `${r.perConnMin}–${r.perConnMax}`,
      r.errors === 0
        ? "0"
        : escapeCell(`${r.errors}: ${r.errorSamples[0] ?? ""}`).slice(0, 120),
    ];
  });
  return table(header, rows);
}

/** The table of the idle scenario; ratios are to the raw Deno server. */
export function renderIdleTable(result: ScenarioResult): string[] {
  const header = [
    "server",
    "conns",
    "RSS before MiB",
    "RSS idle MiB",
    "KiB/conn",
    "anon KiB/conn",
    "KiB/conn after 1st 10%",
    "idle CPU %",
    "server fds",
    "open s",
    "errors",
  ];
  const ref = result.rows.find((r): r is IdleRow =>
    r.kind === "idle" && r.server === REFERENCE
  );
  const rows = result.rows.map((row): string[] => {
    if (row.kind === "skipped" || row.kind === "failed") {
      return notRun(row, header.length);
    }
    if (row.kind !== "idle") return [row.server];
    return [
      row.server,
      `${row.echoed}/${row.requested}`,
      fixed(row.rssBeforeMiB, 1),
      fixed(row.rssAfterMiB, 1),
      withRatio(row.kibPerConn, ref && ref !== row ? ref.kibPerConn : null, 2),
      fixed(row.anonKibPerConn, 2),
      fixed(row.laterKibPerConn, 2),
      fixed(row.idleCpuPct, 1),
      fixed(row.serverFiles, 0),
      fixed(row.openSeconds, 1),
      row.errors === 0
        ? "0"
        : escapeCell(`${row.errors}: ${row.errorSamples[0] ?? ""}`).slice(
          0,
          120,
        ),
    ];
  });
  return table(header, rows);
}

/** The whole report as a Markdown document. */
export function renderReport(report: Report): string {
  const m = report.machine;
  const out: string[] = [
    "# Echo benchmark",
    "",
    `Generated by \`deno task bench\` (bench/echo.ts) on ${report.started.toISOString()}; do not edit by hand.`,
    "",
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.os}; load average at start ${m.loadAverage}.`,
    `- Runtimes: ${report.runtimes.join(", ")}.`,
    `- Method: each server runs in its own process and the load generator, ` +
    `${report.loadgen}, in another. Each connection sends one message ending ` +
    `in "\\n", waits for the whole echo, checks it byte for byte, and repeats ` +
    `(closed loop), ${report.durationS} s measured after ${report.warmupS} s ` +
    `of warmup. Each load figure is the median of ${report.repeat} ` +
    `run${report.repeat === 1 ? "" : "s"}, taken in rounds over all servers ` +
    `(peak RSS: the largest). Latency is per round trip as the generator sees it. CPU per ` +
    `round trip is the server's own (utime and stime from /proc/PID/stat, ` +
    `CLK_TCK ${report.clockTicks}) over the measured window; peak RSS is its ` +
    `VmHWM. Ratios (×) are to raw-deno in the same run; CPU per round trip's ` +
    `is to raw-deno's runs just before and after the server's in each round ` +
    `(raw-deno runs again after every ${PAIR_EVERY} servers), the median ` +
    `over rounds, since the host's speed drifts within minutes. Server and generator ` +
    `share the machine's ${m.cores} cores, so round trips/s depend on both; ` +
    `"gen CPU %" shows how busy the generator was; "softirq %" is the ` +
    `machine's softirq time, on loopback mostly this benchmark's own packet ` +
    `processing, which /proc/PID/stat charges to no process; "other CPU %" ` +
    `is everything else on the machine (interference from outside the ` +
    `benchmark), all in % of one core. "rt/conn min–max" is the ` +
    `fewest and most round trips any one connection completed (fairness).`,
    "",
    "Servers:",
    "",
    ...report.servers.map((s) => `- \`${s.id}\`: ${s.label} (${s.group})`),
  ];
  for (const result of report.scenarios) {
    out.push("", `## ${result.scenario.label}`, "");
    if (result.scenario.idle) {
      out.push(
        "Each connection echoes one 64-byte message, then stays idle. " +
          "KiB/conn = (VmRSS with the connections open − VmRSS before) / " +
          "connections. The connections open in two batches, a tenth then " +
          'the rest; "after 1st 10%" is the RSS growth over the second ' +
          "batch per connection in it: what one more connection costs, " +
          "without the one-off costs the first ones bring (code paged in, " +
          "heaps grown). Idle CPU is the server's over 2 s with all of " +
          "them open.",
        "",
        ...renderIdleTable(result),
      );
    } else {
      out.push(...renderLoadTable(result));
    }
  }
  out.push("", "## Targets", "");
  for (const t of report.targets) {
    const mark = t.pass === null ? "n/a " : t.pass ? "PASS" : "FAIL";
    out.push(`- ${mark} ${t.text}: ${t.detail}`);
  }
  const checked = report.targets.filter((t) => t.pass !== null);
  const met = checked.filter((t) => t.pass).length;
  const notChecked = report.targets.length - checked.length;
  out.push(
    "",
    `${met} of ${checked.length} targets met` +
      (notChecked > 0
        ? `; ${notChecked} more n/a (not measured in this run).`
        : "."),
  );
  const notes = report.scenarios.flatMap((s) =>
    s.rows.filter((r): r is SkippedRow =>
      r.kind === "skipped" || r.kind === "failed"
    ).map((r) => `- ${s.scenario.id} ${r.server}: ${r.kind}: ${r.reason}`)
  );
  if (notes.length > 0) out.push("", "## Skipped and failed", "", ...notes);
  return out.join("\n") + "\n";
}
