import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type DiskSpace,
  DiskSpaceWatch,
  isLow,
  LOW_FREE_RATIO,
  readDiskSpace,
} from "../../src/lineage/disk-space.js";

function recordingLog() {
  const lines: { level: string; msg: string; o: object }[] = [];
  return {
    lines,
    warn: (o: object, msg: string) => lines.push({ level: "warn", msg, o }),
    info: (o: object, msg: string) => lines.push({ level: "info", msg, o }),
  };
}

describe("lineage disk space", () => {
  it("isLow: under LOW_FREE_RATIO of the size free", () => {
    const size = 1000;
    expect(isLow({ freeBytes: size * LOW_FREE_RATIO - 1, sizeBytes: size })).toBe(true);
    expect(isLow({ freeBytes: size * LOW_FREE_RATIO, sizeBytes: size })).toBe(false);
    expect(isLow({ freeBytes: 0, sizeBytes: 0 })).toBe(false);
  });

  it("reads the real filesystem of a directory (statfs)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "eg-disk-"));
    try {
      const s = await readDiskSpace(dir);
      expect(s.sizeBytes).toBeGreaterThan(0);
      expect(s.freeBytes).toBeGreaterThanOrEqual(0);
      expect(s.freeBytes).toBeLessThanOrEqual(s.sizeBytes);
      const w = new DiskSpaceWatch(dir, 60_000, recordingLog());
      await w.start();
      expect(w.latest()?.sizeBytes).toBe(s.sizeBytes);
      w.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("an unreadable directory: nothing reported, one warning however often it is sampled", async () => {
    const log = recordingLog();
    const w = new DiskSpaceWatch("/nonexistent/execgate-lineage", 60_000, log);
    await w.sample();
    await w.sample();
    expect(w.latest()).toBeUndefined();
    expect(log.lines.map((l) => l.msg)).toEqual(["lineage_disk_unreadable"]);
  });

  it("logs once when space falls under the threshold, once when it recovers", async () => {
    const log = recordingLog();
    let next: DiskSpace = { freeBytes: 500, sizeBytes: 1000 };
    const w = new DiskSpaceWatch("/lineage", 60_000, log, async () => next);
    await w.sample();
    next = { freeBytes: 50, sizeBytes: 1000 };
    await w.sample();
    await w.sample();
    expect(w.latest()).toEqual({ freeBytes: 50, sizeBytes: 1000 });
    next = { freeBytes: 400, sizeBytes: 1000 };
    await w.sample();
    expect(log.lines.map((l) => `${l.level} ${l.msg}`)).toEqual([
      "warn lineage_disk_low",
      "info lineage_disk_ok",
    ]);
    expect(log.lines[0]!.o).toMatchObject({ dir: "/lineage", freeBytes: 50, sizeBytes: 1000 });
  });
});
