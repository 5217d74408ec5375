import { ExecgateError } from "../core/errors.js";
import { type CborKey, CborTag, type CborValue } from "./types.js";

/**
 * Deterministic CBOR encoder — RFC 8949 §4.2.1 "core deterministic encoding requirements":
 * preferred (shortest) argument encoding for integers, lengths and tags; definite lengths only;
 * map keys sorted by the bytewise lexicographic order of their deterministic encodings; no
 * duplicate keys. Throws ExecgateError("malformed") for values outside the supported model
 * (non-integer numbers, out-of-range integers, unsupported key types, duplicate keys).
 */

const MAJOR_UINT = 0;
const MAJOR_NINT = 1;
const MAJOR_BYTES = 2;
const MAJOR_TEXT = 3;
const MAJOR_ARRAY = 4;
const MAJOR_MAP = 5;
const MAJOR_TAG = 6;
const SIMPLE_FALSE = 0xf4;
const SIMPLE_TRUE = 0xf5;
const SIMPLE_NULL = 0xf6;

const TWO_64 = 1n << 64n;
const MAX_ENCODE_DEPTH = 256;

/** Encoded text-string keys of plain objects, reused across calls (object shapes repeat). */
const KEY_CACHE = new Map<string, Uint8Array>();
const KEY_CACHE_MAX = 4096;
const KEY_CACHE_MAX_KEY_LENGTH = 64;

class Sink {
  buf: Uint8Array;
  view: DataView;
  pos = 0;

  constructor(initial: number) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
  }

  reset(size: number): void {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** Head of a data item: major type and argument in its shortest form (§4.2.1). */
  head(major: number, arg: number): void {
    const mt = major << 5;
    if (arg < 24) {
      this.ensure(1);
      this.buf[this.pos++] = mt | arg;
    } else if (arg < 0x100) {
      this.ensure(2);
      this.buf[this.pos++] = mt | 24;
      this.buf[this.pos++] = arg;
    } else if (arg < 0x10000) {
      this.ensure(3);
      this.buf[this.pos++] = mt | 25;
      this.view.setUint16(this.pos, arg);
      this.pos += 2;
    } else if (arg < 0x100000000) {
      this.ensure(5);
      this.buf[this.pos++] = mt | 26;
      this.view.setUint32(this.pos, arg);
      this.pos += 4;
    } else {
      this.ensure(9);
      this.buf[this.pos++] = mt | 27;
      this.view.setBigUint64(this.pos, BigInt(arg));
      this.pos += 8;
    }
  }

  headBig(major: number, arg: bigint): void {
    if (arg <= 0xffffffffn) {
      this.head(major, Number(arg));
      return;
    }
    this.ensure(9);
    this.buf[this.pos++] = (major << 5) | 27;
    this.view.setBigUint64(this.pos, arg);
    this.pos += 8;
  }

  bytes(b: Uint8Array): void {
    const n = b.length;
    this.ensure(n);
    if (n <= 64) {
      // TypedArray.prototype.set has a fixed cost that dominates for digests and keys.
      const buf = this.buf;
      let p = this.pos;
      for (let i = 0; i < n; i++) buf[p++] = b[i]!;
      this.pos = p;
      return;
    }
    this.buf.set(b, this.pos);
    this.pos += n;
  }

  text(s: string): void {
    // Fast path for ASCII, which is almost every string we write (names, hex, reasons).
    const n = s.length;
    if (n < 24) {
      let ascii = true;
      for (let i = 0; i < n; i++) {
        if (s.charCodeAt(i) > 0x7f) {
          ascii = false;
          break;
        }
      }
      if (ascii) {
        this.ensure(1 + n);
        this.buf[this.pos++] = (MAJOR_TEXT << 5) | n;
        for (let i = 0; i < n; i++) this.buf[this.pos++] = s.charCodeAt(i);
        return;
      }
    }
    const utf8 = utf8Encode(s);
    this.head(MAJOR_TEXT, utf8.length);
    this.bytes(utf8);
  }
}

const textEncoder = new TextEncoder();
/** In a `u` regexp a valid surrogate pair is one code point, so this matches only lone halves. */
const LONE_SURROGATE = /\p{Cs}/u;

function utf8Encode(s: string): Uint8Array {
  if (LONE_SURROGATE.test(s)) {
    throw new ExecgateError(
      "malformed",
      "cbor encode: text string is not well-formed Unicode (lone surrogate)",
    );
  }
  return textEncoder.encode(s);
}

/** Encoded small integer keys (COSE and CWT maps use -24..255). */
const INT_KEYS: Uint8Array[] = [];
const INT_KEY_MIN = -24;
const INT_KEY_MAX = 255;

function encodeKey(key: CborKey): Uint8Array {
  const small = typeof key === "number" && Number.isInteger(key) && key >= INT_KEY_MIN && key <= INT_KEY_MAX;
  if (small && INT_KEYS[key - INT_KEY_MIN] !== undefined) return INT_KEYS[key - INT_KEY_MIN]!;
  const s = new Sink(16);
  writeValue(s, key, 0);
  const enc = s.buf.slice(0, s.pos);
  if (small) INT_KEYS[key - INT_KEY_MIN] = enc;
  return enc;
}

function encodeTextKey(key: string): Uint8Array {
  const cached = KEY_CACHE.get(key);
  if (cached !== undefined) return cached;
  const enc = encodeKey(key);
  if (key.length <= KEY_CACHE_MAX_KEY_LENGTH && KEY_CACHE.size < KEY_CACHE_MAX) KEY_CACHE.set(key, enc);
  return enc;
}

/** RFC 8949 §4.2.1: keys sorted by bytewise lexicographic order of their encodings. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function writeEntries(s: Sink, entries: [Uint8Array, CborValue][], depth: number): void {
  entries.sort((x, y) => compareBytes(x[0], y[0]));
  for (let i = 1; i < entries.length; i++) {
    if (compareBytes(entries[i - 1]![0], entries[i]![0]) === 0) {
      throw new ExecgateError("malformed", "cbor encode: duplicate map key");
    }
  }
  s.head(MAJOR_MAP, entries.length);
  for (const [k, v] of entries) {
    s.bytes(k);
    writeValue(s, v, depth + 1);
  }
}

function writeInt(s: Sink, v: number): void {
  if (!Number.isSafeInteger(v)) {
    throw new ExecgateError(
      "malformed",
      `cbor encode: ${v} is not a safe integer (floats are not supported)`,
    );
  }
  if (v >= 0) s.head(MAJOR_UINT, v);
  else s.head(MAJOR_NINT, -1 - v);
}

function writeBigInt(s: Sink, v: bigint): void {
  if (v >= 0n) {
    if (v >= TWO_64) throw new ExecgateError("malformed", "cbor encode: integer above 2^64-1");
    s.headBig(MAJOR_UINT, v);
  } else {
    const arg = -1n - v;
    if (arg >= TWO_64) throw new ExecgateError("malformed", "cbor encode: integer below -2^64");
    s.headBig(MAJOR_NINT, arg);
  }
}

function writeValue(s: Sink, v: CborValue, depth: number): void {
  if (depth > MAX_ENCODE_DEPTH) throw new ExecgateError("limit_exceeded", "cbor encode: nesting too deep");
  switch (typeof v) {
    case "number":
      writeInt(s, v);
      return;
    case "bigint":
      writeBigInt(s, v);
      return;
    case "string":
      s.text(v);
      return;
    case "boolean":
      s.ensure(1);
      s.buf[s.pos++] = v ? SIMPLE_TRUE : SIMPLE_FALSE;
      return;
    case "object":
      break;
    default:
      throw new ExecgateError("malformed", `cbor encode: unsupported value of type ${typeof v}`);
  }
  if (v === null) {
    s.ensure(1);
    s.buf[s.pos++] = SIMPLE_NULL;
  } else if (v instanceof Uint8Array) {
    s.head(MAJOR_BYTES, v.length);
    s.bytes(v);
  } else if (Array.isArray(v)) {
    const arr = v as readonly CborValue[];
    s.head(MAJOR_ARRAY, arr.length);
    for (const item of arr) writeValue(s, item, depth + 1);
  } else if (v instanceof Map) {
    const entries: [Uint8Array, CborValue][] = [];
    for (const [k, val] of v as ReadonlyMap<CborKey, CborValue>) {
      if (typeof k === "string") entries.push([encodeTextKey(k), val]);
      else if (typeof k === "number" || typeof k === "bigint") entries.push([encodeKey(k), val]);
      else throw new ExecgateError("malformed", "cbor encode: map keys must be integers or text strings");
    }
    writeEntries(s, entries, depth);
  } else if (v instanceof CborTag) {
    if (!Number.isSafeInteger(v.tag) || v.tag < 0) {
      throw new ExecgateError("malformed", `cbor encode: invalid tag ${v.tag}`);
    }
    s.head(MAJOR_TAG, v.tag);
    writeValue(s, v.value, depth + 1);
  } else {
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) {
      throw new ExecgateError(
        "malformed",
        "cbor encode: unsupported object (use Map, array, Uint8Array or a plain object)",
      );
    }
    writeObject(s, v as Readonly<Record<string, CborValue | undefined>>, depth);
  }
}

function isAscii(k: string): boolean {
  for (let i = 0; i < k.length; i++) if (k.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * For ASCII text keys the bytewise order of their encodings (§4.2.1) is: shorter first (the
 * length is in the head), then by code unit — so plain objects are sorted without encoding keys.
 */
function compareAsciiKeys(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

function writeObject(s: Sink, v: Readonly<Record<string, CborValue | undefined>>, depth: number): void {
  const keys: string[] = [];
  let ascii = true;
  for (const k of Object.keys(v)) {
    if (v[k] === undefined) continue;
    keys.push(k);
    if (ascii && !isAscii(k)) ascii = false;
  }
  if (!ascii) {
    const entries: [Uint8Array, CborValue][] = keys.map((k) => [encodeTextKey(k), v[k] as CborValue]);
    writeEntries(s, entries, depth);
    return;
  }
  // Insertion sort: maps here have a handful of keys, where it beats Array.prototype.sort.
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i]!;
    let j = i - 1;
    while (j >= 0 && compareAsciiKeys(keys[j]!, k) > 0) {
      keys[j + 1] = keys[j]!;
      j--;
    }
    keys[j + 1] = k;
  }
  s.head(MAJOR_MAP, keys.length);
  for (const k of keys) {
    s.text(k);
    writeValue(s, v[k] as CborValue, depth + 1);
  }
}

/**
 * One scratch sink reused by every top-level encode (encoding is synchronous and never
 * re-enters), so a call allocates only its result. Nested key encodings use their own sinks.
 */
const scratch = new Sink(4096);
const SCRATCH_KEEP_BYTES = 1 << 20;

/** Encodes one value in the deterministic encoding of RFC 8949 §4.2.1. */
export function encode(value: CborValue): Uint8Array {
  scratch.pos = 0;
  try {
    writeValue(scratch, value, 0);
    return scratch.buf.slice(0, scratch.pos);
  } finally {
    // Do not pin a huge buffer after one large encode.
    if (scratch.buf.length > SCRATCH_KEEP_BYTES) scratch.reset(4096);
  }
}

const SLAB_BYTES = 64 * 1024;
let slab = new ArrayBuffer(SLAB_BYTES);
let slabUsed = 0;

/**
 * A streaming writer for encoders that know their layout (the lineage entry schema): the caller
 * writes heads and items in order and is responsible for the deterministic key order of its maps
 * (RFC 8949 §4.2.1). Items are encoded exactly as encode() encodes them, so a caller that writes
 * keys in sorted order produces encode()'s bytes without building an object tree.
 */
export class CborWriter {
  private readonly sink = new Sink(512);

  mapHead(n: number): void {
    this.sink.head(MAJOR_MAP, n);
  }

  arrayHead(n: number): void {
    this.sink.head(MAJOR_ARRAY, n);
  }

  int(v: number | bigint): void {
    if (typeof v === "bigint") writeBigInt(this.sink, v);
    else writeInt(this.sink, v);
  }

  text(v: string): void {
    this.sink.text(v);
  }

  byteString(v: Uint8Array): void {
    this.sink.head(MAJOR_BYTES, v.length);
    this.sink.bytes(v);
  }

  bool(v: boolean): void {
    this.sink.ensure(1);
    this.sink.buf[this.sink.pos++] = v ? SIMPLE_TRUE : SIMPLE_FALSE;
  }

  /** Bytes that already are a complete encoded item (a pre-encoded map key). */
  raw(encoded: Uint8Array): void {
    this.sink.bytes(encoded);
  }

  /**
   * The bytes written since the last finish(), as a view into a shared 64 KiB slab (a fresh
   * ArrayBuffer per result costs more than encoding a small entry); the writer is empty again
   * afterwards. Callers must use byteOffset/byteLength, as with any view.
   */
  finish(): Uint8Array {
    const n = this.sink.pos;
    let out: Uint8Array;
    if (n > SLAB_BYTES / 4) {
      out = this.sink.buf.slice(0, n);
    } else {
      if (slabUsed + n > SLAB_BYTES) {
        slab = new ArrayBuffer(SLAB_BYTES);
        slabUsed = 0;
      }
      out = new Uint8Array(slab, slabUsed, n);
      out.set(this.sink.buf.subarray(0, n));
      slabUsed += (n + 7) & ~7;
    }
    if (this.sink.buf.length > SCRATCH_KEEP_BYTES) this.sink.reset(512);
    else this.sink.pos = 0;
    return out;
  }

  /** Drops whatever was written (after a failed encode). */
  clear(): void {
    this.sink.pos = 0;
  }
}

/** The deterministic encoding of a text map key (cached for short keys). */
export function encodeMapKey(key: string): Uint8Array {
  return encodeTextKey(key);
}
