import type { DecideEvidence } from "../policy/decide.js";

/**
 * The attested state the gate decides against: one verified (or failed) epoch, produced only by
 * the attestation loop. `integrity` is the outcome of quote verification, log replay and the
 * integrity policy for this epoch; decide() reads the fields of DecideEvidence.
 */
export interface EvidenceState extends DecideEvidence {
  readonly epochSeq: number;
  readonly epochHash: Uint8Array;
  /** When the epoch started (its nonce was drawn), wall clock ms: for records and status only. */
  readonly startedAtMs: number;
  /**
   * The same moment on the daemon's monotonic clock, µs: the evidence's age counts from here
   * (decide's nowMonoUs, Gate.redeem), and fresh scopes order requests against it.
   */
  readonly startedMonoUs: number;
  /** When its quote was verified, ms, same clock as startedAtMs. */
  readonly verifiedAtMs: number;
  readonly bootId: string;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly pcrDigest: Uint8Array;
  /** Digest of the policy (its file and the allowlists it names, record.ts) this epoch was judged under. */
  readonly policyDigest: Uint8Array;
  /** The lineage epoch entry that recorded this state (absent until it is durable). */
  readonly entry?: { readonly index: number; readonly leafHash: Uint8Array };
}

/**
 * A completed epoch keeps the watchdog fed unless its TPM did not answer: a TPM that hangs or
 * is gone (hardware_unavailable) is what a restart may cure. An epoch that failed the integrity
 * policy still proves the loop runs — restarting would not change the PCRs, and the daemon is
 * already denying.
 */
export function epochKeepsWatchdog(state: EvidenceState): boolean {
  return state.integrity.ok || state.integrity.reason !== "hardware_unavailable";
}
