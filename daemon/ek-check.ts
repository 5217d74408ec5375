import type { KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import { ExecgateError } from "../src/core/errors.js";
import { verifyEkChain } from "../src/tpm/ek-chain.js";
import { readEkCertificates } from "../src/tpm/ops/ek-certs.js";
import { handleHex } from "../src/tpm/ops/handles.js";
import type { TpmRunner } from "../src/tpm/runner.js";

/**
 * `tpm.ek_ca_bundle` at daemon start: one of the TPM's EK certificates (TCG NV indices) must
 * chain to the bundle (verifyEkChain, as `execgate tpm info --trust`) and certify `ekPublic`,
 * the EK the daemon identifies the host by. Otherwise config_invalid: the daemon refuses to
 * start with exit 2, which systemd does not restart (a restart would not change the chain).
 */
export async function checkEkChain(
  runner: TpmRunner,
  bundlePath: string,
  ekPublic: KeyObject,
  now: Date,
): Promise<void> {
  const bundle = await readFile(bundlePath, "utf8").catch((e: Error) => {
    throw new ExecgateError("io_error", `cannot read tpm.ek_ca_bundle ${bundlePath}: ${e.message}`);
  });
  const certs = await readEkCertificates(runner);
  const ekSpki = ekPublic.export({ type: "spki", format: "der" });
  const failures: string[] = [];
  for (const c of certs) {
    const r = verifyEkChain({ ekCert: c.der, trustBundlePem: bundle, now });
    if (!r.ok) failures.push(`${handleHex(c.nvIndex)} (${c.key}): ${r.detail}`);
    else if (r.ekPublicKey.export({ type: "spki", format: "der" }).equals(ekSpki)) return;
    else failures.push(`${handleHex(c.nvIndex)} (${c.key}): certifies another key than the EK`);
  }
  throw new ExecgateError(
    "config_invalid",
    certs.length === 0
      ? "tpm.ek_ca_bundle is set but the TPM holds no EK certificate"
      : `no EK certificate of the EK chains to tpm.ek_ca_bundle ${bundlePath}: ${failures.join("; ")}`,
  );
}
