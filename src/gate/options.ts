import type { Logger } from "pino";
import type { AttestationLoop } from "../attest/loop.js";
import type { CborValue } from "../cbor/index.js";
import type { DenialReason } from "../core/denial.js";
import type { DiskSpace } from "../lineage/disk-space.js";
import type { Lineage } from "../lineage/lineage.js";
import type { LoadedPolicy } from "../policy/load.js";
import type { TokenSigner } from "../token/signer.js";

export interface GateOptions {
  readonly lineage: Lineage;
  readonly loop: AttestationLoop;
  /** The policy in force and its digest (replaced on reload). */
  readonly policy: () => LoadedPolicy;
  /** The policy's digest, age and last reload for `status` (default: the digest alone). */
  readonly policyStatus?: () => Record<string, CborValue>;
  /** What signs tokens: the in-memory issuer key (memoryTokenSigner) or the HSM key (hsmTokenSigner). */
  readonly tokenSigner: TokenSigner;
  readonly audience: string;
  readonly issuer: string;
  readonly skewS: number;
  readonly maxEvidenceAgeMs: number;
  /** How long a fresh-quote request waits for its epoch before it is denied (attestation_stale). */
  readonly freshWaitMs: number;
  /** How long a token's signature may take before the request is denied (default SIGNATURE_TIMEOUT_MS). */
  readonly signatureTimeoutMs?: number;
  /** Free space of the lineage's filesystem, for status (absent: not reported). */
  readonly diskSpace?: () => DiskSpace | undefined;
  /**
   * Repeats of one caller's denial for one reason within this many ms are counted into one
   * denial_repeats entry (limits.denial_window_ms); absent: every denial is recorded in full.
   */
  readonly denialWindowMs?: number;
  /**
   * The kernel's boot id the daemon started under. The TPM's reset/restart counts have no fixed
   * expected value (a TPM reset is survived, docs/fail-closed.md): a token is tied to the counts
   * of the epoch it was issued on, checked at redeem.
   */
  readonly bootId: string;
  /** EAT ueid: 0x01 ‖ SHA-256(EK public), identifying this host's TPM. */
  readonly ueid: Uint8Array;
  readonly now: () => number;
  readonly monoUs: () => number;
  readonly log: Logger;
}

export type GateResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: DenialReason };

export interface IssuedReply {
  readonly token: Uint8Array;
  readonly tokenId: Uint8Array;
  readonly expires: number;
}
