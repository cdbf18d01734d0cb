/**
 * CPython's `smtpd` (Lib/smtpd.py, as shipped until 3.11): an SMTP server
 * whose `SmtpChannel` is an `AsyncChat` that reads command lines, then the
 * lines of DATA, and hands each message to its server's `processMessage()`.
 * As in CPython with `decode_data=False`, message data are bytes; EHLO
 * offers SIZE, 8BITMIME and (with `--smtputf8`) SMTPUTF8, with CPython's
 * reply texts, states and limits. Added: STARTTLS, when given a
 * certificate.
 *
 * ```sh
 * deno run --allow-net --allow-read --allow-write examples/smtpd.ts --port 8025 [--host 127.0.0.1] [--maildir DIR] [--size 33554432] [--smtputf8] [--tls-cert PEM --tls-key PEM] [--quiet]
 * ```
 *
 * With `--maildir DIR` each accepted message becomes one file in DIR,
 * written (as `*.tmp`, then renamed to `*.eml`) before the `250 OK`: an
 * `X-Peer:`, `X-MailFrom:` and `X-RcptTo:` line, then the data CPython
 * passes to `process_message()` (the lines, dot-unstuffed, joined with
 * `\n`). Without it each message is printed as CPython's `DebuggingServer`
 * prints it.
 *
 * Differences from CPython's smtpd: the command-line limits belong to each
 * connection (CPython keeps them in one class-level dict that each new
 * connection resets and each EHLO raises); a `.` line right after the 354
 * ends DATA with an empty message (CPython waits for another CRLF); after
 * `552 Error: Too much mail data` the transaction is over and commands are
 * read again (CPython stays in DATA); a command line that is not UTF-8 gets
 * `500`, an address CPython's parser fails on gets `501`, and a reply that
 * would echo non-ASCII text without SMTPUTF8 escapes it as Python's
 * `backslashreplace` does (CPython drops the connection on all three); RFC
 * 2047 encoded words in addresses are not decoded. The greeting names this
 * program, and the host name is `--host`'s.
 *
 * @module
 */

import { AsyncChat } from "@asyncore/asyncore/asynchat";
import {
  type ChannelMap,
  closeAll,
  Dispatcher,
  loop,
} from "@asyncore/asyncore/asyncore";
import type { Socket, TlsOptions } from "@asyncore/asyncore/select";
import {
  AddressError,
  parseSmtpAddress,
  pySplit,
  pyStrip,
} from "./_smtp_address.ts";
import {
  catchInterrupt,
  Cli,
  concat,
  formatAddress,
  listenOrExit,
  messageOf,
} from "./_cli.ts";

/** CPython's default `data_size_limit`: 32 MiB. */
export const DATA_SIZE_DEFAULT = 33554432;
/** The longest command line, CRLF aside (RFC 5321's 512 with CRLF). */
export const COMMAND_SIZE_LIMIT = 512;
/** The words of the greeting after the host name. */
export const GREETING = "asyncore-for-Deno smtpd (CPython 3.11 smtpd port)";
/** How much output a channel may have queued before it stops reading. */
const HIGH_WATER = 65536;
const DOT = 0x2e;
const NEWLINE = 0x0a;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** A message as CPython's `process_message()` receives it. */
export interface Message {
  /** The client's address. */
  peer: Deno.NetAddr;
  /** The MAIL FROM address, as CPython's parser gives it. */
  mailfrom: string;
  /** The RCPT TO addresses, in order. */
  rcpttos: string[];
  /** The DATA lines, dot-unstuffed, joined with `\n` (no final newline). */
  data: Uint8Array;
  /** MAIL's parameters, upper case (`["BODY=8BITMIME"]`). */
  mailOptions: string[];
  /** The last RCPT's parameters, upper case. */
  rcptOptions: string[];
}

/** How a server runs its channels. */
export interface SmtpServerOptions {
  /** The host name in the greeting and the HELO/EHLO reply. */
  hostname: string;
  /** The most DATA bytes (before unstuffing); 0 for no limit, no SIZE. */
  dataSizeLimit?: number;
  /** Offer SMTPUTF8, as CPython's `enable_SMTPUTF8`. */
  enableSmtputf8?: boolean;
  /** Offer STARTTLS with this certificate and key. */
  tls?: { cert: string; key: string };
  /** The channel map the server and its channels join (CPython's `map`). */
  map?: ChannelMap;
}

/** Bytes appended to a buffer that doubles as it fills. */
class ByteSink {
  #buffer = new Uint8Array(0);
  #length = 0;

  append(data: Uint8Array | number): void {
    const size = typeof data === "number" ? 1 : data.length;
    if (this.#length + size > this.#buffer.length) {
      const grown = new Uint8Array(
        Math.max(4096, 2 * this.#buffer.length, this.#length + size),
      );
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    if (typeof data === "number") this.#buffer[this.#length] = data;
    else this.#buffer.set(data, this.#length);
    this.#length += size;
  }

  bytes(): Uint8Array {
    return this.#buffer.subarray(0, this.#length);
  }
}

/** Python's `str.encode("ascii", "backslashreplace")`, as text. */
function backslashReplace(text: string): string {
  let out = "";
  for (const c of text) {
    const code = c.codePointAt(0)!;
    if (code < 0x80) out += c;
    else if (code < 0x100) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else if (code < 0x10000) {
      out += `\\u${code.toString(16).padStart(4, "0")}`;
    } else out += `\\U${code.toString(16).padStart(8, "0")}`;
  }
  return out;
}

/**
 * The value of a run of decimal digits (Python's `isdigit()` then `int()`,
 * which read every script's digits), or `null`.
 */
function decimalValue(text: string): bigint | null {
  if (!/^\p{Nd}+$/u.test(text)) return null;
  let value = 0n;
  for (const c of text) {
    // Unicode's decimal digits come in runs of ten from 0: count back.
    let code = c.codePointAt(0)!;
    let before = 0;
    while (/^\p{Nd}$/u.test(String.fromCodePoint(code - 1))) {
      code--;
      before++;
    }
    value = value * 10n + BigInt(before % 10);
  }
  return value;
}

/**
 * Python's `_getparams()`: `KEY` or `KEY=VALUE` words; `null` when one is
 * not alphanumeric or has an empty value.
 */
function getParams(words: string[]): Map<string, string | true> | null {
  const result = new Map<string, string | true>();
  for (const word of words) {
    const eq = word.indexOf("=");
    const param = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? "" : word.slice(eq + 1);
    if (!/^[\p{L}\p{N}]+$/u.test(param) || (eq >= 0 && value === "")) {
      return null;
    }
    result.set(param, eq < 0 ? true : value);
  }
  return result;
}

/** Python's `arg[:len(keyword)].upper() == keyword`, then the rest, stripped. */
function stripKeyword(keyword: string, arg: string): string {
  const chars = [...arg];
  if (chars.slice(0, keyword.length).join("").toUpperCase() === keyword) {
    return pyStrip(chars.slice(keyword.length).join(""));
  }
  return "";
}

type State = "command" | "data";
type Handler = (arg: string | null) => void;

/** One SMTP session: CPython's `SMTPChannel`. */
export class SmtpChannel extends AsyncChat {
  readonly server: SmtpServer;
  readonly peer: Deno.NetAddr;
  state: State = "command";
  seenGreeting = "";
  extendedSmtp = false;
  mailfrom: string | null = null;
  rcpttos: string[] = [];
  requireSmtputf8 = false;
  mailOptions: string[] = [];
  rcptOptions: string[] = [];

  // The command line being read: its pieces (up to the limit) and length.
  #line: Uint8Array[] = [];
  #lineBytes = 0;
  // DATA: the lines kept (unstuffed, joined with \n), the raw bytes so far
  // (CRLFs between lines counted), whether they passed the limit, and the
  // current line.
  #data = new ByteSink();
  #dataBytes = 0;
  #dataLineCount = 0;
  #dataOver = false;
  #pieces: Uint8Array[] = [];
  #pieceBytes = 0;
  #firstByte = -1;
  /** Between startTls() and the end of its handshake. */
  #handshaking = false;

  readonly #commands: Record<string, Handler> = {
    HELO: (arg) => this.smtpHelo(arg),
    EHLO: (arg) => this.smtpEhlo(arg),
    NOOP: (arg) => this.smtpNoop(arg),
    QUIT: () => this.smtpQuit(),
    HELP: (arg) => this.smtpHelp(arg),
    VRFY: (arg) => this.smtpVrfy(arg),
    MAIL: (arg) => this.smtpMail(arg),
    RCPT: (arg) => this.smtpRcpt(arg),
    RSET: (arg) => this.smtpRset(arg),
    DATA: (arg) => this.smtpData(arg),
    EXPN: () => this.reply("502 EXPN not implemented"),
  };

  constructor(server: SmtpServer, sock: Socket, peer: Deno.NetAddr) {
    super(sock, server.channelMap);
    this.server = server;
    this.peer = peer;
    // Limits are this class's own: a line is counted, not held, past them.
    this.maxRecordSize = Infinity;
    if (server.tls !== undefined) {
      this.#commands.STARTTLS = (arg) => this.smtpStarttls(arg);
    }
    this.setTerminator("\r\n");
    this.reply(`220 ${server.hostname} ${GREETING}`);
  }

  /** The most bytes of a MAIL line, CRLF aside, as EHLO set it. */
  get mailSizeLimit(): number {
    if (!this.extendedSmtp) return COMMAND_SIZE_LIMIT;
    return COMMAND_SIZE_LIMIT + (this.server.dataSizeLimit ? 26 : 0) +
      (this.server.enableSmtputf8 ? 10 : 0);
  }

  /** Pushes one reply line: UTF-8 after `MAIL ... SMTPUTF8`, else ASCII. */
  reply(text: string): void {
    this.push((this.requireSmtputf8 ? text : backslashReplace(text)) + "\r\n");
  }

  override readable(): boolean {
    return this.sendBuffered < HIGH_WATER;
  }

  override collectIncomingData(data: Uint8Array): void {
    if (this.state === "command") {
      if (this.#lineBytes <= this.mailSizeLimit) this.#line.push(data);
      this.#lineBytes += data.length;
      return;
    }
    if (this.#pieceBytes === 0) this.#firstByte = data[0];
    this.#pieceBytes += data.length;
    // A line of one byte may be the "." that ends DATA, which is not data.
    if (
      !this.#dataOver && this.#pieceBytes > 1 &&
      this.#overLimit(this.#pieceBytes)
    ) this.#giveUp();
    if (!this.#dataOver) this.#pieces.push(data);
  }

  override foundTerminator(): void {
    if (this.state === "command") this.#command();
    else this.#dataLine();
  }

  /** Whether DATA would pass the limit with a current line of `length`. */
  #overLimit(length: number): boolean {
    const limit = this.server.dataSizeLimit;
    const separator = this.#dataLineCount > 0 ? 2 : 0;
    return limit > 0 && this.#dataBytes + separator + length > limit;
  }

  /** Drops what DATA kept: it is over the limit, the rest is counted only. */
  #giveUp(): void {
    this.#dataOver = true;
    this.#data = new ByteSink();
    this.#pieces = [];
  }

  #command(): void {
    const size = this.#lineBytes;
    const raw = concat(this.#line);
    this.#line = [];
    this.#lineBytes = 0;
    if (size === 0) {
      this.reply("500 Error: bad syntax");
      return;
    }
    if (size > this.mailSizeLimit) {
      this.reply("500 Error: line too long");
      return;
    }
    let line: string;
    try {
      line = strictUtf8.decode(raw);
    } catch {
      this.reply("500 Error: command line is not UTF-8");
      return;
    }
    const space = line.indexOf(" ");
    const command = (space < 0 ? line : line.slice(0, space)).toUpperCase();
    const arg = space < 0 ? null : pyStrip(line.slice(space + 1));
    const limit = this.extendedSmtp && command === "MAIL"
      ? this.mailSizeLimit
      : COMMAND_SIZE_LIMIT;
    if (size > limit) {
      this.reply("500 Error: line too long");
      return;
    }
    const handler = Object.hasOwn(this.#commands, command)
      ? this.#commands[command]
      : undefined;
    if (handler === undefined) {
      this.reply(`500 Error: command "${command}" not recognized`);
      return;
    }
    handler(arg);
  }

  #dataLine(): void {
    const length = this.#pieceBytes;
    const isDot = length === 1 && this.#firstByte === DOT;
    const pieces = this.#pieces;
    this.#pieces = [];
    this.#pieceBytes = 0;
    if (isDot) {
      this.#endData();
      return;
    }
    if (!this.#dataOver && this.#overLimit(length)) this.#giveUp();
    if (this.#dataOver) return;
    if (this.#dataLineCount > 0) this.#data.append(NEWLINE);
    this.#dataBytes += (this.#dataLineCount > 0 ? 2 : 0) + length;
    this.#dataLineCount++;
    pieces.forEach((piece, i) =>
      this.#data.append(i === 0 && piece[0] === DOT ? piece.subarray(1) : piece)
    );
  }

  #endData(): void {
    if (this.#dataOver) {
      this.#setPostDataState();
      this.reply("552 Error: Too much mail data");
      return;
    }
    const message: Message = {
      peer: this.peer,
      mailfrom: this.mailfrom ?? "",
      rcpttos: this.rcpttos,
      data: this.#data.bytes(),
      mailOptions: this.mailOptions,
      rcptOptions: this.rcptOptions,
    };
    const status = this.server.processMessage(message);
    this.#setPostDataState();
    this.reply(status ?? "250 OK");
  }

  #setPostDataState(): void {
    this.state = "command";
    this.mailfrom = null;
    this.rcpttos = [];
    this.requireSmtputf8 = false;
    this.#data = new ByteSink();
    this.#dataBytes = 0;
    this.#dataLineCount = 0;
    this.#dataOver = false;
    this.#pieces = [];
    this.#pieceBytes = 0;
  }

  #setRsetState(): void {
    this.#setPostDataState();
  }

  /**
   * Takes `arg` as the client's greeting (`verb`: HELO or EHLO), or replies
   * why not; whether it was taken.
   */
  #greet(verb: string, arg: string | null): arg is string {
    if (!arg) {
      this.reply(`501 Syntax: ${verb} hostname`);
      return false;
    }
    if (this.seenGreeting) {
      this.reply("503 Duplicate HELO/EHLO");
      return false;
    }
    this.#setRsetState();
    this.seenGreeting = arg;
    return true;
  }

  smtpHelo(arg: string | null): void {
    if (!this.#greet("HELO", arg)) return;
    this.reply(`250 ${this.server.hostname}`);
  }

  smtpEhlo(arg: string | null): void {
    if (!this.#greet("EHLO", arg)) return;
    this.extendedSmtp = true;
    this.reply(`250-${this.server.hostname}`);
    if (this.server.dataSizeLimit) {
      this.reply(`250-SIZE ${this.server.dataSizeLimit}`);
    }
    this.reply("250-8BITMIME");
    if (this.server.enableSmtputf8) this.reply("250-SMTPUTF8");
    if (this.server.tls !== undefined && !this.socket?.secure) {
      this.reply("250-STARTTLS");
    }
    this.reply("250 HELP");
  }

  smtpNoop(arg: string | null): void {
    this.reply(arg ? "501 Syntax: NOOP" : "250 OK");
  }

  smtpQuit(): void {
    this.reply("221 Bye");
    this.closeWhenDone();
  }

  smtpHelp(arg: string | null): void {
    const all = "Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT " +
      "VRFY";
    if (!arg) {
      this.reply(`250 ${all}`);
      return;
    }
    const extended = this.extendedSmtp ? " [SP <mail-parameters>]" : "";
    const syntax: Record<string, string> = {
      EHLO: "EHLO hostname",
      HELO: "HELO hostname",
      MAIL: `MAIL FROM: <address>${extended}`,
      RCPT: `RCPT TO: <address>${extended}`,
      DATA: "DATA",
      RSET: "RSET",
      NOOP: "NOOP",
      QUIT: "QUIT",
      VRFY: "VRFY <address>",
    };
    const key = arg.toUpperCase();
    this.reply(
      Object.hasOwn(syntax, key) ? `250 Syntax: ${syntax[key]}` : `501 ${all}`,
    );
  }

  smtpVrfy(arg: string | null): void {
    if (!arg) {
      this.reply("501 Syntax: VRFY <address>");
      return;
    }
    let address: string;
    try {
      [address] = parseSmtpAddress(arg);
    } catch (error) {
      if (!(error instanceof AddressError)) throw error;
      this.reply("501 Syntax: VRFY <address>");
      return;
    }
    this.reply(
      address
        ? "252 Cannot VRFY user, but will accept message and attempt delivery"
        : `502 Could not VRFY ${arg}`,
    );
  }

  /** The address and parameters after `keyword`, or null (replied). */
  #address(
    keyword: string,
    arg: string | null,
    syntaxError: string,
  ): [string, string] | null {
    if (arg === null) {
      this.reply(syntaxError);
      return null;
    }
    let parsed: [string, string];
    try {
      parsed = parseSmtpAddress(stripKeyword(keyword, arg));
    } catch (error) {
      if (!(error instanceof AddressError)) throw error;
      this.reply(syntaxError);
      return null;
    }
    if (!parsed[0] || (!this.extendedSmtp && parsed[1])) {
      this.reply(syntaxError);
      return null;
    }
    return parsed;
  }

  smtpMail(arg: string | null): void {
    if (!this.seenGreeting) {
      this.reply("503 Error: send HELO first");
      return;
    }
    const syntaxError = "501 Syntax: MAIL FROM: <address>" +
      (this.extendedSmtp ? " [SP <mail-parameters>]" : "");
    const parsed = this.#address("FROM:", arg, syntaxError);
    if (parsed === null) return;
    const [address, rest] = parsed;
    if (this.mailfrom) {
      this.reply("503 Error: nested MAIL command");
      return;
    }
    this.mailOptions = pySplit(rest.toUpperCase());
    const params = getParams(this.mailOptions);
    if (params === null) {
      this.reply(syntaxError);
      return;
    }
    const body = params.get("BODY") ?? "7BIT";
    params.delete("BODY");
    if (body !== "7BIT" && body !== "8BITMIME") {
      this.reply("501 Error: BODY can only be one of 7BIT, 8BITMIME");
      return;
    }
    if (this.server.enableSmtputf8) {
      const value = params.get("SMTPUTF8") ?? false;
      params.delete("SMTPUTF8");
      // Set at once, as CPython does: it holds even if a check below fails.
      if (value === true) this.requireSmtputf8 = true;
      else if (value !== false) {
        this.reply("501 Error: SMTPUTF8 takes no arguments");
        return;
      }
    }
    const size = params.get("SIZE");
    params.delete("SIZE");
    if (size !== undefined) {
      // CPython fails on a bare SIZE (True has no isdigit()): a syntax error.
      const value = size === true ? null : decimalValue(size);
      if (value === null) {
        this.reply(syntaxError);
        return;
      }
      const limit = this.server.dataSizeLimit;
      if (limit && value > BigInt(limit)) {
        this.reply(
          "552 Error: message size exceeds fixed maximum message size",
        );
        return;
      }
    }
    if (params.size > 0) {
      this.reply("555 MAIL FROM parameters not recognized or not implemented");
      return;
    }
    this.mailfrom = address;
    this.reply("250 OK");
  }

  smtpRcpt(arg: string | null): void {
    if (!this.seenGreeting) {
      this.reply("503 Error: send HELO first");
      return;
    }
    if (!this.mailfrom) {
      this.reply("503 Error: need MAIL command");
      return;
    }
    const syntaxError = "501 Syntax: RCPT TO: <address>" +
      (this.extendedSmtp ? " [SP <mail-parameters>]" : "");
    const parsed = this.#address("TO:", arg, syntaxError);
    if (parsed === null) return;
    const [address, rest] = parsed;
    this.rcptOptions = pySplit(rest.toUpperCase());
    const params = getParams(this.rcptOptions);
    if (params === null) {
      this.reply(syntaxError);
      return;
    }
    if (params.size > 0) {
      this.reply("555 RCPT TO parameters not recognized or not implemented");
      return;
    }
    this.rcpttos.push(address);
    this.reply("250 OK");
  }

  smtpRset(arg: string | null): void {
    if (arg) {
      this.reply("501 Syntax: RSET");
      return;
    }
    this.#setRsetState();
    this.reply("250 OK");
  }

  smtpData(arg: string | null): void {
    if (!this.seenGreeting) {
      this.reply("503 Error: send HELO first");
      return;
    }
    if (this.rcpttos.length === 0) {
      this.reply("503 Error: need RCPT command");
      return;
    }
    if (arg) {
      this.reply("501 Syntax: DATA");
      return;
    }
    this.state = "data";
    this.reply("354 End data with <CR><LF>.<CR><LF>");
  }

  /** RFC 3207's STARTTLS: only offered with a certificate. */
  smtpStarttls(arg: string | null): void {
    if (arg) {
      this.reply("501 Syntax: STARTTLS");
      return;
    }
    if (this.socket?.secure) {
      this.reply("503 Error: TLS already active");
      return;
    }
    if (this.mailfrom !== null) {
      this.reply("503 Error: MAIL transaction in progress");
      return;
    }
    this.reply("220 Ready to start TLS");
    // The upgrade starts once the 220 (and any reply before it) has gone in
    // plaintext; meanwhile the channel reads nothing. What the client
    // pipelined after STARTTLS in this read is dropped, never executed (RFC
    // 3207; CVE-2011-0411).
    this.startTls(this.server.tls);
    this.#handshaking = true;
    // The session starts over: the client must EHLO again.
    this.seenGreeting = "";
    this.extendedSmtp = false;
    this.#line = [];
    this.#lineBytes = 0;
    this.#setRsetState();
  }

  override handleStartTls(): void {
    this.#handshaking = false;
    this.server.progress(`TLS established with ${formatAddress(this.peer)}`);
  }

  override handleError(error: unknown): void {
    if (this.#handshaking) {
      // A failed handshake: say so and drop this client only.
      console.error(
        `smtpd.ts: TLS handshake with ${formatAddress(this.peer)} failed: ${
          messageOf(error)
        }`,
      );
      this.close();
      return;
    }
    super.handleError(error);
  }

  override handleClose(): void {
    this.close();
  }
}

/** Listens and serves each client with an {@linkcode SmtpChannel}. */
export class SmtpServer extends Dispatcher {
  readonly hostname: string;
  readonly dataSizeLimit: number;
  readonly enableSmtputf8: boolean;
  readonly tls: TlsOptions | undefined;
  /** The map this server and its channels are in. */
  readonly channelMap: ChannelMap | undefined;
  /** Whether to print progress lines (not the messages themselves). */
  quiet = false;

  constructor(
    address: { hostname: string; port: number },
    options: SmtpServerOptions,
  ) {
    super(undefined, options.map);
    this.channelMap = options.map;
    this.hostname = options.hostname;
    this.dataSizeLimit = options.dataSizeLimit ?? DATA_SIZE_DEFAULT;
    this.enableSmtputf8 = options.enableSmtputf8 ?? false;
    this.tls = options.tls;
    this.createSocket();
    try {
      this.bind(address);
      this.listen(128);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  override handleAccepted(sock: Socket, addr: Deno.Addr): void {
    new SmtpChannel(this, sock, addr as Deno.NetAddr);
  }

  /**
   * Takes an accepted message: returns `undefined` for `250 OK`, or the
   * reply to give instead. This one prints it as CPython's
   * `DebuggingServer` does.
   */
  processMessage(message: Message): string | undefined {
    const out = ["---------- MESSAGE FOLLOWS ----------"];
    if (message.mailOptions.length > 0) {
      out.push(`mail options: ${pyListRepr(message.mailOptions)}`);
    }
    if (message.rcptOptions.length > 0) {
      out.push(`rcpt options: ${pyListRepr(message.rcptOptions)}\n`);
    }
    let inHeaders = true;
    for (const line of splitLines(message.data)) {
      if (inHeaders && line.length === 0) {
        out.push(bytesRepr(encoder.encode(`X-Peer: ${message.peer.hostname}`)));
        inHeaders = false;
      }
      out.push(bytesRepr(line));
    }
    out.push("------------ END MESSAGE ------------");
    console.log(out.join("\n"));
    return undefined;
  }

  /** Prints a progress line unless quiet. */
  progress(line: string): void {
    if (!this.quiet) console.log(line);
  }

  override handleClose(): void {
    this.close();
  }
}

/** Writes each message to a file of a directory. */
export class MaildirServer extends SmtpServer {
  readonly directory: string;
  #count = 0;

  constructor(
    address: { hostname: string; port: number },
    options: SmtpServerOptions,
    directory: string,
  ) {
    super(address, options);
    this.directory = directory;
  }

  /** Writes `name.tmp`, then renames it `name.eml`; 451 if it cannot. */
  override processMessage(message: Message): string | undefined {
    const head = encoder.encode(
      `X-Peer: ${message.peer.hostname}\nX-MailFrom: ${message.mailfrom}\n` +
        `X-RcptTo: ${message.rcpttos.join(", ")}\n`,
    );
    const name = `${Date.now()}.${Deno.pid}.${++this.#count}`;
    const temporary = `${this.directory}/${name}.tmp`;
    const final = `${this.directory}/${name}.eml`;
    try {
      Deno.writeFileSync(temporary, concat([head, message.data]));
      Deno.renameSync(temporary, final);
    } catch (error) {
      console.error(`smtpd.ts: cannot save a message: ${messageOf(error)}`);
      try {
        Deno.removeSync(temporary);
      } catch {
        // Never written.
      }
      return "451 Requested action aborted: local error in processing";
    }
    this.progress(
      `saved ${final} (${message.data.length} bytes) from ${
        formatAddress(message.peer)
      }`,
    );
    return undefined;
  }
}

/** Python's `bytes.splitlines()`. */
function splitLines(data: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== 0x0a && data[i] !== 0x0d) continue;
    lines.push(data.subarray(start, i));
    if (data[i] === 0x0d && data[i + 1] === 0x0a) i++;
    start = i + 1;
  }
  if (start < data.length) lines.push(data.subarray(start));
  return lines;
}

/** Python's `repr()` of bytes. */
function bytesRepr(data: Uint8Array): string {
  const quote = data.includes(0x27) && !data.includes(0x22) ? '"' : "'";
  let out = "b" + quote;
  for (const byte of data) {
    const c = String.fromCharCode(byte);
    if (c === "\\" || c === quote) out += "\\" + c;
    else if (c === "\t") out += "\\t";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (byte < 0x20 || byte >= 0x7f) {
      out += `\\x${byte.toString(16).padStart(2, "0")}`;
    } else out += c;
  }
  return out + quote;
}

/** Python's `repr()` of a list of strings, near enough. */
function pyListRepr(items: string[]): string {
  return "[" + items.map((item) => {
    const quote = item.includes("'") && !item.includes('"') ? '"' : "'";
    let out = quote;
    for (const c of item) {
      const code = c.codePointAt(0)!;
      if (c === "\\" || c === quote) out += "\\" + c;
      else if (c === "\t") out += "\\t";
      else if (c === "\n") out += "\\n";
      else if (c === "\r") out += "\\r";
      else if (
        c !== " " && /[\p{C}\p{Z}]/u.test(c)
      ) {
        out += code < 0x100
          ? `\\x${code.toString(16).padStart(2, "0")}`
          : code < 0x10000
          ? `\\u${code.toString(16).padStart(4, "0")}`
          : `\\U${code.toString(16).padStart(8, "0")}`;
      } else out += c;
    }
    return out + quote;
  }).join(", ") + "]";
}

if (import.meta.main) {
  const cli = new Cli({
    name: "smtpd.ts",
    summary: [
      "CPython 3.11's smtpd (SMTPChannel, SMTPServer) on AsyncChat, with its",
      "replies, SIZE, 8BITMIME and (--smtputf8) SMTPUTF8, and STARTTLS when",
      "given --tls-cert and --tls-key. Prints 'listening on HOST:PORT' once it",
      "accepts. With --maildir DIR each accepted message is written, before",
      "its 250 OK, to DIR/NAME.tmp and renamed DIR/NAME.eml: 'X-Peer:',",
      "'X-MailFrom:' and 'X-RcptTo:' lines, then the data (lines dot-unstuffed,",
      "joined with \\n). Without it each message is printed as CPython's",
      "DebuggingServer prints it.",
    ].join("\n"),
    permissions: "--allow-net --allow-read --allow-write",
    options: {
      host: {
        value: "HOST",
        help: "address to listen on, and the name the server gives",
        default: "127.0.0.1",
      },
      port: {
        value: "PORT",
        help: "port to listen on (0: a free one)",
        default: "8025",
      },
      maildir: {
        value: "DIR",
        help: "save each message as a .eml file here instead of printing it",
      },
      size: {
        value: "BYTES",
        help: "the most DATA bytes a message may have; 0: no limit, no SIZE",
        default: String(DATA_SIZE_DEFAULT),
      },
      "tls-cert": {
        value: "PEM",
        help: "certificate chain file: offer STARTTLS (with --tls-key)",
      },
      "tls-key": { value: "PEM", help: "private key file of --tls-cert" },
    },
    flags: {
      smtputf8: "offer SMTPUTF8 (RFC 6531)",
      quiet:
        "print no progress lines (connections upgraded, messages saved); " +
        "failures and printed messages still go out",
    },
  });
  const { options, flags } = cli.parse();
  const hostname = cli.host("--host", options.host);
  const port = cli.port("--port", options.port);
  const sizeText = options.size ?? "";
  if (!/^\d{1,15}$/.test(sizeText)) {
    cli.fail(
      `--size must be a byte count (0: no limit), got ${
        JSON.stringify(sizeText)
      }`,
    );
  }
  if (
    (options["tls-cert"] === undefined) !== (options["tls-key"] === undefined)
  ) {
    cli.fail("--tls-cert and --tls-key go together");
  }
  const read = (flag: string, path: string): string => {
    try {
      return Deno.readTextFileSync(path);
    } catch (error) {
      console.error(`smtpd.ts: cannot read --${flag}: ${messageOf(error)}`);
      Deno.exit(1);
    }
  };
  const tls = options["tls-cert"] === undefined ? undefined : {
    cert: read("tls-cert", options["tls-cert"]),
    key: read("tls-key", options["tls-key"]!),
  };
  if (tls !== undefined) {
    // A certificate or key that cannot serve fails here, not at STARTTLS.
    try {
      Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...tls }).close();
    } catch (error) {
      console.error(
        `smtpd.ts: cannot use --tls-cert/--tls-key: ${messageOf(error)}`,
      );
      Deno.exit(1);
    }
  }
  const maildir = options.maildir;
  if (maildir !== undefined) {
    let isDirectory = false;
    try {
      isDirectory = Deno.statSync(maildir).isDirectory;
    } catch {
      // Reported below.
    }
    if (!isDirectory) {
      console.error(`smtpd.ts: --maildir ${maildir} is not a directory`);
      Deno.exit(1);
    }
  }
  const serverOptions: SmtpServerOptions = {
    hostname,
    dataSizeLimit: Number(sizeText),
    enableSmtputf8: flags.smtputf8,
    tls,
  };
  const server = listenOrExit(
    "smtpd.ts",
    () =>
      maildir === undefined
        ? new SmtpServer({ hostname, port }, serverOptions)
        : new MaildirServer({ hostname, port }, serverOptions, maildir),
  );
  server.quiet = flags.quiet;
  using interrupt = catchInterrupt();
  await loop({ signal: interrupt.signal });
  closeAll();
}
