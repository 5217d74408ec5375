import { createHash } from "node:crypto";
import { digest } from "../core/digest.js";

/** SHA-256 output size; every Merkle hash and root in the lineage log has this length. */
export const HASH_SIZE = 32;

export function sha256(...parts: readonly Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

const nodeInput = new Uint8Array(1 + 2 * HASH_SIZE);
nodeInput[0] = 0x01;

/** Scratch for 0x00 ‖ entry (hashing is synchronous, so one buffer serves every call). */
const leafInput = new Uint8Array(1 + 4096);

/** RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0)). */
export function leafHash(entry: Uint8Array): Uint8Array {
  if (entry.length + 1 > leafInput.length) {
    // Entries above 4 KiB are rare (evidence lives in blobs); keep the scratch small.
    const input = new Uint8Array(1 + entry.length);
    input.set(entry, 1);
    return digest("sha256", input);
  }
  leafInput[0] = 0x00;
  leafInput.set(entry, 1);
  return digest("sha256", leafInput.subarray(0, 1 + entry.length));
}

/** RFC 9162 §2.1.1: SHA-256(0x01 || MTH(left) || MTH(right)). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE)
    return sha256(Uint8Array.of(0x01), left, right);
  nodeInput.set(left, 1);
  nodeInput.set(right, 1 + HASH_SIZE);
  return digest("sha256", nodeInput);
}

/** RFC 9162 §2.1.1: the hash of an empty tree is the hash of the empty string. */
export const EMPTY_ROOT: Uint8Array = sha256();
