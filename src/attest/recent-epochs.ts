import type { EvidenceState } from "./evidence.js";

/** Epoch records kept in memory for `evidence {epoch}` (tokens live minutes; epochs are ~1 s). */
export const RECENT_RECORDS = 4096;

/**
 * The latest epoch and the records (and HSM signatures, in HSM modes) of the recent ones by
 * epoch hash: what `evidence` replies with, so a verifier can check the epoch a token names.
 * Oldest first out once more than `capacity` are kept.
 */
export class RecentEpochs {
  private latest: { readonly state: EvidenceState; readonly record: Uint8Array } | undefined;
  private readonly records = new Map<string, Uint8Array>();
  private readonly hsmSignatures = new Map<string, Uint8Array>();

  constructor(private readonly capacity = RECENT_RECORDS) {}

  /** The latest epoch's state, verified or not. */
  current(): EvidenceState | undefined {
    return this.latest?.state;
  }

  /** The latest epoch's lineage record (binding, quote, PCR values, outcome). */
  currentRecord(): Uint8Array | undefined {
    return this.latest?.record;
  }

  recordOf(epochHash: Uint8Array): Uint8Array | undefined {
    return this.records.get(key(epochHash));
  }

  /** The HSM signature over a recent epoch's binding (HSM modes; docs/hsm.md). */
  hsmSignatureOf(epochHash: Uint8Array): Uint8Array | undefined {
    return this.hsmSignatures.get(key(epochHash));
  }

  /** The epoch that just ended becomes the latest. */
  add(epochHash: Uint8Array, state: EvidenceState, record: Uint8Array, hsmSignature?: Uint8Array): void {
    this.latest = { state, record };
    bounded(this.records, key(epochHash), record, this.capacity);
    if (hsmSignature) bounded(this.hsmSignatures, key(epochHash), hsmSignature, this.capacity);
  }
}

const key = (epochHash: Uint8Array): string => Buffer.from(epochHash).toString("hex");

function bounded(m: Map<string, Uint8Array>, k: string, v: Uint8Array, capacity: number): void {
  m.set(k, v);
  if (m.size > capacity) m.delete(m.keys().next().value!);
}
