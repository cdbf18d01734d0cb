/**
 * The raw `select()` echo server of _Python in a Nutshell_ (2nd edition),
 * Example 19-6: lists of sockets to watch for input and output, a map of the
 * data pending for each socket, and a log line for everything that happens.
 *
 * ```sh
 * deno run --allow-net examples/select_echo_server.ts [--host 127.0.0.1] [--port 8881] [--verbose] [--quiet]
 * ```
 *
 * Differences from the book: a socket that disconnects also leaves the input
 * list (the book forgets to remove it), a connection reset counts as a
 * disconnect, every read and write is logged only with `--verbose` (the
 * book's log runs to thousands of lines per MiB), running out of
 * descriptors is said once and survived (the book's accept() raises), and
 * Ctrl-C closes every socket and exits cleanly.
 *
 * @module
 */

import { select, Socket } from "@asyncore/asyncore/select";
import {
  catchInterrupt,
  Cli,
  formatAddress,
  log,
  messageOf,
  QUIET_FLAG,
  serverOptions,
} from "./_cli.ts";

const cli = new Cli({
  name: "select_echo_server.ts",
  summary: "Echoes whatever each client sends, using select() directly.",
  options: serverOptions("8881"),
  flags: {
    verbose: "log every read and write, as the book does",
    ...QUIET_FLAG,
  },
});
const { options, flags } = cli.parse();
// Ctrl-C from here on closes every channel and exits cleanly.
using interrupt = catchInterrupt();
const host = cli.host("--host", options.host);
const port = cli.port("--port", options.port);
/** Logs a line about one read or write, with `--verbose`. */
const trace = flags.verbose ? log : () => {};

function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe;
}

function remove<T>(list: T[], item: T): void {
  const index = list.indexOf(item);
  if (index >= 0) list.splice(index, 1);
}

const sock = new Socket();
try {
  sock.bind({ hostname: host, port });
  sock.listen(5);
} catch (error) {
  sock.close();
  console.error(`select_echo_server.ts: cannot listen: ${messageOf(error)}`);
  Deno.exit(1);
}
console.log(`listening on ${formatAddress(sock.getsockname())}`);

// lists of sockets to watch for input and output events
let outOfDescriptors = false;
const ins: Socket[] = [sock];
const ous: Socket[] = [];
// mapping socket -> data to send on that socket when feasible
const data = new Map<Socket, Uint8Array>();
// mapping socket -> host:port on which the client is running
const adrs = new Map<Socket, string>();

function disconnected(x: Socket): void {
  // a disconnect: give a message and clean up
  log("disconnected from", adrs.get(x));
  adrs.delete(x);
  data.delete(x);
  remove(ins, x);
  remove(ous, x);
  x.close();
}

try {
  while (!interrupt.signal.aborted) {
    // no excepts nor timeout: wait until something happens (or Ctrl-C)
    const [i, o] = await select(ins, ous, [], undefined, {
      signal: interrupt.signal,
    });
    for (const x of i) {
      if (x === sock) {
        // input event on sock means client trying to connect
        let newSocket: Socket, address: Deno.Addr;
        try {
          [newSocket, address] = sock.accept();
        } catch (error) {
          if (error instanceof Deno.errors.WouldBlock) continue;
          const code = (error as { code?: string }).code;
          if (code !== "EMFILE" && code !== "ENFILE") throw error;
          // Out of descriptors: the listener is not reported readable again
          // until one is free, and the clients we have are still served.
          if (!outOfDescriptors) {
            console.log(
              `error: out of descriptors (${code}): not accepting until one is free`,
            );
          }
          outOfDescriptors = true;
          continue;
        }
        outOfDescriptors = false;
        log("Connected from", formatAddress(address));
        ins.push(newSocket);
        adrs.set(newSocket, formatAddress(address));
        continue;
      }
      // other input events mean data arrived, or disconnections
      let newdata: Uint8Array;
      try {
        newdata = x.recv(8192);
      } catch (error) {
        if (error instanceof Deno.errors.WouldBlock) continue;
        if (!isDisconnect(error)) throw error;
        newdata = new Uint8Array(0);
      }
      if (newdata.length > 0) {
        // data arrived: prepare and queue the response to it
        trace(`${newdata.length} bytes from ${adrs.get(x)}`);
        const queued = data.get(x) ?? new Uint8Array(0);
        const joined = new Uint8Array(queued.length + newdata.length);
        joined.set(queued);
        joined.set(newdata, queued.length);
        data.set(x, joined);
        if (!ous.includes(x)) ous.push(x);
      } else {
        disconnected(x);
      }
    }
    for (const x of o) {
      if (!adrs.has(x)) continue; // disconnected during this pass
      // output events always mean we can send some data
      let tosend = data.get(x);
      if (tosend) {
        let nsent: number;
        try {
          nsent = x.send(tosend);
        } catch (error) {
          if (error instanceof Deno.errors.WouldBlock) continue;
          if (!isDisconnect(error)) throw error;
          disconnected(x);
          continue;
        }
        trace(`${nsent} bytes to ${adrs.get(x)}`);
        // remember data still to be sent, if any
        tosend = tosend.subarray(nsent);
      }
      if (tosend && tosend.length > 0) {
        trace(`${tosend.length} bytes remain for ${adrs.get(x)}`);
        data.set(x, tosend);
      } else {
        data.delete(x);
        remove(ous, x);
        trace("No data currently remain for", adrs.get(x));
      }
    }
  }
} finally {
  for (const x of ins) x.close();
}
