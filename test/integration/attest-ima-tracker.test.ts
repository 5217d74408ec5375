import { appendFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { ImaTracker } from "../../src/attest/ima-tracker.js";
import { BlobStore } from "../../src/lineage/blobs.js";
import { buildAllowlist } from "../../src/measure/ima-allowlist.js";
import { fileHash, imaNg } from "../helpers/ima.js";
import { scratchDirs } from "../helpers/scratch.js";

// The IMA tracker on real files and a real blob store: what the list gained is read once and
// stored; entries not yet judged are kept for the next epoch; what a quote covered is measured.

const scratch = scratchDirs("execgate-ima-tracker-");
const log = pino({ level: "silent" });

async function setup() {
  const dir = await scratch();
  const path = join(dir, "binary_runtime_measurements");
  const blobs = await BlobStore.open(join(dir, "blobs"));
  return { path, blobs, tracker: new ImaTracker({ path, blobs, log }) };
}

describe("ImaTracker", () => {
  it("without a list path (no TPM to quote PCR 10), nothing is read", async () => {
    const { blobs } = await setup();
    const digests: Uint8Array[] = [];
    expect(await new ImaTracker({ path: undefined, blobs, log }).read(digests)).toBeUndefined();
    expect(digests).toEqual([]);
  });

  it("an empty or missing list gives nothing to judge", async () => {
    const { path, tracker } = await setup();
    const digests: Uint8Array[] = [];
    expect(await tracker.read(digests)).toBeUndefined();
    await writeFile(path, "");
    expect(await tracker.read(digests)).toBeUndefined();
    expect(digests).toEqual([]);
  });

  it("entries read but not judged come back with the next epoch's, each chunk stored once", async () => {
    const { path, blobs, tracker } = await setup();
    await writeFile(
      path,
      Buffer.concat([imaNg("/usr/bin/a", fileHash("a")), imaNg("/usr/bin/b", fileHash("b"))]),
    );
    const first: Uint8Array[] = [];
    const r1 = await tracker.read(first);
    expect(r1?.entries).toHaveLength(2);
    expect(first).toHaveLength(1);
    expect(await blobs.has(first[0]!)).toBe(true);
    tracker.settle(r1, undefined);
    await appendFile(path, imaNg("/usr/bin/c", fileHash("c")));
    const second: Uint8Array[] = [];
    const r2 = await tracker.read(second);
    expect(r2?.entries).toHaveLength(3);
    expect(second).toHaveLength(1);
    expect(second[0]).not.toEqual(first[0]);
  });

  it("entries a quote covered are measured; a new allowlist judges them all again", async () => {
    const { path, tracker } = await setup();
    await writeFile(
      path,
      Buffer.concat([imaNg("/usr/bin/a", fileHash("a")), imaNg("/usr/bin/b", fileHash("b"))]),
    );
    const read = await tracker.read([]);
    if (!read) throw new Error("nothing read");
    // Judged: the quote covered the first entry; the second waits for the next epoch.
    tracker.settle(read, { state: read.state, pending: read.entries.slice(1), violations: [] });
    expect(tracker.measurements("/usr/bin/a")).toEqual(new Set([fileHash("a").toString("hex")]));
    expect(tracker.measurements("/usr/bin/b")).toBeUndefined();
    const next = await tracker.read([]);
    expect(next?.entries).toHaveLength(1);

    const allowsB = buildAllowlist({ texts: [`${fileHash("b").toString("hex")}  /usr/bin/b\n`] });
    tracker.judgeUnder(allowsB);
    if (!next) throw new Error("nothing read");
    const prior = tracker.evidence(next).priorViolations;
    expect(prior?.count).toBe(1);
    expect(prior?.first[0]).toMatchObject({ path: "/usr/bin/a" });
    const allowsA = buildAllowlist({ texts: [`${fileHash("a").toString("hex")}  /usr/bin/a\n`] });
    tracker.judgeUnder(allowsA);
    expect(tracker.evidence(next).priorViolations).toEqual({ count: 0, first: [] });
  });
});
