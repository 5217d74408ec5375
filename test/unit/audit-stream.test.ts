import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileLeafStore } from "../../src/audit/leaf-file.js";
import { readSegmentEvents } from "../../src/audit/read-segments.js";
import { RecentCallers } from "../../src/audit/recent.js";
import { MemoryLeafStore, StreamTree } from "../../src/audit/stream-tree.js";
import { type SegmentEvent, segmentEvents } from "../../src/lineage/bundle-files.js";
import { leafHash } from "../../src/lineage/hash.js";
import { MerkleTree } from "../../src/lineage/merkle.js";
import {
  frameRecord,
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  segmentName,
} from "../../src/lineage/record.js";

const dir = mkdtempSync(join(tmpdir(), "audit-stream-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Deterministic bytes: entry i of length len. */
function bytes(i: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let k = 0; k < len; k++) b[k] = (i * 31 + k * 7) & 0xff;
  return b;
}

describe("StreamTree: the roots, proofs and leaves of MerkleTree without holding every node", () => {
  for (const [name, store] of [
    ["memory", () => new MemoryLeafStore()],
    // A ring of 64 leaves: most leaves are read back from the temporary file.
    ["file", () => new FileLeafStore(64)],
  ] as const) {
    it(`${name} leaf store: every root up to 1100 leaves, consistency proofs, leaf hashes`, () => {
      const tree = new StreamTree(store());
      const ref = new MerkleTree();
      try {
        for (let i = 0; i < 1100; i++) {
          const leaf = leafHash(bytes(i, 20));
          tree.append(leaf);
          ref.append(leaf);
        }
        for (let n = 0; n <= 1100; n++) expect(tree.rootAt(n)).toEqual(ref.rootAt(n));
        for (const [m, n] of [
          [1, 1100],
          [255, 256],
          [256, 1024],
          [257, 1099],
          [700, 1100],
          [1100, 1100],
          [3, 513],
        ] as const)
          expect(tree.consistencyProof(m, n)).toEqual(ref.consistencyProof(m, n));
        for (const i of [0, 1, 63, 255, 256, 511, 1000, 1099])
          expect(tree.leafHash(i)).toEqual(ref.leafHash(i));
        expect(() => tree.rootAt(1101)).toThrow();
      } finally {
        tree.close();
      }
    });
  }
});

describe("readSegmentEvents: the same events from disk, read in bounded chunks, as from bytes in memory", () => {
  /** A segment starting at `first` with `n` entries of varied sizes (up to 60 KiB). */
  function segment(first: number, n: number): Uint8Array {
    const payloads = Array.from({ length: n }, (_, k) =>
      bytes(first + k, 1 + (((first + k) * 7919) % 61_440)),
    );
    const out = new Uint8Array(
      SEGMENT_HEADER_BYTES + payloads.reduce((s, p) => s + RECORD_HEADER_BYTES + p.length, 0),
    );
    out.set(SEGMENT_MAGIC, 0);
    new DataView(out.buffer).setBigUint64(8, BigInt(first));
    let at = SEGMENT_HEADER_BYTES;
    for (const p of payloads) at = frameRecord(p, out, at);
    return out;
  }
  const strip = (evs: Iterable<SegmentEvent>) =>
    [...evs].map((e) =>
      e.kind === "entry" ? { kind: "entry", bytes: Buffer.from(e.bytes).toString("hex") } : e,
    );

  it("intact segments, a flipped byte, a torn tail and a bad header", () => {
    const a = segment(0, 40);
    const b = segment(40, 30);
    b[SEGMENT_HEADER_BYTES + 5000] = b[SEGMENT_HEADER_BYTES + 5000]! ^ 1;
    const c = segment(70, 25).subarray(0, 200_000);
    const d = Uint8Array.of(1, 2, 3);
    const files = [
      { name: segmentName(0), bytes: a },
      { name: segmentName(40), bytes: b },
      { name: segmentName(70), bytes: c },
      { name: segmentName(95), bytes: d },
    ];
    const segDir = join(dir, "b");
    const paths = files.map((f) => `segments/${f.name}`);
    mkdirSync(join(segDir, "segments"), { recursive: true });
    for (const f of files) writeFileSync(join(segDir, "segments", f.name), f.bytes);
    const expected = strip(segmentEvents(files));
    expect(expected.map((e) => e.kind)).toContain("bad_record");
    expect(expected.at(-1)?.kind).toBe("header_error");
    expect(strip(readSegmentEvents(segDir, paths, 1))).toEqual(expected);
    expect(strip(readSegmentEvents(segDir, paths))).toEqual(expected);
  });
});

describe("RecentCallers: what denial_repeats checks, kept for a window of entries", () => {
  it("a denial's reason, code and request uid; far beyond the window; nothing for other entries", () => {
    const r = new RecentCallers(8);
    r.request(0, 1000);
    r.denial(1, "pcr_mismatch", undefined, 0);
    r.denial(2, "rate_limited", "burst", undefined);
    r.other(3);
    expect(r.denialAt(1, 4)).toEqual({ reason: "pcr_mismatch", code: undefined, requestUid: 1000 });
    expect(r.denialAt(2, 4)).toEqual({ reason: "rate_limited", code: "burst", requestUid: undefined });
    expect(r.denialAt(3, 4)).toBeUndefined();
    expect(r.denialAt(0, 4)).toBeUndefined();
    expect(r.denialAt(1, 9)).toBe("far");
    r.request(10, 7n);
    r.denial(11, "pcr_mismatch", undefined, 10);
    r.denial(20, "pcr_mismatch", undefined, 11);
    expect(r.denialAt(11, 12)).toMatchObject({ requestUid: "far" });
    expect(r.denialAt(20, 21)).toMatchObject({ requestUid: "far" });
  });
});
