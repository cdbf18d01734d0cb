// Checks the project's import rules on the module graph `deno info --json`
// gives for every .ts file at the project root (and in the backend folders).
// Type-only imports are edges too. Only file:// modules inside the root count.
//
//   deno run --allow-read --allow-run .ci/check_imports.ts [root]
//
// Prints every violation as `path -> path: rule` and exits 1, or prints
// `imports: N modules, N edges, rules hold` and exits 0.

/** The backend folders: each holds the code of one backend. */
const BACKEND_DIRS: readonly string[] = ["_deno", "_epoll"];

/**
 * Imports from one backend folder into another that are allowed anyway, as
 * [from, to] paths relative to the root. Each entry must be documented in the
 * README's "Architecture" section.
 */
const CROSS_BACKEND_ALLOWED: readonly (readonly [from: string, to: string])[] =
  [];

const RULE_CYCLE = "import cycle";
const RULE_BACKEND_TO_PUBLIC = "a backend file imports a public module";
const RULE_PUBLIC_TO_BACKEND = "a public module imports a backend file";
const RULE_CROSS_BACKEND = "a backend file imports another backend's file";
const RULE_UNRESOLVED = "import cannot be loaded";

interface Dependency {
  specifier: string;
  code?: { specifier?: string; error?: string };
  type?: { specifier?: string; error?: string };
}

interface ModuleInfo {
  specifier: string;
  error?: string;
  dependencies?: Dependency[];
}

interface ModuleGraph {
  modules: ModuleInfo[];
}

/** A file:// URL for an absolute path. */
function toFileUrl(path: string): string {
  const posix = path.replaceAll("\\", "/");
  const absolute = posix.startsWith("/") ? posix : `/${posix}`;
  return "file://" +
    absolute.split("/").map((segment) =>
      /^[A-Za-z]:$/.test(segment) ? segment : encodeURIComponent(segment)
    ).join("/");
}

function backendOf(path: string): string | undefined {
  return BACKEND_DIRS.find((dir) => path.startsWith(`${dir}/`));
}

/** The public modules: the values of deno.json's `exports`, as paths. */
function publicModules(root: string, rootFiles: string[]): Set<string> {
  let config: { exports?: string | Record<string, string> };
  try {
    config = JSON.parse(Deno.readTextFileSync(`${root}/deno.json`));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    return new Set(rootFiles.filter((name) => !name.startsWith("_")));
  }
  const exports = config.exports ?? {};
  const targets = typeof exports === "string"
    ? [exports]
    : Object.values(exports);
  return new Set(targets.map((target) => target.replace(/^\.\//, "")));
}

function entryPoints(root: string): { rootFiles: string[]; entries: string[] } {
  const tsFiles = (dir: string): string[] => {
    try {
      return [...Deno.readDirSync(`${root}/${dir}`)]
        .filter((entry) => entry.isFile && entry.name.endsWith(".ts"))
        .map((entry) => dir === "" ? entry.name : `${dir}/${entry.name}`);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return [];
      throw error;
    }
  };
  const rootFiles = tsFiles("").sort();
  // A backend file no root file reaches (yet) is still checked.
  const entries = [...rootFiles, ...BACKEND_DIRS.flatMap(tsFiles)].sort();
  return { rootFiles, entries };
}

/** Runs `deno info --json` once, on a data: module importing every entry. */
async function moduleGraph(
  root: string,
  entries: string[],
): Promise<ModuleGraph> {
  const source = entries
    .map((path) => `import ${JSON.stringify(toFileUrl(`${root}/${path}`))};\n`)
    .join("");
  const args = ["info", "--json", "--no-lock"];
  try {
    Deno.statSync(`${root}/deno.json`);
    args.push("--config", `${root}/deno.json`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  args.push(`data:application/typescript,${encodeURIComponent(source)}`);
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `deno info failed (exit ${output.code}):\n` +
        new TextDecoder().decode(output.stderr),
    );
  }
  return JSON.parse(new TextDecoder().decode(output.stdout)) as ModuleGraph;
}

/** Tarjan's strongly connected components, in the order they complete. */
function stronglyConnected(graph: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      components.push(component);
    }
  };
  for (const node of graph.keys()) {
    if (!index.has(node)) visit(node);
  }
  return components;
}

/** A shortest cycle through `start` that stays inside `members`. */
function cycleThrough(
  graph: Map<string, Set<string>>,
  start: string,
  members: Set<string>,
): string[] {
  const previous = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i];
    for (const next of [...(graph.get(node) ?? [])].sort()) {
      if (!members.has(next)) continue;
      if (next === start) {
        const path = [node];
        while (path[0] !== start) path.unshift(previous.get(path[0])!);
        return [...path, start];
      }
      if (!previous.has(next)) {
        previous.set(next, node);
        queue.push(next);
      }
    }
  }
  return [start, start];
}

async function main(rootArg: string): Promise<number> {
  const root = Deno.realPathSync(rootArg);
  const { rootFiles, entries } = entryPoints(root);
  const publics = publicModules(root, rootFiles);
  const info = await moduleGraph(root, entries);

  const rootUrl = `${toFileUrl(root)}/`;
  const relative = (specifier: string): string | undefined =>
    specifier.startsWith(rootUrl)
      ? decodeURIComponent(specifier.slice(rootUrl.length))
      : undefined;

  const violations: string[] = [];
  const loadErrors = new Map<string, string>();
  const graph = new Map<string, Set<string>>();
  for (const module of info.modules) {
    const path = relative(module.specifier);
    if (path === undefined) continue;
    if (module.error !== undefined) {
      loadErrors.set(path, module.error);
      continue;
    }
    const targets = graph.get(path) ?? new Set<string>();
    graph.set(path, targets);
    for (const dependency of module.dependencies ?? []) {
      for (const resolved of [dependency.code, dependency.type]) {
        if (resolved?.error !== undefined) {
          violations.push(
            `${path} -> ${dependency.specifier}: ${RULE_UNRESOLVED} (${resolved.error})`,
          );
        }
        const target = resolved?.specifier && relative(resolved.specifier);
        if (target) targets.add(target);
      }
    }
  }

  let edges = 0;
  const allowed = new Set(CROSS_BACKEND_ALLOWED.map(([a, b]) => `${a}\0${b}`));
  for (const [from, targets] of [...graph].sort(([a], [b]) => a < b ? -1 : 1)) {
    for (const to of [...targets].sort()) {
      if (loadErrors.has(to)) {
        violations.push(
          `${from} -> ${to}: ${RULE_UNRESOLVED} (${loadErrors.get(to)})`,
        );
        targets.delete(to);
        continue;
      }
      edges++;
      const fromBackend = backendOf(from);
      const toBackend = backendOf(to);
      const rules: string[] = [];
      if (fromBackend && publics.has(to)) rules.push(RULE_BACKEND_TO_PUBLIC);
      if (publics.has(from) && toBackend) rules.push(RULE_PUBLIC_TO_BACKEND);
      if (
        fromBackend && toBackend && fromBackend !== toBackend &&
        !allowed.has(`${from}\0${to}`)
      ) {
        rules.push(RULE_CROSS_BACKEND);
      }
      for (const rule of rules) violations.push(`${from} -> ${to}: ${rule}`);
    }
  }

  for (const component of stronglyConnected(graph)) {
    const start = component.sort()[0];
    if (component.length === 1 && !graph.get(start)!.has(start)) continue;
    const cycle = cycleThrough(graph, start, new Set(component));
    // The shortest cycle shows how; the component lists every file involved.
    const files = component.length + 1 === cycle.length
      ? ""
      : ` (${component.length} files import each other: ${
        component.join(", ")
      })`;
    violations.push(`${cycle.join(" -> ")}: ${RULE_CYCLE}${files}`);
  }

  if (violations.length > 0) {
    // A dependency whose code and type both fail to resolve is one line.
    for (const violation of new Set(violations)) console.log(violation);
    return 1;
  }
  console.log(`imports: ${graph.size} modules, ${edges} edges, rules hold`);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args[0] ?? Deno.cwd()));
}
