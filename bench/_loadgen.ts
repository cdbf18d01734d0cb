/**
 * The load generator the benchmarks drive their servers with: the C one
 * (`loadgen.c`, compiled with `cc -O2` into a temporary directory) or the
 * Node one (`loadgen_node.mjs`). Both take the same options, print the same
 * lines and end with the same JSON (`LoadResult`, `IdleResult` in
 * `_report.ts`); the C one spends a fraction of the CPU per round trip, so
 * the generator does not bound the servers it measures.
 *
 * @module
 */

import { runText } from "./_proc.ts";

/** The `--loadgen` values: `auto` is C, or Node when C cannot be built. */
export const LOADGEN_CHOICES = ["auto", "c", "node"] as const;

/** A `--loadgen` value. */
export type LoadgenChoice = typeof LOADGEN_CHOICES[number];

/** The `--loadgen` lines of a usage text whose descriptions start at `column`. */
export function loadgenUsage(column: number): string {
  const indent = " ".repeat(column);
  return "  --loadgen=auto|c|node\n" +
    `${indent}load generator: bench/loadgen.c built with cc,\n` +
    `${indent}or bench/loadgen_node.mjs on Node (default\n` +
    `${indent}auto: C, else Node)`;
}

/** Node, or why it cannot be used. */
export type NodeRuntime = { exe: string; version: string } | {
  missing: string;
};

/** A generator ready to start; disposing of it removes what was built. */
export interface Loadgen extends Disposable {
  /** Which one it is (the `generator` field of its results). */
  kind: "c" | "node";
  /** The command and the arguments before the generator's options. */
  cmd: string;
  args: string[];
  /** What it is, for the reports. */
  description: string;
}

/** Thrown when a generator cannot be used here; the message says why. */
export class LoadgenUnavailable extends Error {}

const BENCH_DIR = decodeURIComponent(new URL(".", import.meta.url).pathname);

/** Finds `node` on the PATH. */
export async function detectNode(): Promise<NodeRuntime> {
  const out = await runText("node", [
    "-e",
    "console.log(process.execPath); console.log(process.version)",
  ]);
  if (out === null) return { missing: "node not found" };
  const [exe, version] = out.trim().split("\n");
  return { exe, version: `Node ${version}` };
}

/** Reads `--loadgen` (`undefined`: `auto`). */
export function parseLoadgenChoice(value: string | undefined): LoadgenChoice {
  if (value === undefined) return "auto";
  const choice = LOADGEN_CHOICES.find((c) => c === value);
  if (choice === undefined) {
    throw new TypeError(
      `--loadgen must be one of ${LOADGEN_CHOICES.join(", ")}, got ${value}`,
    );
  }
  return choice;
}

/**
 * The generator `choice` names. `auto` falls back from C to Node, saying why
 * on stderr.
 *
 * @throws {LoadgenUnavailable} when the chosen generator cannot be used.
 */
export async function resolveLoadgen(
  choice: LoadgenChoice,
  node: NodeRuntime,
): Promise<Loadgen> {
  if (choice === "node") return nodeLoadgen(node);
  try {
    return await compileLoadgen();
  } catch (error) {
    if (choice === "c" || !(error instanceof LoadgenUnavailable)) throw error;
    console.error(`--loadgen=auto: ${error.message}; using Node instead`);
    return nodeLoadgen(node);
  }
}

function nodeLoadgen(node: NodeRuntime): Loadgen {
  if ("missing" in node) {
    throw new LoadgenUnavailable(
      `the Node load generator (bench/loadgen_node.mjs) needs Node: ${node.missing}`,
    );
  }
  return {
    kind: "node",
    cmd: node.exe,
    args: [`${BENCH_DIR}loadgen_node.mjs`],
    description: `bench/loadgen_node.mjs on ${node.version}`,
    [Symbol.dispose]() {},
  };
}

async function compileLoadgen(): Promise<Loadgen> {
  const dir = await Deno.makeTempDir({ prefix: "asyncore-loadgen-" });
  const remove = (): void => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Already gone.
    }
  };
  const exe = `${dir}/loadgen`;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("cc", {
      args: ["-O2", "-o", exe, `${BENCH_DIR}loadgen.c`],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    remove();
    if (error instanceof Deno.errors.NotFound) {
      throw new LoadgenUnavailable(
        "the C load generator (bench/loadgen.c) needs a C compiler, and cc was not found",
      );
    }
    throw error;
  }
  if (!out.success) {
    remove();
    const stderr = new TextDecoder().decode(out.stderr).trim();
    throw new LoadgenUnavailable(
      `cc -O2 bench/loadgen.c failed (exit ${out.code}): ${
        stderr.split("\n").slice(-6).join("\n")
      }`,
    );
  }
  const version = (await runText("cc", ["--version"]))?.split("\n")[0];
  return {
    kind: "c",
    cmd: exe,
    args: [],
    description: `bench/loadgen.c built with cc -O2${
      version ? ` (${version})` : ""
    }`,
    [Symbol.dispose]: remove,
  };
}
