import { isExecgateError } from "../../core/errors.js";

/** Persistent handles and NV indices execgate uses (TCG EK Credential Profile 2.x §2.2.1.4 for EKs). */
export const HANDLES = {
  /** RSA-2048 EK, TCG low range. */
  ekRsa: 0x81010001,
  /** Storage root key under which execgate creates its non-restricted keys. */
  srk: 0x81000001,
  /** execgate's attestation key. */
  ak: 0x81000010,
  /** execgate's AK-certified P-256 signing key (lineage checkpoints). */
  signingKey: 0x81000020,
} as const;

/** EK certificate NV indices: RSA-2048, ECC P-256 (low range), then the high range (H-1 … H-5, ECC P-384). */
export const EK_CERT_INDICES = [
  { index: 0x01c00002, key: "rsa2048" },
  { index: 0x01c0000a, key: "ecc-p256" },
  { index: 0x01c00012, key: "rsa2048" },
  { index: 0x01c00014, key: "ecc-p256" },
  { index: 0x01c00016, key: "ecc-p384" },
  { index: 0x01c0001c, key: "rsa3072" },
  { index: 0x01c0001e, key: "rsa4096" },
] as const;

export function handleHex(h: number): string {
  return `0x${h.toString(16).padStart(8, "0")}`;
}

/** Parses `0x81000010` (or decimal) into a handle in the persistent range 0x81xxxxxx. */
export function parsePersistentHandle(s: string): number | undefined {
  const n = /^0x[0-9a-fA-F]{1,8}$/.test(s)
    ? Number.parseInt(s.slice(2), 16)
    : /^\d+$/.test(s)
      ? Number(s)
      : Number.NaN;
  return Number.isInteger(n) && n >>> 24 === 0x81 ? n : undefined;
}

/**
 * True when a tool failed because the handle or NV index does not exist: TPM_RC_HANDLE (0x08B,
 * format-one with the handle number in bits 8..10) or, for NV reads, TPM_RC_NV_UNINITIALIZED / 0x14A.
 */
export function isMissingObject(e: unknown): boolean {
  if (!isExecgateError(e, "hardware_error")) return false;
  const rc = e.detail.rc;
  if (typeof rc !== "number") return false;
  const formatOne = (rc & 0x80) !== 0;
  return (formatOne && (rc & 0x3f) === 0x0b) || (rc & 0xfff) === 0x14a || (rc & 0xfff) === 0x18b;
}
