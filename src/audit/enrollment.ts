import type { KeyObject } from "node:crypto";
import { asExecgateError } from "../core/errors.js";
import { verifyEkChain } from "../tpm/ek-chain.js";
import { notAnAttestationKey, notATpmSigningKey } from "../tpm/key-attributes.js";
import { parseTpm2bPublic, type TpmtPublic, tpmPublicKey } from "../tpm/structures/public.js";
import { verifyCertify } from "../tpm/verify-quote.js";
import type { AuditFailure } from "./verify.js";

/*
 * The key chain of an exported bundle (pure): EK certificate → trust anchors; the AK is a
 * restricted signing key that never leaves its TPM; the AK certifies (TPM2_Certify) the
 * checkpoint signing key as a fixedTPM, TPM-generated signing key; and that certified key is
 * the key the checkpoints are signed with. What this cannot show offline: that the AK lives in
 * the same TPM as the EK — that is established at enrollment (docs/audit.md).
 */
export interface EnrollmentAuditInput {
  readonly ekCertificates: readonly Uint8Array[];
  /** Trust anchors (PEM); without them the EK chain cannot be checked, which is a failure. */
  readonly trustPem?: string;
  readonly intermediatesPem?: readonly string[];
  /** TPM2B_PUBLIC of the AK and of the checkpoint signing key. */
  readonly akPublic?: Uint8Array;
  readonly signingKeyPublic?: Uint8Array;
  readonly certify?: {
    readonly attest: Uint8Array;
    readonly signature: Uint8Array;
    readonly qualifyingData: Uint8Array;
  };
  /** The key the checkpoints verified with (from the log's vkey). */
  readonly logKey: KeyObject;
  /** The pinned HSM root key, which may sign the checkpoints instead (hsm.checkpoints = "hsm"). */
  readonly hsmPublic?: KeyObject;
  readonly now: Date;
}

export interface EnrollmentAudit {
  readonly ak?: KeyObject;
  readonly failures: readonly AuditFailure[];
}

export function auditEnrollment(input: EnrollmentAuditInput): EnrollmentAudit {
  const failures: AuditFailure[] = [];
  const fail = (check: string, reason: string) => failures.push({ check, reason });

  if (input.ekCertificates.length === 0) fail("ek_chain", "no EK certificate in the bundle");
  else if (input.trustPem === undefined)
    fail("ek_chain", "no trust anchors given (--trust CA.pem): the EK cannot be checked");
  else {
    const results = input.ekCertificates.map((c) =>
      verifyEkChain({
        ekCert: c,
        trustBundlePem: input.trustPem!,
        ...(input.intermediatesPem ? { intermediates: input.intermediatesPem } : {}),
        now: input.now,
      }),
    );
    if (!results.some((r) => r.ok)) {
      fail("ek_chain", results.map((r) => (r.ok ? "" : r.detail)).join("; "));
    }
  }

  if (!input.akPublic) {
    fail("ak", "no AK public key in the bundle");
    return { failures };
  }
  let ak: TpmtPublic;
  let akKey: KeyObject;
  try {
    ak = parseTpm2bPublic(input.akPublic);
    akKey = tpmPublicKey(ak);
  } catch (e) {
    fail("ak", asExecgateError(e).message);
    return { failures };
  }
  const akProblem = notAnAttestationKey(ak);
  if (akProblem) fail("ak", akProblem);

  if (!input.signingKeyPublic || !input.certify) {
    fail("signing_key", "no certified checkpoint signing key in the bundle");
    return { ak: akKey, failures };
  }
  const c = verifyCertify({
    attest: input.certify.attest,
    signature: input.certify.signature,
    akPublic: akKey,
    expectedQualifyingData: input.certify.qualifyingData,
    certifiedPublic: input.signingKeyPublic,
  });
  if (!c.ok) {
    fail("signing_key_certify", `${c.check}: ${c.detail}`);
    return { ak: akKey, failures };
  }
  const skProblem = notATpmSigningKey(c.certify.certified);
  if (skProblem) fail("signing_key", `certified key is ${skProblem}`);
  const der = (k: KeyObject) => k.export({ type: "spki", format: "der" });
  const logDer = der(input.logKey);
  if (
    !der(c.certify.certifiedKey).equals(logDer) &&
    !(input.hsmPublic && der(input.hsmPublic).equals(logDer))
  ) {
    fail(
      "log_key",
      "the checkpoints are signed neither by the AK-certified TPM key nor by the pinned HSM key",
    );
  }
  return { ak: akKey, failures };
}
