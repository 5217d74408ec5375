import { cp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type Entry, encodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { exportBundle } from "../../src/lineage/export.js";
import { leafHash } from "../../src/lineage/hash.js";
import { openLineage } from "../../src/lineage/lineage.js";
import { rootOfLeaves } from "../../src/lineage/merkle.js";
import { frameRecord, RECORD_HEADER_BYTES } from "../../src/lineage/record.js";
import { decodeResume, encodeResume, RESUME_NAME, readResume } from "../../src/lineage/resume.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";
import { verifyExported } from "../helpers/lineage.js";
import { scratchDirs } from "../helpers/scratch.js";

// A restart replays only what came after the saved resume point, and ends with the same tree as a
// full replay; a resume point that does not fit the files is ignored, never trusted.

const ORIGIN = "execgate.test/resume";
const tempDir = scratchDirs("execgate-resume-");

const entry = (i: number): Entry =>
  makeEntry("daemon_stop", { wallMs: i, monoUs: i }, { reason: `entry number ${i}` });
const rootOf = (n: number) =>
  rootOfLeaves(Array.from({ length: n }, (_, i) => leafHash(encodeEntry(entry(i)))));
const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(9));
/** Small segments, so a log of a few hundred entries spans several. */
const open = (dir: string, resumeEvery?: number) =>
  openLineage({
    dir,
    origin: ORIGIN,
    signer,
    now: () => 0,
    checkpointMs: 1000,
    segmentBytes: 4096,
    ...(resumeEvery !== undefined ? { resumeEvery } : {}),
  });
/** Opens `dir` (no resume saving), expects this recovery and the tree of its size, closes it. */
async function expectReopens(
  dir: string,
  recovery: { size: number; resumedAt: number; truncatedBytes?: number },
): Promise<void> {
  const lin = await open(dir);
  expect(lin.recovery).toMatchObject(recovery);
  expect(lin.root()).toEqual(rootOf(recovery.size));
  await lin.close();
}

async function appendRange(lin: Awaited<ReturnType<typeof open>>, from: number, to: number) {
  for (let i = from; i < to; i += 50)
    await Promise.all(Array.from({ length: Math.min(50, to - i) }, (_, k) => lin.add([entry(i + k)])));
}
/** A copy of the directory as a crash would leave it (the copy's LOCK would name this live process). */
async function crashCopy(dir: string): Promise<string> {
  const to = await tempDir();
  await cp(dir, to, { recursive: true });
  await rm(join(to, "LOCK"), { force: true });
  return to;
}

describe("resume point", () => {
  it("encodes and decodes; anything but one intact, well-formed record is unusable", () => {
    const r = {
      size: 5,
      root: new Uint8Array(32).fill(1),
      note: "n",
      frontier: [new Uint8Array(32).fill(2), new Uint8Array(32).fill(3)],
      segment: 0,
      offset: 100,
      earlierSegments: 0,
      earlierBytes: 0,
      logOffset: 200,
      logRecordBytes: 150,
    };
    const bytes = encodeResume(r);
    expect(decodeResume(bytes)).toEqual(r);
    expect(decodeResume(bytes.subarray(0, bytes.length - 1))).toBeUndefined();
    const flipped = bytes.slice();
    flipped[bytes.length - 3]! ^= 1;
    expect(decodeResume(flipped)).toBeUndefined();
    // size 5 = 0b101 needs two frontier hashes, not one
    expect(decodeResume(encodeResume({ ...r, frontier: r.frontier.slice(1) }))).toBeUndefined();
    expect(decodeResume(encodeResume({ ...r, segment: 6 }))).toBeUndefined();
  });

  it("saved at close; the next open replays nothing before it and reaches the same tree", async () => {
    const dir = await tempDir();
    const lin = await open(dir);
    await appendRange(lin, 0, 300);
    await lin.close();
    const saved = await readResume(dir);
    expect(saved?.size).toBe(300);
    expect((await readdir(join(dir, "segments"))).length).toBeGreaterThan(3);

    const again = await open(dir);
    expect(again.recovery).toMatchObject({ size: 300, resumedAt: 300 });
    expect(again.root()).toEqual(rootOf(300));
    expect(again.latestCheckpoint()?.checkpoint.size).toBe(300);
    await appendRange(again, 300, 420);
    expect(again.root()).toEqual(rootOf(420));
    // An export still copies every segment, the ones before the resume point included.
    const extents = again.extentsFor(420);
    expect(extents.map((x) => x.name)).toEqual((await readdir(join(dir, "segments"))).sort());
    for (const x of extents.slice(0, -1)) expect(x.length).toBe((await stat(x.path)).size);
    // The resumed checkpoint is where an export's checkpoints.log ends when nothing was signed since.
    const bundle = join(await tempDir(), "bundle");
    expect((await exportBundle({ lineage: again, out: bundle })).size).toBe(420);
    const { report } = await verifyExported(bundle);
    expect(report.failures).toEqual([]);
    expect(report.entries).toBe(420);
    await again.close();
    const reopened = await open(dir);
    const bundle2 = join(await tempDir(), "bundle");
    await exportBundle({ lineage: reopened, out: bundle2 }); // nothing new: the resume point's checkpoint
    expect(
      (await readFile(join(bundle2, "checkpoints.log"))).equals(
        await readFile(join(bundle, "checkpoints.log")),
      ),
    ).toBe(true);
    await reopened.close();

    // Without the file: a full replay, to the same tree.
    await rm(join(dir, RESUME_NAME));
    await expectReopens(dir, { size: 420, resumedAt: 0 });
  });

  it("saved every resumeEvery entries; after a crash replay starts there and cuts a torn tail as a full replay would", async () => {
    const dir = await tempDir();
    const lin = await open(dir, 100);
    await appendRange(lin, 0, 150);
    expect((await lin.checkpointNow())?.checkpoint.size).toBe(150);
    expect((await readResume(dir))?.size).toBe(150);
    await appendRange(lin, 150, 180);
    expect((await lin.checkpointNow())?.checkpoint.size).toBe(180);
    expect((await readResume(dir))?.size).toBe(150); // 30 more: not yet
    await appendRange(lin, 180, 200);
    const crashed = await crashCopy(dir);
    await lin.close();

    const intact = await crashCopy(crashed);
    const resumed = await open(intact);
    expect(resumed.recovery).toMatchObject({ size: 200, resumedAt: 150, truncatedBytes: 0 });
    expect(resumed.root()).toEqual(rootOf(200));
    expect(resumed.latestCheckpoint()?.checkpoint.size).toBe(180);
    await resumed.close();

    const names = (await readdir(join(crashed, "segments"))).sort();
    const last = join(crashed, "segments", names.at(-1)!);
    await truncate(last, (await stat(last)).size - 3); // the last record torn
    const full = await crashCopy(crashed);
    await rm(join(full, RESUME_NAME));
    const back = await open(crashed);
    expect(back.recovery).toMatchObject({ size: 199, resumedAt: 150 });
    expect(back.recovery.truncatedBytes).toBeGreaterThan(0);
    expect(back.root()).toEqual(rootOf(199));
    expect(back.latestCheckpoint()?.checkpoint.size).toBe(180);
    await back.close();
    // The same cut as a full replay of the same files.
    const whole = await open(full);
    expect(whole.recovery).toMatchObject({
      size: 199,
      resumedAt: 0,
      truncatedBytes: back.recovery.truncatedBytes,
    });
    await whole.close();
  });

  it("ignores a resume point that does not fit: an offset inside a record truncates nothing", async () => {
    const dir = await tempDir();
    const lin = await open(dir);
    await appendRange(lin, 0, 120);
    await lin.close();
    const good = (await readResume(dir))!;
    const bytes = await readFile(join(dir, RESUME_NAME));

    await writeFile(join(dir, RESUME_NAME), encodeResume({ ...good, offset: good.offset - 5 }));
    await expectReopens(dir, { size: 120, resumedAt: 0, truncatedBytes: 0 });

    // A frontier that does not fold to the root, or a root that is not the note's: ignored.
    await writeFile(
      join(dir, RESUME_NAME),
      encodeResume({ ...good, frontier: good.frontier.map((h) => h.map((b) => b ^ 1)) }),
    );
    const badFrontier = await open(dir);
    expect(badFrontier.recovery).toMatchObject({ size: 120, resumedAt: 0 });
    await badFrontier.close();

    await writeFile(join(dir, RESUME_NAME), bytes.subarray(0, 20));
    const torn = await open(dir);
    expect(torn.recovery).toMatchObject({ size: 120, resumedAt: 0 });
    await torn.close();
  });

  it("a resume point carrying a note other than the one checkpoints.log holds there is set aside", async () => {
    const dir = await tempDir();
    const lin = await open(dir);
    await appendRange(lin, 0, 64);
    await lin.close();
    // The same tree signed by another key: consistent in itself, but not this log's signature.
    const other = await tempDir();
    const forged = await openLineage({
      dir: other,
      origin: ORIGIN,
      signer: softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(8)),
      now: () => 0,
      segmentBytes: 4096,
    });
    await appendRange(forged, 0, 64);
    await forged.close();
    const good = (await readResume(dir))!;
    const note = (await readResume(other))!.note;
    await writeFile(join(dir, RESUME_NAME), encodeResume({ ...good, note }));
    const back = await open(dir);
    expect(back.recovery).toMatchObject({ size: 64, resumedAt: 0 });
    expect(back.latestCheckpoint()?.note).toBe(good.note);
    await back.close();
  });

  it("a resume offset at another record boundary is set aside: the full replay reaches the signed root", async () => {
    const dir = await tempDir();
    const lin = await open(dir);
    await appendRange(lin, 0, 100);
    const [entry99] = await lin.read(99, 100);
    await lin.close();
    const good = (await readResume(dir))!;
    // One record back: an intact record there, but replaying from it counts entry 99 twice.
    await writeFile(
      join(dir, RESUME_NAME),
      encodeResume({ ...good, offset: good.offset - 8 - entry99!.length }),
    );
    await expectReopens(dir, { size: 100, resumedAt: 0 });
  });

  it("a missing or shortened earlier segment is not taken on trust: the full replay refuses", async () => {
    const dir = await tempDir();
    const lin = await open(dir);
    await appendRange(lin, 0, 300);
    await lin.close();
    const names = (await readdir(join(dir, "segments"))).sort();
    expect((await readResume(dir))!.earlierSegments).toBe(names.length - 1);
    const second = join(dir, "segments", names[1]!);
    await truncate(second, (await stat(second)).size - 10);
    await expect(open(dir)).rejects.toMatchObject({ code: "config_invalid" });
    await rm(second);
    await expect(open(dir)).rejects.toMatchObject({ code: "config_invalid" });
  });

  it("checkpoints.log is read from the resume point: a torn record after it is cut there; a shifted offset means a full scan", async () => {
    const dir = await tempDir();
    const lin = await open(dir, 50);
    await appendRange(lin, 0, 60);
    await lin.checkpointNow(); // resume point saved (60 ≥ 50)
    await appendRange(lin, 60, 70);
    await lin.checkpointNow(); // one more intent and checkpoint after it
    const crashed = await crashCopy(dir);
    await lin.close();
    const logPath = join(crashed, "checkpoints.log");
    const intact = (await stat(logPath)).size;
    await writeFile(logPath, Buffer.concat([await readFile(logPath), Buffer.from([0, 0, 0, 40, 1, 2])]));
    const shifted = await crashCopy(crashed);
    const back = await open(crashed);
    expect(back.recovery).toMatchObject({ size: 70, resumedAt: 60 });
    expect(back.latestCheckpoint()?.checkpoint.size).toBe(70);
    expect((await stat(logPath)).size).toBe(intact); // the torn record cut
    await back.close();

    const good = (await readResume(shifted))!;
    await writeFile(join(shifted, RESUME_NAME), encodeResume({ ...good, logOffset: good.logOffset + 1 }));
    const full = await open(shifted);
    expect(full.recovery).toMatchObject({ size: 70, resumedAt: 0 });
    expect(full.latestCheckpoint()?.checkpoint.size).toBe(70);
    await full.close();
  });

  it("an entry after the resume point rewritten with a valid frame: the last intent's root is missed, open refuses", async () => {
    const dir = await tempDir();
    const lin = await open(dir, 50);
    await appendRange(lin, 0, 60);
    await lin.checkpointNow(); // resume point at 60
    await appendRange(lin, 60, 70);
    await lin.checkpointNow(); // intent and checkpoint at 70; the resume point stays at 60
    const crashed = await crashCopy(dir);
    await lin.close();
    expect((await readResume(crashed))?.size).toBe(60);
    // Entry 65 rewritten with a valid frame and CRC: only its root betrays it.
    const names = (await readdir(join(crashed, "segments"))).sort();
    const last = join(crashed, "segments", names.at(-1)!);
    const data = new Uint8Array(await readFile(last));
    const original = encodeEntry(entry(65));
    const forged = encodeEntry(
      makeEntry("daemon_stop", { wallMs: 65, monoUs: 65 }, { reason: "entry number X5" }),
    );
    expect(forged.length).toBe(original.length);
    const at = Buffer.from(data).indexOf(Buffer.from(original)) - RECORD_HEADER_BYTES;
    expect(at).toBeGreaterThan(0);
    frameRecord(forged, data, at);
    await writeFile(last, data);
    await expect(open(crashed)).rejects.toMatchObject({ code: "config_invalid" });
  });
});
