// The terminator splitter behind AsyncChat: Python's `async_chat.handle_read`
// loop without the socket. Bytes go in with `feed()`; the record bytes come
// out through `collectIncomingData()` and each terminator through
// `foundTerminator()`. As in Python, the loop re-reads its state (the
// unsplit bytes and the terminator) at every step, so a handler may change
// the terminator or discard the input, and the loop follows.

import { concatBytes, EMPTY, indexOfBytes, prefixAtEnd } from "./_bytes.ts";

/** A terminator as `AsyncChat.setTerminator()` takes it. */
type Terminator = string | Uint8Array | number | null;

/** What a {@linkcode Splitter} calls as the records go by. */
export interface RecordHandler {
  /**
   * The most bytes a record may reach before its terminator, while the
   * terminator is a byte sequence; read at every check.
   */
  maxRecordSize(): number;
  /** Takes the next bytes of the current record; never an empty array. */
  collectIncomingData(data: Uint8Array): void;
  /** Called at the end of each record. */
  foundTerminator(): void;
  /**
   * Called once for a record that grows past `maxRecordSize`; the rest of
   * it, up to and including its terminator, is dropped.
   */
  recordTooLarge(): void;
}

/** Splits a byte stream into records on a byte sequence or a byte count. */
export class Splitter {
  /**
   * The terminator in force: a byte sequence, a byte count (what is left
   * of it), or `null` (no records: everything is collected).
   */
  terminator: Terminator = null;
  /** The terminator as bytes: set with a byte-sequence terminator. */
  #needle: Uint8Array = EMPTY;
  /** Bytes read and not yet split, from `#pos` on. */
  #buffer: Uint8Array = EMPTY;
  #pos = 0;
  /** Bytes of the current record collected so far (sequence terminators). */
  #recordLength = 0;
  /** Whether the current record overflowed and is dropped up to its end. */
  #skipping = false;
  #handler: RecordHandler;

  constructor(handler: RecordHandler) {
    this.#handler = handler;
  }

  /**
   * Sets the terminator; `needle` is it as bytes when it is a byte
   * sequence (the caller's own copy), else ignored.
   */
  setTerminator(terminator: Terminator, needle: Uint8Array): void {
    this.terminator = terminator;
    this.#needle = needle;
  }

  /** Drops the unsplit bytes and the state of the current record. */
  discard(): void {
    this.#buffer = EMPTY;
    this.#pos = 0;
    this.#recordLength = 0;
    this.#skipping = false;
  }

  /**
   * Splits the bytes held back from earlier reads followed by `data`. What
   * cannot be split yet (a possible start of the terminator) is kept for
   * the next call; so is everything after the point reached when a handler
   * throws. `data` is handed on in views, never copied, except after bytes
   * were held back: then the two are joined once.
   */
  feed(data: Uint8Array): void {
    this.#buffer = this.#pos < this.#buffer.length
      ? concatBytes([this.#buffer.subarray(this.#pos), data])
      : data;
    this.#pos = 0;
    const handler = this.#handler;
    while (this.#pos < this.#buffer.length) {
      const buffer = this.#buffer;
      const start = this.#pos;
      const terminator = this.terminator;
      if (terminator === null || terminator === 0) {
        this.#pos = buffer.length;
        handler.collectIncomingData(slice(buffer, start, buffer.length));
      } else if (typeof terminator === "number") {
        const end = Math.min(start + terminator, buffer.length);
        this.#pos = end;
        handler.collectIncomingData(slice(buffer, start, end));
        // Counted down, unless the handler set a terminator of its own.
        if (this.terminator === terminator) {
          this.terminator = terminator - (end - start);
        }
        if (this.#buffer !== buffer) return; // discarded
        if (end - start === terminator) handler.foundTerminator();
      } else {
        const needle = this.#needle;
        const at = indexOfBytes(buffer, needle, start);
        // The record's bytes end at the terminator, or where a possible
        // start of it is held back.
        const end = at >= 0
          ? at
          : buffer.length - prefixAtEnd(buffer, needle, start);
        this.#pos = at >= 0 ? at + needle.length : end;
        if (end > start && !this.#skipping) {
          if (this.#recordLength + (end - start) > handler.maxRecordSize()) {
            this.#skipping = true;
            this.#recordLength = 0;
            handler.recordTooLarge();
          } else {
            this.#recordLength += end - start;
            handler.collectIncomingData(slice(buffer, start, end));
          }
          if (this.#buffer !== buffer) return; // discarded
        }
        if (at < 0) break;
        this.#recordLength = 0;
        if (this.#skipping) this.#skipping = false;
        else handler.foundTerminator();
      }
    }
    // A held-back tail is copied, so it does not keep the read buffer alive.
    this.#buffer = this.#pos < this.#buffer.length
      ? this.#buffer.slice(this.#pos)
      : EMPTY;
    this.#pos = 0;
  }
}

/** `buffer[start:end]`, as `buffer` itself when that is all of it. */
function slice(buffer: Uint8Array, start: number, end: number): Uint8Array {
  return start === 0 && end === buffer.length
    ? buffer
    : buffer.subarray(start, end);
}
