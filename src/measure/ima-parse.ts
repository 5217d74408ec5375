import { ExecgateError, isExecgateError } from "../core/errors.js";
import type { HashAlg } from "./hash.js";
import { type ImaEntry, type ImaFormat, utf8 } from "./ima-entry.js";
import { parseImaAsciiChunk } from "./ima-parse-ascii.js";
import { detectTemplateHashSize, parseImaBinaryChunk } from "./ima-parse-binary.js";

// The parsers live in ima-parse-binary.ts and ima-parse-ascii.ts, the entry model in
// ima-entry.ts; this module picks the format and parses whole lists.
export type { ImaChunk, ImaEntry, ImaFormat, ImaParseOptions } from "./ima-entry.js";
export { MAX_ASCII_LINE, MAX_IMA_ENTRIES, MAX_TEMPLATE_DATA, templateHashAlgBySize } from "./ima-entry.js";
export { parseImaAsciiChunk } from "./ima-parse-ascii.js";
export { detectTemplateHashSize, parseImaBinaryChunk } from "./ima-parse-binary.js";

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
