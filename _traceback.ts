// Errors summarised in one line for the loop's log: Python's
// `asyncore.compact_traceback()`, on a JavaScript stack.

/** What {@linkcode compactTraceback} returns: Python's 4-tuple, named. */
export interface CompactTraceback {
  /** The file of the innermost frame. */
  file: string;
  /** The function of the innermost frame. */
  func: string;
  /** The line of the innermost frame. */
  line: string;
  /** The error's class name. */
  type: string;
  /** The error's message. */
  value: string;
  /** Every frame, outermost first, as `[file|function|line]`. */
  info: string;
}

// A V8 stack line: "    at func (file:line:column)" or "    at file:line:column".
const FRAME = /^\s*at (?:(.*?) \()?(.*?):(\d+):\d+\)?$/;

/**
 * Summarises an error in one line, as Python's `asyncore.compact_traceback()`.
 *
 * @example
 * ```ts
 * import { compactTraceback } from "@asyncore/asyncore/asyncore";
 * import { assertEquals } from "@std/assert";
 *
 * const tb = compactTraceback(new RangeError("too big"));
 * assertEquals([tb.type, tb.value], ["RangeError", "too big"]);
 * ```
 *
 * @param error Anything thrown.
 * @returns The innermost frame, the error's type and message, and all frames.
 */
export function compactTraceback(error: unknown): CompactTraceback {
  const type = error instanceof Error
    ? error.name
    : error === null
    ? "null"
    : typeof error === "object"
    ? error.constructor?.name ?? "Object"
    : typeof error;
  const value = error instanceof Error ? error.message : String(error);
  const frames: [string, string, string][] = [];
  const stack = error instanceof Error ? error.stack ?? "" : "";
  for (const text of stack.split("\n")) {
    const match = FRAME.exec(text);
    if (match) {
      frames.unshift([match[2], match[1] ?? "<anonymous>", match[3]]);
    }
  }
  const [file, func, line] = frames.at(-1) ?? ["?", "?", "?"];
  const info = frames.map(([f, fn, l]) => `[${f}|${fn}|${l}]`).join(" ");
  return { file, func, line, type, value, info };
}
