/**
 * The closed set of denial reasons (docs/fail-closed.md: each one, its fault and its test). Shared by socket replies, the lineage log
 * and the auditor. Add reasons at the end; never reuse or rename one.
 */
export const DENIAL_REASONS = [
  "no_token",
  "token_malformed",
  "token_signature_invalid",
  "token_expired",
  "token_not_yet_valid",
  "token_replayed",
  "token_wrong_audience",
  "peer_unknown",
  "scope_not_allowed",
  "policy_mismatch",
  "attestation_missing",
  "attestation_stale",
  "quote_invalid",
  "pcr_mismatch",
  "eventlog_mismatch",
  "ima_violation",
  "environment_mismatch",
  "hardware_unavailable",
  "lineage_unavailable",
  "rate_limited",
  "internal_error",
  "request_malformed",
] as const;

export type DenialReason = (typeof DENIAL_REASONS)[number];

export function isDenialReason(s: unknown): s is DenialReason {
  return typeof s === "string" && (DENIAL_REASONS as readonly string[]).includes(s);
}

export interface Denial {
  readonly allow: false;
  readonly reason: DenialReason;
  /** Operator-facing detail; never sent to clients. */
  readonly detail?: string;
}

export function deny(reason: DenialReason, detail?: string): Denial {
  return detail === undefined ? { allow: false, reason } : { allow: false, reason, detail };
}

/**
 * Finer codes under one denial reason, where the reason covers faults an operator tells apart
 * (recorded with the decision and in the log line; never sent to clients). Each belongs to one
 * reason. Add codes at the end; never reuse or rename one.
 */
export const DENIAL_CODES = {
  /** A frame whose length header is over limits.max_frame_bytes (its bytes are never read). */
  frame_too_large: "request_malformed",
} as const satisfies Record<string, DenialReason>;

export type DenialCode = keyof typeof DENIAL_CODES;

export function isDenialCode(s: unknown): s is DenialCode {
  return typeof s === "string" && Object.hasOwn(DENIAL_CODES, s);
}

/** True when `code` is one of `reason`'s codes (or there is none). */
export function codeFitsReason(reason: DenialReason, code: DenialCode | undefined): boolean {
  return code === undefined || DENIAL_CODES[code] === reason;
}
