import type { DenialReason } from "../core/denial.js";

/**
 * The attested state the gate decides against: one verified (or failed) epoch. Produced only by
 * the attestation loop; `integrity.ok` is true only when the quote verified AND the integrity
 * policy passed on the values it proved.
 */
export interface EvidenceState {
  readonly epochSeq: number;
  /** SHA-256 of the epoch binding = the quote's qualifyingData; tokens carry it. */
  readonly epochHash: Uint8Array;
  /** Wall clock (ms) when the epoch's quote was requested. */
  readonly startedAtMs: number;
  /** Wall clock (ms) when its verification finished. */
  readonly verifiedAtMs: number;
  readonly bootId: string;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly pcrDigest: Uint8Array;
  readonly integrity:
    | { readonly ok: true }
    | { readonly ok: false; readonly reason: DenialReason; readonly detail: string };
}
