/**
 * The benchmarks' command line: `@std/cli`'s `parseArgs` with `--help`
 * (`-h`) and `--quick`, unknown options refused with the usage text, and
 * string options read back as one value each.
 *
 * @module
 */

import { parseArgs } from "@std/cli";

/** Parsed options: each string option's value, and the booleans. */
export interface Flags {
  /** The value of string option `name`, or `undefined` when absent. */
  string(name: string): string | undefined;
  /** Whether boolean option `name` was given. */
  boolean(name: string): boolean;
}

/**
 * Parses `args`; prints `usage` and exits on `--help`.
 *
 * @throws {TypeError} for an unknown option, or a string option given twice.
 */
export function parseFlags(
  args: string[],
  usage: string,
  options: { boolean?: string[]; string: string[] },
): Flags {
  const flags: Record<string, unknown> = parseArgs(args, {
    boolean: ["help", "quick", ...(options.boolean ?? [])],
    string: options.string,
    alias: { h: "help" },
    unknown: (arg: string) => {
      throw new TypeError(`unknown option ${arg}\n${usage}`);
    },
  });
  if (flags.help === true) {
    console.log(usage);
    Deno.exit(0);
  }
  return {
    string(name) {
      const value = flags[name];
      if (value === undefined || typeof value === "string") return value;
      // parseArgs types values loosely: a repeated option is an array.
      throw new TypeError(`--${name} takes one value, got ${String(value)}`);
    },
    boolean(name) {
      return flags[name] === true;
    },
  };
}
