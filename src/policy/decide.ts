import { type DenialReason, isDenialReason } from "../core/denial.js";
import { bytesEqual } from "../core/hex.js";
import { type AccessPeer, type AccessRequest, evaluateAccess } from "./access.js";
import type { AccessPolicy } from "./access-schema.js";

/**
 * What decide() reads of the attested state: src/attest's EvidenceState is one. Declared here,
 * by the code that reads it, so policy does not depend on the loop that produces it.
 */
export interface DecideEvidence {
  readonly epochSeq: number;
  /** When the epoch started, on the daemon's monotonic clock, µs: the evidence's age counts from here. */
  readonly startedMonoUs: number;
  readonly bootId: string;
  /** Digest of the policy this epoch was judged under. */
  readonly policyDigest: Uint8Array;
  readonly integrity:
    | { readonly ok: true }
    | { readonly ok: false; readonly reason: DenialReason; readonly detail: string };
}

export interface DecideInput {
  readonly policy: { readonly access: AccessPolicy };
  readonly evidence: DecideEvidence | undefined;
  /** Digest of the policy in force (LoadedPolicy.digest): evidence judged under another one is not used. */
  readonly policyDigest: Uint8Array;
  readonly peer: AccessPeer;
  readonly request: AccessRequest;
  /**
   * Now on the monotonic clock of DecideEvidence.startedMonoUs, µs: the evidence's age is
   * measured on it, so a wall clock stepped back cannot make old evidence young again.
   */
  readonly nowMonoUs: number;
  /**
   * When the request entry was written to the lineage log, on the monotonic clock of
   * DecideEvidence.startedMonoUs (fresh scopes need an epoch started later; a wall clock stepped
   * back could make an older epoch look later).
   */
  readonly requestLoggedMonoUs: number;
  readonly maxEvidenceAgeMs: number;
  /**
   * What this daemon run saw at start: the kernel's boot id. The TPM's resetCount/restartCount
   * are not compared here: the daemon recovers from a TPM reset (a restarted swtpm) on the next
   * verified epoch, and tokens issued before the reset die at redeem (Gate.redeem).
   */
  readonly expected: { readonly bootId: string };
  /** The daemon's token.audience (default "execgate"). */
  readonly defaultAudience?: string;
}

export interface Grant {
  readonly executor: string;
  readonly scope: string;
  readonly ttlS: number;
  readonly audience: string;
}

export type Decision =
  | { readonly allow: true; readonly grant: Grant }
  | { readonly allow: false; readonly reason: DenialReason; readonly detail: string };

/** Detail of the one denial a fresh scope gets while its epoch has not started yet. */
export const WAITING_FOR_FRESH_EPOCH = "waiting for a fresh epoch";
/** Detail of the denial while the latest epoch was judged under a policy no longer in force. */
export const JUDGED_UNDER_OTHER_POLICY = "epoch judged under another policy";

function no(reason: DenialReason, detail: string): Decision {
  return { allow: false, reason, detail };
}

function digestsEqual(a: unknown, b: unknown): boolean {
  return a instanceof Uint8Array && b instanceof Uint8Array && a.length > 0 && bytesEqual(a, b);
}

function isTime(n: unknown): n is number {
  return typeof n === "number" && Number.isFinite(n);
}

/**
 * The whole token decision, pure: no I/O, no clock (nowMonoUs is given). Fails closed; the first
 * failing check wins, in this order (docs/policy.md):
 *
 *   1. no evidence                                       attestation_missing
 *   2. the epoch was judged under another policy          attestation_stale, "epoch judged under another policy"
 *   3. the epoch's integrity result is a failure          its reason (pcr_mismatch, …)
 *   4. boot id changed                                    environment_mismatch
 *   5. evidence (from its epoch's start, on the monotonic clock) older than
 *      maxEvidenceAgeMs, or from the future               attestation_stale
 *   6. access: caller, scope, audience, action            peer_unknown / scope_not_allowed / policy_mismatch
 *   7. fresh scope and the epoch started before the request was logged
 *                                                         attestation_stale, "waiting for a fresh epoch"
 *
 * Denials 2 and 7 are the ones the caller does not return at once: it waits for the next epoch
 * (one starts on every policy reload) and decides again.
 * Never throws: inputs that are not what the types say (a non-finite time where the check
 * needs one, an unknown denial reason) and any exception become internal_error.
 */
export function decide(input: DecideInput): Decision {
  try {
    return decideUnsafe(input);
  } catch (e) {
    return no("internal_error", `decide: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * Why `evidence` is too old to be used at `nowMonoUs` (µs, the clock of its startedMonoUs), or
 * undefined while it is no older than `maxEvidenceAgeMs`. The quote proves the state at some
 * moment after the epoch's nonce was drawn, no later: its age counts from the epoch's start.
 * An age that is negative or not a number (another clock's value) is refused too.
 */
export function evidenceStaleness(
  evidence: Pick<DecideEvidence, "epochSeq" | "startedMonoUs">,
  nowMonoUs: number,
  maxEvidenceAgeMs: number,
): string | undefined {
  const ageMs = (nowMonoUs - evidence.startedMonoUs) / 1000;
  if (ageMs < 0) return `epoch ${evidence.epochSeq} started ${-ageMs} ms in the future (another clock?)`;
  if (!(ageMs <= maxEvidenceAgeMs))
    return `epoch ${evidence.epochSeq} started ${ageMs} ms ago > ${maxEvidenceAgeMs} ms`;
  return undefined;
}

function decideUnsafe(input: DecideInput): Decision {
  const { evidence, expected, nowMonoUs, maxEvidenceAgeMs, requestLoggedMonoUs } = input;
  if (evidence === undefined || evidence === null) {
    return no("attestation_missing", "no verified epoch yet");
  }
  // A token carries the digest of the policy in force: its evidence must have been judged by it.
  if (!digestsEqual(evidence.policyDigest, input.policyDigest)) {
    return no("attestation_stale", JUDGED_UNDER_OTHER_POLICY);
  }
  if (evidence.integrity.ok !== true) {
    const i = evidence.integrity as { reason?: unknown; detail?: unknown };
    if (!isDenialReason(i.reason)) {
      return no("internal_error", `epoch ${evidence.epochSeq}: integrity failed without a known reason`);
    }
    return no(i.reason, `epoch ${evidence.epochSeq}: ${String(i.detail)}`);
  }
  // An empty or absent boot id proves nothing about the environment: fail closed.
  if (typeof expected.bootId !== "string" || expected.bootId === "" || evidence.bootId !== expected.bootId) {
    return no("environment_mismatch", `boot id ${evidence.bootId} != expected ${expected.bootId}`);
  }
  if (
    !isTime(nowMonoUs) ||
    !isTime(evidence.startedMonoUs) ||
    !isTime(maxEvidenceAgeMs) ||
    maxEvidenceAgeMs < 0
  ) {
    return no("internal_error", "decide: non-finite time or negative maximum age");
  }
  const stale = evidenceStaleness(evidence, nowMonoUs, maxEvidenceAgeMs);
  if (stale) return no("attestation_stale", stale);
  const access = evaluateAccess(input.policy.access, input.peer, input.request, input.defaultAudience);
  if (!access.ok) return no(access.reason, access.detail);
  if (access.scope.fresh && !isTime(requestLoggedMonoUs)) {
    return no("internal_error", "decide: non-finite request time");
  }
  if (access.scope.fresh && evidence.startedMonoUs < requestLoggedMonoUs) {
    return no("attestation_stale", WAITING_FOR_FRESH_EPOCH);
  }
  return {
    allow: true,
    grant: {
      executor: access.executor,
      scope: access.scope.name,
      ttlS: access.scope.ttlS,
      audience: access.scope.audience,
    },
  };
}
