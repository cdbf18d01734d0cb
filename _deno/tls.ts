// STARTTLS on a connection that has already carried plaintext, and the
// client's handshake on a fresh one.
//
// Deno upgrades only a client-side TcpConn (Deno.startTls), and only one with
// no read in flight; a Socket always has one (it reads ahead), and Deno cannot
// cancel it. So STARTTLS runs the TLS engine on a private loopback connection
// and splices it onto the original one: the socket reads and writes plaintext
// on the engine's end, and two pumps copy the TLS records between the other
// end and the original connection. What the socket had received but not yet
// handed out, then the read that was in flight at the upgrade, go to the
// engine first, so nothing is lost or re-ordered. The server side works the
// same way, with a private `Deno.listenTls` listener as the engine. The raw
// side may be an epoll-backend socket's descriptor too (_epoll/fd_conn.ts).

import type { RawConn } from "../_backend_api.ts";
import type { TlsOptions } from "../_types.ts";
import { isServerSide } from "../_tls.ts";

/** Runs the client's handshake on a fresh TCP connection. */
export async function clientHandshake(
  conn: Deno.TcpConn,
  options: TlsOptions,
  hostname: string,
): Promise<Deno.TlsConn> {
  const tls = await Deno.startTls(conn, {
    hostname: options.hostname ?? hostname,
    caCerts: options.caCerts,
  });
  try {
    await tls.handshake();
  } catch (error) {
    tls.close();
    throw error;
  }
  return tls;
}

const PUMP_SIZE = 32768; // two TLS records

async function writeAll(conn: RawConn, data: Uint8Array): Promise<void> {
  for (let offset = 0; offset < data.length;) {
    offset += await conn.write(data.subarray(offset));
  }
}

function closeQuietly(conn: RawConn | null): void {
  try {
    conn?.close();
  } catch {
    // Already closed.
  }
}

/** What a {@linkcode TlsSplice} needs from its socket. */
export interface SpliceOptions {
  /**
   * The connection that carried the plaintext so far: a `Deno.Conn`, or an
   * epoll-backend socket's descriptor (_epoll/fd_conn.ts).
   */
  raw: RawConn;
  /** The TLS settings; `cert` and `key` make this the server's side. */
  tls: TlsOptions;
  /** The name to verify when this is the client's side. */
  hostname: string;
  /** Bytes received on `raw` that the socket had not handed out: TLS input. */
  buffered: Uint8Array;
  /** Whether a read on `raw` is in flight; its bytes come in by `feed()`. */
  readInFlight: boolean;
  /** Called when `raw` fails; the splice then closes. */
  onError(error: Error): void;
}

/**
 * A TLS engine on a private loopback connection, spliced onto `raw`.
 * `ready` resolves with the engine's end once the handshake is done; from
 * then on the socket owns that end and closes it, which ends the splice.
 */
export class TlsSplice {
  /** The engine's end, once its handshake has completed. */
  readonly ready: Promise<Deno.TlsConn>;

  #raw: RawConn;
  #options: SpliceOptions;
  #tls: Deno.TlsConn | null = null;
  #pipe: Deno.Conn | null = null;
  #handed = false;
  #refused = false;
  #released = false;
  #closed = false;
  #outboundDone = false;
  #fed = Promise.withResolvers<Uint8Array | null>();
  #output = Promise.withResolvers<void>();

  /**
   * Opens the engine's private listener at once, so that what makes it fail
   * (permission for 127.0.0.1, a bad certificate or key) is thrown here.
   */
  constructor(options: SpliceOptions) {
    this.#raw = options.raw;
    this.#options = options;
    const { tls } = options;
    const listener = isServerSide(tls)
      ? Deno.listenTls({
        hostname: "127.0.0.1",
        port: 0,
        cert: tls.cert!,
        key: tls.key!,
      })
      : Deno.listen({ hostname: "127.0.0.1", port: 0 });
    if (!options.readInFlight) this.#fed.resolve(new Uint8Array(0));
    this.ready = this.#open(listener);
    // A failure is reported through `ready`; these only end the pumps.
    this.ready.catch(() => {});
  }

  /** The bytes of the read that was in flight at the upgrade (`null`: EOF). */
  feed(chunk: Uint8Array | null): void {
    this.#fed.resolve(chunk);
  }

  /** The plaintext accepted before the upgrade is out: TLS may follow it. */
  startOutput(): void {
    this.#output.resolve();
  }

  /**
   * The socket is closing. Before the handshake ends this aborts; after it,
   * the socket has closed the engine's end, and the raw connection is closed
   * once the last TLS record (close_notify) has been copied onto it.
   */
  release(): void {
    this.#released = true;
    // A refused handshake's alert is still on its way out: let it finish.
    if ((!this.#handed && !this.#refused) || this.#outboundDone) this.#close();
  }

  async #open(
    listener: Deno.Listener<Deno.Conn, Deno.NetAddr>,
  ): Promise<Deno.TlsConn> {
    const { tls: options } = this.#options;
    const server = isServerSide(options);
    let near: Deno.TcpConn;
    let far: Deno.Conn;
    try {
      near = await Deno.connect({
        hostname: "127.0.0.1",
        port: listener.addr.port,
      });
      for (;;) {
        far = await listener.accept();
        // Only our own connection: anyone else who got in first is dropped.
        if ((far.remoteAddr as Deno.NetAddr).port === near.localAddr.port) {
          break;
        }
        far.close();
      }
    } finally {
      listener.close();
    }
    if (this.#closed) {
      closeQuietly(near);
      closeQuietly(far);
      throw new Deno.errors.Interrupted("startTls: the socket was closed");
    }
    near.setNoDelay(true);
    if (server) {
      this.#pipe = near;
      this.#tls = far as Deno.TlsConn;
    } else {
      (far as Deno.TcpConn).setNoDelay(true);
      this.#pipe = far;
      this.#tls = await Deno.startTls(near, {
        hostname: options.hostname ?? this.#options.hostname,
        caCerts: options.caCerts,
      });
    }
    if (this.#closed) {
      closeQuietly(this.#tls);
      throw new Deno.errors.Interrupted("startTls: the socket was closed");
    }
    this.#inbound();
    this.#outbound();
    try {
      await this.#tls.handshake();
    } catch (error) {
      // The engine's alert still goes out; then the write side ends.
      this.#refused = true;
      closeQuietly(this.#tls);
      throw error;
    }
    if (this.#closed) {
      closeQuietly(this.#tls);
      throw new Deno.errors.Interrupted("startTls: the socket was closed");
    }
    this.#handed = true;
    return this.#tls;
  }

  /** Raw connection → engine. */
  async #inbound(): Promise<void> {
    const pipe = this.#pipe!;
    try {
      await writeAll(pipe, this.#options.buffered);
      const first = await this.#fed.promise;
      if (first === null) {
        await pipe.closeWrite();
        return;
      }
      await writeAll(pipe, first);
      const buffer = new Uint8Array(PUMP_SIZE);
      for (;;) {
        let count: number | null;
        try {
          count = await this.#raw.read(buffer);
        } catch (error) {
          this.#fail(error);
          return;
        }
        if (count === null) {
          await pipe.closeWrite();
          return;
        }
        await writeAll(pipe, buffer.subarray(0, count));
      }
    } catch {
      // The engine's end is gone: the socket closed it or the splice closed.
    }
  }

  /** Engine → raw connection, after the plaintext sent before the upgrade. */
  async #outbound(): Promise<void> {
    const pipe = this.#pipe!;
    await this.#output.promise;
    const buffer = new Uint8Array(PUMP_SIZE);
    for (;;) {
      let count: number | null;
      try {
        count = await pipe.read(buffer);
      } catch {
        count = null;
      }
      if (this.#closed) return;
      if (count === null) break;
      try {
        await writeAll(this.#raw, buffer.subarray(0, count));
      } catch (error) {
        this.#fail(error);
        return;
      }
    }
    this.#outboundDone = true;
    if (this.#released) {
      this.#close();
    } else {
      this.#raw.closeWrite().catch(() => {});
    }
  }

  #fail(error: unknown): void {
    if (this.#closed) return;
    this.#options.onError(
      error instanceof Error ? error : new Error(String(error)),
    );
    this.#close();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#fed.resolve(null);
    this.#output.resolve();
    closeQuietly(this.#pipe);
    closeQuietly(this.#raw);
    if (!this.#handed) closeQuietly(this.#tls);
  }
}
