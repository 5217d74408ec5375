import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AuditInput, verifyBundle } from "../../src/audit/verify.js";
import { encode } from "../../src/cbor/index.js";
import { parseCheckpointLog } from "../../src/lineage/bundle-files.js";
import { parseCheckpoint } from "../../src/lineage/checkpoint.js";
import { encodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { openLineage } from "../../src/lineage/lineage.js";
import { parseNote, signNote, verifierFromSigner } from "../../src/lineage/note.js";
import { frameRecord } from "../../src/lineage/record.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";

const ORIGIN = "execgate.test/audit";
const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(9));
let dir: string;
let good: AuditInput;

const t = (i: number) => ({ wallMs: 1_000 + i, monoUs: i });

/** A real lineage directory: requests, linked decisions, three signed checkpoints, two segments. */
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "execgate-audit-"));
  let clock = 0;
  const lin = await openLineage({ dir, origin: ORIGIN, signer, now: () => clock, segmentBytes: 2048 });
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 8; i++) {
      const [req] = await lin.add([
        makeEntry("request", t(i), {
          requestId: `r${round}-${i}`,
          scope: "inference",
          actionDigest: new Uint8Array(32).fill(i),
          peer: { uid: 1000, gid: 1000, pid: 100 + i },
        }),
      ]);
      await lin.add([makeEntry("decision", t(i), { allow: i % 2 === 0 }, [req!])]);
    }
    clock += 5000;
    await lin.checkpointTick();
  }
  await lin.close();
  good = await readBundle(dir);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readBundle(d: string): Promise<AuditInput> {
  const names = (await readdir(join(d, "segments"))).sort();
  return {
    origin: ORIGIN,
    logVerifier: verifierFromSigner(signer),
    segments: await Promise.all(
      names.map(async (name) => ({ name, bytes: new Uint8Array(await readFile(join(d, "segments", name))) })),
    ),
    checkpointLog: new Uint8Array(await readFile(join(d, "checkpoints.log"))),
  };
}

function withSegment(input: AuditInput, k: number, edit: (b: Uint8Array) => Uint8Array): AuditInput {
  return {
    ...input,
    segments: input.segments.map((s, i) => (i === k ? { name: s.name, bytes: edit(s.bytes.slice()) } : s)),
  };
}

const checks = (r: ReturnType<typeof verifyBundle>): string[] => r.failures.map((f) => f.check);

describe("audit: verifyBundle", () => {
  it("a real lineage directory verifies: entries → tree → 3 checkpoints → consistency", () => {
    expect(good.segments.length).toBeGreaterThan(1);
    const r = verifyBundle(good);
    expect(r.failures).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.entries).toBe(48);
    expect(r.checkpointsVerified).toBe(3);
    expect(r.latestCheckpoint?.size).toBe(48);
  });

  it("reports progress while it recomputes a large log", () => {
    const seen: number[] = [];
    verifyBundle({ ...good, onProgress: (n) => seen.push(n), progressEvery: 16 });
    expect(seen).toEqual([16, 32, 48]);
  });

  it("a flipped byte in an entry is reported with its position", () => {
    const r = verifyBundle(
      withSegment(good, 0, (b) => {
        b[40]! ^= 1;
        return b;
      }),
    );
    expect(r.ok).toBe(false);
    expect(checks(r)).toContain("record");
    expect(r.failures.find((f) => f.check === "record")?.segment).toBe(good.segments[0]!.name);
  });

  it("an entry rewritten with a valid CRC breaks the checkpoint roots and the back-reference", () => {
    const edited = withSegment(good, 0, (b) => {
      const replacement = encodeEntry(
        makeEntry("request", t(0), {
          requestId: "rX-0", // same length as "r0-0": the record keeps its size
          scope: "inference",
          actionDigest: new Uint8Array(32).fill(0),
          peer: { uid: 1000, gid: 1000, pid: 100 },
        }),
      );
      frameRecord(replacement, b, 16);
      return b;
    });
    const r = verifyBundle(edited);
    expect(r.ok).toBe(false);
    expect(checks(r)).toContain("checkpoint_root");
    expect(r.failures).toContainEqual(expect.objectContaining({ check: "backref", index: 1 }));
  });

  it("a missing segment breaks the sequence", () => {
    const r = verifyBundle({ ...good, segments: good.segments.filter((_, i) => i !== 1) });
    expect(checks(r)).toContain("segment_sequence");
  });

  it("a checkpoint signed by another key fails; the log key must sign", () => {
    const other = softwareEd25519Signer(ORIGIN);
    const r = verifyBundle({ ...good, logVerifier: verifierFromSigner(other) });
    expect(r.ok).toBe(false);
    expect(r.failures.filter((f) => f.check === "checkpoint_signature")).toHaveLength(3);
  });

  it("a forked checkpoint (same size, other root) signed by the log key is caught", async () => {
    const log = parseCheckpointLog(good.checkpointLog);
    const first = log.records.find((x) => x.kind === "checkpoint");
    if (first?.kind !== "checkpoint") throw new Error("no checkpoint");
    const cp = parseCheckpoint(parseNote(first.note).text);
    const forkedText = `${ORIGIN}\n${cp.size}\n${Buffer.alloc(32, 1).toString("base64")}\n`;
    const note = await signNote(forkedText, [signer]);
    const payload = encode(
      new Map([
        ["kind", "checkpoint"],
        ["note", note],
      ]),
    );
    const rec = new Uint8Array(8 + payload.length);
    frameRecord(payload, rec, 0);
    const r = verifyBundle({ ...good, checkpointLog: Buffer.concat([good.checkpointLog, rec]) });
    expect(checks(r)).toEqual(expect.arrayContaining(["checkpoint_fork", "checkpoint_root"]));
  });

  /** The bundle's signed checkpoints (16, 32, 48), as an auditor would have kept them. */
  const keptNotes = (): string[] =>
    parseCheckpointLog(good.checkpointLog).records.flatMap((r) => (r.kind === "checkpoint" ? [r.note] : []));
  const kept = () => keptNotes().map((n) => parseCheckpoint(parseNote(n).text));

  it("verifies against any checkpoint the auditor kept: the first, a middle one, the last, all", () => {
    const cps = kept();
    expect(cps.map((c) => c.size)).toEqual([16, 32, 48]);
    for (const trusted of [[cps[1]!], [cps[0]!], [cps[2]!], cps, [...cps].reverse()]) {
      const r = verifyBundle({ ...good, trustedCheckpoints: trusted });
      expect(r.failures, trusted.map((c) => c.size).join(",")).toEqual([]);
    }
  });

  it("rollback against a checkpoint the auditor held before is caught", () => {
    const r = verifyBundle({
      ...good,
      trustedCheckpoints: [{ origin: ORIGIN, size: 60, rootHash: new Uint8Array(32), extensions: [] }],
    });
    expect(checks(r)).toContain("checkpoint_rollback");
    // All 48 entries, but the bundle's signed checkpoints stop at 32 while the auditor holds 48.
    const records = keptNotes()
      .slice(0, 2)
      .map((note) => {
        const payload = encode(
          new Map<string, string>([
            ["kind", "checkpoint"],
            ["note", note],
          ]),
        );
        const rec = new Uint8Array(8 + payload.length);
        frameRecord(payload, rec, 0);
        return rec;
      });
    const cut = verifyBundle({
      ...good,
      checkpointLog: Buffer.concat(records),
      trustedCheckpoints: [kept()[2]!],
    });
    expect(checks(cut)).toContain("checkpoint_rollback");
  });

  it("a checkpoint the auditor kept with another root at its size (a fork) is caught", () => {
    const middle = kept()[1]!;
    const r = verifyBundle({
      ...good,
      trustedCheckpoints: [{ ...middle, rootHash: new Uint8Array(32).fill(1) }],
    });
    expect(checks(r)).toEqual(["checkpoint_fork"]);
  });

  it("entries beyond the last checkpoint are reported as uncovered", () => {
    const extra = encodeEntry(makeEntry("daemon_stop", t(99), { reason: "late" }));
    const last = good.segments.length - 1;
    const r = verifyBundle(
      withSegment(good, last, (b) => {
        const out = new Uint8Array(b.length + 8 + extra.length);
        out.set(b);
        frameRecord(extra, out, b.length);
        return out;
      }),
    );
    expect(r.failures).toEqual([expect.objectContaining({ check: "checkpoint_coverage", index: 48 })]);
  });

  it("the checkpoint file must be the latest signed checkpoint; kept notes must be signed", () => {
    const notes = keptNotes();
    const enc = (n: string) => new TextEncoder().encode(n);
    const latest = verifyBundle({ ...good, checkpointFile: enc(notes[2]!) });
    expect(latest.failures).toEqual([]);
    expect(latest.latestCheckpoint?.size).toBe(48);
    const older = verifyBundle({ ...good, checkpointFile: enc(notes[1]!) });
    expect(checks(older)).toEqual(["checkpoint_file_stale"]);
    expect(older.latestCheckpoint).toBeUndefined();
    const other = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(3));
    const unsigned = verifyBundle({ ...good, checkpointFile: enc(notes[2]!.replace(/\n\n[\s\S]*$/, "\n")) });
    expect(checks(unsigned)).toEqual(["checkpoint_file_signature"]);
    const kept = [{ source: "kept.note", note: enc(notes[1]!) }];
    expect(verifyBundle({ ...good, trustedCheckpointNotes: kept }).failures).toEqual([]);
    const forged = verifyBundle({
      ...good,
      trustedCheckpointNotes: [{ source: "forged.note", note: enc(notes[1]!) }],
      logVerifier: verifierFromSigner(other),
      otherVerifiers: [verifierFromSigner(signer)],
    });
    expect(checks(forged)).toContain("trusted_checkpoint_signature");
  });

  it("a segment whose name is not its first index fails segment_name", () => {
    const renamed = {
      ...good,
      segments: good.segments.map((s, i) => (i === 1 ? { ...s, name: "00000000000000000001.seg" } : s)),
    };
    expect(checks(verifyBundle(renamed))).toContain("segment_name");
  });
});
