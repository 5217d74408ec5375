import { describe, expect, it } from "vitest";
import { type Entry, encodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { leafHash } from "../../src/lineage/hash.js";
import { Journal } from "../../src/lineage/journal.js";
import { rootOfLeaves } from "../../src/lineage/merkle.js";
import { scratchDirs } from "../helpers/scratch.js";

// Reserved slots (a token signed on another thread names its decision entry): indices are taken
// in order at once, and nothing queued after an unfilled slot reaches the disk before it.

const tempDir = scratchDirs("execgate-reserve-");

const entry = (i: number): Entry => makeEntry("daemon_stop", { wallMs: i, monoUs: i }, { reason: `r${i}` });
const bytes = (i: number) => encodeEntry(entry(i));
const tick = () => new Promise((r) => setTimeout(r, 20));

describe("Journal.reserve", () => {
  it("keeps the reserved order whatever the fill order, and holds later appends behind an unfilled slot", async () => {
    const j = await Journal.open({ dir: await tempDir() });
    await j.append(entry(0));
    const r = j.reserve(3);
    expect(r.first).toBe(1);
    const later = j.append(entry(4));
    let laterDone = false;
    void later.then(() => {
      laterDone = true;
    });
    r.fill(2, bytes(3));
    r.fill(0, bytes(1));
    await tick();
    // Slot 0 is durable territory now, but slot 1 is not filled: nothing from it on is written.
    expect(j.size).toBe(2);
    expect(laterDone).toBe(false);
    r.fill(1, bytes(2));
    const results = await r.done;
    expect(results.map((x) => x.index)).toEqual([1, 2, 3]);
    expect((await later).index).toBe(4);
    const all = await j.readRange(0, 5);
    expect(all).toEqual([0, 1, 2, 3, 4].map(bytes));
    expect(j.root()).toEqual(rootOfLeaves(all.map(leafHash)));
    await j.close();
  });

  it("refuses a slot filled twice, a slot that does not exist, and an oversized entry", async () => {
    const j = await Journal.open({ dir: await tempDir() });
    const r = j.reserve(1);
    expect(() => r.fill(1, bytes(0))).toThrow(/does not exist/);
    expect(() => r.fill(0, new Uint8Array(0))).toThrow(/0 bytes/);
    r.fill(0, bytes(0));
    expect(() => r.fill(0, bytes(0))).toThrow(/filled/);
    await r.done;
    await j.close();
  });

  it("a journal failure while slots wait to be filled is not an unhandled rejection", async () => {
    const j = await Journal.open({ dir: await tempDir() });
    await j.append(entry(0));
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      await (j as unknown as { fh: { close(): Promise<void> } }).fh.close();
      const before = j.append(entry(1)); // its write fails and poisons the journal
      const waiting = j.reserve(1); // to be filled "later", as after a signature
      await expect(before).rejects.toMatchObject({ code: "io_error" });
      await tick();
      waiting.fill(0, bytes(2));
      await expect(waiting.done).rejects.toMatchObject({ code: "io_error" });
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      (j as unknown as { fh: undefined }).fh = undefined;
      await j.close();
    }
  });

  it("a failed write rejects unfilled slots too; filling them afterwards changes nothing", async () => {
    const j = await Journal.open({ dir: await tempDir() });
    await j.append(entry(0));
    const r = j.reserve(2);
    const done = r.done.catch((e: unknown) => e);
    // Pull the file out from under the journal (as a dying disk would): the next write fails.
    await (j as unknown as { fh: { close(): Promise<void> } }).fh.close();
    r.fill(0, bytes(1));
    expect(await done).toMatchObject({ code: "io_error" });
    r.fill(1, bytes(2));
    await tick();
    expect(j.size).toBe(1);
    expect(j.failure?.code).toBe("io_error");
    const after = j.reserve(1);
    await expect(after.done).rejects.toMatchObject({ code: "io_error" });
    (j as unknown as { fh: undefined }).fh = undefined;
    await j.close();
  });
});
