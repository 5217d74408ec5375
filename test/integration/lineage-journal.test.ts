import { spawn } from "node:child_process";
import { once } from "node:events";
import { appendFile, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { type Entry, encodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { leafHash } from "../../src/lineage/hash.js";
import { Journal } from "../../src/lineage/journal.js";
import { rootOfLeaves } from "../../src/lineage/merkle.js";
import { frameRecord } from "../../src/lineage/record.js";
import { scratchDirs } from "../helpers/scratch.js";

const tempDir = scratchDirs("execgate-journal-");

const entry = (i: number, pad = 0): Entry =>
  makeEntry(
    "token_redeemed",
    { wallMs: 1_000 + i, monoUs: i },
    { token: new Uint8Array(4 + pad).fill(i & 0xff) },
  );

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(join(dir, "segments"))).sort().map((n) => join(dir, "segments", n));
}

describe("journal", () => {
  it("group-commits concurrent appends, resolves in order, and reopens to the same tree", async () => {
    const dir = await tempDir();
    const j = await Journal.open({ dir });
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => j.add([entry(i)]).then(([r]) => r!)),
    );
    expect(results.map((r) => r.index)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    for (const [i, r] of results.entries()) expect(r.leafHash).toEqual(leafHash(encodeEntry(entry(i))));
    expect(j.stats.entries).toBe(200);
    expect(j.stats.batches).toBeLessThan(20); // 200 concurrent appends share a few fdatasyncs
    const root = j.root();
    expect(await j.readEntry(7)).toEqual(encodeEntry(entry(7)));
    await j.close();

    const again = await Journal.open({ dir });
    expect(again.size).toBe(200);
    expect(again.root()).toEqual(root);
    expect(again.recovery).toEqual({ truncatedBytes: 0, removedSegments: [], size: 200, resumedAt: 0 });
    const [r] = await again.add([entry(200)]);
    expect(r!.index).toBe(200);
    await again.close();
  });

  it("rotates segments by size and reads ranges across them", async () => {
    const dir = await tempDir();
    const j = await Journal.open({ dir, segmentBytes: 2048 });
    for (let i = 0; i < 60; i += 6)
      await Promise.all(Array.from({ length: 6 }, (_, k) => j.add([entry(i + k, 100)])));
    expect((await segmentFiles(dir)).length).toBeGreaterThan(3);
    const all = await j.readRange(0, 60);
    expect(all).toEqual(Array.from({ length: 60 }, (_, i) => encodeEntry(entry(i, 100))));
    expect(await j.readRange(13, 41)).toEqual(all.slice(13, 41));
    await j.close();
    const again = await Journal.open({ dir, segmentBytes: 2048 });
    expect(again.root()).toEqual(rootOfLeaves(all.map(leafHash)));
    await again.close();
  });

  it("truncates a torn tail (partial record, garbage) and reports it", async () => {
    const dir = await tempDir();
    const j = await Journal.open({ dir });
    for (let i = 0; i < 10; i++) await j.add([entry(i)]);
    await j.close();
    const [seg] = await segmentFiles(dir);
    const full = (await readFile(seg!)).length;
    await truncate(seg!, full - 3); // the last record loses its end
    const a = await Journal.open({ dir });
    expect(a.size).toBe(9);
    expect(a.recovery.truncatedBytes).toBe(full - 3 - (await readFile(seg!)).length);
    await a.close();
    await appendFile(seg!, Buffer.from("garbage after a crash"));
    const b = await Journal.open({ dir });
    expect(b.size).toBe(9);
    expect(b.recovery.truncatedBytes).toBe(21);
    expect((await b.add([entry(9)]))[0]!.index).toBe(9);
    await b.close();
  });

  it("refuses to open on corruption in the middle", async () => {
    const dir = await tempDir();
    const j = await Journal.open({ dir, segmentBytes: 4096 });
    for (let i = 0; i < 40; i++) await j.add([entry(i, 200)]);
    await j.close();
    const segs = await segmentFiles(dir);
    expect(segs.length).toBeGreaterThan(1);
    const bytes = await readFile(segs[0]!);
    bytes[40]! ^= 0xff;
    await writeFile(segs[0]!, bytes);
    await expect(Journal.open({ dir, segmentBytes: 4096 })).rejects.toMatchObject({ code: "config_invalid" });

    // A hole in the segment sequence is refused too.
    const dir2 = await tempDir();
    const j2 = await Journal.open({ dir: dir2, segmentBytes: 4096 });
    for (let i = 0; i < 40; i++) await j2.add([entry(i, 200)]);
    await j2.close();
    await rm((await segmentFiles(dir2))[1]!);
    await expect(Journal.open({ dir: dir2, segmentBytes: 4096 })).rejects.toMatchObject({
      code: "config_invalid",
    });
  });

  it("refuses a bad record in the last segment followed by more than one batch of data", async () => {
    const dir = await tempDir();
    const maxBatchBytes = 65_544;
    const j = await Journal.open({ dir, maxBatchBytes });
    for (let i = 0; i < 100; i++) await j.add([entry(i, 1000)]);
    await j.close();
    const [seg] = await segmentFiles(dir);
    const bytes = await readFile(seg!);
    bytes[100]! ^= 0x01;
    await writeFile(seg!, bytes);
    await expect(Journal.open({ dir, maxBatchBytes })).rejects.toMatchObject({ code: "config_invalid" });
  });

  it("one writer: a second open is refused, also within one process; a lock is freed when its holder ends, however it ends", async () => {
    const dir = await tempDir();
    const j = await Journal.open({ dir });
    await expect(Journal.open({ dir })).rejects.toMatchObject({ code: "io_error" });
    await j.close();
    // A LOCK file left behind (whatever it says) is not a lock: the kernel's flock is.
    await writeFile(join(dir, "LOCK"), `1 ${"0".repeat(36)}\n`);
    const k = await Journal.open({ dir });
    await k.close();
    // Another process holds it, then is killed outright: refused, then free.
    const holder = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { Journal } from ${JSON.stringify(resolve("dist/src/lineage/journal.js"))};
         await Journal.open({ dir: ${JSON.stringify(dir)} });
         console.log("locked");
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      await once(createInterface({ input: holder.stdout! }), "line");
      await expect(Journal.open({ dir })).rejects.toThrow(new RegExp(`locked by ${holder.pid} `));
    } finally {
      holder.kill("SIGKILL");
      await once(holder, "exit");
    }
    const m = await Journal.open({ dir });
    await m.close();
    // An open refused for its options leaves no lock behind.
    await expect(Journal.open({ dir, keepFrom: -1 })).rejects.toMatchObject({ code: "config_invalid" });
    const o = await Journal.open({ dir });
    await o.close();
  });

  it("reading back detects a record rewritten with a valid CRC (leaf hash differs)", async () => {
    const dir = await tempDir();
    const j = await Journal.open({ dir });
    for (let i = 0; i < 5; i++) await j.add([entry(i)]);
    const [seg] = await segmentFiles(dir);
    const bytes = new Uint8Array(await readFile(seg!));
    const other = encodeEntry(entry(1));
    expect(other.length).toBe(encodeEntry(entry(0)).length);
    const first = 16; // segment header
    frameRecord(other, bytes, first); // same length as entry(0): a silent, CRC-valid substitution
    await writeFile(seg!, bytes);
    const back = await j.readEntry(0);
    expect(leafHash(back)).not.toEqual(j.leafHash(0));
    await j.close();
  });

  it("appendLinked predicts indices correctly when called from appenders resumed by a batch", async () => {
    const dir = await tempDir();
    const j = await Journal.open({ dir });
    const { decodeEntry } = await import("../../src/lineage/entry.js");
    await Promise.all(
      Array.from({ length: 8 }, async (_, c) => {
        for (let i = 0; i < 20; i++) {
          await j.add([entry(c * 100 + i)]);
          await j.add((first) => [
            makeEntry("decision", { wallMs: 1, monoUs: 1 }, { allow: true }),
            makeEntry("daemon_stop", { wallMs: 1, monoUs: 1 }, { reason: `points at ${first}` }, [
              { index: first, leafHash: new Uint8Array(32) },
            ]),
          ]);
        }
      }),
    );
    let linked = 0;
    for (const [i, bytes] of (await j.readRange(0, j.size)).entries()) {
      const e = decodeEntry(bytes);
      if (e.type === "daemon_stop") {
        expect(e.body.reason).toBe(`points at ${i - 1}`);
        linked += 1;
      }
    }
    expect(linked).toBe(160);
    await j.close();
  });

  it("close() writes what was appended before it and refuses later appends, even one queued just after its final drain", async () => {
    const dir = await tempDir();
    const j = await Journal.open({ dir });
    await j.add([entry(0)]);
    const before = [j.add([entry(1)]), j.add([entry(2)])];
    // The gap the reviewer found: an append queued one microtask after close()'s final drain
    // returned was written to the handle being closed, and poisoned the journal.
    const drain = j.drain.bind(j);
    let afterDrain: Promise<unknown> | undefined;
    j.drain = async () => {
      await drain();
      queueMicrotask(() => {
        afterDrain = j.add([entry(4)]);
        afterDrain.catch(() => undefined);
      });
    };
    const closing = j.close();
    const afterClose = j.add([entry(3)]);
    afterClose.catch(() => undefined);
    await closing;
    expect((await Promise.all(before)).map((r) => r[0]!.index)).toEqual([1, 2]);
    const closed = { code: "io_error", message: "lineage journal is closed" };
    await expect(afterClose).rejects.toMatchObject(closed);
    expect(afterDrain).toBeDefined();
    await expect(afterDrain).rejects.toMatchObject(closed);
    expect(j.failure).toBeUndefined();
    await j.close(); // again: a no-op

    const again = await Journal.open({ dir });
    expect(again.recovery.truncatedBytes).toBe(0);
    expect(await again.readRange(0, again.size)).toEqual([0, 1, 2].map((i) => encodeEntry(entry(i))));
    await again.close();
  });

  it("a failed write poisons the journal: the batch and every later append reject, nothing is acknowledged", async () => {
    const dir = await tempDir();
    const j = await Journal.open({ dir });
    await j.add([entry(0)]);
    // Pull the file out from under the journal (as a dying disk would): writes now fail EBADF.
    await (j as unknown as { fh: { close(): Promise<void> } }).fh.close();
    const results = await Promise.allSettled([j.add([entry(1)]), j.add([entry(2)])]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect(j.failure?.code).toBe("io_error");
    await expect(j.add([entry(3)])).rejects.toMatchObject({ code: "io_error" });
    expect(j.size).toBe(1);
    (j as unknown as { fh: undefined }).fh = undefined;
    await j.close();
    const again = await Journal.open({ dir });
    expect(again.size).toBe(1);
    await again.close();
  });

  it("extentsFor(n) covers exactly entries [0, n) for every n, across segment boundaries", async () => {
    const { parseSegment } = await import("../../src/lineage/bundle-files.js");
    const dir = await tempDir();
    const j = await Journal.open({ dir, segmentBytes: 700 });
    for (let i = 0; i < 30; i++) await j.add([entry(i, 40)]);
    const all = await j.readRange(0, 30);
    for (let n = 0; n <= 30; n++) {
      const got: Uint8Array[] = [];
      for (const x of j.extentsFor(n)) {
        const bytes = new Uint8Array(await readFile(x.path)).subarray(0, x.length);
        const seg = parseSegment({ name: x.name, bytes });
        expect(seg.badOffset).toBeUndefined();
        expect(seg.first).toBe(got.length);
        got.push(...seg.entries);
      }
      expect(got).toEqual(all.slice(0, n));
    }
    await j.close();
  });
});
