import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MAX_ENTRY_BYTES } from "../../src/lineage/entry.js";
import { leafHash } from "../../src/lineage/hash.js";
import { rootOfLeaves } from "../../src/lineage/merkle.js";
import { entryBundles, hashTiles, TILE_WIDTH, tileIndexPath } from "../../src/lineage/tiles.js";
import { corpusPath } from "../helpers/corpus.js";

// transparency-dev/tessera testdata log (Apache-2.0): test/corpus/checkpoint/MANIFEST.md
const LOG = corpusPath("checkpoint/tessera-testdata-log");

describe("C2SP tlog-tiles layout", () => {
  it("names tile indices in three-digit groups", () => {
    expect(tileIndexPath(0)).toBe("000");
    expect(tileIndexPath(7)).toBe("007");
    expect(tileIndexPath(1234)).toBe("x001/234");
    expect(tileIndexPath(1234067)).toBe("x001/x234/067");
  });

  it("reproduces tessera's tiles and entry bundles byte for byte at every size", () => {
    const expected = JSON.parse(readFileSync(join(LOG, "expected.json"), "utf8")) as {
      leavesInOrder: string[];
    };
    const entries = expected.leavesInOrder.map((s) => new TextEncoder().encode(s));
    for (let size = 1; size <= entries.length; size++) {
      const part = entries.slice(0, size);
      const [hashes] = hashTiles(part.map((e) => leafHash(e)));
      const [bundle] = entryBundles(part);
      expect(hashes!.path).toBe(`tile/0/000.p/${size}`);
      expect(Buffer.from(hashes!.bytes).equals(readFileSync(join(LOG, hashes!.path)))).toBe(true);
      expect(bundle!.path).toBe(`tile/entries/000.p/${size}`);
      expect(Buffer.from(bundle!.bytes).equals(readFileSync(join(LOG, bundle!.path)))).toBe(true);
    }
  });

  it("writes a level-1 tile once 256 leaves complete a subtree", () => {
    const leaves = Array.from({ length: 300 }, (_, i) => leafHash(Uint8Array.of(i & 0xff, i >> 8)));
    const paths = hashTiles(leaves).map((t) => t.path);
    expect(paths).toEqual(["tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1"]);
  });

  it("bundles the largest entry the journal takes (uint16 length ffff)", () => {
    const [bundle] = entryBundles([new Uint8Array(MAX_ENTRY_BYTES).fill(7)]);
    expect(bundle!.bytes.length).toBe(2 + MAX_ENTRY_BYTES);
    expect([bundle!.bytes[0], bundle!.bytes[1], bundle!.bytes[2]]).toEqual([0xff, 0xff, 7]);
    expect(() => entryBundles([new Uint8Array(MAX_ENTRY_BYTES + 1)])).toThrow(/does not fit/);
  });

  it("streams the same tiles as building every level at once, across level-2 sizes", () => {
    // The tiles by definition: each level whole, the next level the roots of its full tiles.
    const reference = (leaves: Uint8Array[]) => {
      const out: { path: string; hex: string }[] = [];
      let level = leaves;
      for (let L = 0; level.length > 0; L++) {
        const next: Uint8Array[] = [];
        for (let n = 0; n * TILE_WIDTH < level.length; n++) {
          const chunk = level.slice(n * TILE_WIDTH, (n + 1) * TILE_WIDTH);
          const w = chunk.length < TILE_WIDTH ? `.p/${chunk.length}` : "";
          out.push({ path: `tile/${L}/${tileIndexPath(n)}${w}`, hex: Buffer.concat(chunk).toString("hex") });
          if (chunk.length === TILE_WIDTH) next.push(rootOfLeaves(chunk));
        }
        level = next;
      }
      return out.sort((a, b) => a.path.localeCompare(b.path));
    };
    const all = Array.from({ length: 65_536 + 257 }, (_, i) =>
      leafHash(Uint8Array.of(i & 0xff, i >> 8, i >> 16)),
    );
    for (const size of [1, 255, 256, 257, 65_535, 65_536, 65_536 + 257]) {
      const leaves = all.slice(0, size);
      const streamed = hashTiles(leaves)
        .map((t) => ({ path: t.path, hex: Buffer.from(t.bytes).toString("hex") }))
        .sort((a, b) => a.path.localeCompare(b.path));
      expect(streamed).toEqual(reference(leaves));
    }
  });
});
