import { describe, expect, it } from "vitest";
import { type Entry, encodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { leafHash } from "../../src/lineage/hash.js";
import { Journal } from "../../src/lineage/journal.js";
import { rootOfLeaves } from "../../src/lineage/merkle.js";
import { scratchDirs } from "../helpers/scratch.js";

// Entries to come (a token signed on another thread names its decision entry): add() takes their
// indices in order at once, and nothing queued after an unfilled slot reaches the disk before it.
// (This file once tested Journal.reserve, which add() with promised items replaced.)

const tempDir = scratchDirs("execgate-reserve-");

const entry = (i: number): Entry => makeEntry("daemon_stop", { wallMs: i, monoUs: i }, { reason: `r${i}` });
const bytes = (i: number) => encodeEntry(entry(i));
const tick = () => new Promise((r) => setTimeout(r, 20));

/** A promise and the function that settles it later. */
function later<T>(): { readonly promise: Promise<T>; readonly resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe("Journal.add with entries to come", () => {
  it("keeps the queued order whatever the fill order, and holds later appends behind an unfilled slot", async () => {
    const j = await Journal.open({ dir: await tempDir() });
    await j.add([entry(0)]);
    const slots = [later<Uint8Array>(), later<Uint8Array>(), later<Uint8Array>()];
    let first = -1;
    const held = j.add((f) => {
      first = f;
      return slots.map((s) => s.promise);
    });
    expect(first).toBe(1);
    const after = j.add([entry(4)]);
    let laterDone = false;
    void after.then(() => {
      laterDone = true;
    });
    slots[2]!.resolve(bytes(3));
    slots[0]!.resolve(bytes(1));
    await tick();
    // Slot 0 is durable territory now, but slot 1 is not filled: nothing from it on is written.
    expect(j.size).toBe(2);
    expect(laterDone).toBe(false);
    slots[1]!.resolve(bytes(2));
    const results = await held;
    expect(results.map((x) => x.index)).toEqual([1, 2, 3]);
    expect((await after)[0]!.index).toBe(4);
    const all = await j.readRange(0, 5);
    expect(all).toEqual([0, 1, 2, 3, 4].map(bytes));
    expect(j.root()).toEqual(rootOfLeaves(all.map(leafHash)));
    await j.close();
  });

  it("refuses an empty or oversized entry given at once; one that comes later and cannot be written poisons the journal", async () => {
    const j = await Journal.open({ dir: await tempDir() });
    await expect(j.add([new Uint8Array(0)])).rejects.toThrow(/0 bytes/);
    const slot = later<Uint8Array>();
    const held = j.add([slot.promise]);
    slot.resolve(new Uint8Array(0));
    await expect(held).rejects.toThrow(/0 bytes/);
    expect(j.failure).toBeDefined();
    await expect(j.add([entry(0)])).rejects.toThrow(/0 bytes/);
    await j.close();
  });

  it("a journal failure while slots wait to be filled is not an unhandled rejection", async () => {
    const j = await Journal.open({ dir: await tempDir() });
    await j.add([entry(0)]);
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      await (j as unknown as { fh: { close(): Promise<void> } }).fh.close();
      const before = j.add([entry(1)]); // its write fails and poisons the journal
      const slot = later<Uint8Array>(); // to be filled "later", as after a signature
      // The caller holds add()'s promise (the gate awaits it at once); nothing else may reject unheard.
      const waiting = j.add([slot.promise]).catch((e: unknown) => e);
      await expect(before).rejects.toMatchObject({ code: "io_error" });
      await tick();
      slot.resolve(bytes(2));
      expect(await waiting).toMatchObject({ code: "io_error" });
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      (j as unknown as { fh: undefined }).fh = undefined;
      await j.close();
    }
  });

  it("a failed write rejects unfilled slots too; filling them afterwards changes nothing", async () => {
    const j = await Journal.open({ dir: await tempDir() });
    await j.add([entry(0)]);
    const slots = [later<Uint8Array>(), later<Uint8Array>()];
    const done = j.add(slots.map((s) => s.promise)).catch((e: unknown) => e);
    // Pull the file out from under the journal (as a dying disk would): the next write fails.
    await (j as unknown as { fh: { close(): Promise<void> } }).fh.close();
    slots[0]!.resolve(bytes(1));
    expect(await done).toMatchObject({ code: "io_error" });
    slots[1]!.resolve(bytes(2));
    await tick();
    expect(j.size).toBe(1);
    expect(j.failure?.code).toBe("io_error");
    await expect(j.add([later<Uint8Array>().promise])).rejects.toMatchObject({ code: "io_error" });
    (j as unknown as { fh: undefined }).fh = undefined;
    await j.close();
  });
});
