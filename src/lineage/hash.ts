import { createHash, hash } from "node:crypto";

/** SHA-256 output size; every Merkle hash and root in the lineage log has this length. */
export const HASH_SIZE = 32;

export function sha256(...parts: readonly Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** One-shot SHA-256 (crypto.hash, Node ≥ 20.12): no Hash object per call, which the hot path feels. */
function sha256Once(data: Uint8Array): Uint8Array {
  return new Uint8Array(hash("sha256", data, "buffer"));
}

const nodeInput = new Uint8Array(1 + 2 * HASH_SIZE);
nodeInput[0] = 0x01;

/** RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0)). */
export function leafHash(entry: Uint8Array): Uint8Array {
  const input = new Uint8Array(1 + entry.length);
  input.set(entry, 1); // input[0] is already 0x00
  return sha256Once(input);
}

/** RFC 9162 §2.1.1: SHA-256(0x01 || MTH(left) || MTH(right)). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE)
    return sha256(Uint8Array.of(0x01), left, right);
  nodeInput.set(left, 1);
  nodeInput.set(right, 1 + HASH_SIZE);
  return sha256Once(nodeInput);
}

/** RFC 9162 §2.1.1: the hash of an empty tree is the hash of the empty string. */
export const EMPTY_ROOT: Uint8Array = sha256();
