// Argument checks shared by the public modules: clear errors naming the argument.

import {
  byteLengthOf,
  isInBounds,
  isUint8Array,
  ownView,
  typedArrayName,
} from "./_view.ts";

const encoder = new TextEncoder();

/**
 * Describes a value for an error message. It trusts nothing: reading a
 * constructor's name may run a caller's getter or Proxy trap, which may
 * throw.
 */
export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (value === null) return "null";
  if (typeof value === "object") {
    let name: unknown;
    try {
      name = value.constructor?.name;
    } catch {
      return "an object";
    }
    return typeof name === "string" && name !== "" ? `a ${name}` : "an object";
  }
  return String(value);
}

/**
 * The caller's bytes `value` as a Uint8Array of this code's own over the
 * same memory ({@linkcode ownView}): its length, offset and methods are the
 * engine's, whatever properties, getters, subclass methods or Proxy traps
 * the caller's object has. A view on a SharedArrayBuffer is allowed; one
 * tracking a resizable buffer is taken at its current length.
 *
 * @throws {TypeError} when `value` is not a real Uint8Array (a Proxy, an
 *   object made with Uint8Array.prototype, another typed array), or views
 *   no memory: its ArrayBuffer is detached, or it is out of bounds of a
 *   resizable buffer that shrank.
 */
export function checkBytes(
  name: string,
  value: unknown,
  expected = "a Uint8Array",
): Uint8Array {
  if (!isUint8Array(value)) {
    let got = describe(value);
    // A Proxy of a Uint8Array, or an imitation, says it is one.
    if (typedArrayName(value) === undefined && got.endsWith("Array")) {
      got +=
        " that is not one (a Proxy, or an object not made by a typed array constructor)";
    }
    throw new TypeError(`${name} must be ${expected}, got ${got}`);
  }
  if (byteLengthOf(value) === 0 && !isInBounds(value)) {
    throw new TypeError(
      `${name} views no memory: its ArrayBuffer is detached (transferred), or it is out of bounds of a resizable ArrayBuffer that shrank`,
    );
  }
  return ownView(value);
}

/** Returns `data` as bytes ({@linkcode checkBytes}): strings are UTF-8 encoded. */
export function toBytes(name: string, data: unknown): Uint8Array {
  if (typeof data === "string") return encoder.encode(data);
  return checkBytes(name, data, "a Uint8Array or a string");
}

/** Checks that `value` is a positive integer byte count. */
export function checkSize(name: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number, got ${describe(value)}`);
  }
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(
      `${name} must be a positive integer, got ${describe(value)}`,
    );
  }
  return value;
}

/** Checks that `value` is a non-negative integer. */
export function checkCount(name: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number, got ${describe(value)}`);
  }
  if (!(Number.isSafeInteger(value) && value >= 0) && value !== Infinity) {
    throw new RangeError(
      `${name} must be a non-negative integer, got ${describe(value)}`,
    );
  }
  return value;
}

/** Checks a timeout in ms: `undefined`/`null` mean no limit. */
export function checkTimeout(name: string, value: unknown): number | undefined {
  if (value === undefined || value === null || value === Infinity) {
    return undefined;
  }
  if (typeof value !== "number") {
    throw new TypeError(
      `${name} must be a number of ms, got ${describe(value)}`,
    );
  }
  if (!(value >= 0)) {
    throw new RangeError(
      `${name} must be a non-negative number of ms, got ${describe(value)}`,
    );
  }
  return value;
}

/**
 * The most bytes of a Unix socket's path: `sun_path` holds 108, one of them
 * the terminating NUL of a pathname; an abstract name (a leading NUL, Linux)
 * has no terminator.
 */
const MAX_UNIX_PATH_BYTES = 107;
const MAX_ABSTRACT_NAME_BYTES = 108;

/** The checks of a Unix path both backends make, with the same errors. */
function checkUnixPath(name: string, path: string): void {
  const bytes = encoder.encode(path);
  if (bytes.indexOf(0, 1) >= 0) {
    throw new TypeError(
      `${name}.path must not contain a NUL character but as its first (an abstract socket's name)`,
    );
  }
  const max = bytes[0] === 0 ? MAX_ABSTRACT_NAME_BYTES : MAX_UNIX_PATH_BYTES;
  if (bytes.length > max) {
    throw new RangeError(
      `${name}.path must be at most ${max} bytes in UTF-8, got ${bytes.length}`,
    );
  }
}

/** Options for Deno.listen / Deno.connect made from an `Address`. */
export type DenoAddressOptions =
  | { transport: "tcp"; hostname: string; port: number }
  | { transport: "unix"; path: string };

/** Checks `address` against the socket's transport and fills in defaults. */
export function checkAddress(
  name: string,
  address: unknown,
  transport: "tcp" | "unix",
  defaultHostname: string,
): DenoAddressOptions {
  if (typeof address !== "object" || address === null) {
    throw new TypeError(
      `${name} must be { hostname?, port } or { path }, got ${
        describe(address)
      }`,
    );
  }
  if ("path" in address) {
    const path = (address as { path: unknown }).path;
    if (typeof path !== "string" || path === "") {
      throw new TypeError(
        `${name}.path must be a non-empty string, got ${describe(path)}`,
      );
    }
    if (transport !== "unix") {
      throw new TypeError(
        `${name} is a Unix socket path, but the socket's transport is "tcp"`,
      );
    }
    checkUnixPath(name, path);
    return { transport: "unix", path };
  }
  if (!("port" in address)) {
    throw new TypeError(
      `${name} must be { hostname?, port } or { path }, got ${
        describe(address)
      }`,
    );
  }
  const { hostname = defaultHostname, port } = address as {
    hostname?: unknown;
    port: unknown;
  };
  if (typeof hostname !== "string") {
    throw new TypeError(
      `${name}.hostname must be a string, got ${describe(hostname)}`,
    );
  }
  if (typeof port !== "number") {
    throw new TypeError(`${name}.port must be a number, got ${describe(port)}`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `${name}.port must be an integer from 0 to 65535, got ${port}`,
    );
  }
  if (transport !== "tcp") {
    throw new TypeError(
      `${name} is a TCP address, but the socket's transport is "unix"`,
    );
  }
  return { transport: "tcp", hostname, port };
}
