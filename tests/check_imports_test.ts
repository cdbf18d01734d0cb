// .ci/check_imports.ts on small fake projects: a clean graph passes, and each
// rule it checks names the rule and the files of a graph that breaks it.

import { assertEquals, assertMatch, assertStringIncludes } from "@std/assert";

const SCRIPT = new URL("../.ci/check_imports.ts", import.meta.url).pathname;

interface Result {
  code: number;
  output: string;
}

/**
 * Writes `files` (path relative to the root → source) and a deno.json whose
 * only export is `./mod.ts` into a temp directory, then runs the script on it
 * with the permissions the `check` task gives it.
 */
async function check(files: Record<string, string>): Promise<Result> {
  const root = await Deno.makeTempDir({ prefix: "check_imports_" });
  try {
    await Deno.writeTextFile(
      `${root}/deno.json`,
      JSON.stringify({ exports: { ".": "./mod.ts" } }),
    );
    for (const [path, source] of Object.entries(files)) {
      const slash = path.lastIndexOf("/");
      if (slash > 0) {
        await Deno.mkdir(`${root}/${path.slice(0, slash)}`, {
          recursive: true,
        });
      }
      await Deno.writeTextFile(`${root}/${path}`, source);
    }
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-run", SCRIPT, root],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      output: decoder.decode(output.stdout) + decoder.decode(output.stderr),
    };
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** A clean project: mod.ts reaches both backends through a private module. */
const CLEAN: Record<string, string> = {
  "mod.ts": 'export { backend } from "./_backend.ts";\n',
  "_backend.ts": [
    'import { deno } from "./_deno/y.ts";',
    'import { epoll } from "./_epoll/z.ts";',
    "export const backend = [deno, epoll];",
    "",
  ].join("\n"),
  "_util.ts": "export const one = 1;\n",
  "_deno/y.ts":
    'import { one } from "../_util.ts";\nexport const deno = one;\n',
  "_epoll/z.ts": 'import type { Util } from "../_types.ts";\n' +
    "export const epoll: Util = 2;\n",
  "_types.ts": "export type Util = number;\n",
};

Deno.test("check_imports passes a clean graph and counts it", async () => {
  const { code, output } = await check(CLEAN);
  assertEquals(output, "imports: 6 modules, 5 edges, rules hold\n");
  assertEquals(code, 0);
});

Deno.test("check_imports reports a cycle made by a type-only import", async () => {
  const { code, output } = await check({
    ...CLEAN,
    "_util.ts": 'import type { Util } from "./_types.ts";\n' +
      "export const one: Util = 1;\n",
    "_types.ts": 'import type { one } from "./_util.ts";\n' +
      "export type Util = typeof one | number;\n",
  });
  assertEquals(code, 1);
  assertEquals(output, "_types.ts -> _util.ts -> _types.ts: import cycle\n");
});

Deno.test("check_imports reports a self-import and a longer cycle once", async () => {
  const { code, output } = await check({
    ...CLEAN,
    "_self.ts": 'import "./_self.ts";\n',
    "_a.ts": 'import "./_b.ts";\n',
    "_b.ts": 'import "./_c.ts";\n',
    "_c.ts": 'import "./_a.ts";\nimport "./_b.ts";\n',
  });
  assertEquals(code, 1);
  const lines = output.trimEnd().split("\n").sort();
  assertEquals(lines, [
    "_a.ts -> _b.ts -> _c.ts -> _a.ts: import cycle",
    "_self.ts -> _self.ts: import cycle",
  ]);
});

Deno.test("check_imports reports a backend file importing a public module", async () => {
  const { code, output } = await check({
    ...CLEAN,
    // Nothing imports x.ts: the backend folders are entry points too.
    "_epoll/x.ts": 'import { backend } from "../mod.ts";\n' +
      "export const x = backend;\n",
  });
  assertEquals(code, 1);
  assertEquals(
    output,
    "_epoll/x.ts -> mod.ts: a backend file imports a public module\n",
  );
});

Deno.test("check_imports reports a public module importing a backend file", async () => {
  const { code, output } = await check({
    ...CLEAN,
    "mod.ts": 'export { backend } from "./_backend.ts";\n' +
      'export type { deno } from "./_deno/y.ts";\n',
  });
  assertEquals(code, 1);
  assertEquals(
    output,
    "mod.ts -> _deno/y.ts: a public module imports a backend file\n",
  );
});

Deno.test("check_imports reports one backend importing the other", async () => {
  const { code, output } = await check({
    ...CLEAN,
    "_deno/y.ts": 'import { epoll } from "../_epoll/z.ts";\n' +
      "export const deno = epoll;\n",
  });
  assertEquals(code, 1);
  assertEquals(
    output,
    "_deno/y.ts -> _epoll/z.ts: a backend file imports another backend's file\n",
  );
});

Deno.test("check_imports reports every violation, not just the first", async () => {
  const { code, output } = await check({
    ...CLEAN,
    "mod.ts": 'import "./_deno/y.ts";\nimport "./_backend.ts";\n',
    "_deno/y.ts": 'import "../_epoll/z.ts";\nexport const deno = 1;\n',
    "_epoll/z.ts": 'import "../mod.ts";\nexport const epoll = 2;\n',
  });
  assertEquals(code, 1);
  for (
    const expected of [
      "mod.ts -> _deno/y.ts: a public module imports a backend file",
      "_deno/y.ts -> _epoll/z.ts: a backend file imports another backend's file",
      "_epoll/z.ts -> mod.ts: a backend file imports a public module",
    ]
  ) {
    assertStringIncludes(output, `${expected}\n`);
  }
  // mod.ts, _backend.ts and both backend files import each other.
  assertMatch(
    output,
    /^_backend\.ts -> .*: import cycle \(4 files import each other: .*\)$/m,
  );
});

Deno.test("check_imports reports an import it cannot load", async () => {
  const { code, output } = await check({
    ...CLEAN,
    "_util.ts": 'import "./_gone.ts";\nexport const one = 1;\n',
  });
  assertEquals(code, 1);
  assertMatch(output, /^_util\.ts -> _gone\.ts: import cannot be loaded \(/);
});

Deno.test("check_imports reports a specifier it cannot resolve", async () => {
  const { code, output } = await check({
    ...CLEAN,
    "_util.ts": 'import "not-mapped";\nexport const one = 1;\n',
  });
  assertEquals(code, 1);
  assertMatch(output, /^_util\.ts -> not-mapped: import cannot be loaded \(/);
});
