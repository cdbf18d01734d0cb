// Seeded random differential tests of examples/smtpd.ts against CPython's
// smtpd: addresses through examples/_smtp_address.ts and CPython's own
// parser, and random sessions through both servers. A failure prints its
// seed; TEST_SEED=<seed> deno task test tests/examples_smtpd_fuzz_test.ts
// replays it.

import { assertEquals } from "@std/assert";
import { runPython } from "./_examples_helpers.ts";
import { seeded, testSeed, withSeed } from "./_helpers.ts";
import { AddressError, parseSmtpAddress } from "../examples/_smtp_address.ts";
import {
  hasPythonSmtpd,
  type Reference,
  SmtpTestClient,
  startReference,
  startSmtpd,
} from "./_smtpd_helpers.ts";

const NO_SMTPD = hasPythonSmtpd
  ? ""
  : " (ignored: python3 has no smtpd, CPython 3.11 or older)";

function pick<T>(next: () => number, items: readonly T[]): T {
  return items[Math.floor(next() * items.length)];
}

/** Addresses people write, and the corners of RFC 5322's grammar. */
const ADDRESSES = [
  "<a@b>",
  "a@b",
  "<>",
  "< a@b >",
  "<a@b> SIZE=1",
  '<"a b"@c>',
  '<"a\\"b"@c>',
  "<a..b@c>",
  "<.a@b>",
  "<a(comment)@b>",
  "(c) <a@b>",
  "<a @ b>",
  "<a@[1.2.3.4]>",
  "<a@[1.2.3.4>",
  "<@x,@y:a@b>",
  "<",
  "<a@",
  '<""@b>',
  "<a\\b@c>",
  "<a@b.>",
  "<a b@c>",
  "<a@@b>",
  "<é@ü.de>",
  '<a."b"@c>',
  "<a@b c>",
  "x(\\)@y",
  "<a@b\u00a0>",
];
const ADDRESS_ALPHABET = [
  ...'ab.@<>"\\()[]:;, \t',
  "é",
  "x",
  "\v",
  "\u00a0",
  "=",
];

const PYTHON_GETADDR = `
import json, sys, warnings
warnings.simplefilter("ignore")
import smtpd
out = []
for arg in json.load(open(sys.argv[1])):
    try:
        address, rest = smtpd.SMTPChannel._getaddr(None, arg)
        out.append([str(address), str(rest)])
    except Exception:
        out.append(None)
print(json.dumps(out))
`;

Deno.test({
  name: `_smtp_address.ts reads addresses as CPython's parser does${NO_SMTPD}`,
  ignore: !hasPythonSmtpd,
  async fn() {
    await withSeed(testSeed(), async (seed) => {
      const next = seeded(seed);
      const inputs = [...ADDRESSES];
      while (inputs.length < 3000) {
        let input = next() < 0.5 ? "<" : "";
        const length = Math.floor(next() * 16);
        for (let i = 0; i < length; i++) input += pick(next, ADDRESS_ALPHABET);
        // RFC 2047 encoded words are the one known difference (not decoded).
        if (!input.includes("=?")) inputs.push(input);
      }
      const file = Deno.makeTempFileSync({ suffix: ".json" });
      try {
        Deno.writeTextFileSync(file, JSON.stringify(inputs));
        const { code, stdout, stderr } = await runPython(PYTHON_GETADDR, [
          file,
        ]);
        assertEquals(code, 0, stderr);
        const expected: ([string, string] | null)[] = JSON.parse(stdout);
        const actual = inputs.map((input) => {
          try {
            return parseSmtpAddress(input);
          } catch (error) {
            if (error instanceof AddressError) return null;
            throw error;
          }
        });
        const differing = inputs.flatMap((input, i) =>
          JSON.stringify(actual[i]) === JSON.stringify(expected[i]) ? [] : [
            `${JSON.stringify(input)}: ours ${JSON.stringify(actual[i])}, ` +
            `CPython's ${JSON.stringify(expected[i])}`,
          ]
        );
        assertEquals(differing, []);
      } finally {
        Deno.removeSync(file);
      }
    });
  },
});

Deno.test("_smtp_address.ts does not decode RFC 2047 encoded words", () => {
  // CPython gives "a@b" here.
  assertEquals(parseSmtpAddress("<=?utf-8?q?a?=@b>"), ["=?utf-8?q?a?=@b", ""]);
});

const COMMANDS = [
  "HELO",
  "EHLO",
  "MAIL",
  "RCPT",
  "DATA",
  "RSET",
  "NOOP",
  "HELP",
  "VRFY",
  "EXPN",
  "helo",
  "ehlo",
  "mail",
  "rcpt",
  "FOO",
  "STARTTLS",
  "ma\u0131l", // dotless i: upper-cases to MAIL, in Python and here
  "Rset",
];
const ARGUMENTS = [
  "",
  " ",
  " x",
  " FROM:<a@b>",
  " FROM:<>",
  " TO:<c@d>",
  " from: <a@b> SIZE=10",
  " FROM:<a@b> BODY=8BITMIME",
  " FROM:<a@b> SMTPUTF8",
  " TO:<c@d> X=1",
  " FROM:<a@b> size=abc",
  " FROM:<é@b>",
  " \u00a0x",
  " TO:a@b",
  ' TO: <"x y"@z>',
  " FROM:a",
  " FROM:<a@b>  SIZE=5  BODY=7BIT",
  " FROM:<a@b> SIZE=\u0663",
  "\t",
  " FROM:<a@b> \u00df=1",
  " FROM:<a@b> SIZE=1 SIZE=2",
  " mail",
];
const BODIES = ["x\r\n.", "\r\n.", "..\r\n.", "a\r\nb\r\n.", "a\nb\r.\r\n."];

/** A random session: lines to send, each answered by one reply. */
function session(next: () => number): string[] {
  const lines: string[] = [];
  const count = 1 + Math.floor(next() * 12);
  for (let i = 0; i < count; i++) {
    const line = pick(next, COMMANDS) + pick(next, ARGUMENTS);
    lines.push(line);
    if (line.toUpperCase() === "DATA") lines.push(pick(next, BODIES));
  }
  return lines;
}

/**
 * Sends each line and reads one reply to it; returns the reply lines (the
 * host name as `HOST`), stopping where the server closes (CPython does on
 * input it fails on) or does not answer (CPython's DATA after a bare 354
 * that was no DATA of ours).
 */
async function replies(port: number, lines: string[]): Promise<string[]> {
  using client = await SmtpTestClient.connect(port);
  const greeting = await client.readReply();
  const host = greeting[0].split(" ")[1];
  const out: string[] = [];
  for (const line of lines) {
    try {
      await client.send(line + "\r\n");
      for (const reply of await client.readReply(2000)) {
        out.push(reply.replaceAll(host, "HOST"));
      }
    } catch {
      out.push("<ended>");
      break;
    }
  }
  return out;
}

async function compareSessions(
  ours: number,
  reference: Reference,
  seed: number,
  sessions: number,
): Promise<void> {
  const next = seeded(seed);
  for (let i = 0; i < sessions; i++) {
    const lines = session(next);
    const expected = await replies(reference.port, lines);
    let actual = await replies(ours, lines);
    const end = expected.indexOf("<ended>");
    if (end >= 0) {
      expected.length = end;
      actual = actual.slice(0, end);
    }
    assertEquals(
      actual,
      expected,
      `session ${i} of seed ${seed}: ${JSON.stringify(lines)}`,
    );
  }
}

Deno.test({
  name: `smtpd.ts answers random sessions as CPython's smtpd does${NO_SMTPD}`,
  ignore: !hasPythonSmtpd,
  async fn() {
    await withSeed(testSeed(), async (seed) => {
      await using plain = await startSmtpd();
      await using plainReference = await startReference(33554432, false);
      await compareSessions(plain.port, plainReference, seed, 25);
      await using utf8 = await startSmtpd(["--smtputf8", "--size", "40"]);
      await using utf8Reference = await startReference(40, true);
      await compareSessions(utf8.port, utf8Reference, seed + 1, 25);
    });
  },
});
