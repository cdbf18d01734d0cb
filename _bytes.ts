// Byte-sequence helpers shared by asynchat.ts and producers.ts: searching,
// prefix matching and joining, on Uint8Array without needless copies.

/** A shared empty array: what an exhausted producer returns. */
export const EMPTY: Uint8Array = new Uint8Array(0);

/**
 * The index of the first `needle` in `haystack` at or after `from`, or -1.
 * `needle` must not be empty. The first byte is found with the built-in
 * `indexOf` (fast), and only those places are checked further.
 */
export function indexOfBytes(
  haystack: Uint8Array,
  needle: Uint8Array,
  from = 0,
): number {
  const first = needle[0];
  const m = needle.length;
  if (m === 1) return haystack.indexOf(first, from);
  const last = haystack.length - m;
  let i = from;
  while (i <= last) {
    i = haystack.indexOf(first, i);
    if (i === -1 || i > last) return -1;
    let j = 1;
    while (j < m && haystack[i + j] === needle[j]) j++;
    if (j === m) return i;
    i++;
  }
  return -1;
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
