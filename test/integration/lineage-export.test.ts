import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BlobStore } from "../../src/lineage/blobs.js";
import { makeEntry } from "../../src/lineage/entry.js";
import { exportBundle } from "../../src/lineage/export.js";
import { openLineage } from "../../src/lineage/lineage.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";
import { verifyExported } from "../helpers/lineage.js";

const ORIGIN = "execgate.test/export";
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("lineage export → audit", () => {
  it("exports a signed, self-contained snapshot while appends continue, and it verifies", async () => {
    const dir = await mkdtemp(join(tmpdir(), "execgate-export-"));
    dirs.push(dir);
    const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(3));
    const lin = await openLineage({ dir, origin: ORIGIN, signer, now: () => 0, segmentBytes: 1024 });
    const blobs = await BlobStore.open(join(dir, "blobs"));
    const digest = await blobs.put(new TextEncoder().encode("an event log"));
    const t = { wallMs: 1, monoUs: 1 };
    await lin.add([
      makeEntry("epoch", t, {
        quote: new Uint8Array(8),
        issuerKey: new Uint8Array(32),
        verified: true,
        evidence: [digest],
      }),
    ]);
    for (let i = 0; i < 30; i++) await lin.add([makeEntry("daemon_stop", t, { reason: `entry ${i}` })]);

    // Appends racing the export: they may or may not be in it, but the bundle is consistent.
    const racing = Array.from({ length: 20 }, (_, i) =>
      lin.add([makeEntry("daemon_stop", t, { reason: `late ${i}` })]),
    );
    const out = join(dir, "bundle");
    const result = await exportBundle({ lineage: lin, out, blobsDir: join(dir, "blobs") });
    await Promise.all(racing);
    expect(result.size).toBeGreaterThanOrEqual(31);
    expect(result.segments).toBeGreaterThan(1);
    expect(result.blobs).toBe(1);
    await expect(exportBundle({ lineage: lin, out })).rejects.toMatchObject({ code: "io_error" });
    await lin.close();

    const { files, report } = await verifyExported(out);
    expect(files.origin).toBe(ORIGIN);
    expect(files.blobNames).toHaveLength(1);
    expect(report.failures).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.entries).toBe(result.size);
    expect(report.latestCheckpoint?.size).toBe(result.size);
  });
});
