import { certify } from "./ops/attest.js";
import { type EkCertificate, readEkCertificates } from "./ops/ek-certs.js";
import { HANDLES } from "./ops/handles.js";
import { type AkAlgorithm, ensureAk, ensureEk, ensureSigningKey } from "./ops/keys.js";
import type { TpmRunner } from "./runner.js";

/**
 * Everything a verifier needs to chain evidence to this TPM: the EK and its certificates, the
 * AK, and the AK's TPM2_Certify of the non-restricted signing key that seals lineage
 * checkpoints. Idempotent: keys already persisted are reused.
 */
export interface Enrollment {
  readonly ekHandle: number;
  /** TPM2B_PUBLIC of the EK. */
  readonly ekPublic: Uint8Array;
  readonly ekCertificates: readonly EkCertificate[];
  readonly akHandle: number;
  /** TPM2B_PUBLIC of the AK. */
  readonly akPublic: Uint8Array;
  readonly akCreated: boolean;
  readonly signingKeyHandle: number;
  /** TPM2B_PUBLIC of the signing key. */
  readonly signingKeyPublic: Uint8Array;
  /** TPM2_Certify of the signing key by the AK: TPMS_ATTEST and TPMT_SIGNATURE. */
  readonly signingKeyCertify: {
    readonly attest: Uint8Array;
    readonly signature: Uint8Array;
    readonly qualifyingData: Uint8Array;
  };
}

export interface EnrollOptions {
  readonly akHandle?: number;
  readonly akAlgorithm?: AkAlgorithm;
  readonly ekHandle?: number;
  readonly signingKeyHandle?: number;
}

export async function enroll(runner: TpmRunner, opts: EnrollOptions = {}): Promise<Enrollment> {
  const ekHandle = opts.ekHandle ?? HANDLES.ekRsa;
  const ekPublic = await ensureEk(runner, ekHandle);
  const ekCertificates = await readEkCertificates(runner);
  const ak = await ensureAk(runner, {
    ekHandle,
    ...(opts.akHandle !== undefined ? { handle: opts.akHandle } : {}),
    ...(opts.akAlgorithm !== undefined ? { algorithm: opts.akAlgorithm } : {}),
  });
  const sk = await ensureSigningKey(
    runner,
    opts.signingKeyHandle !== undefined ? { handle: opts.signingKeyHandle } : {},
  );
  const cert = await certify(runner, { objectHandle: sk.handle, akHandle: ak.handle });
  return {
    ekHandle,
    ekPublic,
    ekCertificates,
    akHandle: ak.handle,
    akPublic: ak.public,
    akCreated: ak.created,
    signingKeyHandle: sk.handle,
    signingKeyPublic: sk.public,
    signingKeyCertify: cert,
  };
}
