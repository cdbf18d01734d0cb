/**
 * Child processes for the benchmark (spawn with a raised descriptor limit,
 * follow stdout line by line, stop for sure) and Linux `/proc` readers for
 * their CPU time and memory.
 *
 * @module
 */

import { deadline } from "@std/async";
import type { LoadResult } from "./_report.ts";

/** CPU time a process has used, in clock ticks, all threads together. */
export interface CpuTicks {
  user: number;
  system: number;
}

/** Resident memory of a process, in KiB. */
export interface Memory {
  /** Resident set size now (`VmRSS`). */
  rssKiB: number;
  /** Peak resident set size (`VmHWM`). */
  hwmKiB: number;
  /**
   * The anonymous part of the resident set (`RssAnon`): the heaps and
   * stacks, without the executable's file-backed pages (shared, and paged in
   * and out with the machine's memory pressure).
   */
  anonKiB: number;
}

/** Clock ticks per second (`getconf CLK_TCK`), the unit of `/proc/PID/stat`. */
export async function clockTicks(): Promise<number> {
  const out = await runText("getconf", ["CLK_TCK"]);
  const ticks = Number(out?.trim());
  return Number.isInteger(ticks) && ticks > 0 ? ticks : 100;
}

/** Utime and stime of `pid` from `/proc/PID/stat`; null once it is gone. */
export function readCpu(pid: number): CpuTicks | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses; the fields
  // after its closing parenthesis start at field 3, so utime (14) is [11].
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]), system: Number(fields[12]) };
}

/** Busy clock ticks of the whole machine, all cores together. */
export interface MachineTicks {
  /** Everything but idle and iowait, steal included. */
  busy: number;
  /**
   * Softirq time alone: on loopback it is mostly the benchmark's own packet
   * processing, which is charged to no process.
   */
  softirq: number;
}

/** Busy ticks of the whole machine from `/proc/stat`; null if unreadable. */
export function readMachineTicks(): MachineTicks | null {
  try {
    const line = Deno.readTextFileSync("/proc/stat").split("\n", 1)[0];
    const [user, nice, system, _idle, _iowait, irq, softirq, steal] = line
      .trim().split(/\s+/).slice(1).map(Number);
    return {
      busy: user + nice + system + irq + softirq + (steal || 0),
      softirq,
    };
  } catch {
    return null;
  }
}

/** `VmRSS` and `VmHWM` of `pid` from `/proc/PID/status`; null once gone. */
export function readMemory(pid: number): Memory | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return null;
  }
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text);
    return match ? Number(match[1]) : NaN;
  };
  return {
    rssKiB: field("VmRSS"),
    hwmKiB: field("VmHWM"),
    anonKiB: field("RssAnon"),
  };
}

/** Open descriptors of `pid` (entries of `/proc/PID/fd`); null once gone. */
export function countOpenFiles(pid: number): number | null {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
    return n;
  } catch {
    return null;
  }
}

/** The soft "Max open files" limit of `pid`; null if unknown. */
export function maxOpenFiles(pid: number): number | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/limits`);
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(text);
    if (!match) return null;
    return match[1] === "unlimited" ? Infinity : Number(match[1]);
  } catch {
    return null;
  }
}

/** The command line of `pid`, arguments joined by spaces; "" once gone. */
export function readCmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").join(" ");
  } catch {
    return "";
  }
}

/**
 * Runs a short command to completion and returns its stdout, or null when
 * it cannot run or fails.
 */
export async function runText(
  cmd: string,
  args: string[],
): Promise<string | null> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : null;
  } catch {
    return null;
  }
}

/** The hard descriptor limit a shell can raise its soft limit to. */
export async function hardOpenFilesLimit(): Promise<number | null> {
  const out = await runText("sh", ["-c", "ulimit -Hn"]);
  if (out === null) return null;
  const text = out.trim();
  return text === "unlimited" ? Infinity : Number(text) || null;
}

const MAX_KEPT_LINES = 1000;
const STDERR_TAIL = 4000;

/** Thrown for a run that could not be measured; the message says why. */
export class RunFailed extends Error {}

/** The tail of `child`'s stderr as a clause for an error message, or "". */
export function describeExit(child: Child): string {
  const tail = child.stderrTail.split("\n").slice(-6).join("\n");
  return tail === "" ? "" : `; stderr: ${tail}`;
}

/** A closed-loop load for the load generator (`_loadgen.ts`). */
export interface LoadPlan {
  port: number;
  conns: number;
  size: number;
  durationMs: number;
  warmupMs: number;
}

/**
 * Starts the load generator (`cmd` with `args`, from `_loadgen.ts`) on
 * `plan` and returns once its measured window opens.
 */
export async function startLoad(
  cmd: string,
  args: string[],
  plan: LoadPlan,
): Promise<Child> {
  const gen = new Child(cmd, [
    ...args,
    `--port=${plan.port}`,
    `--conns=${plan.conns}`,
    `--size=${plan.size}`,
    `--duration=${plan.durationMs}`,
    `--warmup=${plan.warmupMs}`,
    "--connect-timeout=30000",
  ]);
  try {
    if (await gen.waitFor(/^connected \d+/, 35_000) === null) {
      throw new RunFailed(`load generator did not connect${describeExit(gen)}`);
    }
    if (await gen.waitFor(/^start$/, plan.warmupMs + 5000) === null) {
      throw new RunFailed(`load generator did not start${describeExit(gen)}`);
    }
    return gen;
  } catch (error) {
    await gen.stop();
    throw error;
  }
}

/** Waits until the measured window of a {@linkcode startLoad} closes. */
export async function loadEnded(gen: Child, durationMs: number): Promise<void> {
  if (await gen.waitFor(/^end$/, durationMs + 5000) === null) {
    throw new RunFailed(`load generator did not end${describeExit(gen)}`);
  }
}

/** The load generator's result, once its window has closed. */
export async function loadResult(gen: Child): Promise<LoadResult> {
  const json = await gen.waitFor(/^\{.*\}$/, 10_000);
  if (json === null) {
    throw new RunFailed(`load generator gave no result${describeExit(gen)}`);
  }
  return JSON.parse(json[0]) as LoadResult;
}

/** Every child still running, so an interrupted run can stop them. */
const live = new Set<Child>();

/**
 * A child process whose stdout is read line by line and whose stderr is
 * kept (its tail) for error messages. It is started through `sh` so that the
 * soft descriptor limit is raised to the hard one first; `sh` `exec`s the
 * command, so {@linkcode Child.pid} is the command's own process.
 */
export class Child {
  /** The process id. */
  readonly pid: number;
  /** Resolves when the process has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  #process: Deno.ChildProcess;
  #lines: string[] = [];
  #eof = false;
  #wake: (() => void) | null = null;
  #stderr = "";
  #stdin: WritableStreamDefaultWriter<Uint8Array> | null = null;
  #exited = false;

  constructor(cmd: string, args: string[], options: { stdin?: boolean } = {}) {
    this.#process = new Deno.Command("sh", {
      args: [
        "-c",
        'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"',
        "sh",
        cmd,
        ...args,
      ],
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#process.pid;
    if (options.stdin) this.#stdin = this.#process.stdin.getWriter();
    live.add(this);
    this.status = this.#process.status.then((status) => {
      this.#exited = true;
      live.delete(this);
      return status;
    });
    this.#pumpStdout();
    this.#pumpStderr();
  }

  /** Whether the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** The last few KiB the process wrote to stderr. */
  get stderrTail(): string {
    return this.#stderr.trim();
  }

  async #pumpStdout(): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    try {
      for await (const chunk of this.#process.stdout) {
        partial += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = partial.indexOf("\n")) >= 0) {
          this.#push(partial.slice(0, nl));
          partial = partial.slice(nl + 1);
        }
      }
    } catch {
      // The pipe broke as the process died; what was read is kept.
    }
    if (partial !== "") this.#push(partial);
    this.#eof = true;
    this.#notify();
  }

  async #pumpStderr(): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of this.#process.stderr) {
        this.#stderr += decoder.decode(chunk, { stream: true });
        if (this.#stderr.length > STDERR_TAIL * 2) {
          this.#stderr = this.#stderr.slice(-STDERR_TAIL);
        }
      }
    } catch {
      // As for stdout.
    }
  }

  #push(line: string): void {
    if (this.#lines.length >= MAX_KEPT_LINES) this.#lines.shift();
    this.#lines.push(line);
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /**
   * Reads stdout lines until one matches `pattern` and returns the match;
   * null when stdout ends or `timeoutMs` passes first. Lines before it are
   * consumed.
   */
  async waitFor(
    pattern: RegExp,
    timeoutMs: number,
  ): Promise<RegExpExecArray | null> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      while (this.#lines.length > 0) {
        const match = pattern.exec(this.#lines.shift()!);
        if (match) return match;
      }
      const left = deadline - performance.now();
      if (this.#eof || left <= 0) return null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#wake = null;
    }
  }

  /** Writes one line to the child's stdin (if it was opened). */
  async writeLine(line: string): Promise<void> {
    if (this.#stdin === null || this.#exited) return;
    try {
      await this.#stdin.write(new TextEncoder().encode(line + "\n"));
    } catch {
      // The child is gone; its exit is what the caller looks at.
    }
  }

  /** Waits up to `timeoutMs` for the process to exit on its own. */
  async waitExit(timeoutMs: number): Promise<boolean> {
    if (this.#exited) return true;
    try {
      await deadline(this.status, timeoutMs);
    } catch (error) {
      if (!(error instanceof DOMException && error.name === "TimeoutError")) {
        throw error;
      }
    }
    return this.#exited;
  }

  /** Stops the process: SIGTERM, then SIGKILL after `graceMs`; awaits exit. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.#stdin !== null) {
      await this.#stdin.close().catch(() => {});
      this.#stdin = null;
    }
    if (!this.#exited) {
      this.#signal("SIGTERM");
      if (!await this.waitExit(graceMs)) this.#signal("SIGKILL");
    }
    await this.status;
  }

  #signal(signal: Deno.Signal): void {
    try {
      this.#process.kill(signal);
    } catch {
      // It exited in between.
    }
  }

  /** Sends SIGKILL to every child still running (for an interrupted run). */
  static killAll(): void {
    for (const child of live) child.#signal("SIGKILL");
  }

  /**
   * On SIGINT or SIGTERM, kills every child, calls `cleanup` (which must be
   * synchronous) and exits with status 130.
   */
  static killAllOnSignal(cleanup?: () => void): void {
    const interrupt = (): void => {
      Child.killAll();
      cleanup?.();
      Deno.exit(130);
    };
    Deno.addSignalListener("SIGINT", interrupt);
    Deno.addSignalListener("SIGTERM", interrupt);
  }
}
