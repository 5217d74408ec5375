import { ExecgateError } from "../core/errors.js";
import { concatBytes } from "../core/hex.js";
import { algByName, digestLatin1, type HashAlg, latin1Equals } from "./hash.js";
import { IMA_EVENT_NAME_LEN_MAX } from "./ima-template.js";

/** Bounds: a real list has ~10^3–10^6 entries of a few hundred bytes. */
export const MAX_IMA_ENTRIES = 5_000_000;
export const MAX_TEMPLATE_DATA = 1024 * 1024;
export const MAX_ASCII_LINE = 2 * 1024 * 1024 + 1024;

export type ImaFormat = "ascii" | "binary";

/** One measurement-list entry, with its template data re-encoded exactly as the kernel hashes it. */
export interface ImaEntry {
  readonly seq: number;
  /** Byte offset just after this record in the whole list (the incremental position). */
  readonly end: number;
  readonly pcr: number;
  readonly template: string;
  /** The template hash as listed; all zeros for a violation entry. */
  readonly templateHash: Uint8Array;
  /**
   * The algorithm that reproduced the template hash from the template data: the list's (by
   * hash size), or SM3 for a 32-byte hash that SHA-256 did not reproduce. The list's for a
   * violation entry, whose hash is not checked.
   */
  readonly templateHashAlg: HashAlg;
  /** The bytes the template hash is computed over (ima_calc_field_array_hash). */
  readonly templateData: Uint8Array;
  /** True for a violation ("invalidated") entry: the PCR was extended with all 0xFF. */
  readonly violation: boolean;
  /** File digest algorithm from d-ng ("sha256" …); "sha1"/"md5" for the legacy `d` field. */
  readonly digestAlg: string;
  readonly fileDigest: Uint8Array;
  /** File name (n / n-ng) or buffer name (ima-buf: the keyring or "kexec-cmdline" …). */
  readonly name: string;
  readonly sig: Uint8Array | undefined;
  readonly buf: Uint8Array | undefined;
  /** Writes the template hash into `out` at `at` (no view made: the replay's hot path). */
  copyTemplateHash(out: Uint8Array, at: number): void;
  /** True if the file digest, as lowercase hex, is `hex` (compared in place, no view or string made). */
  fileDigestHexEquals(hex: string): boolean;
}

export const utf8 = new TextDecoder("utf-8");

/**
 * The bytes of a list twice: as a Uint8Array (its subarrays are the entry's views) and as a
 * Buffer over the same memory (Buffer#toString(enc, start, end) decodes a range without making
 * a view, ~3× cheaper than String.fromCharCode.apply on one).
 */
export interface ListBytes {
  readonly u8: Uint8Array;
  readonly buf: Buffer;
}

export function listBytes(b: Uint8Array): ListBytes {
  return {
    u8: new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
    buf: Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  };
}

/** UTF-8 text of bytes [start, end): ASCII (every real path name) decoded as latin1, the same chars. */
export function text(src: ListBytes, start: number, end: number): string {
  const u8 = src.u8;
  for (let i = start; i < end; i++) if (u8[i]! >= 0x80) return utf8.decode(u8.subarray(start, end));
  return src.buf.toString("latin1", start, end);
}
export const enc = new TextEncoder();

export function u32le(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

/** A template hash algorithm from its size (binary_runtime_measurements[_<alg>]). */
export function templateHashAlgBySize(size: number): HashAlg {
  const name =
    size === 20 ? "sha1" : size === 32 ? "sha256" : size === 48 ? "sha384" : size === 64 ? "sha512" : "";
  const a = algByName(name);
  if (!a) throw new ExecgateError("unsupported", `template hash size ${size}`);
  return a;
}

const EMPTY = new Uint8Array(0);
const EMPTY_LIST = listBytes(EMPTY);

/**
 * The decoded fields of one entry. The parsers fill one of these per list (reset per entry)
 * and copy it into the entry, so decoding allocates nothing but the views. The name is kept
 * as a byte range (nameSrc[nameAt, nameEnd)) and decoded by whoever needs the string.
 */
export class Decoded {
  digestAlg = "";
  /** The file digest is digestSrc[digestAt, digestAt + digestLen). */
  digestSrc: Uint8Array = EMPTY;
  digestAt = 0;
  digestLen = 0;
  nameSrc: ListBytes = EMPTY_LIST;
  nameAt = 0;
  nameEnd = 0;
  sig: Uint8Array | undefined = undefined;
  buf: Uint8Array | undefined = undefined;
  reset(): void {
    this.digestAlg = "";
    this.digestSrc = EMPTY;
    this.digestAt = 0;
    this.digestLen = 0;
    this.nameSrc = EMPTY_LIST;
    this.nameAt = 0;
    this.nameEnd = 0;
    this.sig = undefined;
    this.buf = undefined;
  }
  /** The name (n / n-ng) as a string. */
  name(): string {
    return text(this.nameSrc, this.nameAt, this.nameEnd);
  }
}

/**
 * Decodes one template field, bytes [start, end) of `src`, into `d`.
 * d-ng: "<alg>:\0<digest>"; d-ngv2: "<type>:<alg>:\0<digest>" (ima_template_lib.c).
 */
export function decodeField(d: Decoded, id: string, src: ListBytes, start: number, end: number): void {
  const u8 = src.u8;
  switch (id) {
    case "d":
      d.digestAlg = end - start === 16 ? "md5" : "sha1";
      d.digestSrc = u8;
      d.digestAt = start;
      d.digestLen = end - start;
      break;
    case "d-ng":
    case "d-ngv2": {
      let nul = start;
      while (nul < end && u8[nul] !== 0) nul++;
      if (nul === end || nul - start < 1 || u8[nul - 1] !== 0x3a)
        throw new ExecgateError("malformed", "d-ng field without 'alg:\\0'");
      const prefix = algPrefix(src, start, nul - 1);
      d.digestAlg = id === "d-ngv2" ? prefix.slice(prefix.indexOf(":") + 1) : prefix;
      d.digestSrc = u8;
      d.digestAt = nul + 1;
      d.digestLen = end - nul - 1;
      break;
    }
    case "n":
      d.nameSrc = src;
      d.nameAt = start;
      d.nameEnd = end;
      break;
    case "n-ng":
      d.nameSrc = src;
      d.nameAt = start;
      d.nameEnd = end > start && u8[end - 1] === 0 ? end - 1 : end;
      break;
    case "sig":
      d.sig = u8.subarray(start, end);
      break;
    case "buf":
      d.buf = u8.subarray(start, end);
      break;
    default:
      break;
  }
}

/** The checks on a whole entry's fields once decoded. */
export function checkDecoded(template: string, d: Decoded): void {
  if (template === "ima" && d.name().length > IMA_EVENT_NAME_LEN_MAX) {
    throw new ExecgateError("malformed", "ima template name longer than IMA_EVENT_NAME_LEN_MAX");
  }
}

/** Field values as separate arrays (the ASCII parser and the legacy `ima` template) → `d`. */
export function decodeFields(
  d: Decoded,
  template: string,
  fields: readonly string[],
  values: readonly Uint8Array[],
): void {
  d.reset();
  for (let i = 0; i < fields.length; i++) {
    const v = values[i]!;
    decodeField(d, fields[i]!, listBytes(v), 0, v.length);
  }
  checkDecoded(template, d);
}

/**
 * A verified entry of a binary list (see checkTemplateHash), as offsets into the list bytes.
 * templateHash, templateData, fileDigest and name are made on access: a 100k-entry list that
 * retained three typed-array views per entry spent more time in the garbage collector than in
 * parsing (measured: ~1 µs per entry against ~0.35 µs for numbers and short-lived views), and
 * a retained name string per entry was another ~0.15 µs of collector time. The hot paths
 * (replay, allowlist) use copyTemplateHash and fileDigestHexEquals, which make nothing; a
 * consumer reads `name` once per use (each read decodes it).
 */
export class ImaRecord implements ImaEntry {
  readonly violation: boolean;
  readonly digestAlg: string;
  readonly sig: Uint8Array | undefined;
  readonly buf: Uint8Array | undefined;
  /** The file digest is src.u8[digestAt, digestAt + digestLen); the name's bytes src.u8[nameAt, nameEnd). */
  readonly digestAt: number;
  readonly digestLen: number;
  readonly nameAt: number;
  readonly nameEnd: number;

  /** `d` must have been decoded from `src` (its digest and name are offsets into it). */
  constructor(
    readonly seq: number,
    readonly end: number,
    readonly pcr: number,
    readonly template: string,
    readonly src: ListBytes,
    private readonly hashAt: number,
    private readonly dataAt: number,
    private readonly dataLen: number,
    d: Decoded,
    readonly templateHashAlg: HashAlg,
  ) {
    this.violation = isZero(src.u8, hashAt, hashAt + templateHashAlg.size);
    this.digestAlg = d.digestAlg;
    this.sig = d.sig;
    this.buf = d.buf;
    this.digestAt = d.digestAt;
    this.digestLen = d.digestLen;
    this.nameAt = d.nameAt;
    this.nameEnd = d.nameEnd;
  }

  // The template hash is templateHashAlg.size bytes: the list's size, which SM3 shares.
  get templateHash(): Uint8Array {
    return this.src.u8.subarray(this.hashAt, this.hashAt + this.templateHashAlg.size);
  }

  get templateData(): Uint8Array {
    return this.src.u8.subarray(this.dataAt, this.dataAt + this.dataLen);
  }

  get fileDigest(): Uint8Array {
    return this.src.u8.subarray(this.digestAt, this.digestAt + this.digestLen);
  }

  get name(): string {
    return text(this.src, this.nameAt, this.nameEnd);
  }

  copyTemplateHash(out: Uint8Array, at: number): void {
    const u8 = this.src.u8;
    const from = this.hashAt;
    const n = this.templateHashAlg.size;
    for (let i = 0; i < n; i++) out[at + i] = u8[from + i]!;
  }

  fileDigestHexEquals(hex: string): boolean {
    return hexEquals(hex, this.src.u8, this.digestAt, this.digestLen);
  }
}

/** An entry whose template hash and data are arrays of its own (ASCII lists, the `ima` template). */
class ImaOwnedEntry implements ImaEntry {
  readonly violation: boolean;
  readonly digestAlg: string;
  readonly fileDigest: Uint8Array;
  readonly name: string;
  readonly sig: Uint8Array | undefined;
  readonly buf: Uint8Array | undefined;

  constructor(
    readonly seq: number,
    readonly end: number,
    readonly pcr: number,
    readonly template: string,
    readonly templateHash: Uint8Array,
    readonly templateData: Uint8Array,
    d: Decoded,
    readonly templateHashAlg: HashAlg,
  ) {
    this.violation = isZero(templateHash);
    this.digestAlg = d.digestAlg;
    this.fileDigest = d.digestSrc.subarray(d.digestAt, d.digestAt + d.digestLen);
    this.name = d.name();
    this.sig = d.sig;
    this.buf = d.buf;
  }

  copyTemplateHash(out: Uint8Array, at: number): void {
    out.set(this.templateHash, at);
  }

  fileDigestHexEquals(hex: string): boolean {
    return hexEquals(hex, this.fileDigest, 0, this.fileDigest.length);
  }
}

/**
 * An entry whose template hash and data are arrays of their own (ASCII lists, the `ima`
 * template), its template hash checked with the list's algorithm `alg`.
 */
export function makeEntry(
  seq: number,
  end: number,
  pcr: number,
  template: string,
  templateHash: Uint8Array,
  templateData: Uint8Array,
  d: Decoded,
  alg: HashAlg,
  at: number,
): ImaEntry {
  const hashedWith = checkTemplateHash(alg, templateData, templateHash, 0, seq, at);
  return new ImaOwnedEntry(seq, end, pcr, template, templateHash, templateData, d, hashedWith);
}

const HEX_CHAR = Uint8Array.from("0123456789abcdef", (c) => c.charCodeAt(0));

/** Lowercase hex equals b[at, at + len), compared in place. */
export function hexEquals(hex: string, b: Uint8Array, at: number, len: number): boolean {
  if (hex.length !== 2 * len) return false;
  for (let i = 0; i < len; i++) {
    const x = b[at + i]!;
    if (hex.charCodeAt(2 * i) !== HEX_CHAR[x >> 4] || hex.charCodeAt(2 * i + 1) !== HEX_CHAR[x & 15])
      return false;
  }
  return true;
}

/** Template names and digest algorithm names repeat on every record: decode once per change. */
class RepeatedText {
  private bytes: Uint8Array = EMPTY;
  private value = "";
  get(src: ListBytes, start: number, end: number): string {
    const u8 = src.u8;
    const last = this.bytes;
    if (end - start === last.length) {
      let i = 0;
      while (i < last.length && u8[start + i] === last[i]) i++;
      if (i === last.length) return this.value;
    }
    this.value = text(src, start, end);
    this.bytes = u8.slice(start, end);
    return this.value;
  }
}

const templateNames = new RepeatedText();
const algPrefixes = new RepeatedText();

export function templateName(src: ListBytes, start: number, end: number): string {
  return templateNames.get(src, start, end);
}

function algPrefix(src: ListBytes, start: number, end: number): string {
  return algPrefixes.get(src, start, end);
}

/** Template data as hashed: fields with u32 LE lengths; the legacy `ima` template pads n to 256 bytes. */
export function templateDataFor(template: string, values: readonly Uint8Array[]): Uint8Array {
  if (template === "ima") {
    const name = new Uint8Array(IMA_EVENT_NAME_LEN_MAX + 1);
    name.set(values[1]!.subarray(0, IMA_EVENT_NAME_LEN_MAX));
    return concatBytes(values[0]!, name);
  }
  const parts: Uint8Array[] = [];
  for (const v of values) parts.push(u32le(v.length), v);
  return concatBytes(...parts);
}

export function isZero(b: Uint8Array, start = 0, end = b.length): boolean {
  for (let i = start; i < end; i++) if (b[i] !== 0) return false;
  return true;
}

const SM3 = algByName("sm3_256")!;

/**
 * Checks the template hash listed at hashSrc[hashAt, hashAt + alg.size) against the template
 * data, and returns the algorithm that reproduced it: `alg` (the list's), or SM3 for a 32-byte
 * hash (ascii_runtime_measurements_sm3). A violation entry (all-zero hash) is not checked.
 */
export function checkTemplateHash(
  alg: HashAlg,
  data: Uint8Array,
  hashSrc: Uint8Array,
  hashAt: number,
  seq: number,
  at: number,
): HashAlg {
  if (isZero(hashSrc, hashAt, hashAt + alg.size)) return alg;
  if (latin1Equals(digestLatin1(alg, data), hashSrc, hashAt)) return alg;
  if (alg.size === 32 && latin1Equals(digestLatin1(SM3, data), hashSrc, hashAt)) return SM3;
  throw new ExecgateError("verification_failed", `IMA entry ${seq}: template hash does not match its data`, {
    offset: at,
    seq,
    check: "template_hash",
  });
}

export interface ImaChunk {
  readonly entries: readonly ImaEntry[];
  /** Bytes consumed (complete records only). */
  readonly consumed: number;
  /** The template hash algorithm of the list (from its size). */
  readonly templateHashAlg: HashAlg | undefined;
}

export interface ImaParseOptions {
  /** Absolute offset of `bytes` in the list, and the seq of its first entry. */
  readonly base?: number;
  readonly firstSeq?: number;
  /** Template hash size of a binary list (20 for binary_runtime_measurements); detected if absent. */
  readonly templateHashSize?: number;
}

/** Detects the template hash size of a binary list from its first record. */
