/**
 * asyncore for Deno: Python's `select`, `asyncore` and `asynchat`, with
 * Medusa's producers, as a Deno module. A loop asks every channel whether it
 * wants to read or write, waits for readiness, and calls its `handle*`
 * methods.
 *
 * @example A dispatcher on its own map
 * ```ts
 * import { Dispatcher, loop } from "@asyncore/asyncore";
 * import { assertEquals } from "@std/assert";
 *
 * const map = new Map();
 * const server = new Dispatcher(undefined, map);
 * server.createSocket();
 * server.bind({ hostname: "127.0.0.1", port: 0 });
 * server.listen(5);
 * assertEquals(map.size, 1);
 * server.close();
 * await loop({ map });
 * ```
 *
 * @module
 */

export * from "./socket.ts";
export * from "./select.ts";
export * from "./asyncore.ts";
export * from "./timers.ts";
export * from "./asynchat.ts";
export * from "./producers.ts";
export * from "./streams.ts";
