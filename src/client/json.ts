import { CborTag, type CborValue } from "../cbor/index.js";
import { toHex } from "../core/hex.js";

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * A CBOR value as JSON for printing (`--json` output): byte strings become lowercase hex, bigints
 * decimal strings, maps objects with their keys as strings, tags { tag, value }.
 */
export function cborToJson(v: CborValue): JsonValue {
  if (v instanceof Uint8Array) return toHex(v);
  if (typeof v === "bigint") return v.toString();
  if (v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean") return v;
  if (Array.isArray(v)) return (v as readonly CborValue[]).map(cborToJson);
  if (v instanceof CborTag) return { tag: v.tag, value: cborToJson(v.value) };
  const out: { [key: string]: JsonValue } = {};
  const entries: Iterable<readonly [unknown, CborValue | undefined]> =
    v instanceof Map ? (v as ReadonlyMap<unknown, CborValue>) : Object.entries(v);
  for (const [k, x] of entries) if (x !== undefined) out[String(k)] = cborToJson(x);
  return out;
}
