import type { KeyObject } from "node:crypto";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeDirs } from "../core/mkdirs.js";
import { ekCertificateKey } from "../tpm/ek-chain.js";
import { certify } from "../tpm/ops/attest.js";
import { readEkCertificates } from "../tpm/ops/ek-certs.js";
import { HANDLES, handleHex } from "../tpm/ops/handles.js";
import { readPublic } from "../tpm/ops/keys.js";
import type { TpmRunner } from "../tpm/runner.js";
import { parseTpm2bPublic, tpmPublicKey } from "../tpm/structures/public.js";
import { exportBundle } from "./export.js";
import type { Lineage } from "./lineage.js";

/**
 * The auditor's bundle, written by the daemon (which holds the journal lock) into its state
 * directory; `execgate audit export` copies it out. Layout (docs/audit.md):
 *   segments/, checkpoints.log, log.vkey, origin, blobs/,  the lineage (src/lineage/export.ts)
 *   checkpoint, tile/…
 *   enrollment/                                           ek.pub, ek-cert-<nv>.der (of ek.pub), ak.pub, ak.pem,
 *                                                         signing-key.pub, signing-key.pem,
 *                                                         signing-key.certify.{attest,sig,qd},
 *                                                         hsm-key.pem (when an HSM root is configured)
 * Policies are in blobs/ under their digest (the daemon stores each policy it loads there: its
 * record under the policy digest, and the policy file and allowlists the record names).
 */
export interface AuditExportOptions {
  readonly lineage: Lineage;
  readonly blobsDir: string;
  /** Where exports go: only the newest one is kept. */
  readonly exportsDir: string;
  readonly tpm?: { readonly runner: TpmRunner; readonly akHandle: number; readonly signingKeyHandle: number };
  /** The HSM root key (hsm.require includes hsm, or HSM-signed checkpoints or tokens). */
  readonly hsmPublicKey?: KeyObject;
}

export async function writeAuditBundle(o: AuditExportOptions): Promise<{ path: string; size: number }> {
  await makeDirs(o.exportsDir, 0o750);
  for (const old of await readdir(o.exportsDir))
    await rm(join(o.exportsDir, old), { recursive: true, force: true });
  const out = join(o.exportsDir, new Date().toISOString().replace(/[:.]/g, "-"));
  const r = await exportBundle({ lineage: o.lineage, out, blobsDir: o.blobsDir });
  const e = join(out, "enrollment");
  await mkdir(e);
  if (o.hsmPublicKey)
    await writeFile(join(e, "hsm-key.pem"), String(o.hsmPublicKey.export({ type: "spki", format: "pem" })));
  if (o.tpm) {
    const { runner, akHandle, signingKeyHandle } = o.tpm;
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
  return { path: out, size: r.size };
}

/** True iff the EK certificate certifies `key` (an unreadable certificate certifies nothing). */
function certifies(der: Uint8Array, key: KeyObject): boolean {
  try {
    return ekCertificateKey(der).equals(key);
  } catch {
    return false;
  }
}
