/**
 * The attested state the gate decides against: one verified (or failed) epoch, produced only by
 * the attestation loop. Its shape is defined beside the decision that consumes it.
 */
export type { EvidenceState } from "../policy/decide.js";
