// Sends held back by the kernel until the current handler returns. The epoll
// backend sends on a TCP socket with MSG_MORE, which makes the kernel keep a
// partial segment back (as TCP_CORK does) instead of transmitting it at once,
// and lists the socket here. pushCorked() uncorks every listed socket, and its
// bytes leave together: what a handler sends in pieces during one event (a
// line's pieces, then its terminator) goes out as one segment, not one per
// send, at the cost of one setsockopt() per socket per event. It runs after
// each handler the loop dispatches (asyncore.ts), before any wait for
// readiness (_descriptors.ts), and at the end of the current task in any
// case, so that no send waits on the kernel's 200 ms cork timeout. Every
// send still returns what the kernel took: nothing is buffered here.

/** A socket whose sends the kernel may be holding back. */
export interface Corked {
  /** Lets the held bytes go (TCP_CORK off). */
  uncork(): void;
}

const listed: Corked[] = [];
let scheduled = false;

function pushScheduled(): void {
  scheduled = false;
  pushCorked();
}

/** Lists `socket`, which has just sent with MSG_MORE (once until pushed). */
export function corked(socket: Corked): void {
  listed.push(socket);
  if (!scheduled) {
    scheduled = true;
    queueMicrotask(pushScheduled);
  }
}

/** Uncorks every listed socket. */
export function pushCorked(): void {
  const count = listed.length;
  if (count === 0) return;
  for (let i = 0; i < count; i++) listed[i].uncork();
  listed.length = 0;
}
