import { type CborValue, decode } from "../cbor/index.js";
import { type DenialReason, isDenialReason } from "../core/denial.js";
import { ExecgateError } from "../core/errors.js";
import { decodeEpochBinding, type EpochBinding } from "./binding.js";

/*
 * The epoch record the lineage keeps in each epoch entry (EpochBody.quote), deterministic CBOR:
 *   EpochRecord = {
 *     "binding": bstr,          ; encodeEpochBinding(...) — its SHA-256 is the quote's qualifyingData
 *     ? "attest": bstr,         ; TPMS_ATTEST as signed          ┐ present when the TPM answered
 *     ? "signature": bstr,      ; TPMT_SIGNATURE                 │
 *     ? "pcrs": bstr,           ; tpm2-tools PCR file (values)   ┘
 *     "verified": bool,         ; the daemon's verdict (quote + integrity policy)
 *     ? "reason": tstr,         ; the denial reason when not verified
 *     ? "quirks": [* tstr],     ; event-log firmware quirks that were needed
 *   }
 */
export interface EpochRecord {
  readonly bindingBytes: Uint8Array;
  readonly binding: EpochBinding;
  readonly attest?: Uint8Array;
  readonly signature?: Uint8Array;
  readonly pcrs?: Uint8Array;
  readonly verified: boolean;
  readonly reason?: DenialReason;
  readonly quirks?: readonly string[];
}

const FIELDS = ["binding", "attest", "signature", "pcrs", "verified", "reason", "quirks"];

export function decodeEpochRecord(bytes: Uint8Array): EpochRecord {
  const v = decode(bytes, { maxDepth: 4, maxItems: 256, maxLength: 64 * 1024 });
  const bad = (why: string) => new ExecgateError("malformed", `epoch record: ${why}`);
  if (!(v instanceof Map)) throw bad("not a map");
  const m = v as ReadonlyMap<unknown, CborValue>;
  for (const k of m.keys()) if (!FIELDS.includes(k as string)) throw bad(`unknown field ${String(k)}`);
  const bytesOpt = (k: string): Uint8Array | undefined => {
    const x = m.get(k);
    if (x === undefined) return undefined;
    if (!(x instanceof Uint8Array)) throw bad(`${k} must be bytes`);
    return x;
  };
  const bindingBytes = bytesOpt("binding");
  if (!bindingBytes) throw bad("binding missing");
  const verified = m.get("verified");
  if (typeof verified !== "boolean") throw bad("verified must be a bool");
  const reason = m.get("reason");
  if (reason !== undefined && !isDenialReason(reason)) throw bad("reason");
  const quirks = m.get("quirks");
  if (quirks !== undefined && (!Array.isArray(quirks) || !quirks.every((q) => typeof q === "string")))
    throw bad("quirks");
  const attest = bytesOpt("attest");
  const signature = bytesOpt("signature");
  const pcrs = bytesOpt("pcrs");
  return {
    bindingBytes,
    binding: decodeEpochBinding(bindingBytes),
    ...(attest ? { attest } : {}),
    ...(signature ? { signature } : {}),
    ...(pcrs ? { pcrs } : {}),
    verified,
    ...(reason !== undefined ? { reason: reason as DenialReason } : {}),
    ...(quirks !== undefined ? { quirks: quirks as string[] } : {}),
  };
}
