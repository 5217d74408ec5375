import type { FileHandle } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { ExeDigestCache } from "../../src/peer/exe-digest.js";
import type { ProcSource } from "../../src/peer/procfs.js";

// The hash behind a lookup whose deadline passed: a failure with nobody waiting must not reach
// the process as an unhandled rejection (Node 20 exits on one). The file is a stand-in: a real
// one cannot be made to stall its stat and then fail its read on demand.

function slowFailingExe(stats: number[], reads: () => never, readDelayMs = 0) {
  const st = { isFile: () => true, dev: 1n, ino: 2n, size: 10n, mtimeNs: 1n, ctimeNs: 1n };
  const handle = {
    async stat() {
      await new Promise((r) => setTimeout(r, stats.shift() ?? 0));
      return st;
    },
    async read() {
      await new Promise((r) => setTimeout(r, readDelayMs));
      reads();
    },
    async close() {},
  } as unknown as FileHandle;
  return { openExe: async () => handle } as unknown as ProcSource;
}

describe("ExeDigestCache with a lookup deadline", () => {
  it("a lookup past its deadline starts no hash, and a failing hash nobody waits for is handled", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const eio = () => {
        throw Object.assign(new Error("EIO"), { code: "EIO" });
      };
      // The deadline passes while the file is stat'ed: no hash is started.
      const cache = new ExeDigestCache();
      let reads = 0;
      const proc = slowFailingExe([50], () => {
        reads++;
        return eio();
      });
      await expect(cache.digest(42, proc, AbortSignal.timeout(10))).rejects.toMatchObject({
        code: "timeout",
      });
      expect(reads).toBe(0);
      // The deadline passes while the hash runs; the hash then fails with nobody waiting.
      let hashed = 0;
      const later = slowFailingExe(
        [0],
        () => {
          hashed++;
          return eio();
        },
        50,
      );
      await expect(cache.digest(43, later, AbortSignal.timeout(10))).rejects.toMatchObject({
        code: "timeout",
      });
      await new Promise((r) => setTimeout(r, 100));
      expect(hashed).toBe(1);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
