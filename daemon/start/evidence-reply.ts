import type { RecentEpochs } from "../../src/attest/recent-epochs.js";
import type { CborValue } from "../../src/cbor/index.js";

/** What an `evidence` reply is made of; the keys never change while the daemon runs. */
export interface EvidenceSources {
  readonly epochs: Pick<RecentEpochs, "current" | "currentRecord" | "recordOf" | "hsmSignatureOf">;
  /** The latest signed checkpoint note, if any. */
  readonly checkpoint: () => string | undefined;
  /** Raw Ed25519 public key of the token issuer. */
  readonly issuerKey: Uint8Array;
  /** TPM2B_PUBLIC of the AK (TPM roots). */
  readonly akPublic: Uint8Array | undefined;
  /** HSM roots: the HSM key's DER SPKI; the reply then carries the epoch's HSM signature. */
  readonly hsmPublic: Uint8Array | undefined;
}

/**
 * The `evidence` reply (docs/protocol.md): the current epoch's, or a recent epoch's by hash
 * (what a token names); undefined when this run has no such epoch.
 */
export function evidenceReply(
  s: EvidenceSources,
): (epoch: Uint8Array | undefined) => Record<string, CborValue> | undefined {
  return (epoch) => {
    const record = epoch ? s.epochs.recordOf(epoch) : s.epochs.currentRecord();
    if (!record) return undefined;
    const epochHash = epoch ?? s.epochs.current()?.epochHash;
    return {
      epoch_hash: epochHash ?? null,
      record,
      issuer_key: s.issuerKey,
      ak_public: s.akPublic ?? null,
      checkpoint: s.checkpoint() ?? null,
      // HSM modes: the epoch's HSM signature and the HSM key — verifyTokenBoundHsm.
      ...(s.hsmPublic
        ? {
            hsm_signature: s.epochs.hsmSignatureOf(epochHash ?? new Uint8Array()) ?? null,
            hsm_public: s.hsmPublic,
          }
        : {}),
    };
  };
}
