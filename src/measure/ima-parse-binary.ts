import { Cursor } from "../core/cursor.js";
import { ExecgateError, isExecgateError } from "../core/errors.js";
import {
  checkDecoded,
  checkTemplateHash,
  Decoded,
  decodeField,
  decodeFields,
  type ImaChunk,
  type ImaEntry,
  type ImaParseOptions,
  ImaRecord,
  listBytes,
  MAX_IMA_ENTRIES,
  MAX_TEMPLATE_DATA,
  makeEntry,
  templateDataFor,
  templateHashAlgBySize,
  templateName,
} from "./ima-entry.js";
import { IMA_EVENT_NAME_LEN_MAX, MAX_TEMPLATE_NAME, templateFields } from "./ima-template.js";

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
  // A plain Uint8Array view: subarrays of a Buffer are Buffers, slower to make.
  const src = listBytes(input);
  const bytes = src.u8;
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
  const d = new Decoded();
  const spans: number[] = []; // start of each field's value in the current record
  let consumed = 0;
  while (c.remaining > 0) {
    const start = c.offset;
    let entry: ImaEntry;
    try {
      const pcr = c.u32le("ima.pcr");
      const hashAt = c.offset;
      c.skip(size, "ima.template_hash");
      const nameLen = c.count(c.u32le("ima.template_name_len"), MAX_TEMPLATE_NAME, "template name length");
      if (nameLen === 0) throw new ExecgateError("malformed", "empty template name");
      c.skip(nameLen, "ima.template_name");
      const template = templateName(src, c.offset - nameLen, c.offset);
      const fields = templateFields(template);
      if (template === "ima") {
        const values = [c.bytesView(20, "ima.d")];
        const n = c.count(c.u32le("ima.n.len"), IMA_EVENT_NAME_LEN_MAX, "ima name length");
        values.push(c.bytesView(n, "ima.n"));
        decodeFields(d, template, fields, values);
        const templateHash = bytes.subarray(hashAt, hashAt + size);
        const data = templateDataFor(template, values);
        entry = makeEntry(seq, base + c.offset, pcr, template, templateHash, data, d, alg, base + start);
      } else {
        const dataLen = c.count(c.u32le("ima.template_data_len"), MAX_TEMPLATE_DATA, "template data length");
        // Running off the input here means a partial record (truncated); running off the
        // template data inside a complete record is malformed.
        c.need(dataLen, "ima.template_data");
        const dataStart = c.offset;
        const dataEnd = dataStart + dataLen;
        for (let i = 0; i < fields.length; i++) {
          const id = fields[i]!;
          if (dataEnd - c.offset < 4)
            throw new ExecgateError("malformed", `field ${id}: template data too short`);
          const n = c.u32le("ima.field.len");
          if (n > dataEnd - c.offset)
            throw new ExecgateError("malformed", `field ${id}: length ${n} overruns the template data`);
          spans[i] = c.offset;
          c.skip(n, "ima.field");
        }
        if (c.offset !== dataEnd) {
          throw new ExecgateError(
            "trailing_bytes",
            `${dataEnd - c.offset} bytes after the last template field`,
          );
        }
        // Decoded once the structure is known good, so a record broken in several ways
        // reports its framing error first.
        d.reset();
        for (let i = 0; i < fields.length; i++) {
          const end = i + 1 < fields.length ? spans[i + 1]! - 4 : dataEnd;
          decodeField(d, fields[i]!, src, spans[i]!, end);
        }
        checkDecoded(template, d);
        // The binary template data is already the hashed form (fields with u32 lengths).
        const data = bytes.subarray(dataStart, dataEnd);
        const hashedWith = checkTemplateHash(alg, data, bytes, hashAt, seq, base + start);
        entry = new ImaRecord(
          seq,
          base + c.offset,
          pcr,
          template,
          src,
          hashAt,
          dataStart,
          dataLen,
          d,
          hashedWith,
        );
      }
    } catch (e) {
      if (isExecgateError(e, "truncated")) break; // partial trailing record
      if (isExecgateError(e)) {
        throw new ExecgateError(e.code, e.message, { ...e.detail, offset: base + start, seq });
      }
      throw e;
    }
    entries.push(entry);
    consumed = c.offset;
    if (++seq > MAX_IMA_ENTRIES)
      throw new ExecgateError("limit_exceeded", "too many IMA entries", { offset: base });
  }
  return { entries, consumed, templateHashAlg: alg };
}
