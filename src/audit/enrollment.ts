import { createPublicKey, type KeyObject } from "node:crypto";
import { asExecgateError } from "../core/errors.js";
import { notAnAttestationKey, notATpmSigningKey } from "../tpm/key-attributes.js";
import { parseTpm2bPublic, type TpmtPublic, tpmPublicKey } from "../tpm/structures/public.js";
import { verifyCertify } from "../tpm/verify-quote.js";
import { auditEkBinding } from "./ek-binding.js";
import type { AuditFailure } from "./verify.js";

/*
 * The key chain of an exported bundle (pure): every EK certificate certifies ek.pub and chains
 * to the trust anchors (ek-binding.ts); the AK is a restricted signing key that never leaves its
 * TPM; the AK certifies (TPM2_Certify) the checkpoint signing key as a fixedTPM, TPM-generated
 * signing key; that certified key is the key the checkpoints are signed with; and the PEM copies
 * (ak.pem, signing-key.pem) are the keys of ak.pub and signing-key.pub. What this cannot show
 * offline: that the AK lives in the same TPM as the EK (docs/audit.md).
 */
export interface EnrollmentAuditInput {
  /** enrollment/ek.pub (TPM2B_PUBLIC). */
  readonly ekPublic?: Uint8Array;
  readonly ekCertificates: readonly { readonly name: string; readonly der: Uint8Array }[];
  /** Trust anchors (PEM); without them the EK chain cannot be checked, which is a failure. */
  readonly trustPem?: string;
  readonly intermediatesPem?: readonly string[];
  /** TPM2B_PUBLIC of the AK and of the checkpoint signing key. */
  readonly akPublic?: Uint8Array;
  readonly signingKeyPublic?: Uint8Array;
  /** The PEM copies of the AK and the signing key (enrollment/ak.pem, signing-key.pem). */
  readonly akPem?: Uint8Array;
  readonly signingKeyPem?: Uint8Array;
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

  const ek = auditEkBinding({
    ...(input.ekPublic ? { ekPublic: input.ekPublic } : {}),
    ekCertificates: input.ekCertificates,
    ...(input.trustPem !== undefined ? { trustPem: input.trustPem } : {}),
    ...(input.intermediatesPem ? { intermediatesPem: input.intermediatesPem } : {}),
    now: input.now,
  });
  failures.push(...ek);

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
  const akCopy = pemCopyProblem(input.akPem, akKey);
  if (akCopy) fail("ak_pem", `enrollment/ak.pem ${akCopy} enrollment/ak.pub`);
  if (input.signingKeyPublic) {
    let skKey: KeyObject | undefined;
    try {
      skKey = tpmPublicKey(parseTpm2bPublic(input.signingKeyPublic));
    } catch {
      // verifyCertify below names what is wrong with signing-key.pub
    }
    const skCopy = skKey && pemCopyProblem(input.signingKeyPem, skKey);
    if (skCopy) fail("signing_key_pem", `enrollment/signing-key.pem ${skCopy} enrollment/signing-key.pub`);
  }

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

/** Why a PEM copy is not `key` ("is missing beside", "does not parse beside", "is another key than"), or undefined. */
function pemCopyProblem(pem: Uint8Array | undefined, key: KeyObject): string | undefined {
  if (pem === undefined) return "is missing beside";
  let copy: KeyObject;
  try {
    copy = createPublicKey(Buffer.from(pem));
  } catch {
    return "does not parse beside";
  }
  return copy.equals(key) ? undefined : "is another key than";
}
