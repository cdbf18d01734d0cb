// The hostile-caller suite: each case of tests/_hostile_cases.ts in a process
// of its own (tests/fixtures/hostile_case.ts), on the backend this run of the
// suite uses (ASYNCORE_BACKEND is passed through). A case passes when its
// process exits normally and prints the expected line; death by a signal
// (SIGSEGV, SIGABRT from a corrupted heap) fails it, and one case's crash
// cannot hide another's. The processes run a few at a time.

import { assertEquals } from "@std/assert";
import { pooledMap } from "@std/async";
import { CASES } from "./_hostile_cases.ts";
import { BACKEND } from "./_helpers.ts";
import { epollUnsupported } from "./_epoll_helpers.ts";

const FIXTURE = new URL("./fixtures/hostile_case.ts", import.meta.url).pathname;
const CONCURRENCY = 3;
// A case hung this long has failed: its process is killed.
const TIMEOUT_MS = 30_000;
const LINE_LIMIT = 1000;

interface Outcome {
  name: string;
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

async function runCase(name: string): Promise<Outcome> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      "--allow-ffi",
      "--allow-env",
      "--allow-read",
      FIXTURE,
      name,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { ASYNCORE_BACKEND: BACKEND, NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
  try {
    const { code, signal, stdout, stderr } = await child.output();
    const decoder = new TextDecoder();
    const line = decoder.decode(stdout).trim();
    return {
      name,
      code,
      signal,
      // Memory sent that was not the caller's can run to megabytes.
      stdout: line.length > LINE_LIMIT
        ? `${line.slice(0, LINE_LIMIT)}… (${line.length} characters)`
        : line,
      stderr: decoder.decode(stderr).trim(),
    };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: `hostile callers: every case lives and answers as expected (${
    Object.keys(CASES).length
  } processes)${
    epollUnsupported === null
      ? ""
      : " (skipped: FileWrapper cases need Linux x86_64/aarch64 and --allow-ffi)"
  }`,
  ignore: epollUnsupported !== null,
  async fn(t) {
    const outcomes = new Map<string, Outcome>();
    for await (
      const outcome of pooledMap(CONCURRENCY, Object.keys(CASES), runCase)
    ) {
      outcomes.set(outcome.name, outcome);
    }
    for (const [name, hostileCase] of Object.entries(CASES)) {
      await t.step(name, () => {
        const outcome = outcomes.get(name)!;
        const expected = typeof hostileCase.expect === "string"
          ? hostileCase.expect
          : hostileCase.expect[BACKEND];
        assertEquals(
          { signal: outcome.signal, code: outcome.code, line: outcome.stdout },
          { signal: null, code: 0, line: expected },
          `stderr: ${outcome.stderr.slice(-2000)}`,
        );
      });
    }
  },
});
