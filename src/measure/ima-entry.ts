import { ExecgateError } from "../core/errors.js";
import { bytesEqual, concatBytes } from "../core/hex.js";
import { algByName, digest, type HashAlg } from "./hash.js";
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
}

export const utf8 = new TextDecoder("utf-8");

/** UTF-8 decode with an ASCII fast path (TextDecoder costs ~1 µs per short string). */
export function text(b: Uint8Array, length = b.length): string {
  if (length <= 256) {
    let ascii = true;
    for (let i = 0; i < length; i++) {
      if (b[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      const view = length === b.length ? b : b.subarray(0, length);
      return String.fromCharCode.apply(null, view as unknown as number[]);
    }
  }
  return utf8.decode(length === b.length ? b : b.subarray(0, length));
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

export interface Decoded {
  digestAlg: string;
  fileDigest: Uint8Array;
  name: string;
  sig: Uint8Array | undefined;
  buf: Uint8Array | undefined;
}

/** d-ng: "<alg>:\0<digest>"; d-ngv2: "<type>:<alg>:\0<digest>" (ima_template_lib.c). */
function decodeDigestNg(field: Uint8Array, v2: boolean): { alg: string; digest: Uint8Array } {
  const nul = field.indexOf(0);
  if (nul < 1 || field[nul - 1] !== 0x3a)
    throw new ExecgateError("malformed", "d-ng field without 'alg:\\0'");
  const prefix = algPrefix(field.subarray(0, nul - 1));
  const alg = v2 ? prefix.slice(prefix.indexOf(":") + 1) : prefix;
  return { alg, digest: field.subarray(nul + 1) };
}

const EMPTY = new Uint8Array(0);

export function decodeFields(
  template: string,
  fields: readonly string[],
  values: readonly Uint8Array[],
): Decoded {
  const d: Decoded = { digestAlg: "", fileDigest: EMPTY, name: "", sig: undefined, buf: undefined };
  for (let i = 0; i < fields.length; i++) {
    const v = values[i]!;
    switch (fields[i]) {
      case "d":
        d.digestAlg = v.length === 16 ? "md5" : "sha1";
        d.fileDigest = v;
        break;
      case "d-ng":
      case "d-ngv2": {
        const x = decodeDigestNg(v, fields[i] === "d-ngv2");
        d.digestAlg = x.alg;
        d.fileDigest = x.digest;
        break;
      }
      case "n":
        d.name = text(v);
        break;
      case "n-ng":
        d.name = text(v, v.length > 0 && v[v.length - 1] === 0 ? v.length - 1 : v.length);
        break;
      case "sig":
        d.sig = v;
        break;
      case "buf":
        d.buf = v;
        break;
      default:
        break;
    }
  }
  if (template === "ima" && d.name.length > IMA_EVENT_NAME_LEN_MAX) {
    throw new ExecgateError("malformed", "ima template name longer than IMA_EVENT_NAME_LEN_MAX");
  }
  return d;
}

let lastNameBytes: Uint8Array = new Uint8Array(0);
let lastName = "";

/** Template names repeat on every record: decode once per change. */
export function templateName(b: Uint8Array): string {
  if (b.length === lastNameBytes.length) {
    let same = true;
    for (let i = 0; i < b.length; i++) {
      if (b[i] !== lastNameBytes[i]) {
        same = false;
        break;
      }
    }
    if (same) return lastName;
  }
  lastName = text(b);
  lastNameBytes = b.slice();
  return lastName;
}

let lastAlgBytes: Uint8Array = new Uint8Array(0);
let lastAlg = "";

function algPrefix(b: Uint8Array): string {
  if (b.length === lastAlgBytes.length && b.every((x, i) => x === lastAlgBytes[i])) return lastAlg;
  lastAlg = text(b);
  lastAlgBytes = b.slice();
  return lastAlg;
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

export function isZero(b: Uint8Array): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

/** Checks the listed template hash against the template data (violations excepted). */
export function verifyTemplateHash(e: ImaEntry, alg: HashAlg, at: number): void {
  if (e.violation) return;
  if (bytesEqual(digest(alg, e.templateData), e.templateHash)) return;
  // A 32-byte template hash may be SM3 (ascii_runtime_measurements_sm3).
  if (alg.size === 32 && bytesEqual(digest(algByName("sm3_256")!, e.templateData), e.templateHash)) return;
  throw new ExecgateError(
    "verification_failed",
    `IMA entry ${e.seq}: template hash does not match its data`,
    {
      offset: at,
      seq: e.seq,
      check: "template_hash",
    },
  );
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
