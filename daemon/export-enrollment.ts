import type { KeyObject } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ekCertificateKey } from "../src/tpm/ek-chain.js";
import { certify } from "../src/tpm/ops/attest.js";
import { readEkCertificates } from "../src/tpm/ops/ek-certs.js";
import { HANDLES, handleHex } from "../src/tpm/ops/handles.js";
import { readPublic } from "../src/tpm/ops/keys.js";
import type { TpmRunner } from "../src/tpm/runner.js";
import { parseTpm2bPublic, tpmPublicKey } from "../src/tpm/structures/public.js";

/**
 * The TPM's part of an audit bundle's enrollment/ (src/lineage/export-bundle.ts, docs/audit.md):
 * ek.pub, ek-cert-<nv>.der (of ek.pub), ak.pub, ak.pem, signing-key.pub, signing-key.pem and
 * signing-key.certify.{attest,sig,qd}, read from the TPM into `e`.
 */
export interface EnrollmentTpm {
  readonly runner: TpmRunner;
  readonly akHandle: number;
  readonly signingKeyHandle: number;
}

export async function writeTpmEnrollment(
  e: string,
  { runner, akHandle, signingKeyHandle }: EnrollmentTpm,
): Promise<void> {
  const pem = (pub: Uint8Array) =>
    String(tpmPublicKey(parseTpm2bPublic(pub)).export({ type: "spki", format: "pem" }));
  const ek = await readPublic(runner, HANDLES.ekRsa);
  const ak = await readPublic(runner, akHandle);
  const sk = await readPublic(runner, signingKeyHandle);
  if (ek) await writeFile(join(e, "ek.pub"), ek);
  if (ak) {
    await writeFile(join(e, "ak.pub"), ak);
    await writeFile(join(e, "ak.pem"), pem(ak));
  }
  if (sk) {
    await writeFile(join(e, "signing-key.pub"), sk);
    await writeFile(join(e, "signing-key.pem"), pem(sk));
  }
  if (ak && sk) {
    const c = await certify(runner, { objectHandle: signingKeyHandle, akHandle });
    await writeFile(join(e, "signing-key.certify.attest"), c.attest);
    await writeFile(join(e, "signing-key.certify.sig"), c.signature);
    await writeFile(join(e, "signing-key.certify.qd"), c.qualifyingData);
  }
  // Only the certificates of ek.pub (the EK the AK is under and the host is named by): the
  // auditor requires every certificate to certify it, as the bundle binds no other EK.
  const ekKey = ek && tpmPublicKey(parseTpm2bPublic(ek));
  for (const cert of await readEkCertificates(runner))
    if (ekKey && certifies(cert.der, ekKey))
      await writeFile(join(e, `ek-cert-${handleHex(cert.nvIndex)}.der`), cert.der);
}

/** True iff the EK certificate certifies `key` (an unreadable certificate certifies nothing). */
function certifies(der: Uint8Array, key: KeyObject): boolean {
  try {
    return ekCertificateKey(der).equals(key);
  } catch {
    return false;
  }
}
