import { Cursor } from "../core/cursor.js";
import { ExecgateError, isExecgateError } from "../core/errors.js";
import { bytesEqual, concatBytes, fromHex } from "../core/hex.js";
import { algByName, digest, type HashAlg } from "./hash.js";
import { IMA_EVENT_NAME_LEN_MAX, MAX_TEMPLATE_NAME, templateFields } from "./ima-template.js";

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

const utf8 = new TextDecoder("utf-8");

/** UTF-8 decode with an ASCII fast path (TextDecoder costs ~1 µs per short string). */
function text(b: Uint8Array): string {
  if (b.length <= 256) {
    let ascii = true;
    for (let i = 0; i < b.length; i++) {
      if (b[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, b as unknown as number[]);
  }
  return utf8.decode(b);
}
const enc = new TextEncoder();

function u32le(n: number): Uint8Array {
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

interface Decoded {
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

function decodeFields(template: string, fields: readonly string[], values: readonly Uint8Array[]): Decoded {
  const d: Decoded = {
    digestAlg: "",
    fileDigest: new Uint8Array(0),
    name: "",
    sig: undefined,
    buf: undefined,
  };
  fields.forEach((id, i) => {
    const v = values[i]!;
    switch (id) {
      case "d":
        d.digestAlg = v.length === 16 ? "md5" : "sha1";
        d.fileDigest = v;
        break;
      case "d-ng":
      case "d-ngv2": {
        const x = decodeDigestNg(v, id === "d-ngv2");
        d.digestAlg = x.alg;
        d.fileDigest = x.digest;
        break;
      }
      case "n":
        d.name = text(v);
        break;
      case "n-ng":
        d.name = text(v.length > 0 && v[v.length - 1] === 0 ? v.subarray(0, v.length - 1) : v);
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
  });
  if (template === "ima" && d.name.length > IMA_EVENT_NAME_LEN_MAX) {
    throw new ExecgateError("malformed", "ima template name longer than IMA_EVENT_NAME_LEN_MAX");
  }
  return d;
}

let lastNameBytes: Uint8Array = new Uint8Array(0);
let lastName = "";

/** Template names repeat on every record: decode once per change. */
function templateName(b: Uint8Array): string {
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
function templateDataFor(template: string, values: readonly Uint8Array[]): Uint8Array {
  if (template === "ima") {
    const name = new Uint8Array(IMA_EVENT_NAME_LEN_MAX + 1);
    name.set(values[1]!.subarray(0, IMA_EVENT_NAME_LEN_MAX));
    return concatBytes(values[0]!, name);
  }
  const parts: Uint8Array[] = [];
  for (const v of values) parts.push(u32le(v.length), v);
  return concatBytes(...parts);
}

function isZero(b: Uint8Array): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

/** Checks the listed template hash against the template data (violations excepted). */
function verifyTemplateHash(e: ImaEntry, alg: HashAlg, at: number): void {
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
export function detectTemplateHashSize(bytes: Uint8Array): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let short = false;
  for (const n of [20, 32, 48, 64]) {
    if (bytes.length < 4 + n + 4) {
      short = true;
      continue;
    }
    const len = dv.getUint32(4 + n, true);
    if (len < 1 || len > 64) continue;
    if (bytes.length < 8 + n + len) {
      short = true;
      continue;
    }
    const name = bytes.subarray(8 + n, 8 + n + len);
    if (name.every((c) => (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x7c)) {
      return n;
    }
  }
  if (short) throw new ExecgateError("truncated", "too short to find the first template name", { offset: 0 });
  throw new ExecgateError("malformed", "not a binary IMA measurement list (no template name found)", {
    offset: 0,
  });
}

/**
 * Parses complete binary records (binary_runtime_measurements, little-endian as written by
 * ima_measurements_show): pcr u32, template hash, u32 name length + name, then u32 template
 * data length + data — except the legacy `ima` template: digest(20) + u32 name length + name.
 * A trailing partial record is left unconsumed (the list may be growing).
 */
export function parseImaBinaryChunk(input: Uint8Array, opts: ImaParseOptions = {}): ImaChunk {
  // A plain Uint8Array view: subarrays of a Buffer are Buffers, several times slower to make.
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const base = opts.base ?? 0;
  let seq = opts.firstSeq ?? 0;
  if (bytes.length === 0) return { entries: [], consumed: 0, templateHashAlg: undefined };
  let size = opts.templateHashSize;
  if (size === undefined) {
    try {
      size = detectTemplateHashSize(bytes);
    } catch (e) {
      if (isExecgateError(e, "truncated")) return { entries: [], consumed: 0, templateHashAlg: undefined };
      throw e;
    }
  }
  const alg = templateHashAlgBySize(size);
  const c = new Cursor(bytes);
  const entries: ImaEntry[] = [];
  let consumed = 0;
  while (c.remaining > 0) {
    const start = c.offset;
    let entry: ImaEntry;
    try {
      const pcr = c.u32le("ima.pcr");
      const templateHash = c.bytesView(size, "ima.template_hash");
      const nameLen = c.count(c.u32le("ima.template_name_len"), MAX_TEMPLATE_NAME, "template name length");
      if (nameLen === 0) throw new ExecgateError("malformed", "empty template name");
      const template = templateName(c.bytesView(nameLen, "ima.template_name"));
      const fields = templateFields(template);
      const values: Uint8Array[] = [];
      // The binary template data is already the hashed form (fields with u32 lengths): a view.
      let raw: Uint8Array | undefined;
      if (template === "ima") {
        values.push(c.bytesView(20, "ima.d"));
        const n = c.count(c.u32le("ima.n.len"), IMA_EVENT_NAME_LEN_MAX, "ima name length");
        values.push(c.bytesView(n, "ima.n"));
      } else {
        const dataLen = c.count(c.u32le("ima.template_data_len"), MAX_TEMPLATE_DATA, "template data length");
        // Running off the input here means a partial record (truncated); running off the
        // template data inside a complete record is malformed.
        c.need(dataLen, "ima.template_data");
        const dataStart = c.offset;
        const dataEnd = dataStart + dataLen;
        raw = bytes.subarray(dataStart, dataEnd);
        for (const id of fields) {
          if (dataEnd - c.offset < 4)
            throw new ExecgateError("malformed", `field ${id}: template data too short`);
          const n = c.u32le("ima.field.len");
          if (n > dataEnd - c.offset)
            throw new ExecgateError("malformed", `field ${id}: length ${n} overruns the template data`);
          values.push(c.bytesView(n, "ima.field"));
        }
        if (c.offset !== dataEnd) {
          throw new ExecgateError(
            "trailing_bytes",
            `${dataEnd - c.offset} bytes after the last template field`,
          );
        }
      }
      const d = decodeFields(template, fields, values);
      entry = {
        seq,
        end: base + c.offset,
        pcr,
        template,
        templateHash,
        templateData: raw ?? templateDataFor(template, values),
        violation: isZero(templateHash),
        ...d,
      };
    } catch (e) {
      if (isExecgateError(e, "truncated")) break; // partial trailing record
      if (isExecgateError(e)) {
        throw new ExecgateError(e.code, e.message, { ...e.detail, offset: base + start, seq });
      }
      throw e;
    }
    verifyTemplateHash(entry, alg, base + start);
    entries.push(entry);
    consumed = c.offset;
    if (++seq > MAX_IMA_ENTRIES)
      throw new ExecgateError("limit_exceeded", "too many IMA entries", { offset: base });
  }
  return { entries, consumed, templateHashAlg: alg };
}

const HEX = /^[0-9a-f]*$/;

function hexField(s: string, what: string): Uint8Array {
  if (!HEX.test(s) || s.length % 2 !== 0) throw new ExecgateError("malformed", `${what}: not lowercase hex`);
  return fromHex(s, what);
}

/** "alg:hex" → the d-ng field bytes "alg:\0<digest>". */
function digestNgField(tok: string, v2: boolean): Uint8Array {
  const colon = tok.lastIndexOf(":");
  if (colon < 1) throw new ExecgateError("malformed", `digest field '${tok.slice(0, 40)}' has no algorithm`);
  const prefix = tok.slice(0, colon);
  if (!/^[a-z0-9_-]+(:[a-z0-9_-]+)?$/.test(prefix) || (v2 && !prefix.includes(":"))) {
    throw new ExecgateError("malformed", `digest algorithm '${prefix.slice(0, 40)}'`);
  }
  return concatBytes(enc.encode(`${prefix}:`), Uint8Array.of(0), hexField(tok.slice(colon + 1), "digest"));
}

/** One line of ascii_runtime_measurements → its field values as the kernel stores them. */
function asciiFieldValues(
  template: string,
  fields: readonly string[],
  tokens: readonly string[],
): Uint8Array[] {
  // The name may contain spaces: it is everything between the first field and the fields after it.
  const nameAt = fields.findIndex((f) => f === "n" || f === "n-ng");
  const after = nameAt === -1 ? 0 : fields.length - nameAt - 1;
  const joined: string[] = [];
  if (nameAt === -1) {
    if (tokens.length !== fields.length) throw new ExecgateError("malformed", "wrong number of fields");
    joined.push(...tokens);
  } else {
    if (tokens.length < fields.length) throw new ExecgateError("malformed", "too few fields");
    joined.push(...tokens.slice(0, nameAt));
    joined.push(tokens.slice(nameAt, tokens.length - after).join(" "));
    joined.push(...tokens.slice(tokens.length - after));
  }
  return fields.map((id, i) => {
    const t = joined[i]!;
    switch (id) {
      case "d":
        return hexField(t, "d");
      case "d-ng":
      case "d-modsig":
        return id === "d-modsig" && t === "" ? new Uint8Array(0) : digestNgField(t, false);
      case "d-ngv2":
        return digestNgField(t, true);
      case "n":
        if (template === "ima") return enc.encode(t);
        return enc.encode(t);
      case "n-ng":
        return concatBytes(enc.encode(t), Uint8Array.of(0));
      default:
        return hexField(t, id);
    }
  });
}

/**
 * Parses complete lines of ascii_runtime_measurements: `PCR template-hash template-name
 * fields…`. Each entry's template data is rebuilt from the printed fields and its template
 * hash checked, so a line whose fields were edited is rejected. Without `final`, a last line
 * lacking its newline is left for the next call.
 */
export function parseImaAsciiChunk(
  bytes: Uint8Array,
  opts: ImaParseOptions & { final?: boolean } = {},
): ImaChunk {
  const base = opts.base ?? 0;
  let seq = opts.firstSeq ?? 0;
  const entries: ImaEntry[] = [];
  let alg: HashAlg | undefined;
  let pos = 0;
  while (pos < bytes.length) {
    let nl = bytes.indexOf(0x0a, pos);
    if (nl === -1) {
      if (!opts.final) break;
      nl = bytes.length;
    }
    if (nl - pos > MAX_ASCII_LINE) {
      throw new ExecgateError("limit_exceeded", "IMA line too long", { offset: base + pos, seq });
    }
    const line = utf8.decode(bytes.subarray(pos, nl));
    const lineStart = base + pos;
    pos = Math.min(nl + 1, bytes.length);
    if (line === "")
      throw new ExecgateError("malformed", "empty line in IMA list", { offset: lineStart, seq });
    let entry: ImaEntry;
    try {
      const tokens = line.split(" ");
      if (tokens.length < 4) throw new ExecgateError("malformed", "IMA line has fewer than 4 fields");
      const [pcrS, hashS, template] = tokens as [string, string, string];
      if (!/^\d{1,2}$/.test(pcrS)) throw new ExecgateError("malformed", `PCR '${pcrS.slice(0, 20)}'`);
      const templateHash = hexField(hashS, "template hash");
      if (templateHash.length === 0) throw new ExecgateError("malformed", "empty template hash");
      const a = templateHashAlgBySize(templateHash.length);
      if (alg && alg.size !== a.size)
        throw new ExecgateError("malformed", "template hash size changes in the list");
      alg = a;
      const fields = templateFields(template);
      const values = asciiFieldValues(template, fields, tokens.slice(3));
      const d = decodeFields(template, fields, values);
      entry = {
        seq,
        end: base + pos,
        pcr: Number(pcrS),
        template,
        templateHash,
        templateData: templateDataFor(template, values),
        violation: isZero(templateHash),
        ...d,
      };
    } catch (e) {
      if (isExecgateError(e))
        throw new ExecgateError(e.code, e.message, { ...e.detail, offset: lineStart, seq });
      throw e;
    }
    verifyTemplateHash(entry, alg, lineStart);
    entries.push(entry);
    if (++seq > MAX_IMA_ENTRIES)
      throw new ExecgateError("limit_exceeded", "too many IMA entries", { offset: base });
  }
  const consumed = entries.length > 0 ? entries[entries.length - 1]!.end - base : 0;
  return { entries, consumed, templateHashAlg: alg };
}

/** ASCII if the list starts like "10 <hex> ". */
export function detectImaFormat(bytes: Uint8Array): ImaFormat {
  const head = utf8.decode(bytes.subarray(0, 64));
  return /^\d{1,2} [0-9a-f]{40}/.test(head) || /^\d{1,2} [0-9a-f]+ [a-z]/.test(head) ? "ascii" : "binary";
}

export interface ImaList {
  readonly format: ImaFormat;
  readonly templateHashAlg: HashAlg;
  readonly entries: readonly ImaEntry[];
  /** Bytes of a partial last record that were not parsed (binary lists that were still growing). */
  readonly trailingBytes: number;
}

/**
 * Parses and verifies a whole measurement list. An empty list, or one without a single
 * complete entry, is rejected (the kernel always logs boot_aggregate first).
 */
export function parseImaList(bytes: Uint8Array, format?: ImaFormat): ImaList {
  if (bytes.length === 0) throw new ExecgateError("malformed", "empty IMA measurement list", { offset: 0 });
  const f = format ?? detectImaFormat(bytes);
  if (f === "binary") {
    try {
      detectTemplateHashSize(bytes);
    } catch (e) {
      // the whole file is here: too short to hold one record header is not a list at all
      if (isExecgateError(e, "truncated"))
        throw new ExecgateError("malformed", "not an IMA list: too short", { offset: 0 });
      throw e;
    }
  }
  const chunk = f === "ascii" ? parseImaAsciiChunk(bytes, { final: true }) : parseImaBinaryChunk(bytes);
  if (chunk.entries.length === 0 || !chunk.templateHashAlg) {
    throw new ExecgateError("truncated", "IMA list holds no complete entry", { offset: 0 });
  }
  return {
    format: f,
    templateHashAlg: chunk.templateHashAlg,
    entries: chunk.entries,
    trailingBytes: bytes.length - chunk.consumed,
  };
}
