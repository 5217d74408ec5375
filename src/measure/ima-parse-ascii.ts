import { ExecgateError, isExecgateError } from "../core/errors.js";
import { concatBytes, fromHex } from "../core/hex.js";
import type { HashAlg } from "./hash.js";
import {
  Decoded,
  decodeFields,
  enc,
  type ImaChunk,
  type ImaEntry,
  type ImaParseOptions,
  MAX_ASCII_LINE,
  MAX_IMA_ENTRIES,
  makeEntry,
  templateDataFor,
  templateHashAlgBySize,
  utf8,
} from "./ima-entry.js";
import { templateFields } from "./ima-template.js";

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
  const d = new Decoded();
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
      decodeFields(d, template, fields, values);
      const data = templateDataFor(template, values);
      entry = makeEntry(seq, base + pos, Number(pcrS), template, templateHash, data, d, a, lineStart);
    } catch (e) {
      if (isExecgateError(e))
        throw new ExecgateError(e.code, e.message, { ...e.detail, offset: lineStart, seq });
      throw e;
    }
    entries.push(entry);
    if (++seq > MAX_IMA_ENTRIES)
      throw new ExecgateError("limit_exceeded", "too many IMA entries", { offset: base });
  }
  const consumed = entries.length > 0 ? entries[entries.length - 1]!.end - base : 0;
  return { entries, consumed, templateHashAlg: alg };
}

/** ASCII if the list starts like "10 <hex> ". */
