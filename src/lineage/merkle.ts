import { ExecgateError } from "../core/errors.js";
import { bytesEqual } from "../core/hex.js";
import { EMPTY_ROOT, HASH_SIZE, nodeHash } from "./hash.js";
import { HashColumn } from "./hash-column.js";

/**
 * RFC 9162 §2.1 Merkle tree over leaf hashes (pure: no I/O, no clock).
 *
 * State: for every level l, the hashes of the complete, aligned subtrees of 2^l leaves built so
 * far (level 0 = the leaf hashes). Appending is amortised O(1) hashes; the root at the current or
 * any earlier size needs O(log n) hashes, because every MTH range the RFC recursion visits is
 * either a stored complete subtree or splits into one plus a smaller range. Proofs use the same
 * ranges. Memory is about 2 × 32 bytes per leaf, in flat buffers (no object per hash).
 */

/** Sizes and indices are JS safe integers; 2^53 leaves is far beyond any log we keep. */
const MAX_TREE_SIZE = Number.MAX_SAFE_INTEGER;

/**
 * SUBPROOF(m, D[lo:hi], complete) — RFC 9162 §2.1.4.1, over any tree that gives MTH(D[lo:hi])
 * through `range` (the in-memory tree here, the auditor's streaming tree in src/audit).
 */
export function subproof(
  range: (lo: number, hi: number) => Uint8Array,
  m: number,
  lo: number,
  hi: number,
  complete: boolean,
  out: Uint8Array[],
): void {
  const n = hi - lo;
  if (m === n) {
    if (!complete) out.push(range(lo, hi).slice());
    return;
  }
  const k = splitPoint(n);
  if (m <= k) {
    subproof(range, m, lo, lo + k, complete, out);
    out.push(range(lo + k, hi).slice());
  } else {
    subproof(range, m - k, lo + k, hi, false, out);
    out.push(range(lo, lo + k).slice());
  }
}

/** Largest power of two strictly less than n (n ≥ 2), RFC 9162 §2.1.1 "k". */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

export class MerkleTree {
  private readonly levels: HashColumn[] = [new HashColumn()];

  get size(): number {
    return this.levels[0]!.count;
  }

  /** Appends one leaf hash (already SHA-256(0x00 || entry)); returns its index. */
  append(leaf: Uint8Array): number {
    if (leaf.length !== HASH_SIZE) throw new ExecgateError("malformed", "merkle: leaf hash must be 32 bytes");
    if (this.size >= MAX_TREE_SIZE) throw new ExecgateError("limit_exceeded", "merkle: tree is full");
    const index = this.size;
    this.levels[0]!.push(leaf);
    // Complete every subtree this leaf closes: while the new node is a right child, hash up.
    let level = 0;
    let i = index;
    while (i % 2 === 1) {
      const col = this.levels[level]!;
      const parent = nodeHash(col.get(i - 1), col.get(i));
      level += 1;
      if (this.levels.length === level) this.levels.push(new HashColumn());
      this.levels[level]!.push(parent);
      i = (i - 1) / 2;
    }
    return index;
  }

  leafHash(index: number): Uint8Array {
    this.checkIndex(index, this.size, "leaf index");
    return this.levels[0]!.get(index).slice();
  }

  /** MTH(D[0:n]) for n ≤ size (RFC 9162 §2.1.1). */
  rootAt(n: number): Uint8Array {
    this.checkSize(n);
    return n === 0 ? EMPTY_ROOT.slice() : this.range(0, n).slice();
  }

  root(): Uint8Array {
    return this.rootAt(this.size);
  }

  /** PATH(m, D[0:n]) — RFC 9162 §2.1.3.1. */
  inclusionProof(index: number, n: number): Uint8Array[] {
    this.checkSize(n);
    this.checkIndex(index, n, "leaf index");
    const out: Uint8Array[] = [];
    this.path(index, 0, n, out);
    return out;
  }

  /** PROOF(m, D[0:n]) — RFC 9162 §2.1.4.1; empty when m = n. Requires 0 < m ≤ n ≤ size. */
  consistencyProof(m: number, n: number): Uint8Array[] {
    this.checkSize(n);
    if (!Number.isSafeInteger(m) || m < 1 || m > n) {
      throw new ExecgateError("malformed", `merkle: consistency proof needs 0 < m ≤ n (m=${m}, n=${n})`);
    }
    const out: Uint8Array[] = [];
    if (m < n) subproof((lo, hi) => this.range(lo, hi), m, 0, n, true, out);
    return out;
  }

  /** Forgets leaves from index n on (used only when recovery truncates a torn tail). */
  truncate(n: number): void {
    this.checkSize(n);
    let count = n;
    for (const col of this.levels) {
      col.truncate(count);
      count = Math.floor(count / 2);
    }
  }

  /** MTH(D[lo:hi]), hi > lo, using stored complete subtrees. */
  private range(lo: number, hi: number): Uint8Array {
    const n = hi - lo;
    if (isPowerOfTwo(n) && lo % n === 0) {
      const level = Math.round(Math.log2(n));
      return this.levels[level]!.get(lo / n);
    }
    const k = splitPoint(n);
    return nodeHash(this.range(lo, lo + k), this.range(lo + k, hi));
  }

  private path(m: number, lo: number, hi: number, out: Uint8Array[]): void {
    const n = hi - lo;
    if (n === 1) return;
    const k = splitPoint(n);
    if (m < k) {
      this.path(m, lo, lo + k, out);
      out.push(this.range(lo + k, hi).slice());
    } else {
      this.path(m - k, lo + k, hi, out);
      out.push(this.range(lo, lo + k).slice());
    }
  }

  private checkSize(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0 || n > this.size) {
      throw new ExecgateError("malformed", `merkle: size ${n} outside 0..${this.size}`);
    }
  }

  private checkIndex(i: number, n: number, what: string): void {
    if (!Number.isSafeInteger(i) || i < 0 || i >= n) {
      throw new ExecgateError("malformed", `merkle: ${what} ${i} outside 0..${n - 1}`);
    }
  }
}

function fail(check: string, message: string): never {
  throw new ExecgateError("verification_failed", `merkle: ${message}`, { check });
}

function isHash(h: Uint8Array): boolean {
  return h.length === HASH_SIZE;
}

/**
 * Recomputes the root from an inclusion proof — RFC 9162 §2.1.3.2 — and requires it to equal
 * `root`. Throws ExecgateError("verification_failed") with detail.check on any failure.
 */
export function verifyInclusion(
  index: number,
  treeSize: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): void {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(treeSize) || index < 0 || index >= treeSize) {
    fail("inclusion_index", `leaf index ${index} not below tree size ${treeSize}`);
  }
  if (!isHash(leaf) || !isHash(root) || !proof.every(isHash))
    fail("inclusion_hash_size", "hashes must be 32 bytes");
  let fn = index;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) fail("inclusion_proof_length", "proof longer than the path");
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) fail("inclusion_proof_length", "proof shorter than the path");
  if (!bytesEqual(r, root)) fail("inclusion_root", "recomputed root differs");
}

/**
 * Verifies that the tree of size1 with root1 is a prefix of the tree of size2 with root2 —
 * RFC 9162 §2.1.4.2. Conventions (as transparency-dev/merkle, whose probes we test against):
 * size1 = 0 is an error (a proof from the empty tree says nothing); size1 = size2 needs an empty
 * proof and equal roots; otherwise the proof must not be empty.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  root1: Uint8Array,
  root2: Uint8Array,
  proof: readonly Uint8Array[],
): void {
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 1 || size2 < size1) {
    fail("consistency_sizes", `invalid sizes ${size1} → ${size2}`);
  }
  if (size1 === size2) {
    // Byte equality is all there is to check here (the probes use non-hash "roots" for this case).
    if (proof.length !== 0) fail("consistency_proof_length", "equal sizes need an empty proof");
    if (!bytesEqual(root1, root2)) fail("consistency_root", "equal sizes with different roots");
    return;
  }
  if (!isHash(root1) || !isHash(root2) || !proof.every(isHash)) {
    fail("consistency_hash_size", "hashes must be 32 bytes");
  }
  if (proof.length === 0) fail("consistency_proof_length", "empty proof");
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) fail("consistency_proof_length", "proof longer than the path");
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) fail("consistency_proof_length", "proof shorter than the path");
  if (!bytesEqual(fr, root1)) fail("consistency_root1", "recomputed first root differs");
  if (!bytesEqual(sr, root2)) fail("consistency_root2", "recomputed second root differs");
}

/** Root of a list of leaf hashes computed from scratch (RFC 9162 §2.1.1), for cross-checks. */
export function rootOfLeaves(leaves: readonly Uint8Array[]): Uint8Array {
  const t = new MerkleTree();
  for (const l of leaves) t.append(l);
  return t.root();
}
