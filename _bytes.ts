// Byte-sequence helpers shared by asynchat.ts and producers.ts: searching,
// prefix matching and joining, on Uint8Array without needless copies.

/** A shared empty array: what an exhausted producer returns. */
export const EMPTY: Uint8Array = new Uint8Array(0);

/**
 * The index of the first `byte` in `haystack` at or after `from`, or -1.
 * Four bytes are tested at a time, as 32-bit words: XOR with the byte
 * repeated turns a match into a zero byte, and `(x - 0x01010101) & ~x &
 * 0x80808080` is non-zero exactly when `x` has one. In V8 this is about
 * twice as fast as `Uint8Array.prototype.indexOf`, which tests one byte at
 * a time, and line protocols scan every byte they read.
 */
export function indexOfByte(
  haystack: Uint8Array,
  byte: number,
  from = 0,
): number {
  const end = haystack.length;
  let i = from;
  // A match close by is found quicker than the word view is made.
  const near = Math.min(end, from + WORDS_FROM);
  for (; i < near; i++) if (haystack[i] === byte) return i;
  if (end - i >= 8) {
    const offset = haystack.byteOffset;
    for (; ((offset + i) & 3) !== 0; i++) if (haystack[i] === byte) return i;
    const words = new Int32Array(haystack.buffer, offset + i, (end - i) >> 2);
    const pattern = Math.imul(byte, 0x01010101);
    let k = 0;
    for (; k < words.length; k++) {
      const x = words[k] ^ pattern;
      if (((x - 0x01010101) & ~x & 0x80808080) !== 0) break;
    }
    i += k << 2;
  }
  // The word with the match, or the last few bytes.
  for (; i < end; i++) if (haystack[i] === byte) return i;
  return -1;
}

/** How far a plain loop looks before the word view is made. */
const WORDS_FROM = 64;

/**
 * The index of the first `needle` in `haystack` at or after `from`, or -1.
 * `needle` must not be empty. Candidates are found with
 * {@linkcode indexOfByte} on the first byte (fast where that byte is rare);
 * where false candidates come thick, a plain loop takes over for a stretch,
 * since a call per byte would be slower still.
 */
export function indexOfBytes(
  haystack: Uint8Array,
  needle: Uint8Array,
  from = 0,
): number {
  const first = needle[0];
  const m = needle.length;
  if (m === 1) return indexOfByte(haystack, first, from);
  const second = needle[1];
  const last = haystack.length - m;
  let i = from;
  while (i <= last) {
    const at = indexOfByte(haystack, first, i);
    if (at === -1 || at > last) return -1;
    if (haystack[at + 1] === second && matchesAt(haystack, needle, at)) {
      return at;
    }
    if (at - i >= DENSE) {
      i = at + 1;
      continue;
    }
    // Dense candidates: scan the next stretch byte by byte.
    const end = Math.min(last, at + STRETCH);
    for (i = at + 1; i <= end; i++) {
      if (
        haystack[i] === first && haystack[i + 1] === second &&
        matchesAt(haystack, needle, i)
      ) return i;
    }
  }
  return -1;
}

/** A false candidate closer than this to the last one counts as dense. */
const DENSE = 16;
/** How far the plain loop scans before trying `indexOf` again. */
const STRETCH = 256;

/** Whether `needle` (of 2 or more bytes) occurs at `at`, given its first two match. */
function matchesAt(
  haystack: Uint8Array,
  needle: Uint8Array,
  at: number,
): boolean {
  for (let j = 2; j < needle.length; j++) {
    if (haystack[at + j] !== needle[j]) return false;
  }
  return true;
}

/**
 * The length of the longest proper prefix of `needle` that `haystack` ends
 * with, looking only at `haystack[from:]`; 0 when there is none.
 */
export function prefixAtEnd(
  haystack: Uint8Array,
  needle: Uint8Array,
  from = 0,
): number {
  const end = haystack.length;
  const first = needle[0];
  // The longest candidate starts earliest; try start positions left to right.
  for (let l = Math.min(needle.length - 1, end - from); l > 0; l--) {
    const start = end - l;
    if (haystack[start] !== first) continue;
    let j = 1;
    while (j < l && haystack[start + j] === needle[j]) j++;
    if (j === l) return l;
  }
  return 0;
}

/** Joins `parts` (whose lengths add up to `total`) into one array. */
export function concatBytes(parts: Uint8Array[], total?: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  if (parts.length === 0) return EMPTY;
  let size = total ?? 0;
  if (total === undefined) { for (const part of parts) size += part.length; }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
