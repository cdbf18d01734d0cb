/**
 * What debug mode costs: loop passes over many idle loopback connections
 * with debug off (the default), on, and on with the trace. Off must cost
 * what a loop without debug mode costs; on, each handler call is timed.
 *
 * ```sh
 * deno bench --allow-net bench/debug_bench.ts
 * ```
 *
 * Each iteration is one `loop()` of `PASSES` passes with a zero timeout:
 * every pass asks all `CHANNELS` channels `readable()` and `writable()`,
 * finds nothing ready, and dispatches nothing. The loop's exit warning (the
 * channels stay open) is made once per iteration, so it is spread over the
 * passes. Messages go to a function that counts them, so the console is not
 * measured.
 *
 * @module
 */

import { type ChannelMap, closeAll, Dispatcher, loop } from "../asyncore.ts";

const CHANNELS = 500;
const PASSES = 100;

class Idle extends Dispatcher {
  override writable(): boolean {
    return false;
  }
  override handleRead(): void {
    throw new Error("an idle channel got data");
  }
}

const map: ChannelMap = new Map();
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const peers: Deno.Conn[] = [];
for (let i = 0; i < CHANNELS; i++) {
  const peer = Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  new Idle(await listener.accept(), map);
  peers.push(await peer);
}
listener.close();

let messages = 0;
const log = (): void => {
  messages++;
};

globalThis.addEventListener("unload", () => {
  closeAll(map);
  for (const peer of peers) peer.close();
});

Deno.bench({
  name: `${PASSES} passes over ${CHANNELS} idle channels, debug off`,
  group: "pass",
  baseline: true,
  async fn() {
    await loop({ map, count: PASSES, timeout: 0, debug: false });
  },
});

Deno.bench({
  name: `${PASSES} passes over ${CHANNELS} idle channels, debug on`,
  group: "pass",
  async fn() {
    await loop({ map, count: PASSES, timeout: 0, debug: { log } });
    if (messages === 0) throw new Error("debug mode logged nothing");
  },
});

Deno.bench({
  name: `${PASSES} passes over ${CHANNELS} idle channels, debug on with trace`,
  group: "pass",
  async fn() {
    await loop({
      map,
      count: PASSES,
      timeout: 0,
      debug: { trace: true, log },
    });
  },
});
