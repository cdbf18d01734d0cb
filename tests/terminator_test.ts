// The terminator splitter on its own, without a channel or a socket.

import { assert, assertEquals, assertThrows } from "@std/assert";
import { type RecordHandler, Splitter } from "../_terminator.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Terminator = Splitter["terminator"];

/**
 * A splitter whose handler writes down what it is called with: each piece
 * of record data as its text, `"|"` for a terminator, `"!"` for a record
 * too large. `on` lets a test act from inside a call.
 */
class Recorder implements RecordHandler {
  calls: string[] = [];
  pieces: Uint8Array[] = [];
  limit = Infinity;
  splitter: Splitter = new Splitter(this);
  on: Partial<Record<"data" | "end" | "tooLarge", (r: Recorder) => void>> = {};

  constructor(terminator: Terminator) {
    this.set(terminator);
  }

  set(terminator: Terminator): void {
    const needle = typeof terminator === "string"
      ? encoder.encode(terminator)
      : terminator instanceof Uint8Array
      ? terminator
      : new Uint8Array(0);
    this.splitter.setTerminator(terminator, needle);
  }

  feed(...reads: string[]): string[] {
    for (const read of reads) this.splitter.feed(encoder.encode(read));
    return this.calls;
  }

  maxRecordSize(): number {
    return this.limit;
  }
  collectIncomingData(data: Uint8Array): void {
    assert(data.length > 0, "never called with an empty array");
    this.pieces.push(data);
    this.calls.push(decoder.decode(data));
    this.on.data?.(this);
  }
  foundTerminator(): void {
    this.calls.push("|");
    this.on.end?.(this);
  }
  recordTooLarge(): void {
    this.calls.push("!");
    this.on.tooLarge?.(this);
  }

  /**
   * The records ended so far, each as the text of its pieces; a record too
   * large drops what was collected of it, as AsyncChat's getData() does.
   */
  records(): string[] {
    const records: string[] = [];
    let current = "";
    for (const call of this.calls) {
      if (call === "|") {
        records.push(current);
        current = "";
      } else {
        current = call === "!" ? "" : current + call;
      }
    }
    return records;
  }
}

Deno.test("terminator: a byte sequence splits records, pipelined in one read", () => {
  const r = new Recorder("\r\n");
  assertEquals(r.feed("one\r\ntwo\r\n\r\nthree"), [
    "one",
    "|",
    "two",
    "|",
    "|",
    "three",
  ]);
  assertEquals(r.feed("\r\n"), ["one", "|", "two", "|", "|", "three", "|"]);
});

Deno.test("terminator: a terminator split across reads is held back until it is whole", () => {
  for (const term of ["\r\n", "\r\n.\r\n", "aab"]) {
    const stream = `x${term}ab${term.slice(0, -1)}y${term}`;
    const whole = new Recorder(term);
    whole.feed(stream);
    for (let cut = 0; cut <= stream.length; cut++) {
      const r = new Recorder(term);
      r.feed(stream.slice(0, cut), stream.slice(cut));
      assertEquals(r.records(), whole.records(), `${term} cut at ${cut}`);
    }
    const ones = new Recorder(term);
    ones.feed(...stream);
    assertEquals(ones.records(), ["x", `ab${term.slice(0, -1)}y`]);
  }
});

Deno.test("terminator: only a possible start of the terminator is held back, as a copy", () => {
  const r = new Recorder("\r\n");
  const read = encoder.encode("abc\r");
  r.splitter.feed(read);
  assertEquals(r.calls, ["abc"]);
  read[3] = 0x78; // the caller's array changes; the held-back "\r" does not
  assertEquals(r.feed("\n"), ["abc", "|"]);
  // A held-back "\r" that turns out not to start a terminator is data.
  assertEquals(r.feed("x\r", "y"), ["abc", "|", "x", "\ry"]);
});

Deno.test("terminator: record data is handed on as views of the read, not copies", () => {
  const r = new Recorder("\n");
  const read = encoder.encode("ab\ncd\nef");
  r.splitter.feed(read);
  assertEquals(r.calls, ["ab", "|", "cd", "|", "ef"]);
  for (const piece of r.pieces) assert(piece.buffer === read.buffer);
  // A whole read with no terminator in it is handed on as it is.
  const whole = encoder.encode("no newline");
  r.splitter.feed(whole);
  assert(r.pieces.at(-1) === whole);
});

Deno.test("terminator: a byte count counts down across reads, then collects without records", () => {
  const r = new Recorder(10);
  assertEquals(r.feed("abcd"), ["abcd"]);
  assertEquals(r.splitter.terminator, 6);
  assertEquals(r.feed("efghijKL"), ["abcd", "efghij", "|", "KL"]);
  assertEquals(r.splitter.terminator, 0);
  r.set(3);
  assertEquals(r.feed("123456"), [
    "abcd",
    "efghij",
    "|",
    "KL",
    "123",
    "|",
    "456",
  ]);
});

Deno.test("terminator: null (and a count of 0) collect everything, with no records", () => {
  for (const term of [null, 0]) {
    const r = new Recorder(term);
    assertEquals(r.feed("a\r\nb", "\n"), ["a\r\nb", "\n"]);
    assertEquals(r.splitter.terminator, term);
  }
});

Deno.test("terminator: one set in foundTerminator applies at once to the rest of the read", () => {
  // Pipelined requests: a header line giving a body length, then the body.
  const r = new Recorder("\n");
  const bodies: string[] = [];
  let header = true;
  r.on.end = () => {
    const last = r.calls.at(-2) ?? "";
    if (header) {
      r.set(Number(last));
    } else {
      bodies.push(last);
      r.set("\n");
    }
    header = !header;
  };
  r.feed("5\nhello3\n\n\n\n2\nab");
  assertEquals(bodies, ["hello", "\n\n\n", "ab"]);
  assertEquals(r.splitter.terminator, "\n");
});

Deno.test("terminator: a count counts down after collectIncomingData, unless it set another", () => {
  const r = new Recorder(5);
  const seen: Terminator[] = [];
  r.on.data = () => {
    seen.push(r.splitter.terminator);
    if (r.calls.length === 1) r.set("\n");
  };
  // Within the call the count is as it was (as in Python); "ab" would leave
  // 3, but the handler switches to lines instead, and that wins.
  r.feed("ab", "cd\nef\n");
  assertEquals(seen, [5, "\n", "\n"]);
  assertEquals(r.records(), ["abcd", "ef"]);
  // Set again to the same count, it is counted down (as in Python).
  const same = new Recorder(5);
  same.on.data = () => same.set(5);
  same.feed("ab");
  assertEquals(same.splitter.terminator, 3);
});

Deno.test("terminator: discard() from a handler stops the split", () => {
  const r = new Recorder("\n");
  r.on.end = () => r.splitter.discard();
  assertEquals(r.feed("a\nb\nc\r"), ["a", "|"]);
  r.on.end = undefined;
  assertEquals(r.feed("d\n"), ["a", "|", "d", "|"]);
  // From collectIncomingData: the record's terminator is not reported.
  const count = new Recorder(2);
  count.on.data = () => count.splitter.discard();
  assertEquals(count.feed("abcd"), ["ab"]);
});

Deno.test("terminator: what follows a throwing handler is kept for the next read", () => {
  const r = new Recorder("\n");
  r.on.end = () => {
    r.on.end = undefined;
    throw new Error("boom");
  };
  assertThrows(() => r.feed("a\nb\nc"), Error, "boom");
  assertEquals(r.calls, ["a", "|"]);
  assertEquals(r.feed("\n"), ["a", "|", "b", "|", "c", "|"]);
});

Deno.test("terminator: maxRecordSize: exactly the limit passes, wherever reads cut", () => {
  const stream = "12345\r\n123456\r\nok\r\n";
  for (let cut = 0; cut <= stream.length; cut++) {
    const r = new Recorder("\r\n");
    r.limit = 5;
    r.feed(stream.slice(0, cut), stream.slice(cut));
    assertEquals(r.records(), ["12345", "ok"], `cut at ${cut}`);
    assertEquals(r.calls.filter((c) => c === "!").length, 1);
  }
});

Deno.test("terminator: maxRecordSize: a held-back prefix is not counted early", () => {
  const r = new Recorder("\r\n");
  r.limit = 5;
  assertEquals(r.feed("12345\r"), ["12345"]);
  assertEquals(r.feed("\n"), ["12345", "|"]);
});

Deno.test("terminator: maxRecordSize: one call per record, then skip to its end", () => {
  const r = new Recorder("\r\n");
  r.limit = 3;
  for (let i = 0; i < 100; i++) r.feed("xxxxxxxxxx");
  assertEquals(r.calls, ["!"]);
  // The rest of that record and its terminator go; the next one is read.
  assertEquals(r.feed("yy\r", "\nz\r\n"), ["!", "z", "|"]);
  // What was collected before the record overflowed was handed on.
  const s = new Recorder("\n");
  s.limit = 4;
  assertEquals(s.feed("ab", "cde\nf\n"), ["ab", "!", "f", "|"]);
});

Deno.test("terminator: maxRecordSize: a handler may discard the input, as a close does", () => {
  const r = new Recorder("\n");
  r.limit = 2;
  r.on.tooLarge = () => r.splitter.discard();
  assertEquals(r.feed("abc\nd\n"), ["!"]);
  // discard() also ends the skip: the next read starts a record.
  r.on.tooLarge = undefined;
  assertEquals(r.feed("e\n"), ["!", "e", "|"]);
});

Deno.test("terminator: maxRecordSize: Infinity, byte counts and null are not limited", () => {
  const r = new Recorder("\n");
  r.feed("a".repeat(200_000) + "\n");
  assertEquals(r.records()[0].length, 200_000);
  for (const term of [10, null]) {
    const small = new Recorder(term);
    small.limit = 3;
    small.feed("0123456789");
    assertEquals(
      small.calls.join(""),
      term === 10 ? "0123456789|" : "0123456789",
    );
  }
});
