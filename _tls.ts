// TLS settings: the options check, and the probe that makes an upgrade fail
// at once rather than halfway. The engine itself is the promise backend's
// (_deno/tls.ts).

import { describe } from "./_validate.ts";
import type { TlsOptions } from "./_types.ts";

/** Checks `value` as {@linkcode TlsOptions}; returns a copy. */
export function checkTlsOptions(name: string, value: unknown): TlsOptions {
  if (typeof value !== "object" || value === null) {
    throw new TypeError(`${name} must be an object, got ${describe(value)}`);
  }
  const { cert, key, hostname, caCerts } = value as Record<string, unknown>;
  for (const [field, text] of [["cert", cert], ["key", key]] as const) {
    if (text !== undefined && (typeof text !== "string" || text === "")) {
      throw new TypeError(
        `${name}.${field} must be a PEM string, got ${describe(text)}`,
      );
    }
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError(`${name} must have both cert and key, or neither`);
  }
  if (
    hostname !== undefined && (typeof hostname !== "string" || hostname === "")
  ) {
    throw new TypeError(
      `${name}.hostname must be a non-empty string, got ${describe(hostname)}`,
    );
  }
  if (
    caCerts !== undefined &&
    !(Array.isArray(caCerts) && caCerts.every((c) => typeof c === "string"))
  ) {
    throw new TypeError(
      `${name}.caCerts must be an array of PEM strings, got ${
        describe(caCerts)
      }`,
    );
  }
  return {
    cert: cert as string | undefined,
    key: key as string | undefined,
    hostname: hostname as string | undefined,
    caCerts: caCerts === undefined ? undefined : [...caCerts as string[]],
  };
}

/** Whether `options` give the server's side of a handshake. */
export function isServerSide(options: TlsOptions): boolean {
  return options.cert !== undefined && options.key !== undefined;
}

/**
 * Opens and closes the listener the TLS engine of a STARTTLS (_deno/tls.ts)
 * will need, so that
 * what would make the upgrade fail (no permission for 127.0.0.1, a bad
 * certificate or key) is thrown now, while nothing has changed.
 */
export function probeTlsEngine(options: TlsOptions): void {
  (isServerSide(options)
    ? Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: options.cert!,
      key: options.key!,
    })
    : Deno.listen({ hostname: "127.0.0.1", port: 0 })).close();
}
