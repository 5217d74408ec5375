import { describe, expect, it } from "vitest";
import { type Entry, encodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { leafHash } from "../../src/lineage/hash.js";
import { Journal } from "../../src/lineage/journal.js";
import { openLineage } from "../../src/lineage/lineage.js";
import { rootOfLeaves } from "../../src/lineage/merkle.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";
import { scratchDirs } from "../helpers/scratch.js";

// The journal holds in memory only what no checkpoint covers yet (plus the O(log n) frontier):
// memory does not grow with the length of the log, and roots stay exact.

const ORIGIN = "execgate.test/bounded";
const tempDir = scratchDirs("execgate-bounded-");

const entry = (i: number): Entry => makeEntry("daemon_stop", { wallMs: i, monoUs: i }, { reason: `r${i}` });
const leaves = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, k) => leafHash(encodeEntry(entry(from + k))));

describe("bounded memory: the journal forgets what checkpoints cover", () => {
  it("after a checkpoint, older leaves and reads are gone, the root stays exact, appends go on", async () => {
    const dir = await tempDir();
    const clock = { t: 0 };
    const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(3));
    const lin = await openLineage({ dir, origin: ORIGIN, signer, now: () => clock.t, checkpointMs: 1000 });
    await Promise.all(Array.from({ length: 100 }, (_, i) => lin.add([entry(i)])));
    clock.t = 1000;
    const cp = await lin.checkpointTick();
    expect(cp?.checkpoint.size).toBe(100);
    expect(cp?.checkpoint.rootHash).toEqual(rootOfLeaves(leaves(0, 100)));
    // Covered by the checkpoint: no longer in memory, with an error that says so.
    expect(() => lin.leafHash(99)).toThrow(/checkpointed/);
    await expect(lin.read(0, 100)).rejects.toThrow(/checkpointed/);
    expect(lin.rootAt(100)).toEqual(cp?.checkpoint.rootHash);
    await Promise.all(Array.from({ length: 37 }, (_, i) => lin.add([entry(100 + i)])));
    expect(lin.root()).toEqual(rootOfLeaves(leaves(0, 137)));
    expect(lin.rootAt(120)).toEqual(rootOfLeaves(leaves(0, 120)));
    expect(lin.leafHash(136)).toEqual(leaves(136, 137)[0]);
    expect(await lin.read(100, 137)).toEqual(
      Array.from({ length: 37 }, (_, i) => encodeEntry(entry(100 + i))),
    );
    // The export snapshot still finds its extents (the checkpoint size is where memory starts).
    expect(lin.extentsFor(100).length).toBe(1);
    await lin.close();
  });

  it("reopens holding entries from the last intent on; the intent's root is checked and signing goes on", async () => {
    const dir = await tempDir();
    const clock = { t: 0 };
    const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(4));
    let lin = await openLineage({ dir, origin: ORIGIN, signer, now: () => clock.t, checkpointMs: 1000 });
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 50 }, (_, i) => lin.add([entry(round * 50 + i)])));
      clock.t += 1000;
      await lin.checkpointTick();
    }
    await lin.close(); // signs nothing new: 150 is signed
    lin = await openLineage({ dir, origin: ORIGIN, signer, now: () => clock.t, checkpointMs: 1000 });
    expect(lin.size).toBe(150);
    expect(() => lin.leafHash(149)).toThrow(/checkpointed/);
    expect(lin.root()).toEqual(rootOfLeaves(leaves(0, 150)));
    await lin.add([entry(150)]);
    clock.t += 1000;
    const cp = await lin.checkpointTick();
    expect(cp?.checkpoint.size).toBe(151);
    expect(cp?.checkpoint.rootHash).toEqual(rootOfLeaves(leaves(0, 151)));
    await lin.close();
    // A standalone open (no checkpointer) keeps everything: audits and tools read it all.
    const j = await Journal.open({ dir });
    expect((await j.readRange(0, 151)).map(leafHash)).toEqual(leaves(0, 151));
    await j.close();
  });

  it("a prune that lands while a batch is being written keeps that batch's offsets and leaves right", async () => {
    const dir = await tempDir();
    const j = await Journal.open({ dir });
    await Promise.all(Array.from({ length: 64 }, (_, i) => j.add([entry(i)])));
    const snap = j.snapshot();
    const writing = Promise.all(Array.from({ length: 64 }, (_, i) => j.add([entry(64 + i)])));
    // Let the batch start (its write in flight), then prune under it.
    await new Promise((r) => setImmediate(r));
    j.prune(snap);
    await writing;
    expect(await j.readRange(64, 128)).toEqual(
      Array.from({ length: 64 }, (_, i) => encodeEntry(entry(64 + i))),
    );
    expect(j.leafHash(127)).toEqual(leaves(127, 128)[0]);
    expect(j.root()).toEqual(rootOfLeaves(leaves(0, 128)));
    expect(j.rootAt(100)).toEqual(rootOfLeaves(leaves(0, 100)));
    await j.close();
  });
});
