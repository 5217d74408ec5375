import { toHex } from "../../core/hex.js";

/** A JSON value: what the explorer prints with --json and hands to the HTML report. */
export type Json = null | boolean | number | string | readonly Json[] | { readonly [k: string]: Json };

/**
 * Any decoded lineage value as JSON: bytes as lowercase hex, bigints as decimal strings, maps as
 * objects. Generic on purpose, so fields a later entry version adds show up without code here.
 */
export function toJson(v: unknown): Json {
  if (v === null || v === undefined) return null;
  if (typeof v === "boolean" || typeof v === "string") return v;
  if (typeof v === "number") return Number.isFinite(v) ? v : String(v);
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) return toHex(v);
  if (Array.isArray(v)) return v.map(toJson);
  if (v instanceof Map) {
    const out: Record<string, Json> = {};
    for (const [k, x] of v) out[String(k)] = toJson(x);
    return out;
  }
  if (typeof v === "object") {
    const out: Record<string, Json> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = toJson(x);
    return out;
  }
  return String(v);
}
