// Socket addresses in the kernel's layout (Linux `struct sockaddr_*`), built
// from and turned back into the address shapes Deno's own sockets use. Every
// buffer handed to libc is made and sized here, so no caller's value can become
// a bad pointer or length (a segfault through FFI).
//
// Layouts (Linux, x86_64 and aarch64 alike; the family in host order, which
// is little-endian on both; the port and addresses in network order):
//   sockaddr_in   16 bytes: family u16 | port u16 | addr[4] | zero[8]
//   sockaddr_in6  28 bytes: family u16 | port u16 | flowinfo u32 | addr[16]
//                           | scope_id u32
//   sockaddr_un  110 bytes: family u16 | path[108] (NUL-terminated here; an abstract name, a leading NUL, is not)
//   sockaddr_storage 128 bytes: room for any of them.

import { AF_INET, AF_INET6, AF_UNIX } from "./libc.ts";
import type { Address } from "../_types.ts";
import { checkAddress, describe } from "../_validate.ts";

/** Room for any address (`sizeof(struct sockaddr_storage)`). */
export const SOCKADDR_STORAGE_SIZE = 128;
const SOCKADDR_IN_SIZE = 16;
const SOCKADDR_IN6_SIZE = 28;
const SUN_PATH_OFFSET = 2;

/** An address in the kernel's layout, ready for `bind`/`connect`. */
export interface SockAddr {
  /** `AF_INET`, `AF_INET6` or `AF_UNIX`. */
  readonly family: number;
  /** The `struct sockaddr_*` bytes; `bytes.length` is the socklen to pass. */
  readonly bytes: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Encodes `address` (`{ hostname?, port }` with a numeric IPv4 or IPv6
 * hostname, or `"localhost"`; or `{ path }`) for the kernel.
 *
 * @param name The argument's name for error messages.
 * @param defaultHostname Used when `hostname` is absent.
 * @throws {TypeError} for a malformed address or a host name that is not an
 *   IP address (names need a DNS lookup, which is not done here).
 * @throws {RangeError} for a Unix path longer than 107 bytes.
 */
export function encodeAddress(
  name: string,
  address: Address,
  defaultHostname = "127.0.0.1",
): SockAddr {
  const transport = typeof address === "object" && address !== null &&
      "path" in address
    ? "unix"
    : "tcp";
  const checked = checkAddress(name, address, transport, defaultHostname);
  if (checked.transport === "unix") return encodeUnix(checked.path);
  const { hostname, port } = checked;
  const host = hostname === "localhost" ? "127.0.0.1" : hostname;
  const v4 = parseIPv4(host);
  if (v4 !== null) {
    const bytes = new Uint8Array(SOCKADDR_IN_SIZE);
    const view = new DataView(bytes.buffer);
    view.setUint16(0, AF_INET, true);
    view.setUint16(2, port, false);
    bytes.set(v4, 4);
    return { family: AF_INET, bytes };
  }
  const v6 = parseIPv6(host);
  if (v6 !== null) {
    const bytes = new Uint8Array(SOCKADDR_IN6_SIZE);
    const view = new DataView(bytes.buffer);
    view.setUint16(0, AF_INET6, true);
    view.setUint16(2, port, false);
    bytes.set(v6.address, 8);
    view.setUint32(24, v6.scopeId, true);
    return { family: AF_INET6, bytes };
  }
  throw new TypeError(
    `${name}.hostname must be an IPv4 or IPv6 address or "localhost", got ${
      describe(hostname)
    }: resolve names first (Deno.resolveDns)`,
  );
}

/** `path` as checked by checkAddress(): no NUL but a leading one, not too long. */
function encodeUnix(path: string): SockAddr {
  const encoded = encoder.encode(path);
  // family + path + NUL: the length Linux expects for a pathname socket; an
  // abstract name (a leading NUL) is all its bytes, with no terminator.
  const bytes = new Uint8Array(
    SUN_PATH_OFFSET + encoded.length + (encoded[0] === 0 ? 0 : 1),
  );
  new DataView(bytes.buffer).setUint16(0, AF_UNIX, true);
  bytes.set(encoded, SUN_PATH_OFFSET);
  return { family: AF_UNIX, bytes };
}

/**
 * Decodes the first `length` bytes of `storage` (as filled in by `accept4`,
 * `getsockname` or `getpeername`) into Deno's address shape.
 */
export function decodeAddress(storage: Uint8Array, length: number): Deno.Addr {
  const size = Math.min(length, storage.length);
  // Little-endian family, big-endian port: read byte by byte, with no view.
  const family = size >= 2 ? storage[0] | storage[1] << 8 : AF_UNIX;
  switch (family) {
    case AF_INET:
      if (size < SOCKADDR_IN_SIZE) break;
      return {
        transport: "tcp",
        hostname: ipv4Text(storage),
        port: storage[2] << 8 | storage[3],
      };
    case AF_INET6:
      if (size < SOCKADDR_IN6_SIZE) break;
      return {
        transport: "tcp",
        hostname: formatIPv6(storage.subarray(8, 24)),
        port: storage[2] << 8 | storage[3],
      };
    case AF_UNIX: {
      // An unnamed socket has no path (length 2); an abstract one's name is
      // its leading NUL and every byte after it, as Deno gives it.
      const path = storage.subarray(SUN_PATH_OFFSET, Math.max(2, size));
      if (path.length > 0 && path[0] === 0) {
        return { transport: "unix", path: decoder.decode(path) };
      }
      const end = path.indexOf(0);
      return {
        transport: "unix",
        path: decoder.decode(end < 0 ? path : path.subarray(0, end)),
      };
    }
  }
  throw new TypeError(
    `an address of family ${family} and length ${length} cannot be decoded`,
  );
}

// The last IPv4 address decoded, and its text: a server's peers mostly come
// from a few addresses, and each connection then shares one string.
let lastIPv4 = -1;
let lastIPv4Text = "";

/** The dotted quad of the IPv4 address in a `sockaddr_in`'s bytes 4..7. */
function ipv4Text(storage: Uint8Array): string {
  const value = (storage[4] << 24 | storage[5] << 16 | storage[6] << 8 |
    storage[7]) >>> 0;
  if (value !== lastIPv4) {
    lastIPv4 = value;
    lastIPv4Text = `${storage[4]}.${storage[5]}.${storage[6]}.${storage[7]}`;
  }
  return lastIPv4Text;
}

/** The four bytes of a dotted-quad IPv4 address, or `null`. */
export function parseIPv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    // Decimal only, without leading zeros (which some parsers read as octal).
    if (!/^(0|[1-9][0-9]{0,2})$/.test(parts[i])) return null;
    const n = Number(parts[i]);
    if (n > 255) return null;
    bytes[i] = n;
  }
  return bytes;
}

/**
 * The 16 bytes and scope id of an IPv6 address (`::1`, `[fe80::1%2]`, with an
 * IPv4 tail `::ffff:1.2.3.4`), or `null`. Zones must be numeric.
 */
export function parseIPv6(
  text: string,
): { address: Uint8Array; scopeId: number } | null {
  let host = text;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  let scopeId = 0;
  const percent = host.indexOf("%");
  if (percent >= 0) {
    const zone = host.slice(percent + 1);
    if (!/^[0-9]{1,10}$/.test(zone) || Number(zone) > 0xffffffff) return null;
    scopeId = Number(zone);
    host = host.slice(0, percent);
  }
  const halves = host.split("::");
  if (halves.length > 2) return null;
  const groups = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const fields = part.split(":");
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i];
      if (i === fields.length - 1 && field.includes(".")) {
        const v4 = parseIPv4(field);
        if (v4 === null) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(field)) {
        out.push(parseInt(field, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === null || tail === null) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const address = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    address[2 * i] = all[i] >> 8;
    address[2 * i + 1] = all[i] & 0xff;
  }
  return { address, scopeId };
}

/**
 * Formats 16 bytes as Deno (Rust) does: lowercase, the longest run of two or
 * more zero groups as `::` (the first of equal runs), and IPv4-mapped
 * addresses as `::ffff:a.b.c.d`.
 */
export function formatIPv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) {
    groups.push((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  }
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${bytes.subarray(12, 16).join(".")}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]) => list.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${
    hex(groups.slice(bestStart + bestLength))
  }`;
}
