// How a channel and its bytes are shown, as Python's `repr()` shows them:
// `Dispatcher.toString()` and `DispatcherWithSend`'s debug log.

/**
 * The name of the class `obj` was made by; for an anonymous class (`new
 * (class extends EchoHandler {})()`), the nearest named class above it.
 */
export function className(obj: object): string {
  for (
    let proto = Object.getPrototypeOf(obj);
    proto !== null;
    proto = Object.getPrototypeOf(proto)
  ) {
    const ctor = Object.getOwnPropertyDescriptor(proto, "constructor")?.value;
    const name = typeof ctor === "function" ? ctor.name : undefined;
    if (typeof name === "string" && name !== "") return name;
  }
  return "Dispatcher";
}

/** An address as `host:port`, `[v6]:port` or a socket path. */
export function formatAddr(addr: Deno.Addr): string {
  if (addr.transport === "unix" || addr.transport === "unixpacket") {
    return addr.path ?? "";
  }
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
  }
  return String(addr.transport);
}

/** Bytes as Python's `repr()` shows them, cut short after 64. */
export function formatBytes(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes.subarray(0, 64)) {
    text += byte === 0x5c
      ? "\\\\"
      : byte === 0x27
      ? "\\'"
      : byte >= 0x20 && byte < 0x7f
      ? String.fromCharCode(byte)
      : byte === 0x0a
      ? "\\n"
      : byte === 0x0d
      ? "\\r"
      : byte === 0x09
      ? "\\t"
      : `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return `b'${text}'${bytes.length > 64 ? `... (${bytes.length} bytes)` : ""}`;
}
