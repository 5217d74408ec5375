import { EMPTY_ROOT, nodeHash } from "./hash.js";

/**
 * The right edge of an RFC 9162 Merkle tree of `size` leaves: the roots of its maximal complete
 * subtrees, largest (leftmost) first — one per set bit of `size`. That is all the root needs, and
 * all that appending needs, so a log of any length is summarised in O(log n) hashes.
 *
 *   append: push the leaf, then merge the last two roots while they cover equal sizes — as many
 *           merges as `size` has trailing one bits (amortised one node hash per leaf);
 *   root:   fold right to left, H(0x01 ‖ left ‖ right), which is MTH's split at the largest
 *           power of two below n (RFC 9162 §2.1.1).
 */
export type Frontier = readonly Uint8Array[];

/** Appends one leaf to `frontier` (a tree of `size` leaves) in place. */
export function pushLeaf(frontier: Uint8Array[], size: number, leaf: Uint8Array): void {
  let h = leaf;
  let s = size;
  while (s % 2 === 1) {
    h = nodeHash(frontier.pop()!, h);
    s = (s - 1) / 2;
  }
  frontier.push(h);
}

/** The frontier after appending `leaves` to a tree of `size` leaves (a new array; the input is kept). */
export function extendFrontier(
  frontier: Frontier,
  size: number,
  leaves: readonly Uint8Array[],
): Uint8Array[] {
  const out = frontier.slice();
  for (let i = 0; i < leaves.length; i++) pushLeaf(out, size + i, leaves[i]!);
  return out;
}

export function frontierRoot(frontier: Frontier): Uint8Array {
  if (frontier.length === 0) return EMPTY_ROOT;
  let r = frontier[frontier.length - 1]!;
  for (let i = frontier.length - 2; i >= 0; i--) r = nodeHash(frontier[i]!, r);
  return r;
}
