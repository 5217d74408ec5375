import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { leafHash, nodeHash } from "../../src/lineage/hash.js";
import { MerkleTree, verifyConsistency, verifyInclusion } from "../../src/lineage/merkle.js";

/** A straightforward RFC 9162 §2.1.1 MTH, independent of the incremental tree. */
function naiveRoot(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(naiveRoot(leaves.slice(0, k)), naiveRoot(leaves.slice(k)));
}

function buildTree(n: number): { tree: MerkleTree; leaves: Uint8Array[] } {
  const tree = new MerkleTree();
  const leaves: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const h = leafHash(Uint8Array.of(i & 0xff, i >> 8));
    leaves.push(h);
    tree.append(h);
  }
  return { tree, leaves };
}

const BIG = buildTree(300);

function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const c = b.slice();
  c[(bit >> 3) % c.length]! ^= 1 << (bit & 7);
  return c;
}

const fails = (f: () => void): boolean => {
  try {
    f();
    return false;
  } catch (e) {
    expect(e).toMatchObject({ code: "verification_failed" });
    return true;
  }
};

describe("merkle properties", () => {
  it("rootAt(n) equals the naive MTH for every n", () => {
    for (let n = 1; n <= 300; n++) expect(BIG.tree.rootAt(n)).toEqual(naiveRoot(BIG.leaves.slice(0, n)));
  });

  it("every generated inclusion proof verifies; any flipped bit fails", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.nat(), fc.nat(), (n, i0, bit) => {
        const i = i0 % n;
        const proof = BIG.tree.inclusionProof(i, n);
        const root = BIG.tree.rootAt(n);
        const leaf = BIG.tree.leafHash(i);
        verifyInclusion(i, n, leaf, proof, root);
        expect(fails(() => verifyInclusion(i, n, flipBit(leaf, bit), proof, root))).toBe(true);
        expect(fails(() => verifyInclusion(i, n, leaf, proof, flipBit(root, bit)))).toBe(true);
        if (proof.length > 0) {
          const j = bit % proof.length;
          const bad = proof.map((p, k) => (k === j ? flipBit(p, bit) : p));
          expect(fails(() => verifyInclusion(i, n, leaf, bad, root))).toBe(true);
          expect(fails(() => verifyInclusion(i, n, leaf, proof.slice(1), root))).toBe(true);
        }
        expect(fails(() => verifyInclusion(i, n, leaf, [...proof, root], root))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("every generated consistency proof verifies; any flipped bit fails", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 300 }),
        fc.nat(),
        (a, b, bit) => {
          const m = Math.min(a, b);
          const n = Math.max(a, b);
          const proof = BIG.tree.consistencyProof(m, n);
          const r1 = BIG.tree.rootAt(m);
          const r2 = BIG.tree.rootAt(n);
          verifyConsistency(m, n, r1, r2, proof);
          expect(fails(() => verifyConsistency(m, n, flipBit(r1, bit), r2, proof))).toBe(true);
          expect(fails(() => verifyConsistency(m, n, r1, flipBit(r2, bit), proof))).toBe(true);
          if (proof.length > 0) {
            const j = bit % proof.length;
            const bad = proof.map((p, k) => (k === j ? flipBit(p, bit) : p));
            expect(fails(() => verifyConsistency(m, n, r1, r2, bad))).toBe(true);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it("truncate then re-append gives the same roots", () => {
    const { tree, leaves } = buildTree(77);
    tree.truncate(40);
    expect(tree.size).toBe(40);
    expect(tree.root()).toEqual(naiveRoot(leaves.slice(0, 40)));
    for (const l of leaves.slice(40)) tree.append(l);
    expect(tree.root()).toEqual(naiveRoot(leaves));
  });
});
