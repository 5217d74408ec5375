import type { KeyObject } from "node:crypto";
import { type CborValue, encode } from "../cbor/index.js";
import type { DenialReason } from "../core/denial.js";
import { ExecgateError } from "../core/errors.js";
import type { EventLog } from "../measure/eventlog-parse.js";
import type { PcrHexValues } from "../measure/hash.js";
import { pcrHexFromTpm } from "../measure/pcrs-input.js";
import {
  evaluateIntegrity,
  type ImaEvidence,
  type ImaOutcome,
  type IntegrityPolicy,
} from "../policy/integrity.js";
import type { QuoteOutput } from "../tpm/ops/attest.js";
import { type PcrSelection, pcrSelectionDifference } from "../tpm/structures/pcr-selection.js";
import { parsePcrsFile } from "../tpm/structures/pcrs-file.js";
import { verifyQuote } from "../tpm/verify-quote.js";
import { type EpochBinding, encodeEpochBinding, epochHash } from "./binding.js";
import type { EvidenceState } from "./evidence.js";
import { verifyHsmBindingSignature } from "./hsm-signature.js";

/*
 * One epoch's evaluation, pure: the quote (or the failure to get one) → verification →
 * integrity policy → the EvidenceState the gate decides against, plus the record the lineage
 * keeps so an auditor can redo every step offline.
 */

/**
 * An HSM root of trust (docs/hsm.md): signs the epoch binding bytes — ECDSA P-256 over
 * SHA-256(binding) as raw r‖s, or Ed25519 over the binding — in place of (HSM-only mode) or
 * beside (tpm+hsm) the quote. src/hsm's HsmKey is one.
 */
export interface EpochSigner {
  readonly publicKey: KeyObject;
  sign(bindingBytes: Uint8Array): Promise<Uint8Array>;
}

type Failure = { readonly failure: DenialReason; readonly detail: string };

export interface EpochInput {
  readonly binding: EpochBinding;
  /** Why the boot id could not be read (the binding then holds ""): the epoch proves nothing. */
  readonly bootIdUnreadable?: string;
  /**
   * The quote, or the reason there is none (TPM unreachable, TPM error). Absent when the host
   * has no TPM root (HSM-only mode): then PCR rules of the integrity policy fail closed.
   */
  readonly quote?: QuoteOutput | Failure;
  readonly akPublic?: KeyObject;
  readonly selection?: PcrSelection;
  /** The HSM's signature over the binding bytes (HSM modes), or why there is none. */
  readonly hsm?: { readonly signature: Uint8Array; readonly publicKey: KeyObject } | Failure;
  readonly policy: IntegrityPolicy;
  /** Digest of the policy `policy` came from (LoadedPolicy.digest, EvidenceState.policyDigest). */
  readonly policyDigest: Uint8Array;
  readonly eventlog?: EventLog;
  readonly ima?: ImaEvidence;
  readonly startedAtMs: number;
  /** EvidenceState.startedMonoUs. */
  readonly startedMonoUs: number;
  readonly verifiedAtMs: number;
}

export interface EpochResult {
  readonly hash: Uint8Array;
  readonly state: EvidenceState;
  /** Deterministic CBOR of the epoch evidence (docs/lineage.md, "epoch record"). */
  readonly record: Uint8Array;
  readonly ima: ImaOutcome | undefined;
  /** The HSM's signature over the binding bytes (HSM modes, when it answered): EpochBody.hsmSignature. */
  readonly hsmSignature?: Uint8Array;
  /** TPMS_CLOCK_INFO.clock of a verified quote. */
  readonly tpmClock?: bigint;
}

const ZERO32 = new Uint8Array(32);

export function evaluateEpoch(input: EpochInput): EpochResult {
  const hash = epochHash(input.binding);
  const base = {
    epochSeq: input.binding.seq,
    epochHash: hash,
    startedAtMs: input.startedAtMs,
    startedMonoUs: input.startedMonoUs,
    verifiedAtMs: input.verifiedAtMs,
    bootId: input.binding.bootId,
    policyDigest: input.policyDigest,
  };
  const bindingBytes = encodeEpochBinding(input.binding);
  const record = (fields: Record<string, CborValue | undefined>): Uint8Array =>
    encode({ binding: bindingBytes, ...fields });
  // Kept beside the record, in the epoch entry (EpochBody.hsmSignature): the record's format
  // stays what TPM verifiers decode.
  const hsmSignature = input.hsm && !("failure" in input.hsm) ? { hsmSignature: input.hsm.signature } : {};

  /** An epoch that proves nothing: denied with `reason`, recorded with whatever quote there was. */
  const failed = (
    reason: DenialReason,
    detail: string,
    quoteFields: Record<string, Uint8Array> = {},
  ): EpochResult => ({
    ...hsmSignature,
    hash,
    state: {
      ...base,
      resetCount: -1,
      restartCount: -1,
      pcrDigest: ZERO32,
      integrity: { ok: false, reason, detail },
    },
    record: record({ ...quoteFields, verified: false, reason }),
    ima: undefined,
  });

  // The HSM signature first: a root that does not answer, or answers wrongly, fails the epoch.
  let hsmFailure: Failure | undefined;
  if (input.hsm && "failure" in input.hsm) hsmFailure = input.hsm;
  else if (input.hsm && !verifyHsmBindingSignature(bindingBytes, input.hsm.signature, input.hsm.publicKey))
    hsmFailure = {
      failure: "quote_invalid",
      detail: "the HSM signature over the epoch binding does not verify",
    };
  if (input.quote === undefined && input.hsm === undefined)
    hsmFailure = { failure: "internal_error", detail: "no root of trust (TPM or HSM) configured" };
  const quoteFieldsIfAny =
    input.quote && !("failure" in input.quote)
      ? { attest: input.quote.attest, signature: input.quote.signature, pcrs: input.quote.pcrsFile }
      : {};
  if (hsmFailure) return failed(hsmFailure.failure, hsmFailure.detail, quoteFieldsIfAny);
  // Without the boot id nothing ties the evidence to this boot (docs/fail-closed.md). A TPM
  // that did not answer is reported as that below (the watchdog goes by it).
  const tpmFailed = input.quote !== undefined && "failure" in input.quote;
  if (input.bootIdUnreadable !== undefined && !tpmFailed)
    return failed("environment_mismatch", input.bootIdUnreadable, quoteFieldsIfAny);

  if (input.quote === undefined) {
    // HSM-only: the signature binds issuer key, checkpoint, boot id and nonce; no PCRs are attested.
    const { decision, integrity } = integrityOf(input, {});
    return {
      ...hsmSignature,
      hash,
      state: { ...base, resetCount: 0, restartCount: 0, pcrDigest: ZERO32, integrity },
      record: record({ verified: integrity.ok, ...(integrity.ok ? {} : { reason: integrity.reason }) }),
      ima: decision.ima,
    };
  }
  if (!input.akPublic || !input.selection)
    throw new ExecgateError("internal", "a quote needs the AK public key and the PCR selection");
  const akPublic = input.akPublic;
  const selection = input.selection;
  if ("failure" in input.quote) return failed(input.quote.failure, input.quote.detail);
  const q = input.quote;
  const quoteFields = { attest: q.attest, signature: q.signature, pcrs: q.pcrsFile };
  let file: ReturnType<typeof parsePcrsFile>;
  try {
    file = parsePcrsFile(q.pcrsFile);
  } catch {
    return failed("quote_invalid", "PCR values unreadable", quoteFields);
  }
  const values = file.values;
  const v = verifyQuote({
    attest: q.attest,
    signature: q.signature,
    akPublic,
    expectedQualifyingData: hash,
    expectedSelection: selection,
    pcrValues: values,
  });
  if (!v.ok) return failed("quote_invalid", `${v.check}: ${v.detail}`, quoteFields);
  // The digest check reads only the signed PCRs from the file; any other value in it is not
  // attested and must not reach the policy.
  const unsigned = pcrSelectionDifference(file.selection, v.quote.selection);
  if (unsigned !== undefined)
    return failed("quote_invalid", `pcrs file selection is not the signed one: ${unsigned}`, quoteFields);
  const { decision, integrity } = integrityOf(input, pcrHexFromTpm(values));
  return {
    ...hsmSignature,
    hash,
    state: {
      ...base,
      resetCount: v.quote.resetCount,
      restartCount: v.quote.restartCount,
      pcrDigest: v.quote.pcrDigest,
      integrity,
    },
    record: record({
      ...quoteFields,
      verified: integrity.ok,
      ...(integrity.ok ? {} : { reason: integrity.reason }),
      ...(decision.eventlogQuirks.length > 0 ? { quirks: [...decision.eventlogQuirks] } : {}),
    }),
    ima: decision.ima,
    tpmClock: v.quote.clock,
  };
}

/** The integrity policy on what this epoch proved (PCR values; none in HSM-only mode) and the logs read with it. */
function integrityOf(input: EpochInput, pcrs: PcrHexValues) {
  const decision = evaluateIntegrity(input.policy, {
    pcrs,
    ...(input.eventlog ? { eventlog: input.eventlog } : {}),
    ...(input.ima ? { ima: input.ima } : {}),
  });
  const integrity = decision.ok
    ? ({ ok: true } as const)
    : ({ ok: false, reason: decision.deny, detail: `${decision.rule}: ${decision.detail}` } as const);
  return { decision, integrity };
}
