/**
 * The HTTP benchmark: `wrk -t1 -c100` keep-alive GETs of a 13-byte file and
 * of a 64 KiB file, against `examples/http_server.ts` on both backends, a
 * `Deno.serve` file handler (`bench/servers/deno_serve_files.ts`: what a
 * Deno user writes) and nginx (Debian's, one process, sendfile on, access
 * log off, with its own configuration in a temporary directory) as the
 * limit, all in one run.
 *
 * Each server runs in its own process and is started once per round (each
 * round in another order); each file gets a 1 s warm-up and then the
 * measured window. Reported: requests/s,
 * p99 latency (wrk's), the server's own CPU time per request (utime and
 * stime from `/proc/PID/stat` over the window), and ratios to nginx and to
 * the `Deno.serve` handler from the same run; medians over rounds.
 *
 * ```sh
 * deno task bench:http              # 5 rounds of 4 s per server and file
 * deno task bench:http --quick      # 1 round of 2 s
 * ```
 *
 * Options: `--duration=SECONDS`, `--rounds=N`, `--quick`,
 * `--out=PATH` (Markdown report; default `bench/results/http.md`), `--help`.
 *
 * @module
 */

import { getAvailablePort } from "@std/net";
import { delay } from "@std/async";
import { parseFlags } from "./_cli.ts";
import { Child, clockTicks, readCpu, runText } from "./_proc.ts";
import { fixed, median, table } from "./_report.ts";

const USAGE =
  "usage: deno task bench:http [--quick] [--duration=SECONDS] [--rounds=N] [--out=PATH]";
const flags = parseFlags(Deno.args, USAGE, {
  string: ["duration", "rounds", "out"],
});
const quick = flags.boolean("quick");
const duration = Number(flags.string("duration") ?? (quick ? 2 : 4));
const rounds = Number(flags.string("rounds") ?? (quick ? 1 : 5));
const out = flags.string("out") ??
  new URL("results/http.md", import.meta.url).pathname;
if (!(duration > 0 && duration <= 60 && rounds >= 1 && rounds <= 10)) {
  throw new TypeError(`duration 1-60 s and rounds 1-10, please\n${USAGE}`);
}

const ROOT = new URL("../", import.meta.url).pathname;
const FILES = [
  { name: "13 B", path: "/hello.txt" },
  { name: "64 KiB", path: "/64k.bin" },
];

/** A server under test: how to start it on `port` serving `dir`. */
interface Server {
  id: string;
  label: string;
  command(dir: string, port: number): { cmd: string; args: string[] };
  env?: Record<string, string>;
}

const deno = Deno.execPath();
const SERVERS: Server[] = [
  {
    id: "ours-epoll",
    label: "examples/http_server.ts, ASYNCORE_BACKEND=epoll",
    command: (dir, port) => ({
      cmd: "env",
      args: [
        "ASYNCORE_BACKEND=epoll",
        deno,
        "run",
        "--allow-net",
        "--allow-read",
        "--allow-ffi",
        "--allow-env",
        `${ROOT}examples/http_server.ts`,
        "--root",
        `${dir}/www`,
        "--port",
        String(port),
        "--quiet",
      ],
    }),
  },
  {
    id: "ours-default",
    label: "examples/http_server.ts, default backend",
    command: (dir, port) => ({
      cmd: deno,
      args: [
        "run",
        "--allow-net",
        "--allow-read",
        `${ROOT}examples/http_server.ts`,
        "--root",
        `${dir}/www`,
        "--port",
        String(port),
        "--quiet",
      ],
    }),
  },
  {
    id: "deno-serve",
    label: "Deno.serve file handler (Deno.open, stat, file.readable)",
    command: (dir, port) => ({
      cmd: deno,
      args: [
        "run",
        "--allow-net",
        "--allow-read",
        `${ROOT}bench/servers/deno_serve_files.ts`,
        `${dir}/www`,
        String(port),
      ],
    }),
  },
  {
    id: "nginx",
    label: "nginx, 1 process, sendfile on, access log off",
    command: (dir, port) => ({
      cmd: "nginx",
      args: ["-p", dir, "-c", nginxConfig(dir, port)],
    }),
  },
];

/** Writes nginx's configuration for `dir/www` on `port`; returns its path. */
function nginxConfig(dir: string, port: number): string {
  const path = `${dir}/nginx.conf`;
  Deno.writeTextFileSync(
    path,
    `worker_processes 1;
daemon off;
master_process off;
error_log ${dir}/nginx-error.log;
pid ${dir}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  include /etc/nginx/mime.types;
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  server { listen 127.0.0.1:${port}; root ${dir}/www; }
}
`,
  );
  return path;
}

/** One wrk run's figures. */
interface Measure {
  rps: number;
  p99Ms: number;
  cpuUsPerReq: number;
  errors: number;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };

async function wrk(
  port: number,
  path: string,
  seconds: number,
): Promise<string> {
  const text = await runText("wrk", [
    "-t1",
    "-c100",
    `-d${seconds}s`,
    "--latency",
    "--timeout",
    "10s",
    `http://127.0.0.1:${port}${path}`,
  ]);
  if (text === null) throw new Error("wrk failed");
  return text;
}

function parseWrk(
  text: string,
): Omit<Measure, "cpuUsPerReq"> & { requests: number } {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(text)?.[1]);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)$/m.exec(text);
  const socket =
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
      .exec(text);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  const errors = non2xx +
    (socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0);
  return {
    rps,
    requests,
    p99Ms: p99 ? Number(p99[1]) * UNIT_MS[p99[2]] : NaN,
    errors,
  };
}

async function waitListening(port: number, child: Child): Promise<void> {
  const deadline = performance.now() + 20_000;
  while (performance.now() < deadline && !child.exited) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await delay(50);
    }
  }
  throw new Error(`server did not listen on ${port}: ${child.stderrTail}`);
}

async function main(): Promise<void> {
  for (const tool of ["wrk", "nginx"]) {
    if (await runText("sh", ["-c", `command -v ${tool}`]) === null) {
      console.error(`bench:http needs ${tool}; install it (.ci/run does)`);
      Deno.exit(1);
    }
  }
  Child.killAllOnSignal();
  const ticks = await clockTicks();
  const dir = Deno.makeTempDirSync({ prefix: "bench_http_" });
  Deno.mkdirSync(`${dir}/www`);
  Deno.writeTextFileSync(`${dir}/www/hello.txt`, "Hello, world!");
  const big = new Uint8Array(65536);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff;
  Deno.writeFileSync(`${dir}/www/64k.bin`, big);
  const loadAtStart = (await runText("cat", ["/proc/loadavg"]))?.split(" ")
    .slice(0, 3).join(" ");
  const results = new Map<string, Measure[]>();
  try {
    for (let round = 0; round < rounds; round++) {
      // Each round starts with the next server, so that none always runs
      // first or last as the host's load drifts.
      const order = SERVERS.map((_, i) =>
        SERVERS[(i + round) % SERVERS.length]
      );
      for (const server of order) {
        const port = getAvailablePort({ preferredPort: 0 });
        const { cmd, args } = server.command(dir, port);
        const child = new Child(cmd, args);
        try {
          await waitListening(port, child);
          for (const file of FILES) {
            await wrk(port, file.path, 1); // warm-up
            const before = readCpu(child.pid);
            const text = await wrk(port, file.path, duration);
            const after = readCpu(child.pid);
            const figures = parseWrk(text);
            const cpuS = before && after
              ? (after.user + after.system - before.user - before.system) /
                ticks
              : NaN;
            const measure = {
              rps: figures.rps,
              p99Ms: figures.p99Ms,
              errors: figures.errors,
              cpuUsPerReq: cpuS * 1e6 / figures.requests,
            };
            const key = `${server.id} ${file.name}`;
            results.set(key, [...(results.get(key) ?? []), measure]);
            console.log(
              `round ${round + 1}: ${key}: ${fixed(measure.rps, 0)} req/s, ` +
                `p99 ${fixed(measure.p99Ms, 2)} ms, ` +
                `${
                  fixed(measure.cpuUsPerReq, 1)
                } µs CPU/req, ${measure.errors} errors`,
            );
          }
        } finally {
          await child.stop();
        }
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  const report = render(results, loadAtStart ?? "?");
  Deno.writeTextFileSync(out, report);
  Deno.writeTextFileSync(
    out.replace(/\.md$/, ".json"),
    JSON.stringify(
      Object.fromEntries(results),
      null,
      1,
    ) + "\n",
  );
  console.log("\n" + report);
}

/** Medians of a server's runs on a file. */
function summary(runs: Measure[]): Measure {
  return {
    rps: median(runs.map((r) => r.rps)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    cpuUsPerReq: median(runs.map((r) => r.cpuUsPerReq)),
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
  };
}

function render(results: Map<string, Measure[]>, load: string): string {
  const lines = [
    "# HTTP benchmark",
    "",
    `Generated by \`deno task bench:http\` (bench/http.ts) on ${
      new Date().toISOString()
    }; do not edit by hand.`,
    "",
    `- Machine: ${navigator.hardwareConcurrency} cores, load average at start ${load}; Deno ${Deno.version.deno}.`,
    `- Method: \`wrk -t1 -c100\` keep-alive GETs, ${duration} s measured after 1 s of warm-up, ${rounds} round(s), medians; CPU per request is the server's own utime + stime over the window. Ratios: req/s and p99 to nginx, and to the Deno.serve handler (×).`,
    "",
    ...SERVERS.map((s) => `- \`${s.id}\`: ${s.label}`),
    "",
  ];
  const targets: string[] = [];
  for (const file of FILES) {
    const of = (id: string) => summary(results.get(`${id} ${file.name}`) ?? []);
    const nginx = of("nginx");
    const serve = of("deno-serve");
    lines.push(`## ${file.name}`, "");
    lines.push(
      ...table(
        [
          "server",
          "req/s",
          "× nginx",
          "× Deno.serve",
          "p99 ms",
          "p99 × nginx",
          "CPU µs/req",
          "errors",
        ],
        SERVERS.map((s) => {
          const m = of(s.id);
          return [
            s.id,
            fixed(m.rps, 0),
            fixed(m.rps / nginx.rps, 2),
            fixed(m.rps / serve.rps, 2),
            fixed(m.p99Ms, 2),
            fixed(m.p99Ms / nginx.p99Ms, 2),
            fixed(m.cpuUsPerReq, 1),
            String(m.errors),
          ];
        }),
      ),
      "",
    );
    const epoll = of("ours-epoll");
    const ours = of("ours-default");
    targets.push(
      `- ${file.name}, epoll ≥ 0.7× nginx req/s: ${
        fixed(epoll.rps / nginx.rps, 2)
      }× ${epoll.rps >= 0.7 * nginx.rps ? "met" : "NOT met"}; p99 ≤ 2× nginx: ${
        fixed(epoll.p99Ms / nginx.p99Ms, 2)
      }× ${epoll.p99Ms <= 2 * nginx.p99Ms ? "met" : "NOT met"}`,
      `- ${file.name}, default ≥ 2× Deno.serve req/s: ${
        fixed(ours.rps / serve.rps, 2)
      }× ${ours.rps >= 2 * serve.rps ? "met" : "NOT met"}`,
    );
  }
  lines.push("## Targets", "", ...targets, "");
  return lines.join("\n");
}

await main();
