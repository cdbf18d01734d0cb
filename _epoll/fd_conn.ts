// An epoll-backend socket seen as the `Deno.Conn` the promise backend reads
// and writes: what STARTTLS needs, since Deno cannot adopt a descriptor and
// the TLS splice (_deno/tls.ts) runs Deno's TLS engine on a private connection fed
// from this one. A read or write that would block waits for readiness on one
// of two process-wide epoll instances (one per direction, so that one
// descriptor can wait both ways at once), each waited on by one worker thread
// only while something waits: many connections cost no thread each.

import { Epoll, EPOLLIN, EPOLLOUT } from "./epoll.ts";
import type { FdSocket } from "./fd_socket.ts";
import type { RawConn } from "../_backend_api.ts";

/** A connected {@linkcode FdSocket} as a {@linkcode RawConn}; it closes the socket. */
export class FdConn implements RawConn {
  readonly localAddr: Deno.Addr;
  readonly remoteAddr: Deno.Addr;
  #sock: FdSocket;

  constructor(sock: FdSocket) {
    this.#sock = sock;
    this.localAddr = sock.getsockname();
    this.remoteAddr = sock.getpeername();
  }

  async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      this.#check("read");
      try {
        const count = this.#sock.recvInto(p);
        return count === 0 && p.length > 0 ? null : count;
      } catch (error) {
        if (!(error instanceof Deno.errors.WouldBlock)) throw error;
      }
      await readers.wait(this.#sock.fd);
    }
  }

  async write(p: Uint8Array): Promise<number> {
    for (;;) {
      this.#check("write");
      try {
        return this.#sock.send(p);
      } catch (error) {
        if (!(error instanceof Deno.errors.WouldBlock)) throw error;
      }
      await writers.wait(this.#sock.fd);
    }
  }

  closeWrite(): Promise<void> {
    try {
      this.#check("closeWrite");
      this.#sock.shutdown("write");
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  close(): void {
    if (this.#sock.closed) {
      throw new Deno.errors.BadResource("close: the connection is closed");
    }
    // A pending read or write wakes, then fails: the socket is closed.
    const fd = this.#sock.fd;
    readers.cancel(fd);
    writers.cancel(fd);
    this.#sock.close();
  }

  #check(operation: string): void {
    if (this.#sock.closed) {
      throw new Deno.errors.BadResource(
        `${operation}: the connection is closed`,
      );
    }
  }
}

/** Descriptors waiting for one kind of readiness, on one epoll instance. */
class Waiters {
  readonly #interest: number;
  #epoll: Epoll | null = null;
  #waiting = new Map<number, () => void>();
  #running = false;

  constructor(interest: number) {
    this.#interest = interest;
  }

  /** Resolves once `fd` is ready (or its wait is cancelled). */
  wait(fd: number): Promise<void> {
    return new Promise((resolve) => {
      this.#epoll ??= new Epoll();
      this.#epoll.add(fd, fd, this.#interest);
      this.#waiting.set(fd, resolve);
      if (!this.#running) this.#run();
    });
  }

  /** Ends the wait of `fd`, which is about to close. */
  cancel(fd: number): void {
    const resolve = this.#waiting.get(fd);
    if (resolve === undefined) return;
    this.#waiting.delete(fd);
    this.#epoll!.delete(fd);
    resolve();
    // Nothing left to wait for: the worker thread must not keep the
    // process alive.
    if (this.#waiting.size === 0) this.#epoll!.wake();
  }

  async #run(): Promise<void> {
    this.#running = true;
    const epoll = this.#epoll!;
    while (this.#waiting.size > 0) {
      await epoll.idle();
      const count = epoll.poll(0);
      for (let i = 0; i < count; i++) {
        const fd = epoll.token(i);
        const resolve = this.#waiting.get(fd);
        if (resolve === undefined) continue;
        this.#waiting.delete(fd);
        epoll.delete(fd);
        resolve();
      }
    }
    this.#running = false;
    epoll.close();
    if (this.#epoll === epoll) this.#epoll = null;
  }
}

const readers = new Waiters(EPOLLIN);
const writers = new Waiters(EPOLLOUT);
