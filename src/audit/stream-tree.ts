import { ExecgateError } from "../core/errors.js";
import { EMPTY_ROOT, HASH_SIZE, nodeHash } from "../lineage/hash.js";
import { HashColumn } from "../lineage/hash-column.js";
import { splitPoint, subproof } from "../lineage/merkle.js";

/**
 * The auditor's Merkle tree (RFC 9162 §2.1), built one leaf at a time without holding every node:
 * the leaf hashes go to a LeafStore (memory in tests, a temporary file for large bundles), the
 * complete subtrees of 2^LOW_LEVELS leaves and above stay in memory, and any lower subtree is
 * rehashed from its leaves when a root or proof needs it. Same roots and proofs as MerkleTree.
 */

/** Subtrees below 2^LOW_LEVELS leaves are recomputed (at most 256 leaf reads each). */
const LOW_LEVELS = 8;
const BLOCK = 1 << LOW_LEVELS;

/** Where the leaf hashes live: appended in order, read back by index. */
export interface LeafStore {
  push(leaf: Uint8Array): void;
  /** Leaf i (a view: copy it to keep it). */
  get(i: number): Uint8Array;
  /** Leaves lo..hi-1 back to back (hi - lo ≤ 256). */
  range(lo: number, hi: number): Uint8Array;
  close(): void;
}

export class MemoryLeafStore implements LeafStore {
  private readonly col = new HashColumn(1024);
  push(leaf: Uint8Array): void {
    this.col.push(leaf);
  }
  get(i: number): Uint8Array {
    return this.col.get(i);
  }
  range(lo: number, hi: number): Uint8Array {
    const out = new Uint8Array((hi - lo) * HASH_SIZE);
    for (let i = lo; i < hi; i++) out.set(this.col.get(i), (i - lo) * HASH_SIZE);
    return out;
  }
  close(): void {}
}

function isAlignedPower(lo: number, n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0 && lo % n === 0;
}

export class StreamTree {
  /** levels[j] holds the complete subtrees of 2^(LOW_LEVELS + j) leaves. */
  private readonly upper: HashColumn[] = [new HashColumn()];
  /** The right edge of the block being filled (one hash per set bit of its size). */
  private block: Uint8Array[] = [];
  private count = 0;

  constructor(private readonly leaves: LeafStore = new MemoryLeafStore()) {}

  get size(): number {
    return this.count;
  }

  append(leaf: Uint8Array): void {
    if (leaf.length !== HASH_SIZE) throw new ExecgateError("malformed", "merkle: leaf hash must be 32 bytes");
    this.leaves.push(leaf);
    let h = leaf;
    let s = this.count % BLOCK;
    while (s % 2 === 1) {
      h = nodeHash(this.block.pop()!, h);
      s = (s - 1) / 2;
    }
    this.block.push(h);
    this.count += 1;
    if (this.count % BLOCK === 0) this.closeBlock(this.block.pop()!);
  }

  private closeBlock(hash: Uint8Array): void {
    this.block = [];
    let level = 0;
    let i = this.upper[0]!.count;
    this.upper[0]!.push(hash);
    while (i % 2 === 1) {
      const col = this.upper[level]!;
      const parent = nodeHash(col.get(i - 1), col.get(i));
      level += 1;
      if (this.upper.length === level) this.upper.push(new HashColumn());
      this.upper[level]!.push(parent);
      i = (i - 1) / 2;
    }
  }

  leafHash(index: number): Uint8Array {
    this.check(index, this.count - 1, "leaf index");
    return this.leaves.get(index).slice();
  }

  rootAt(n: number): Uint8Array {
    this.check(n, this.count, "size");
    return n === 0 ? EMPTY_ROOT.slice() : this.range(0, n).slice();
  }

  root(): Uint8Array {
    return this.rootAt(this.count);
  }

  /** PROOF(m, D[0:n]) — RFC 9162 §2.1.4.1; empty when m = n. Requires 0 < m ≤ n ≤ size. */
  consistencyProof(m: number, n: number): Uint8Array[] {
    this.check(n, this.count, "size");
    if (!Number.isSafeInteger(m) || m < 1 || m > n)
      throw new ExecgateError("malformed", `merkle: consistency proof needs 0 < m ≤ n (m=${m}, n=${n})`);
    const out: Uint8Array[] = [];
    if (m < n) subproof((lo, hi) => this.range(lo, hi), m, 0, n, true, out);
    return out;
  }

  /** Drops the leaf store (its temporary file, if any). */
  close(): void {
    this.leaves.close();
  }

  /** MTH(D[lo:hi]) for hi > lo. */
  private range(lo: number, hi: number): Uint8Array {
    const n = hi - lo;
    if (n >= BLOCK && isAlignedPower(lo, n)) {
      const level = Math.round(Math.log2(n)) - LOW_LEVELS;
      return this.upper[level]!.get(lo / n);
    }
    if (n <= BLOCK && Math.floor(lo / BLOCK) === Math.floor((hi - 1) / BLOCK)) return this.rehash(lo, hi);
    const k = splitPoint(n);
    return nodeHash(this.range(lo, lo + k), this.range(lo + k, hi));
  }

  /** MTH of up to one block of leaves, from the leaf store. */
  private rehash(lo: number, hi: number): Uint8Array {
    const bytes = this.leaves.range(lo, hi);
    const level: Uint8Array[] = [];
    for (let i = 0; i < hi - lo; i++) level.push(bytes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
    return mth(level);
  }

  private check(v: number, max: number, what: string): void {
    if (!Number.isSafeInteger(v) || v < 0 || v > max)
      throw new ExecgateError("malformed", `merkle: ${what} ${v} outside 0..${max}`);
  }
}

/** MTH over a list of leaf hashes (RFC 9162 §2.1.1 split at the largest power of two below n). */
function mth(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 1) return leaves[0]!;
  const k = splitPoint(leaves.length);
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}
