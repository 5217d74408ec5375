export { BlobStore, MAX_BLOB_BYTES } from "./blobs.js";
export {
  type Checkpoint,
  type CheckpointParseOptions,
  formatCheckpoint,
  type OpenedCheckpoint,
  openCheckpoint,
  parseCheckpoint,
  signCheckpoint,
} from "./checkpoint.js";
export {
  Checkpointer,
  type CheckpointerOptions,
  DEFAULT_CHECKPOINT_MS,
  type SignedCheckpoint,
} from "./checkpointer.js";
export * from "./entry.js";
export { EMPTY_ROOT, HASH_SIZE, leafHash, nodeHash, sha256 } from "./hash.js";
export type { AppendResult, Item, RecoveryReport } from "./journal.js";
export { Lineage, type LineageOptions, openLineage } from "./lineage.js";
export { MerkleTree, rootOfLeaves, verifyConsistency, verifyInclusion } from "./merkle.js";
export * from "./note.js";
export {
  type NoteSigner,
  signerFromNoteSkey,
  softwareEcdsaP256Signer,
  softwareEd25519Signer,
} from "./signer.js";
