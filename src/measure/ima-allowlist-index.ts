import { hexEquals } from "./ima-entry.js";

/**
 * A byte-level index of an allowlist's paths, so that checking a binary list's entry needs
 * neither its name as a string nor a Map lookup.
 *
 * Measured on the 100k-entry / 20 MiB bench: Map#get with a fresh name string cost ~0.6–0.9 µs
 * per entry (V8 hashes the new string, then the lookup touches the hash table, the entry, the
 * key string and the value string — four cache misses in a table much larger than the cache),
 * plus ~0.2 µs to decode the name. Here a lookup hashes the name bytes where they lie in the
 * list, probes one slot (hash, path offset, path length, digest length: one cache line) and
 * compares the path and the digest bytes, which are stored next to each other.
 *
 * Exactness: only paths made of ASCII characters are indexed, and only names made of ASCII
 * bytes are looked up here (a caller falls back to the Map for any other name). An ASCII name
 * decodes (as UTF-8 or latin1) to the string of the same characters, so it equals a Map key
 * iff that key is ASCII and has the same bytes — exactly the keys indexed. Digests are the
 * Map's lowercase hex values decoded to bytes; a path with several digests, or an odd-length
 * hex value, keeps its Map value and is compared as hex.
 */
export class AllowlistPathIndex {
  /** Stride 4: hash, path offset in `data` (-1: empty slot), path length, digest (see put). */
  private readonly slots: Int32Array;
  private readonly mask: number;
  private readonly data: Uint8Array;
  private readonly hexValues: (string | readonly string[])[] = [];

  constructor(
    /** The map this index was built from (an index is used only with its own map). */
    readonly source: ReadonlyMap<string, string | readonly string[]>,
  ) {
    let n = 0;
    let bytes = 0;
    for (const [path, v] of source) {
      n++;
      bytes += path.length + (typeof v === "string" && v.length % 2 === 0 ? v.length / 2 : 0);
    }
    let cap = 8;
    while (cap * 0.6 < n) cap *= 2;
    this.slots = new Int32Array(4 * cap).fill(-1);
    this.mask = cap - 1;
    // Paths and digests are written with Buffer#write (one native call each): a JS loop of
    // charCodeAt over 300k paths and their hex (slices of the allowlist text) took ~3× longer.
    const d = Buffer.alloc(bytes);
    let at = 0;
    for (const [path, v] of source) {
      // ASCII iff its UTF-8 form has one byte per UTF-16 unit.
      if (Buffer.byteLength(path, "utf8") !== path.length) continue;
      d.write(path, at, path.length, "latin1");
      let digest: number;
      if (typeof v === "string" && v.length % 2 === 0) {
        digest = v.length / 2;
        d.write(v, at + path.length, digest, "hex"); // lowercase hex, even length
      } else {
        digest = -1 - this.hexValues.length;
        this.hexValues.push(v);
      }
      this.put(hashAscii(d, at, at + path.length), at, path.length, digest);
      at += path.length + Math.max(digest, 0);
    }
    this.data = new Uint8Array(d.buffer, d.byteOffset, at);
  }

  /** `digest` ≥ 0: that many digest bytes follow the path in `data`; < 0: hexValues[-1 - digest]. */
  private put(h: number, at: number, len: number, digest: number): void {
    const s = this.slots;
    let j = h & this.mask;
    while (s[4 * j + 1] !== -1) j = (j + 1) & this.mask;
    s[4 * j] = h;
    s[4 * j + 1] = at;
    s[4 * j + 2] = len;
    s[4 * j + 3] = digest;
  }

  /** The slot of path bytes u8[at, end) (ASCII, hash `h` from hashAscii), or -1 if not listed. */
  find(u8: Uint8Array, at: number, end: number, h: number): number {
    const s = this.slots;
    const d = this.data;
    const len = end - at;
    let j = h & this.mask;
    for (;;) {
      const k = 4 * j;
      const p = s[k + 1]!;
      if (p === -1) return -1;
      if (s[k] === h && s[k + 2] === len) {
        let i = 0;
        while (i < len && d[p + i] === u8[at + i]) i++;
        if (i === len) return j;
      }
      j = (j + 1) & this.mask;
    }
  }

  /** True if digest bytes u8[at, at + len) are allowed for the path in `slot`. */
  digestAllowed(slot: number, u8: Uint8Array, at: number, len: number): boolean {
    const s = this.slots;
    const digest = s[4 * slot + 3]!;
    if (digest < 0) {
      const v = this.hexValues[-1 - digest]!;
      if (typeof v === "string") return hexEquals(v, u8, at, len);
      for (const h of v) if (hexEquals(h, u8, at, len)) return true;
      return false;
    }
    if (digest !== len) return false;
    const d = this.data;
    const p = s[4 * slot + 1]! + s[4 * slot + 2]!;
    for (let i = 0; i < len; i++) if (d[p + i] !== u8[at + i]) return false;
    return true;
  }
}

/** FNV-1a over bytes [at, end), or 0x100000000 (not an int32) if one of them is not ASCII. */
export function hashAscii(u8: Uint8Array, at: number, end: number): number {
  let h = 0x811c9dc5 | 0;
  for (let i = at; i < end; i++) {
    const c = u8[i]!;
    if (c >= 0x80) return NOT_ASCII;
    h = Math.imul(h ^ c, 0x01000193);
  }
  return h;
}

export const NOT_ASCII = 0x100000000;

/**
 * The literal start of each exclusion glob (its characters before the first `*` or `?`): a
 * path can match the glob's regex (anchored at the start, literal characters escaped — see
 * globToRegexSource) only if it starts with that. Used as a pre-check before the regex,
 * which still decides.
 */
export function globLiteralPrefix(glob: string): string {
  let i = 0;
  while (i < glob.length && glob[i] !== "*" && glob[i] !== "?") i++;
  return glob.slice(0, i);
}

/** True if bytes u8[at, end) start with one of the prefixes (compared as char codes). */
export function startsWithAny(u8: Uint8Array, at: number, end: number, prefixes: readonly string[]): boolean {
  for (const p of prefixes) {
    if (end - at < p.length) continue;
    let i = 0;
    while (i < p.length && u8[at + i] === p.charCodeAt(i)) i++;
    if (i === p.length) return true;
  }
  return false;
}
