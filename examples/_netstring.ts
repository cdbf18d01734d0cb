/**
 * Netstrings (`5:hello,`, D. J. Bernstein's framing) on `AsyncChat`: the
 * `NetstringReceiver` the Twisted tutorial's transformation service and
 * client are built on, written with terminators. The length is read up to
 * `:`, then the body as a byte count, then the `,` as a count of one; a
 * declared length over `maxLength` is refused before any of the body is
 * read.
 *
 * @module
 */

import { AsyncChat } from "@asyncore/asyncore/asynchat";
import { concat } from "./_cli.ts";

const encoder = new TextEncoder();
const COMMA = 0x2c;
const ZERO = 0x30;
const NINE = 0x39;

/** Encodes `data` as a netstring. */
export function netstring(data: Uint8Array | string): Uint8Array {
  const body = typeof data === "string" ? encoder.encode(data) : data;
  return concat([
    encoder.encode(`${body.length}:`),
    body,
    new Uint8Array([COMMA]),
  ]);
}

/**
 * A channel that reads and sends netstrings (Twisted's
 * `NetstringReceiver`): override `stringReceived()`.
 */
export abstract class NetstringReceiver extends AsyncChat {
  /** The longest string accepted, in bytes. */
  maxLength = 99999;
  #state: "length" | "body" | "comma" | "stopped" = "length";
  #digits: number[] = [];
  #body: Uint8Array[] = [];
  #comma = -1;

  constructor(...args: ConstructorParameters<typeof AsyncChat>) {
    super(...args);
    this.setTerminator(":");
  }

  /** Called with each string received. */
  abstract stringReceived(data: Uint8Array): void;

  /** Sends `data` as a netstring. */
  sendString(data: Uint8Array | string): void {
    this.push(netstring(data));
  }

  /** Called when the input is not a netstring; closes by default. */
  protocolViolation(_reason: string): void {
    this.close();
  }

  /** Called when a declared length is over `maxLength`; closes by default. */
  lengthLimitExceeded(_length: number): void {
    this.close();
  }

  /** Ignores all further input. */
  stopReading(): void {
    this.#state = "stopped";
    this.setTerminator(null);
  }

  #violation(reason: string): void {
    this.stopReading();
    this.discardBuffers();
    this.protocolViolation(reason);
  }

  override collectIncomingData(data: Uint8Array): void {
    switch (this.#state) {
      case "length": {
        for (const byte of data) {
          if (byte < ZERO || byte > NINE) {
            return this.#violation(
              `a length must be decimal digits, got byte ${byte}`,
            );
          }
          this.#digits.push(byte);
        }
        // More digits than maxLength has: over the limit, or zero-padded.
        if (this.#digits.length > String(this.maxLength).length) {
          if (this.#digits[0] === ZERO) {
            return this.#violation("a length must not have leading zeros");
          }
          const length = Number(String.fromCharCode(...this.#digits));
          this.stopReading();
          this.discardBuffers();
          this.lengthLimitExceeded(length);
        }
        return;
      }
      case "body":
        this.#body.push(data);
        return;
      case "comma":
        this.#comma = data[0];
        return;
      case "stopped":
        return;
    }
  }

  override foundTerminator(): void {
    switch (this.#state) {
      case "length": {
        const digits = this.#digits;
        this.#digits = [];
        if (digits.length === 0) {
          return this.#violation("a length must have at least one digit");
        }
        if (digits.length > 1 && digits[0] === ZERO) {
          return this.#violation("a length must not have leading zeros");
        }
        const length = Number(String.fromCharCode(...digits));
        if (length > this.maxLength) {
          this.stopReading();
          this.discardBuffers();
          return this.lengthLimitExceeded(length);
        }
        // A count of 0 would mean "no terminator": an empty body is done.
        this.#state = length === 0 ? "comma" : "body";
        this.setTerminator(length === 0 ? 1 : length);
        return;
      }
      case "body":
        this.#state = "comma";
        this.setTerminator(1);
        return;
      case "comma": {
        if (this.#comma !== COMMA) {
          return this.#violation(
            `a netstring must end with ",", got byte ${this.#comma}`,
          );
        }
        const body = concat(this.#body);
        this.#body = [];
        this.#state = "length";
        this.setTerminator(":");
        this.stringReceived(body);
        return;
      }
      case "stopped":
        return;
    }
  }
}
