// End-to-end tests of examples/smtpd.ts's STARTTLS (raw conversations:
// the RFC 3207 rules, plaintext pipelined after STARTTLS never executed, a
// failed handshake) and of real clients against it: Python's smtplib
// (plain, 8BITMIME, SMTPUTF8, STARTTLS with a self-signed certificate made
// here) and swaks. Each runs on the suite's backend: STARTTLS works on the
// epoll backend too (its descriptor is handed to the TLS splice).

import { assert, assertEquals, assertMatch } from "@std/assert";
import { runPython, stopCleanly } from "./_examples_helpers.ts";
import { hasPython3, hasPythonSsl, probe, text } from "./_helpers.ts";
import { SmtpTestClient, startSmtpd, TLS_ARGS } from "./_smtpd_helpers.ts";
import { SmtpChannel, SmtpServer } from "../examples/smtpd.ts";
import { type ChannelMap, closeAll, loop } from "../asyncore.ts";
import type { Socket } from "../select.ts";

const hasSwaks = probe("swaks", ["--version"]);
/** swaks can do STARTTLS (it needs Perl's Net::SSLeay). */
const swaksTls = hasSwaks && (() => {
  const { stdout } = new Deno.Command("swaks", {
    args: ["--support"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  return /^=== TLS supported$/m.test(text(stdout));
})();
const hasOpenssl = probe("openssl", ["version"]);

const EHLO_TLS = [
  "250-127.0.0.1",
  "250-SIZE 33554432",
  "250-8BITMIME",
  "250-STARTTLS",
  "250 HELP",
].join("|");
const EHLO_PLAIN = "250-127.0.0.1|250-SIZE 33554432|250-8BITMIME|250 HELP";

Deno.test("smtpd.ts STARTTLS: advertised, RFC 3207's checks, the session starts over", async () => {
  await using ours = await startSmtpd(TLS_ARGS);
  using client = await SmtpTestClient.connect(ours.port);
  await client.readReply();
  assertEquals(await client.command("EHLO x"), EHLO_TLS);
  assertEquals(await client.command("STARTTLS now"), "501 Syntax: STARTTLS");
  assertEquals(await client.command("MAIL FROM:<a@b>"), "250 OK");
  assertEquals(
    await client.command("STARTTLS"),
    "503 Error: MAIL transaction in progress",
  );
  assertEquals(await client.command("RSET"), "250 OK");
  assertEquals(await client.command("STARTTLS"), "220 Ready to start TLS");
  await client.startTls();
  // RFC 3207: the client must greet again, and is not offered STARTTLS.
  assertEquals(
    await client.command("MAIL FROM:<a@b>"),
    "503 Error: send HELO first",
  );
  assertEquals(await client.command("EHLO x"), EHLO_PLAIN);
  assertEquals(
    await client.command("STARTTLS"),
    "503 Error: TLS already active",
  );
  assertEquals(await client.command("MAIL FROM:<a@b>"), "250 OK");
  assertEquals(await client.command("RCPT TO:<c@d>"), "250 OK");
  assertEquals((await client.command("DATA")).slice(0, 4), "354 ");
  assertEquals(await client.command("secret\r\n."), "250 OK");
  assertEquals(await client.command("QUIT"), "221 Bye");
  const messages = ours.messages();
  assertEquals(messages.length, 1);
  assertEquals(text(messages[0].data), "secret");
  await stopCleanly(ours.example);
});

Deno.test("smtpd.ts STARTTLS: plaintext pipelined after it is never executed", async () => {
  await using ours = await startSmtpd(TLS_ARGS);
  using client = await SmtpTestClient.connect(ours.port);
  await client.readReply();
  await client.command("EHLO x");
  // CVE-2011-0411's injection: commands behind STARTTLS in the same packet.
  await client.send(
    "STARTTLS\r\nEHLO evil\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\n" +
      "DATA\r\ninjected\r\n.\r\n",
  );
  assertEquals((await client.readReply()).join("|"), "220 Ready to start TLS");
  await client.startTls();
  // Had "EHLO evil" run, this would be 503 Duplicate HELO/EHLO, and the
  // injected commands' replies would come first.
  assertEquals(await client.command("EHLO good"), EHLO_PLAIN);
  assertEquals(await client.command("NOOP"), "250 OK");
  assertEquals(await client.command("QUIT"), "221 Bye");
  assert(await client.closedByPeer());
  assertEquals(ours.messages(), []);
});

Deno.test("smtpd.ts without a certificate: STARTTLS is unknown, as in CPython", async () => {
  await using ours = await startSmtpd();
  using client = await SmtpTestClient.connect(ours.port);
  await client.readReply();
  assertEquals(await client.command("EHLO x"), EHLO_PLAIN);
  assertEquals(
    await client.command("STARTTLS"),
    '500 Error: command "STARTTLS" not recognized',
  );
});

Deno.test("smtpd.ts STARTTLS: a failed handshake drops that client only", async () => {
  await using ours = await startSmtpd(TLS_ARGS);
  using other = await SmtpTestClient.connect(ours.port);
  await other.readReply();
  using bad = await SmtpTestClient.connect(ours.port);
  await bad.readReply();
  assertEquals(await bad.command("STARTTLS"), "220 Ready to start TLS");
  await bad.send("EHLO not-tls\r\n");
  // The server's TLS engine may send an alert before it closes.
  assert(await bad.closedByPeer(undefined, 1024));
  assertEquals(await other.command("HELO still-here"), "250 127.0.0.1");
});

// One smtplib client per mode, in one Python process (each start of
// python3 costs seconds on a loaded machine).
const PYTHON_SEND = `
import smtplib, ssl, sys
port = int(sys.argv[1])
for mode in sys.argv[2].split(","):
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=10)
    smtp.ehlo()
    if mode == "plain":
        refused = smtp.sendmail("a@b.example", ["c@d.example", "e@f.example"],
                                "Subject: plain\\r\\n\\r\\n.dot line\\r\\n..two\\r\\nend\\n")
    elif mode == "8bit":
        assert smtp.has_extn("8bitmime")
        refused = smtp.sendmail("a@b.example", ["c@d.example"],
                                b"Subject: 8bit\\r\\n\\r\\n\\xff\\xfe\\x00\\x80 bytes\\r\\n",
                                mail_options=["BODY=8BITMIME"])
    elif mode == "utf8":
        assert smtp.has_extn("smtputf8")
        refused = smtp.sendmail("jöe@exämple.org", ["ünï@b.example"],
                                "Subject: Grüße\\r\\n\\r\\nGrüße\\r\\n".encode(),
                                mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    elif mode == "starttls":
        assert smtp.has_extn("starttls")
        context = ssl.create_default_context(cafile=sys.argv[3])
        smtp.starttls(context=context)
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        print(smtp.sock.version())
        refused = smtp.sendmail("a@b.example", ["c@d.example"], "Subject: tls\\r\\n\\r\\nover TLS\\r\\n")
    print(mode, "refused", refused)
    smtp.quit()
`;

async function sendWithSmtplib(
  port: number,
  modes: string[],
  ...extra: string[]
): Promise<string> {
  const { code, stdout, stderr } = await runPython(PYTHON_SEND, [
    String(port),
    modes.join(","),
    ...extra,
  ], 20_000);
  assertEquals(code, 0, `smtplib (${modes}) failed:\n${stderr}`);
  for (const mode of modes) {
    assertMatch(stdout, new RegExp(`^${mode} refused \\{\\}$`, "m"));
  }
  return stdout;
}

const NO_PYTHON = hasPython3 ? "" : " (ignored: no python3)";

Deno.test({
  name:
    `smtpd.ts takes smtplib's messages: plain, 8BITMIME, SMTPUTF8${NO_PYTHON}`,
  ignore: !hasPython3,
  async fn() {
    await using ours = await startSmtpd(["--smtputf8"]);
    await sendWithSmtplib(ours.port, ["plain", "8bit", "utf8"]);
    const [plain, eight, utf8] = ours.messages();
    assertEquals(plain.mailfrom, "a@b.example");
    assertEquals(plain.rcpttos, ["c@d.example", "e@f.example"]);
    assertEquals(text(plain.data), "Subject: plain\n\n.dot line\n..two\nend");
    assertEquals(
      eight.data,
      new Uint8Array([
        ...new TextEncoder().encode("Subject: 8bit\n\n"),
        0xff,
        0xfe,
        0x00,
        0x80,
        ...new TextEncoder().encode(" bytes"),
      ]),
    );
    assertEquals(utf8.mailfrom, "jöe@exämple.org");
    assertEquals(utf8.rcpttos, ["ünï@b.example"]);
    assertEquals(text(utf8.data), "Subject: Grüße\n\nGrüße");
    await stopCleanly(ours.example);
  },
});

const NO_TLS_TOOLS = !hasPythonSsl
  ? " (ignored: no python3 with ssl)"
  : !hasOpenssl
  ? " (ignored: no openssl to make a certificate)"
  : "";

Deno.test({
  name:
    `smtpd.ts STARTTLS with smtplib and a self-signed certificate${NO_TLS_TOOLS}`,
  ignore: NO_TLS_TOOLS !== "",
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "smtpd_cert_" });
    try {
      const made = new Deno.Command("openssl", {
        args: [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-days",
          "1",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1,DNS:localhost",
          "-keyout",
          `${dir}/key.pem`,
          "-out",
          `${dir}/cert.pem`,
        ],
        stdout: "null",
        stderr: "piped",
      }).outputSync();
      assert(made.success, text(made.stderr));
      await using ours = await startSmtpd([
        "--tls-cert",
        `${dir}/cert.pem`,
        "--tls-key",
        `${dir}/key.pem`,
      ]);
      const stdout = await sendWithSmtplib(
        ours.port,
        ["starttls"],
        `${dir}/cert.pem`,
      );
      assertMatch(stdout, /^TLSv1\.[23]$/m);
      const [message] = ours.messages();
      assertEquals(text(message.data), "Subject: tls\n\nover TLS");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

async function swaks(args: string[]): Promise<string> {
  const output = await new Deno.Command("swaks", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const all = text(output.stdout) + text(output.stderr);
  assertEquals(output.code, 0, `swaks ${args.join(" ")}:\n${all}`);
  return all;
}

Deno.test({
  name: `smtpd.ts takes swaks's messages, plain and with STARTTLS${
    !hasSwaks
      ? " (ignored: swaks is not installed)"
      : !swaksTls
      ? " (STARTTLS part skipped: this swaks has no TLS)"
      : ""
  }`,
  ignore: !hasSwaks,
  async fn() {
    await using ours = await startSmtpd(TLS_ARGS);
    const server = `127.0.0.1:${ours.port}`;
    const plain = await swaks([
      "--server",
      server,
      "--from",
      "sender@example.org",
      "--to",
      "one@example.org,two@example.org",
      "--header",
      "Subject: from swaks",
      "--body",
      "plain body",
    ]);
    assertMatch(plain, /^<- {2}250 OK$/m);
    if (swaksTls) {
      const tls = await swaks([
        "--server",
        server,
        "--tls",
        "--from",
        "sender@example.org",
        "--to",
        "three@example.org",
        "--body",
        "tls body",
      ]);
      assertMatch(tls, /^<- {2}220 Ready to start TLS$/m);
      assertMatch(tls, /^=== TLS started/m);
      assertMatch(tls, /^ ~> MAIL FROM:<sender@example\.org>$/m);
    }
    const messages = ours.messages();
    assertEquals(messages.length, swaksTls ? 2 : 1);
    assertEquals(messages[0].mailfrom, "sender@example.org");
    assertEquals(messages[0].rcpttos, ["one@example.org", "two@example.org"]);
    assertMatch(text(messages[0].data), /^Subject: from swaks$/m);
    assertMatch(text(messages[0].data), /\n\nplain body\n*$/);
    if (swaksTls) {
      assertEquals(messages[1].rcpttos, ["three@example.org"]);
      assertMatch(text(messages[1].data), /\n\ntls body\n*$/);
    }
    await stopCleanly(ours.example);
  },
});

Deno.test("smtpd.ts STARTTLS: replies the socket has not taken yet go out before the upgrade", async () => {
  // In this process, to queue more than the socket takes before the 220:
  // upgrading at once would send the rest (and the 220) encrypted, to a
  // client that waits for the 220 in plaintext.
  const map: ChannelMap = new Map();
  const accepted = Promise.withResolvers<SmtpChannel>();
  class Server extends SmtpServer {
    override handleAccepted(sock: Socket, addr: Deno.Addr): void {
      accepted.resolve(new SmtpChannel(this, sock, addr as Deno.NetAddr));
    }
  }
  const server = new Server({ hostname: "127.0.0.1", port: 0 }, {
    hostname: "127.0.0.1",
    tls: {
      cert: Deno.readTextFileSync(TLS_ARGS[1]),
      key: Deno.readTextFileSync(TLS_ARGS[3]),
    },
    map,
  });
  server.quiet = true;
  const stop = new AbortController();
  const running = loop({ map, signal: stop.signal });
  try {
    const port = (server.getsockname() as Deno.NetAddr).port;
    using client = await SmtpTestClient.connect(port);
    const channel = await accepted.promise;
    const backlog = 16 << 20;
    channel.push("x".repeat(backlog) + "\r\n");
    channel.smtpStarttls(null);
    assertMatch(await client.readLine(), /^220 127\.0\.0\.1 /);
    assertEquals((await client.readLine()).length, backlog);
    assertEquals(await client.readLine(), "220 Ready to start TLS");
    await client.startTls();
    assertEquals(await client.command("EHLO x"), EHLO_PLAIN);
  } finally {
    stop.abort();
    await running;
    closeAll(map);
  }
});
