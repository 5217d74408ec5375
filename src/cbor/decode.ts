import { Cursor } from "../core/cursor.js";
import { ExecgateError } from "../core/errors.js";
import {
  type CborKey,
  CborTag,
  type CborValue,
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_ITEMS,
  DEFAULT_MAX_LENGTH,
  type DecodeLimits,
} from "./types.js";

/**
 * Strict, bounded decoder for the deterministic subset of CBOR (RFC 8949 §4.2.1). Anything a
 * deterministic encoder could not have produced is rejected, so decode→encode is byte-identical:
 * - non-preferred arguments (e.g. 0x18 0x05 for 5), §4.2.1 / §4.2.2 — "malformed";
 * - indefinite lengths (additional info 31) and reserved additional info 28–30 — "malformed";
 * - map keys not in strictly ascending bytewise order of their encodings (unsorted or duplicate);
 * - floats and simple values other than false/true/null — "unsupported";
 * - text strings that are not valid UTF-8 (§3.1) — "malformed";
 * - map keys other than integers and text strings — "unsupported" (see types.ts);
 * - trailing bytes after the top-level item — "trailing_bytes".
 * Bounds: nesting depth, total item count and per-string length are capped (DecodeLimits), and
 * an array/map count is checked against the bytes left before anything is allocated.
 * Only ExecgateError is thrown.
 */

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

interface State {
  readonly c: Cursor;
  readonly maxDepth: number;
  readonly maxItems: number;
  readonly maxLength: number;
  items: number;
}

/** Reads the argument of a head; `info` is the low 5 bits of the initial byte. */
function readArgument(st: State, info: number): number | bigint {
  const c = st.c;
  if (info < 24) return info;
  switch (info) {
    case 24: {
      const v = c.u8("cbor argument");
      if (v < 24) throw nonPreferred(c);
      return v;
    }
    case 25: {
      const v = c.u16("cbor argument");
      if (v < 0x100) throw nonPreferred(c);
      return v;
    }
    case 26: {
      const v = c.u32("cbor argument");
      if (v < 0x10000) throw nonPreferred(c);
      return v;
    }
    case 27: {
      const v = c.u64("cbor argument");
      if (v < 0x100000000n) throw nonPreferred(c);
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    case 31:
      throw new ExecgateError("malformed", "cbor: indefinite length is not deterministic (RFC 8949 §4.2.1)", {
        offset: c.offset - 1,
      });
    default:
      throw new ExecgateError("malformed", `cbor: reserved additional information ${info}`, {
        offset: c.offset - 1,
      });
  }
}

function nonPreferred(c: Cursor): ExecgateError {
  return new ExecgateError("malformed", "cbor: argument not in shortest form (RFC 8949 §4.2.1)", {
    offset: c.offset,
  });
}

/** A length or count: must fit the bytes left (each item takes at least one byte). */
function readCount(st: State, info: number, what: string): number {
  const arg = readArgument(st, info);
  if (typeof arg === "bigint" || arg > st.c.remaining) {
    throw new ExecgateError("truncated", `cbor: ${what} ${arg} exceeds the ${st.c.remaining} bytes left`, {
      offset: st.c.offset,
    });
  }
  return arg;
}

function countItem(st: State): void {
  st.items += 1;
  if (st.items > st.maxItems) {
    throw new ExecgateError("limit_exceeded", `cbor: more than ${st.maxItems} data items`, {
      offset: st.c.offset,
    });
  }
}

/** Checks a string head and skips its bytes; returns the offset where they start. */
function skipString(st: State, info: number, what: string): { at: number; n: number } {
  const n = readCount(st, info, `${what} length`);
  if (n > st.maxLength) {
    throw new ExecgateError("limit_exceeded", `cbor: ${what} length ${n} > ${st.maxLength}`, {
      offset: st.c.offset,
    });
  }
  const at = st.c.offset;
  st.c.skip(n, what);
  return { at, n };
}

function decodeText(buf: Uint8Array, at: number, n: number): string {
  // ASCII fast path straight from the input (no subarray): the common case, trivially valid UTF-8.
  if (n < 64) {
    let s = "";
    for (let i = at; i < at + n; i++) {
      const b = buf[i]!;
      if (b > 0x7f) return decodeUtf8(buf.subarray(at, at + n), at);
      s += String.fromCharCode(b);
    }
    return s;
  }
  return decodeUtf8(buf.subarray(at, at + n), at);
}

function decodeUtf8(bytes: Uint8Array, offset: number): string {
  try {
    return utf8.decode(bytes);
  } catch (e) {
    throw new ExecgateError("malformed", "cbor: text string is not valid UTF-8", { offset }, { cause: e });
  }
}

function readItem(st: State, depth: number): CborValue {
  if (depth > st.maxDepth) {
    throw new ExecgateError("limit_exceeded", `cbor: nesting deeper than ${st.maxDepth}`, {
      offset: st.c.offset,
    });
  }
  countItem(st);
  const c = st.c;
  const initial = c.u8("cbor initial byte");
  const major = initial >> 5;
  const info = initial & 0x1f;
  switch (major) {
    case 0:
      return readArgument(st, info);
    case 1: {
      const arg = readArgument(st, info);
      if (typeof arg === "number") {
        // -1 - arg is exact while arg is a safe integer, but may leave the safe range.
        const v = -1 - arg;
        return Number.isSafeInteger(v) ? v : -1n - BigInt(arg);
      }
      return -1n - arg;
    }
    case 2: {
      const { at, n } = skipString(st, info, "byte string");
      return c.bytes.slice(at, at + n);
    }
    case 3: {
      const { at, n } = skipString(st, info, "text string");
      return decodeText(c.bytes, at, n);
    }
    case 4: {
      const n = readCount(st, info, "array count");
      const out: CborValue[] = new Array<CborValue>(n);
      for (let i = 0; i < n; i++) out[i] = readItem(st, depth + 1);
      return out;
    }
    case 5:
      return readMap(st, info, depth);
    case 6: {
      const tag = readArgument(st, info);
      if (typeof tag === "bigint") {
        throw new ExecgateError("unsupported", "cbor: tag number above 2^53", { offset: c.offset });
      }
      return new CborTag(tag, readItem(st, depth + 1));
    }
    default:
      return readSimple(st, info);
  }
}

function readMap(st: State, info: number, depth: number): Map<CborKey, CborValue> {
  const c = st.c;
  // Each entry takes at least two bytes; readCount checks one, this checks the other.
  const n = readCount(st, info, "map count");
  if (n * 2 > c.remaining) {
    throw new ExecgateError("truncated", `cbor: map count ${n} exceeds the bytes left`, { offset: c.offset });
  }
  const out = new Map<CborKey, CborValue>();
  let prevStart = -1;
  let prevEnd = -1;
  for (let i = 0; i < n; i++) {
    const keyStart = c.offset;
    const key = readItem(st, depth + 1);
    const keyEnd = c.offset;
    if (typeof key !== "number" && typeof key !== "bigint" && typeof key !== "string") {
      throw new ExecgateError("unsupported", "cbor: map keys must be integers or text strings", {
        offset: keyStart,
      });
    }
    if (prevStart >= 0 && compareRange(c.bytes, prevStart, prevEnd, keyStart, keyEnd) >= 0) {
      throw new ExecgateError(
        "malformed",
        "cbor: map keys not in strictly ascending bytewise order (unsorted or duplicate, RFC 8949 §4.2.1)",
        { offset: keyStart },
      );
    }
    prevStart = keyStart;
    prevEnd = keyEnd;
    out.set(key, readItem(st, depth + 1));
  }
  return out;
}

function compareRange(b: Uint8Array, as: number, ae: number, bs: number, be: number): number {
  const la = ae - as;
  const lb = be - bs;
  const n = Math.min(la, lb);
  for (let i = 0; i < n; i++) {
    const d = b[as + i]! - b[bs + i]!;
    if (d !== 0) return d;
  }
  return la - lb;
}

function readSimple(st: State, info: number): CborValue {
  switch (info) {
    case 20:
      return false;
    case 21:
      return true;
    case 22:
      return null;
    case 25:
    case 26:
    case 27:
      throw new ExecgateError("unsupported", "cbor: floating-point values are not supported", {
        offset: st.c.offset - 1,
      });
    case 31:
      throw new ExecgateError("malformed", "cbor: unexpected break code", { offset: st.c.offset - 1 });
    default:
      throw new ExecgateError("unsupported", `cbor: simple value (info ${info}) is not supported`, {
        offset: st.c.offset - 1,
      });
  }
}

/** Decodes exactly one deterministic-CBOR item occupying all of `bytes`. */
export function decode(bytes: Uint8Array, limits: DecodeLimits = {}): CborValue {
  const st: State = {
    c: new Cursor(bytes),
    maxDepth: limits.maxDepth ?? DEFAULT_MAX_DEPTH,
    maxItems: limits.maxItems ?? DEFAULT_MAX_ITEMS,
    maxLength: limits.maxLength ?? DEFAULT_MAX_LENGTH,
    items: 0,
  };
  const v = readItem(st, 1);
  st.c.end("cbor item");
  return v;
}
