import { createHash, hash as oneShotHash } from "node:crypto";
import { ExecgateError } from "../core/errors.js";

/**
 * Hash algorithms that appear in PCR banks, event logs and IMA lists.
 * TPM_ALG_ID values from TCG Algorithm Registry §6.1 (TPM2_ALG_SHA1 0x0004 …).
 */
export type BankName = "sha1" | "sha256" | "sha384" | "sha512" | "sm3_256";

export interface HashAlg {
  readonly name: BankName;
  readonly algId: number;
  readonly size: number;
  /** node:crypto name. */
  readonly node: string;
}

export const HASH_ALGS: readonly HashAlg[] = [
  { name: "sha1", algId: 0x0004, size: 20, node: "sha1" },
  { name: "sha256", algId: 0x000b, size: 32, node: "sha256" },
  { name: "sha384", algId: 0x000c, size: 48, node: "sha384" },
  { name: "sha512", algId: 0x000d, size: 64, node: "sha512" },
  { name: "sm3_256", algId: 0x0012, size: 32, node: "sm3" },
];

export function algById(algId: number): HashAlg | undefined {
  return HASH_ALGS.find((a) => a.algId === algId);
}

export function algByName(name: string): HashAlg | undefined {
  return HASH_ALGS.find((a) => a.name === name);
}

export function requireAlg(name: string): HashAlg {
  const a = algByName(name);
  if (!a) throw new ExecgateError("unsupported", `unknown hash algorithm ${name}`);
  return a;
}

export function isBankName(s: string): s is BankName {
  return algByName(s) !== undefined;
}

export function digest(alg: HashAlg, ...parts: readonly Uint8Array[]): Uint8Array {
  // crypto.hash (one shot) costs about half of createHash for the small inputs of IMA entries.
  if (parts.length === 1) return oneShotHash(alg.node, parts[0]!, "buffer");
  const h = createHash(alg.node);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** TPM2_PCR_Extend: PCR_new = H(PCR_old ‖ digest) — TPM 2.0 Part 1 §17.7. */
export function extend(alg: HashAlg, pcr: Uint8Array, value: Uint8Array): Uint8Array {
  const buf = new Uint8Array(pcr.length + value.length);
  buf.set(pcr);
  buf.set(value, pcr.length);
  return oneShotHash(alg.node, buf, "buffer");
}

/**
 * PCR values per bank, as hex, keyed by PCR index in decimal. The JSON shape used by the CLI,
 * the policy (`--pcrs F`) and the attestation loop: `{"sha256": {"0": "<hex>", …}}`.
 */
export type PcrHexValues = Readonly<Partial<Record<BankName, Readonly<Record<string, string>>>>>;
