import { ExecgateError } from "../core/errors.js";
import { fromHex, toHex } from "../core/hex.js";
import type { PcrValues } from "../tpm/structures/pcr-values.js";
import { parsePcrsFile } from "../tpm/structures/pcrs-file.js";
import { MAX_PCR_INDEX } from "./eventlog-types.js";
import { algById, algByName, type BankName, type PcrHexValues } from "./hash.js";

/**
 * PCR values as recorded evidence for `policy check --pcrs F` and `measure eventlog --pcrs F`:
 * a JSON file `{"sha256": {"0": "<hex>", …}, …}` (banks sha1/sha256/sha384/sha512/sm3_256,
 * indices 0–23 as decimal strings, hex of the bank's size), or the binary file tpm2-tools
 * writes with `tpm2_quote -o` / `tpm2_pcrread -o` (src/tpm/structures/pcrs-file.ts).
 */
export function parsePcrValuesJson(text: string): PcrHexValues {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ExecgateError("malformed", `PCR file is not JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new ExecgateError("malformed", "PCR file must be a JSON object of banks");
  }
  const out: Partial<Record<BankName, Record<string, string>>> = {};
  for (const [bank, pcrs] of Object.entries(doc as Record<string, unknown>)) {
    const alg = algByName(bank);
    if (!alg) throw new ExecgateError("malformed", `PCR file: unknown bank '${bank}'`);
    if (typeof pcrs !== "object" || pcrs === null || Array.isArray(pcrs)) {
      throw new ExecgateError("malformed", `PCR file: bank ${bank} must be an object`);
    }
    const m: Record<string, string> = {};
    for (const [idx, hex] of Object.entries(pcrs as Record<string, unknown>)) {
      if (!/^\d{1,2}$/.test(idx) || Number(idx) > MAX_PCR_INDEX) {
        throw new ExecgateError("malformed", `PCR file: bad PCR index '${idx}' in ${bank}`);
      }
      if (typeof hex !== "string")
        throw new ExecgateError("malformed", `PCR file: ${bank}:${idx} not a string`);
      const v = fromHex(hex, `PCR ${bank}:${idx}`);
      if (v.length !== alg.size) {
        throw new ExecgateError(
          "malformed",
          `PCR file: ${bank}:${idx} is ${v.length} bytes, want ${alg.size}`,
        );
      }
      // "07" reads as PCR 7, but not beside "7": one would silently replace the other.
      const key = String(Number(idx));
      if (m[key] !== undefined)
        throw new ExecgateError("malformed", `PCR file: PCR ${bank}:${key} given twice ('${idx}')`);
      m[key] = toHex(v);
    }
    out[alg.name] = m;
  }
  return out;
}

/** Converts the TPM layer's verified PcrValues (bank alg id → index → bytes) to the hex form. */
export function pcrHexFromTpm(values: PcrValues): PcrHexValues {
  const out: Partial<Record<BankName, Record<string, string>>> = {};
  for (const [algId, m] of values) {
    const alg = algById(algId);
    if (!alg) continue;
    const bank: Record<string, string> = {};
    for (const i of [...m.keys()].sort((a, b) => a - b)) bank[String(i)] = toHex(m.get(i)!);
    out[alg.name] = bank;
  }
  return out;
}

/** JSON if the file starts with `{`, else the tpm2-tools binary PCR file. */
export function parsePcrValuesFile(bytes: Uint8Array): PcrHexValues {
  let i = 0;
  while (
    i < bytes.length &&
    (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)
  )
    i++;
  if (bytes[i] === 0x7b) return parsePcrValuesJson(new TextDecoder().decode(bytes));
  return pcrHexFromTpm(parsePcrsFile(bytes).values);
}
