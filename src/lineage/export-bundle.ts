import type { KeyObject } from "node:crypto";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeDirs } from "../core/mkdirs.js";
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
 * The TPM's part of enrollment/ is written by the caller's writeEnrollment (the daemon's
 * daemon/export-enrollment.ts), so the lineage does not import the TPM (which imports it).
 */
export interface AuditExportOptions {
  readonly lineage: Lineage;
  readonly blobsDir: string;
  /** Where exports go: only the newest one is kept. */
  readonly exportsDir: string;
  /** Writes the TPM's enrollment files (ek.pub, ak.*, signing-key.*, ek-cert-*) into the directory given. */
  readonly writeEnrollment?: (enrollmentDir: string) => Promise<void>;
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
  if (o.writeEnrollment) await o.writeEnrollment(e);
  return { path: out, size: r.size };
}
