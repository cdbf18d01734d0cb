// Which backend a new socket uses: the option it was made with, else the
// process-wide default (set by the program, else ASYNCORE_BACKEND, read once),
// else Deno's own sockets. Asked for epoll where it cannot work, it throws an
// error naming the reason and the fix: it never falls back silently.

import { unsupportedReason } from "./_epoll/libc.ts";
import { describe } from "./_validate.ts";

/**
 * A socket backend: `"deno"` (Deno's own connections; the sandbox holds) or
 * `"epoll"` (OS descriptors and epoll through FFI; Linux, `--allow-ffi`).
 */
export type Backend = "deno" | "epoll";

/** The environment variable that sets the default backend. */
const BACKEND_VARIABLE = "ASYNCORE_BACKEND";

let chosen: Backend | undefined;
// Checked once per process when it passes: every accepted socket asks, and a
// permission query per socket was most of what accepting allocated.
let epollSupported = false;

/** Checks a backend name. */
export function checkBackend(name: string, value: unknown): Backend {
  if (value !== "deno" && value !== "epoll") {
    throw new TypeError(
      `${name} must be "deno" or "epoll", got ${describe(value)}`,
    );
  }
  return value;
}

/** Throws unless the epoll backend can run here: the reason and the fix. */
export function checkEpollSupported(): void {
  if (epollSupported) return;
  const reason = unsupportedReason();
  if (reason === null) {
    epollSupported = true;
    return;
  }
  throw reason.includes("--allow-ffi")
    ? new Deno.errors.NotCapable(reason)
    : new Deno.errors.NotSupported(reason);
}

/** Sets the default for sockets made from now on (see socket.ts). */
export function setDefault(backend: Backend): void {
  if (backend === "epoll") checkEpollSupported();
  chosen = backend;
}

/**
 * The default: what the program set, else `ASYNCORE_BACKEND` (read on first
 * use; treated as unset when the env permission for it is not granted),
 * else `"deno"`.
 */
export function defaultBackend(): Backend {
  if (chosen !== undefined) return chosen;
  const { state } = Deno.permissions.querySync({
    name: "env",
    variable: BACKEND_VARIABLE,
  });
  const value = state === "granted" ? Deno.env.get(BACKEND_VARIABLE) ?? "" : "";
  chosen = value === "" ? "deno" : checkBackend(BACKEND_VARIABLE, value);
  return chosen;
}
