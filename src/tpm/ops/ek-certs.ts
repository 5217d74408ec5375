import type { TpmRunner } from "../runner.js";
import { EK_CERT_INDICES, handleHex, isMissingObject } from "./handles.js";

export interface EkCertificate {
  readonly nvIndex: number;
  readonly key: string;
  readonly der: Uint8Array;
}

/** Reads every EK certificate present in the TCG-defined NV indices (owner authorization). */
export async function readEkCertificates(runner: TpmRunner): Promise<EkCertificate[]> {
  const out: EkCertificate[] = [];
  for (const { index, key } of EK_CERT_INDICES) {
    try {
      const { files } = await runner.run("tpm2_nvread", [handleHex(index), "-C", "o", "-o", "cert.der"], {
        outputs: ["cert.der"],
      });
      out.push({ nvIndex: index, key, der: trimDer(files["cert.der"]!) });
    } catch (e) {
      if (!isMissingObject(e)) throw e;
    }
  }
  return out;
}

/**
 * NV areas are often larger than the certificate and padded: keep the outer DER SEQUENCE
 * (tag 0x30 with a definite long-form length) only.
 */
export function trimDer(b: Uint8Array): Uint8Array {
  if (b.length < 4 || b[0] !== 0x30) return b;
  const first = b[1]!;
  if (first < 0x80) return b.subarray(0, Math.min(b.length, 2 + first));
  const n = first & 0x7f;
  if (n < 1 || n > 3 || b.length < 2 + n) return b;
  let len = 0;
  for (let i = 0; i < n; i++) len = (len << 8) | b[2 + i]!;
  return b.subarray(0, Math.min(b.length, 2 + n + len));
}
