/**
 * The part of CPython's `email._header_value_parser` that `smtpd` uses to
 * read the address of MAIL, RCPT and VRFY (`get_angle_addr`,
 * `get_addr_spec` and what they call), re-written from its design, so that
 * `smtpd.ts` accepts, rejects and normalises addresses as CPython 3.11's
 * smtpd does: `<"a b"@x>` is `"a b"@x`, comments and folding white space
 * go, `<>` stays `<>`.
 *
 * Where CPython's parser raises (its `HeaderParseError`, or an `IndexError`
 * or `AttributeError` on input it did not expect, which kills CPython's
 * connection) {@linkcode parseSmtpAddress} throws {@linkcode AddressError},
 * and the server answers 501. RFC 2047 encoded words (`=?utf-8?q?...?=`)
 * are read as plain text: CPython decodes them.
 *
 * @module
 */

/** An address CPython's parser rejects (or fails on). */
export class AddressError extends Error {
  override name = "AddressError";
}

const WSP = new Set([" ", "\t"]);
const CFWS_LEADER = new Set([" ", "\t", "("]);
const SPECIALS = new Set([...'()<>@,:;.\\"[]']);
const ATOM_ENDS = new Set([...SPECIALS, ...WSP]);
const DOT_ATOM_ENDS = new Set([...ATOM_ENDS].filter((c) => c !== "."));
const PHRASE_ENDS = new Set(
  [...SPECIALS].filter((c) => c !== "." && c !== '"' && c !== "("),
);
const NON_ATOM_END = /^[^()<>@,:;.\\"[\] \t]+/;
const WSP_RUN = /[ \t]+/;

/** What Python's `str.isspace()` is true for. */
const PY_SPACE =
  "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
const LEADING_SPACE = new RegExp(`^[${PY_SPACE}]+`);
const TRAILING_SPACE = new RegExp(`[${PY_SPACE}]+$`);
const SPACE_RUN = new RegExp(`[${PY_SPACE}]+`);

/** Python's `str.lstrip()`. */
export function pyLstrip(text: string): string {
  return text.replace(LEADING_SPACE, "");
}

/** Python's `str.strip()`. */
export function pyStrip(text: string): string {
  return text.replace(LEADING_SPACE, "").replace(TRAILING_SPACE, "");
}

/** Python's `str.split()` with no arguments. */
export function pySplit(text: string): string[] {
  return text.split(SPACE_RUN).filter((part) => part !== "");
}

/** Python's `email._header_value_parser.quote_string()`. */
function quoteString(text: string): string {
  return `"${text.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** `value[0]`, failing as Python's IndexError does on an empty string. */
function first(value: string): string {
  if (value === "") throw new AddressError("unexpected end of address");
  return value[0];
}

/** `list[index]` with Python's negative indexes and its IndexError. */
function at<T>(list: readonly T[], index: number): T {
  const i = index < 0 ? list.length + index : index;
  if (i < 0 || i >= list.length) {
    throw new AddressError("unexpected shape of address");
  }
  return list[i];
}

// The parse tree: terminals (strings with a type) and token lists, with
// the `str()` and `value` each of CPython's classes gives them.

abstract class Token {
  constructor(public type: string | null) {}
  abstract str(): string;
  abstract value(): string;
}

class Terminal extends Token {
  constructor(readonly text: string, type: string) {
    super(type);
  }
  str(): string {
    return this.text;
  }
  value(): string {
    return this.text;
  }
}

/** Folding white space and comment text: its value is one space. */
class SpaceTerminal extends Terminal {
  override value(): string {
    return " ";
  }
}

/** What CPython appends for a domain literal cut short: using it fails. */
class Broken extends Token {
  constructor() {
    super("defect");
  }
  str(): string {
    throw new AddressError("end of input inside domain-literal");
  }
  value(): string {
    return this.str();
  }
}

class TokenList extends Token {
  items: Token[];
  constructor(type: string | null, items: Token[] = []) {
    super(type);
    this.items = items;
  }
  str(): string {
    return this.items.map((item) => item.str()).join("");
  }
  value(): string {
    return this.items.map((item) => item.value()).join("");
  }
}

/** CFWS and comments: their value is one space. */
class SpaceList extends TokenList {
  override value(): string {
    return " ";
  }
}

class Comment extends SpaceList {
  override str(): string {
    return "(" +
      this.items.map((item) =>
        item.type === "comment"
          ? item.str()
          : item.str().replaceAll("\\", "\\\\").replaceAll("(", "\\(")
            .replaceAll(")", "\\)")
      ).join("") + ")";
  }
}

class BareQuotedString extends TokenList {
  override str(): string {
    return quoteString(super.str());
  }
  override value(): string {
    return super.str();
  }
}

const DOT = new Terminal(".", "dot");

function removeSpace(text: string): string {
  return pySplit(text).join("");
}

function localPartOf(localPart: TokenList): string {
  // Strips white space at the ends and around dots (CPython's
  // LocalPart.local_part).
  const inner = at(localPart.items, 0);
  if (!(inner instanceof TokenList)) {
    throw new AddressError("unexpected local part");
  }
  const result: Token[] = [DOT];
  let last: Token = DOT;
  let lastIsList = false;
  for (const token of [...inner.items, DOT]) {
    if (token.type === "cfws") continue;
    if (
      lastIsList && token.type === "dot" &&
      at((last as TokenList).items, -1).type === "cfws"
    ) {
      result[result.length - 1] = new TokenList(
        null,
        (last as TokenList).items.slice(0, -1),
      );
    }
    const isList = token instanceof TokenList;
    if (isList && last.type === "dot" && at(token.items, 0).type === "cfws") {
      result.push(new TokenList(null, token.items.slice(1)));
    } else {
      result.push(token);
    }
    last = result[result.length - 1];
    lastIsList = isList;
  }
  return new TokenList(null, result.slice(1, -1)).value();
}

function domainOf(addrSpec: TokenList): string | null {
  if (addrSpec.items.length < 3) return null;
  return removeSpace(TokenList.prototype.value.call(at(addrSpec.items, -1)));
}

function addrSpecString(addrSpec: TokenList): string {
  const localPart = localPartOf(at(addrSpec.items, 0) as TokenList);
  const special = [...localPart].some((c) => DOT_ATOM_ENDS.has(c));
  const lp = special ? quoteString(localPart) : localPart;
  const domain = domainOf(addrSpec);
  return domain === null ? lp : `${lp}@${domain}`;
}

function angleAddrString(angleAddr: TokenList): string {
  for (const item of angleAddr.items) {
    if (item.type !== "addr-spec") continue;
    const spec = item as TokenList;
    const localPart = localPartOf(at(spec.items, 0) as TokenList);
    return localPart
      ? addrSpecString(spec)
      : quoteString(localPart) + addrSpecString(spec);
  }
  return "<>";
}

// The parser: each function takes the text and returns a token and the
// rest, or throws.

type Parsed<T extends Token = Token> = [T, string];

function getPtextToEndchars(
  value: string,
  endchars: string,
): [string, string] {
  const split = WSP_RUN.exec(value);
  const fragment = split === null ? value : value.slice(0, split.index);
  // CPython's loop leaves its index unbound on an empty fragment.
  if (fragment === "") throw new AddressError("empty text");
  let chars = "";
  let escape = false;
  let pos = 0;
  for (; pos < fragment.length; pos++) {
    const c = fragment[pos];
    if (c === "\\") {
      if (escape) {
        escape = false;
      } else {
        escape = true;
        continue;
      }
    }
    if (escape) escape = false;
    else if (endchars.includes(c)) break;
    chars += c;
  }
  return [chars, value.slice(pos)];
}

function getFws(value: string): Parsed {
  const rest = pyLstrip(value);
  return [
    new SpaceTerminal(value.slice(0, value.length - rest.length), "fws"),
    rest,
  ];
}

function getQpCtext(value: string): Parsed {
  const [text, rest] = getPtextToEndchars(value, "()");
  return [new SpaceTerminal(text, "ptext"), rest];
}

function getQcontent(value: string): Parsed {
  const [text, rest] = getPtextToEndchars(value, '"');
  return [new Terminal(text, "ptext"), rest];
}

function getAtext(value: string): Parsed {
  const match = NON_ATOM_END.exec(value);
  if (match === null) throw new AddressError(`expected atext: ${value}`);
  return [new Terminal(match[0], "atext"), value.slice(match[0].length)];
}

function getBareQuotedString(value: string): Parsed<TokenList> {
  if (first(value) !== '"') throw new AddressError(`expected '"': ${value}`);
  const bare = new BareQuotedString("bare-quoted-string");
  value = value.slice(1);
  let token: Token;
  if (value[0] === '"') {
    [token, value] = getQcontent(value);
    bare.items.push(token);
  }
  while (value && value[0] !== '"') {
    [token, value] = WSP.has(value[0]) ? getFws(value) : getQcontent(value);
    bare.items.push(token);
  }
  return [bare, value ? value.slice(1) : value];
}

function getComment(value: string): Parsed<TokenList> {
  if (value && value[0] !== "(") {
    throw new AddressError(`expected '(': ${value}`);
  }
  const comment = new Comment("comment");
  value = value.slice(1);
  let token: Token;
  while (value && value[0] !== ")") {
    if (WSP.has(value[0])) [token, value] = getFws(value);
    else if (value[0] === "(") [token, value] = getComment(value);
    else [token, value] = getQpCtext(value);
    comment.items.push(token);
  }
  return [comment, value ? value.slice(1) : value];
}

function getCfws(value: string): Parsed<TokenList> {
  const cfws = new SpaceList("cfws");
  let token: Token;
  while (value && CFWS_LEADER.has(value[0])) {
    [token, value] = WSP.has(value[0]) ? getFws(value) : getComment(value);
    cfws.items.push(token);
  }
  return [cfws, value];
}

/** Appends `[CFWS]` to `list` when the value starts with it. */
function trailingCfws(list: TokenList, value: string): string {
  if (value && CFWS_LEADER.has(value[0])) {
    const [token, rest] = getCfws(value);
    list.items.push(token);
    return rest;
  }
  return value;
}

function getQuotedString(value: string): Parsed<TokenList> {
  const quoted = new TokenList("quoted-string");
  value = trailingCfws(quoted, value);
  let token: Token;
  [token, value] = getBareQuotedString(value);
  quoted.items.push(token);
  return [quoted, trailingCfws(quoted, value)];
}

function getAtom(value: string): Parsed<TokenList> {
  const atom = new TokenList("atom");
  value = trailingCfws(atom, value);
  if (value && ATOM_ENDS.has(value[0])) {
    throw new AddressError(`expected atom: ${value}`);
  }
  let token: Token;
  [token, value] = getAtext(value);
  atom.items.push(token);
  return [atom, trailingCfws(atom, value)];
}

function getDotAtomText(value: string): Parsed<TokenList> {
  const text = new TokenList("dot-atom-text");
  if (!value || ATOM_ENDS.has(value[0])) {
    throw new AddressError(`expected dot-atom-text: ${value}`);
  }
  let token: Token;
  while (value && !ATOM_ENDS.has(value[0])) {
    [token, value] = getAtext(value);
    text.items.push(token);
    if (value && value[0] === ".") {
      text.items.push(DOT);
      value = value.slice(1);
    }
  }
  if (at(text.items, -1) === DOT) {
    throw new AddressError(`expected atom after '.': ${value}`);
  }
  return [text, value];
}

function getDotAtom(value: string): Parsed<TokenList> {
  const dotAtom = new TokenList("dot-atom");
  if (CFWS_LEADER.has(first(value))) value = trailingCfws(dotAtom, value);
  let token: Token;
  [token, value] = getDotAtomText(value);
  dotAtom.items.push(token);
  return [dotAtom, trailingCfws(dotAtom, value)];
}

function getWord(value: string): Parsed<TokenList> {
  let leader: TokenList | null = null;
  if (CFWS_LEADER.has(first(value))) [leader, value] = getCfws(value);
  if (!value) throw new AddressError("expected a word");
  let token: TokenList;
  if (value[0] === '"') [token, value] = getQuotedString(value);
  else if (SPECIALS.has(value[0])) {
    throw new AddressError(`expected a word: ${value}`);
  } else [token, value] = getAtom(value);
  if (leader !== null) token.items.unshift(leader);
  return [token, value];
}

function getObsLocalPart(value: string): Parsed<TokenList> {
  const obs = new TokenList("obs-local-part");
  while (value && (value[0] === "\\" || !PHRASE_ENDS.has(value[0]))) {
    if (value[0] === ".") {
      obs.items.push(DOT);
      value = value.slice(1);
      continue;
    }
    if (value[0] === "\\") {
      obs.items.push(new Terminal("\\", "misplaced-special"));
      value = value.slice(1);
      continue;
    }
    let token: Token;
    try {
      [token, value] = getWord(value);
    } catch (error) {
      if (!CFWS_LEADER.has(value[0])) throw error;
      [token, value] = getCfws(value);
    }
    obs.items.push(token);
  }
  // CPython's defect checks index the list: they fail as it does.
  const items = obs.items;
  if (at(items, 0).type !== "dot" && at(items, 0).type === "cfws") {
    at(items, 1);
  }
  if (at(items, -1).type !== "dot" && at(items, -1).type === "cfws") {
    at(items, -2);
  }
  return [obs, value];
}

function getLocalPart(value: string): Parsed<TokenList> {
  const localPart = new TokenList("local-part");
  let leader: TokenList | null = null;
  if (CFWS_LEADER.has(first(value))) [leader, value] = getCfws(value);
  if (!value) throw new AddressError("expected local-part");
  let token: TokenList;
  try {
    [token, value] = getDotAtom(value);
  } catch {
    try {
      [token, value] = getWord(value);
    } catch (error) {
      if (value[0] !== "\\" && PHRASE_ENDS.has(value[0])) throw error;
      token = new TokenList(null);
    }
  }
  if (leader !== null) token.items.unshift(leader);
  localPart.items.push(token);
  if (value && (value[0] === "\\" || !PHRASE_ENDS.has(value[0]))) {
    const [obs, rest] = getObsLocalPart(localPart.str() + value);
    localPart.items[0] = obs;
    value = rest;
  }
  return [localPart, value];
}

function getDtext(value: string): Parsed {
  const [text, rest] = getPtextToEndchars(value, "[]");
  return [new Terminal(text, "ptext"), rest];
}

function endsEarly(value: string, literal: TokenList): boolean {
  if (value) return false;
  literal.items.push(new Broken());
  literal.items.push(new Terminal("]", "domain-literal-end"));
  return true;
}

function getDomainLiteral(value: string): Parsed<TokenList> {
  const literal = new TokenList("domain-literal");
  if (CFWS_LEADER.has(first(value))) value = trailingCfws(literal, value);
  if (!value) throw new AddressError("expected domain-literal");
  if (value[0] !== "[") throw new AddressError(`expected '[': ${value}`);
  value = value.slice(1);
  if (endsEarly(value, literal)) return [literal, value];
  literal.items.push(new Terminal("[", "domain-literal-start"));
  let token: Token;
  if (WSP.has(value[0])) {
    [token, value] = getFws(value);
    literal.items.push(token);
  }
  [token, value] = getDtext(value);
  literal.items.push(token);
  if (endsEarly(value, literal)) return [literal, value];
  if (WSP.has(value[0])) {
    [token, value] = getFws(value);
    literal.items.push(token);
  }
  if (endsEarly(value, literal)) return [literal, value];
  if (value[0] !== "]") throw new AddressError(`expected ']': ${value}`);
  literal.items.push(new Terminal("]", "domain-literal-end"));
  return [literal, trailingCfws(literal, value.slice(1))];
}

function getDomain(value: string): Parsed<TokenList> {
  const domain = new TokenList("domain");
  let leader: TokenList | null = null;
  if (CFWS_LEADER.has(first(value))) [leader, value] = getCfws(value);
  if (!value) throw new AddressError("expected domain");
  let token: TokenList;
  if (value[0] === "[") {
    [token, value] = getDomainLiteral(value);
    if (leader !== null) token.items.unshift(leader);
    domain.items.push(token);
    return [domain, value];
  }
  try {
    [token, value] = getDotAtom(value);
  } catch {
    [token, value] = getAtom(value);
  }
  if (value && value[0] === "@") throw new AddressError("Invalid Domain");
  if (leader !== null) token.items.unshift(leader);
  domain.items.push(token);
  if (value && value[0] === ".") {
    if (at(domain.items, 0).type === "dot-atom") {
      domain.items = [...(at(domain.items, 0) as TokenList).items];
    }
    while (value && value[0] === ".") {
      domain.items.push(DOT);
      [token, value] = getAtom(value.slice(1));
      domain.items.push(token);
    }
  }
  return [domain, value];
}

function getAddrSpec(value: string): Parsed<TokenList> {
  const spec = new TokenList("addr-spec");
  let token: Token;
  [token, value] = getLocalPart(value);
  spec.items.push(token);
  if (!value || value[0] !== "@") return [spec, value];
  spec.items.push(new Terminal("@", "address-at-symbol"));
  [token, value] = getDomain(value.slice(1));
  spec.items.push(token);
  return [spec, value];
}

function getObsRoute(value: string): Parsed<TokenList> {
  const route = new TokenList("obs-route");
  let token: Token;
  while (value && (value[0] === "," || CFWS_LEADER.has(value[0]))) {
    if (CFWS_LEADER.has(value[0])) {
      [token, value] = getCfws(value);
      route.items.push(token);
    } else {
      route.items.push(new Terminal(",", "list-separator"));
      value = value.slice(1);
    }
  }
  if (!value || value[0] !== "@") {
    throw new AddressError(`expected obs-route domain: ${value}`);
  }
  route.items.push(new Terminal("@", "route-component-marker"));
  [token, value] = getDomain(value.slice(1));
  route.items.push(token);
  while (value && value[0] === ",") {
    route.items.push(new Terminal(",", "list-separator"));
    value = value.slice(1);
    if (!value) break;
    if (CFWS_LEADER.has(value[0])) {
      [token, value] = getCfws(value);
      route.items.push(token);
    }
    if (first(value) === "@") {
      route.items.push(new Terminal("@", "route-component-marker"));
      [token, value] = getDomain(value.slice(1));
      route.items.push(token);
    }
  }
  if (!value) throw new AddressError("end of header while parsing obs-route");
  if (value[0] !== ":") throw new AddressError(`expected ':': ${value}`);
  route.items.push(new Terminal(":", "end-of-obs-route-marker"));
  return [route, value.slice(1)];
}

function getAngleAddr(value: string): Parsed<TokenList> {
  const angle = new TokenList("angle-addr");
  if (CFWS_LEADER.has(first(value))) value = trailingCfws(angle, value);
  if (!value || value[0] !== "<") {
    throw new AddressError(`expected angle-addr: ${value}`);
  }
  angle.items.push(new Terminal("<", "angle-addr-start"));
  value = value.slice(1);
  if (first(value) === ">") {
    angle.items.push(new Terminal(">", "angle-addr-end"));
    return [angle, value.slice(1)];
  }
  let token: Token;
  try {
    [token, value] = getAddrSpec(value);
  } catch {
    [token, value] = getObsRoute(value);
    angle.items.push(token);
    [token, value] = getAddrSpec(value);
  }
  angle.items.push(token);
  if (value && value[0] === ">") value = value.slice(1);
  angle.items.push(new Terminal(">", "angle-addr-end"));
  return [angle, trailingCfws(angle, value)];
}

/**
 * CPython smtpd's `_getaddr()`: the address at the start of `arg` (after
 * `FROM:` or `TO:`), as CPython's string for it, and the text after it (the
 * parameters). An empty `arg` gives two empty strings.
 *
 * @throws {AddressError} where CPython's parser raises.
 */
export function parseSmtpAddress(arg: string): [string, string] {
  if (!arg) return ["", ""];
  try {
    if (pyLstrip(arg).startsWith("<")) {
      const [angle, rest] = getAngleAddr(arg);
      return [angleAddrString(angle), rest];
    }
    const [spec, rest] = getAddrSpec(arg);
    return [addrSpecString(spec), rest];
  } catch (error) {
    if (error instanceof AddressError) throw error;
    // A parse tree of a shape the port did not foresee: as CPython's
    // AttributeError or IndexError, a rejected address.
    throw new AddressError(String(error));
  }
}
