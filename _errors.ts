// Errors of failed system calls, in one shape on both backends:
// `operation: description (NAME, os error N)`, of the class Deno's own ops
// throw for that errno, with `code` set as Deno sets it.

/** errno of a refused connection. */
export const ECONNREFUSED = 111;

type ErrorClass = new (message: string) => Error;

// errno -> [name, description, class]. The classes are those Deno's own ops
// throw for the same errno (Rust's io::ErrorKind mapped by Deno); an errno
// Deno reports as a plain Error (EMFILE, ENOBUFS...) is a plain Error here
// too, with `code` set as Deno sets it.
const ERRNO: Record<number, [string, string, ErrorClass]> = {
  1: ["EPERM", "operation not permitted", Deno.errors.PermissionDenied],
  2: ["ENOENT", "no such file or directory", Deno.errors.NotFound],
  4: ["EINTR", "interrupted system call", Deno.errors.Interrupted],
  9: ["EBADF", "bad file descriptor", Deno.errors.BadResource],
  11: ["EAGAIN", "resource temporarily unavailable", Deno.errors.WouldBlock],
  12: ["ENOMEM", "out of memory", Error],
  13: ["EACCES", "permission denied", Deno.errors.PermissionDenied],
  17: ["EEXIST", "file exists", Deno.errors.AlreadyExists],
  20: ["ENOTDIR", "not a directory", Deno.errors.NotADirectory],
  22: ["EINVAL", "invalid argument", TypeError],
  23: ["ENFILE", "too many open files in system", Error],
  24: ["EMFILE", "too many open files", Error],
  32: ["EPIPE", "broken pipe", Deno.errors.BrokenPipe],
  36: ["ENAMETOOLONG", "file name too long", Error],
  40: ["ELOOP", "too many symbolic links", Deno.errors.FilesystemLoop],
  88: ["ENOTSOCK", "not a socket", Deno.errors.BadResource],
  92: ["ENOPROTOOPT", "protocol not available", Deno.errors.NotSupported],
  93: [
    "EPROTONOSUPPORT",
    "protocol not supported",
    Deno.errors.NotSupported,
  ],
  95: ["EOPNOTSUPP", "operation not supported", Deno.errors.NotSupported],
  97: [
    "EAFNOSUPPORT",
    "address family not supported",
    Deno.errors.NotSupported,
  ],
  98: ["EADDRINUSE", "address in use", Deno.errors.AddrInUse],
  99: [
    "EADDRNOTAVAIL",
    "address not available",
    Deno.errors.AddrNotAvailable,
  ],
  100: ["ENETDOWN", "network is down", Deno.errors.NetworkUnreachable],
  101: [
    "ENETUNREACH",
    "network is unreachable",
    Deno.errors.NetworkUnreachable,
  ],
  103: [
    "ECONNABORTED",
    "connection aborted",
    Deno.errors.ConnectionAborted,
  ],
  104: ["ECONNRESET", "connection reset", Deno.errors.ConnectionReset],
  105: ["ENOBUFS", "no buffer space available", Error],
  106: ["EISCONN", "already connected", Deno.errors.AlreadyExists],
  107: ["ENOTCONN", "not connected", Deno.errors.NotConnected],
  110: ["ETIMEDOUT", "connection timed out", Deno.errors.TimedOut],
  111: ["ECONNREFUSED", "connection refused", Deno.errors.ConnectionRefused],
  113: ["EHOSTUNREACH", "host is unreachable", Deno.errors.NetworkUnreachable],
  114: ["EALREADY", "operation already in progress", Deno.errors.Busy],
  115: ["EINPROGRESS", "operation now in progress", Deno.errors.WouldBlock],
};

/** The error for `errno` from `operation`, with `code` set as Deno sets it. */
export function errnoError(operation: string, errno: number): Error {
  const [name, description, ErrorClass] = ERRNO[errno] ??
    [`errno ${errno}`, "unknown error", Error];
  return osError(ErrorClass, operation, description, name, errno);
}

/** `operation: description (NAME, os error N)`, with `code` set as Deno sets it. */
function osError(
  ErrorClass: ErrorClass,
  operation: string,
  description: string,
  name: string,
  errno: number,
): Error {
  const error = new ErrorClass(
    `${operation}: ${description} (${name}, os error ${errno})`,
  );
  Object.defineProperty(error, "code", {
    value: name,
    enumerable: true,
    writable: true,
    configurable: true,
  });
  return error;
}

/**
 * Deno's error for a failed system call (`Connection refused (os error
 * 111)`) in the shape {@linkcode errnoError} gives, so that both backends
 * report a failure alike: `connect: connection refused (ECONNREFUSED, os
 * error 111)`, of the same class, with `code`. Anything else (a failed name
 * lookup, a TLS error) is returned as it is.
 */
export function restated(operation: string, error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const match = / \(os error (\d+)\)$/.exec(error.message);
  if (match === null) return error;
  const errno = Number(match[1]);
  const known = ERRNO[errno];
  const code = (error as { code?: unknown }).code;
  const name = known?.[0] ?? (typeof code === "string" ? code : undefined) ??
    `errno ${errno}`;
  const text = error.message.slice(0, match.index);
  const description = known?.[1] ??
    text.charAt(0).toLowerCase() + text.slice(1);
  return osError(
    error.constructor as ErrorClass,
    operation,
    description,
    name,
    errno,
  );
}
