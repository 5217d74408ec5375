import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fromHex, toHex } from "../../src/core/hex.js";
import { leafHash } from "../../src/lineage/hash.js";
import { MerkleTree, verifyConsistency, verifyInclusion } from "../../src/lineage/merkle.js";
import { corpusPath } from "../helpers/corpus.js";

/** transparency-dev/merkle probes (test/corpus/merkle/MANIFEST.md); a missing file fails. */
const CORPUS = corpusPath("merkle/transparency-dev-merkle");

function jsonFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...jsonFiles(p));
    else if (name.endsWith(".json")) out.push(p);
  }
  return out;
}

const b64 = (s: string | null | undefined): Uint8Array => new Uint8Array(Buffer.from(s ?? "", "base64"));
const proofOf = (p: string[] | null | undefined): Uint8Array[] => (p ?? []).map(b64);

function outcome(f: () => void): boolean {
  try {
    f();
    return true;
  } catch (e) {
    expect(e).toMatchObject({ name: "ExecgateError", code: "verification_failed" });
    return false;
  }
}

interface InclusionProbe {
  leafIdx: number;
  treeSize: number;
  root: string;
  leafHash: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

interface ConsistencyProbe {
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

describe("merkle probes from transparency-dev/merkle", () => {
  const inclusion = jsonFiles(join(CORPUS, "testdata/inclusion"));
  const consistency = jsonFiles(join(CORPUS, "testdata/consistency"));

  it("the corpus is present and complete", () => {
    // 98 + 98 probe files as listed in the MANIFEST.
    expect(inclusion.length).toBe(98);
    expect(consistency.length).toBe(98);
  });

  for (const file of inclusion) {
    const probe = JSON.parse(readFileSync(file, "utf8")) as InclusionProbe;
    it(`inclusion ${file.slice(CORPUS.length)} (${probe.desc}) → ${probe.wantErr ? "fails" : "verifies"}`, () => {
      const ok = outcome(() =>
        verifyInclusion(
          probe.leafIdx,
          probe.treeSize,
          b64(probe.leafHash),
          proofOf(probe.proof),
          b64(probe.root),
        ),
      );
      expect(ok).toBe(!probe.wantErr);
    });
  }

  for (const file of consistency) {
    const probe = JSON.parse(readFileSync(file, "utf8")) as ConsistencyProbe;
    it(`consistency ${file.slice(CORPUS.length)} (${probe.desc}) → ${probe.wantErr ? "fails" : "verifies"}`, () => {
      const ok = outcome(() =>
        verifyConsistency(probe.size1, probe.size2, b64(probe.root1), b64(probe.root2), proofOf(probe.proof)),
      );
      expect(ok).toBe(!probe.wantErr);
    });
  }
});

describe("merkle RFC 6962 reference tree", () => {
  const ref = JSON.parse(readFileSync(join(CORPUS, "rfc6962-reference-tree.json"), "utf8")) as {
    leafInputsHex: string[];
    nodeHashesByLevel: string[][];
    rootHashBySize: string[];
  };

  it("leaf hashes, every root by size, and proofs at every size match", () => {
    const tree = new MerkleTree();
    expect(toHex(tree.root())).toBe(ref.rootHashBySize[0]);
    ref.leafInputsHex.forEach((hex, i) => {
      const h = leafHash(fromHex(hex));
      expect(toHex(h)).toBe(ref.nodeHashesByLevel[0]![i]);
      tree.append(h);
      expect(toHex(tree.root())).toBe(ref.rootHashBySize[i + 1]);
    });
    for (let n = 0; n <= 8; n++) expect(toHex(tree.rootAt(n))).toBe(ref.rootHashBySize[n]);
    for (let n = 1; n <= 8; n++) {
      for (let i = 0; i < n; i++) {
        verifyInclusion(i, n, tree.leafHash(i), tree.inclusionProof(i, n), tree.rootAt(n));
      }
      for (let m = 1; m <= n; m++) {
        verifyConsistency(m, n, tree.rootAt(m), tree.rootAt(n), tree.consistencyProof(m, n));
      }
    }
  });

  it("the happy-path probes are reproduced by our proof generator", () => {
    const tree = new MerkleTree();
    for (const hex of ref.leafInputsHex) tree.append(leafHash(fromHex(hex)));
    for (const file of jsonFiles(join(CORPUS, "testdata/inclusion")).filter((f) =>
      f.endsWith("happy-path.json"),
    )) {
      const p = JSON.parse(readFileSync(file, "utf8")) as InclusionProbe;
      if (p.treeSize > 8) continue;
      expect(
        tree.inclusionProof(p.leafIdx, p.treeSize).map((b) => Buffer.from(b).toString("base64")),
      ).toEqual(p.proof ?? []);
    }
    for (const file of jsonFiles(join(CORPUS, "testdata/consistency")).filter((f) =>
      f.endsWith("happy-path.json"),
    )) {
      const p = JSON.parse(readFileSync(file, "utf8")) as ConsistencyProbe;
      if (p.size2 > 8) continue;
      expect(tree.consistencyProof(p.size1, p.size2).map((b) => Buffer.from(b).toString("base64"))).toEqual(
        p.proof ?? [],
      );
    }
  });
});
