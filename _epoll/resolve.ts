// Host names for the epoll backend's bind(), resolved as Deno's own bind and
// Python's are: getaddrinfo(3), synchronously, on this thread (so /etc/hosts,
// then DNS, as the system is configured), taking the first address. It also
// reads the short numeric forms inet_aton(3) accepts (`127.1`, `0x7f.1`).

import { libc, SOCK_STREAM } from "./libc.ts";
import { decodeAddress, SOCKADDR_STORAGE_SIZE } from "./sockaddr.ts";

const encoder = new TextEncoder();
// struct addrinfo (Linux, x86_64 and aarch64): ai_flags i32 | ai_family i32
// | ai_socktype i32 | ai_protocol i32 | ai_addrlen u32 | pad | ai_addr ptr
// | ai_canonname ptr | ai_next ptr: 48 bytes.
const ADDRINFO_SIZE = 48;
const AI_SOCKTYPE = 8;
const AI_ADDRLEN = 16;
const AI_ADDR = 24;
// Any family, stream sockets: the hints Deno (Rust's lookup) passes.
const hints = new Uint8Array(ADDRINFO_SIZE);
new DataView(hints.buffer).setInt32(AI_SOCKTYPE, SOCK_STREAM, true);
const result = new BigUint64Array(1);
const resultBytes = new Uint8Array(result.buffer);

/**
 * The first address of `hostname` as text (`"127.0.0.1"`, `"::1"`).
 *
 * @throws {Error} when the lookup fails, with the message Deno's bind gives
 *   (`failed to lookup address information: Name or service not known`).
 */
export function resolveHost(hostname: string): string {
  const c = libc();
  // A name cannot hold a NUL; getaddrinfo would read up to it.
  const code = hostname.includes("\0")
    ? EAI_NONAME
    : c.getaddrinfo(encoder.encode(hostname + "\0"), null, hints, resultBytes);
  if (code !== 0) {
    const text = c.gai_strerror(code);
    throw new Error(
      `failed to lookup address information: ${
        text === null
          ? `error ${code}`
          : Deno.UnsafePointerView.getCString(text)
      }`,
    );
  }
  const first = Deno.UnsafePointer.create(result[0])!;
  try {
    const info = new Deno.UnsafePointerView(first);
    const length = Math.min(info.getUint32(AI_ADDRLEN), SOCKADDR_STORAGE_SIZE);
    const address = new Uint8Array(length);
    new Deno.UnsafePointerView(info.getPointer(AI_ADDR)!).copyInto(address);
    return (decodeAddress(address, length) as Deno.NetAddr).hostname;
  } finally {
    c.freeaddrinfo(first);
  }
}

const EAI_NONAME = -2;
