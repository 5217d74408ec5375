import type { KeyObject } from "node:crypto";
import type { Config } from "../../src/config/index.js";
import { ExecgateError } from "../../src/core/errors.js";
import { HsmKey } from "../../src/hsm/hsm.js";
import { readPin } from "../../src/hsm/pin.js";
import type { DaemonMetrics } from "../../src/metrics/daemon-metrics.js";
import { timeHsmSigning } from "../../src/metrics/hsm.js";
import { TimedTpmRunner } from "../../src/metrics/tpm.js";
import { UEID_TYPE_RAND, ueidOfEk, ueidOfKey } from "../../src/token/ueid.js";
import { notAnAttestationKey, notATpmSigningKey } from "../../src/tpm/key-attributes.js";
import { HANDLES } from "../../src/tpm/ops/handles.js";
import { readPublic } from "../../src/tpm/ops/keys.js";
import type { TpmRunner } from "../../src/tpm/runner.js";
import { parseTpm2bPublic, type TpmtPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { checkEkChain } from "../ek-check.js";
import { refuse } from "./refusal.js";

/** The enrolled TPM keys, checked fit for their roles. */
export interface TpmKeys {
  readonly akPublic: KeyObject;
  /** TPM2B_PUBLIC of the AK, as `evidence` replies it. */
  readonly akPublicBytes: Uint8Array;
  readonly signingPublic: KeyObject;
  /** The UEID of the EK. */
  readonly ueid: Uint8Array;
}

/** The roots of trust (docs/hsm.md): the TPM unless hsm.require = "hsm", the HSM key when any role needs it. */
export interface TrustRoots {
  readonly roots: Config["hsm"]["require"];
  readonly useTpm: boolean;
  /** Which key signs the checkpoints (hsm.checkpoints, or its default). */
  readonly checkpointSigner: NonNullable<Config["hsm"]["checkpoints"]>;
  readonly runner: TimedTpmRunner;
  readonly hsmKey: HsmKey | undefined;
  /** Present exactly when useTpm. */
  readonly tpm: TpmKeys | undefined;
  /** The host's UEID: the EK's, else the HSM key's, else a zero random-type one. */
  readonly ueid: Uint8Array;
}

/** Opens the HSM key when a role needs it, then reads and checks the TPM keys; an HSM opened is closed on a refusal. */
export async function openTrustRoots(config: Config, metrics: DaemonMetrics): Promise<TrustRoots> {
  const roots = config.hsm.require;
  const useTpm = roots !== "hsm";
  const runner = new TimedTpmRunner(
    { tcti: config.tpm.tcti, timeoutMs: config.tpm.timeoutMs },
    metrics.tpmLatency,
  );
  // The HSM key when an epoch needs its signature or it signs the checkpoints or the tokens.
  const checkpointSigner = config.hsm.checkpoints ?? (roots === "hsm" ? "hsm" : "tpm");
  const needsHsm = roots !== "tpm" || checkpointSigner !== "tpm" || config.hsm.tokenSigner === "hsm";
  const hsmKey = needsHsm ? await openHsm(config.hsm, metrics) : undefined;
  let tpm: TpmKeys | undefined;
  if (useTpm)
    try {
      tpm = await readTpmKeys(runner, config.tpm);
    } catch (e) {
      await hsmKey?.close();
      throw refuse(`TPM (${config.tpm.tcti})`, e);
    }
  const ueid =
    tpm?.ueid ??
    (hsmKey ? ueidOfKey(hsmKey.publicKey) : Uint8Array.of(UEID_TYPE_RAND, ...new Uint8Array(32)));
  return { roots, useTpm, checkpointSigner, runner, hsmKey, tpm, ueid };
}

async function openHsm(hsm: Config["hsm"], metrics: DaemonMetrics): Promise<HsmKey> {
  try {
    const pin = await readPin({
      ...(hsm.pinFile !== undefined ? { pinFile: hsm.pinFile } : {}),
      ...(hsm.pinCredential !== undefined ? { pinCredential: hsm.pinCredential } : {}),
    });
    const key = await HsmKey.open({
      module: hsm.module,
      tokenLabel: hsm.tokenLabel,
      keyLabel: hsm.keyLabel,
      pin,
    });
    timeHsmSigning(key, metrics.hsmLatency);
    return key;
  } catch (e) {
    throw refuse(`HSM (token ${hsm.tokenLabel}, key ${hsm.keyLabel})`, e);
  }
}

/**
 * The AK, the signing key and the EK at their handles: each present (else the TPM is not
 * enrolled), the EK's chain checked when a CA bundle is configured, the keys fit for their roles.
 */
export async function readTpmKeys(
  runner: TpmRunner,
  tpm: Pick<Config["tpm"], "akHandle" | "signingKeyHandle" | "ekCaBundle">,
): Promise<TpmKeys> {
  const ak = await readPublic(runner, tpm.akHandle);
  const sk = await readPublic(runner, tpm.signingKeyHandle);
  const ek = await readPublic(runner, HANDLES.ekRsa);
  if (!ak || !sk || !ek)
    throw new ExecgateError("config_invalid", "the TPM is not enrolled: run `execgate enroll` first");
  const [akArea, skArea, ekArea] = [ak, sk, ek].map(parseTpm2bPublic) as [TpmtPublic, TpmtPublic, TpmtPublic];
  if (tpm.ekCaBundle !== undefined)
    await checkEkChain(runner, tpm.ekCaBundle, tpmPublicKey(ekArea), new Date());
  checkKeyRoles(akArea, skArea);
  return {
    akPublic: tpmPublicKey(akArea),
    akPublicBytes: ak,
    signingPublic: tpmPublicKey(skArea),
    ueid: ueidOfEk(ekArea),
  };
}

/**
 * The keys at the configured handles must be fit for their roles: a key that is not a
 * restricted TPM-resident AK could sign a forged quote (TPM2_Sign over any TPMS_ATTEST).
 */
export function checkKeyRoles(ak: TpmtPublic, signingKey: TpmtPublic): void {
  const akProblem = notAnAttestationKey(ak);
  if (akProblem) throw new ExecgateError("config_invalid", `the key at tpm.ak_handle is ${akProblem}`);
  const skProblem = notATpmSigningKey(signingKey);
  if (skProblem)
    throw new ExecgateError("config_invalid", `the key at tpm.signing_key_handle is ${skProblem}`);
}
