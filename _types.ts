// The public types that the public modules and the backends share, defined
// once here (a leaf) and re-exported by socket.ts.

/**
 * A network address: TCP host and port, or a Unix socket path.
 *
 * @example Either kind
 * ```ts
 * import type { Address } from "@asyncore/asyncore/socket";
 *
 * const tcp: Address = { hostname: "127.0.0.1", port: 8080 };
 * const unix: Address = { path: "/tmp/echo.sock" };
 * ```
 */
export type Address = { hostname?: string; port: number } | { path: string };

/**
 * TLS settings for a {@linkcode Socket}: `cert` and `key` for the server's
 * side of the handshake, `hostname` and `caCerts` for the client's.
 *
 * @example Options for each side
 * ```ts
 * import type { TlsOptions } from "@asyncore/asyncore/socket";
 *
 * const server: TlsOptions = {
 *   cert: "-----BEGIN CERTIFICATE-----\n…",
 *   key: "-----BEGIN PRIVATE KEY-----\n…",
 * };
 * const client: TlsOptions = {
 *   hostname: "localhost",
 *   caCerts: ["-----BEGIN CERTIFICATE-----\n…"],
 * };
 * ```
 */
export interface TlsOptions {
  /**
   * The server's certificate chain, PEM-encoded. With `key`, a listening
   * socket accepts TLS connections and `startTls()` takes the server's side.
   */
  cert?: string;
  /** The private key of `cert`, PEM-encoded (RSA, EC or PKCS #8). */
  key?: string;
  /**
   * The name the server's certificate must carry (and the name sent as SNI).
   *
   * @default {the hostname connected to}
   */
  hostname?: string;
  /**
   * Root certificates (PEM) trusted besides the default ones, e.g. the CA of
   * a self-signed test certificate.
   */
  caCerts?: string[];
}

/**
 * A socket backend: `"deno"` (Deno's own connections; the sandbox holds) or
 * `"epoll"` (OS descriptors and epoll through FFI; Linux, `--allow-ffi`).
 */
export type Backend = "deno" | "epoll";
