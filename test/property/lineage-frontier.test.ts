import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { extendFrontier, frontierRoot } from "../../src/lineage/frontier.js";
import { EMPTY_ROOT, leafHash } from "../../src/lineage/hash.js";
import { rootOfLeaves } from "../../src/lineage/merkle.js";

const leaves = Array.from({ length: 300 }, (_, i) => leafHash(Uint8Array.of(i & 0xff, i >> 8)));

describe("frontier (the O(log n) right edge of the tree)", () => {
  it("gives the RFC 9162 root at every size, however the leaves are split into appends", () => {
    expect(frontierRoot([])).toEqual(EMPTY_ROOT);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }), (chunks) => {
        let f: Uint8Array[] = [];
        let size = 0;
        for (const c of chunks) {
          const add = leaves.slice(size, Math.min(leaves.length, size + c));
          f = extendFrontier(f, size, add);
          size += add.length;
          expect(f.length).toBe(size.toString(2).split("1").length - 1); // one root per set bit
          expect(frontierRoot(f)).toEqual(rootOfLeaves(leaves.slice(0, size)));
        }
      }),
      { numRuns: 200 },
    );
  });

  it("leaves its input frontier untouched", () => {
    const f = extendFrontier([], 0, leaves.slice(0, 3));
    const copy = f.map((h) => h.slice());
    extendFrontier(f, 3, leaves.slice(3, 9));
    expect(f).toEqual(copy);
  });
});
