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

/** Stand-in executables by pid (= inode): each read waits for its gate, then ends the file. */
function gatedExes() {
  const gates = new Map<number, () => void>();
  const reads: number[] = [];
  const proc = {
    async openExe(pid: number) {
      const st = { isFile: () => true, dev: 1n, ino: BigInt(pid), size: 0n, mtimeNs: 1n, ctimeNs: 1n };
      return {
        stat: async () => st,
        read: async () => {
          reads.push(pid);
          await new Promise<void>((r) => gates.set(pid, r));
          return { bytesRead: 0 };
        },
        close: async () => undefined,
      } as unknown as FileHandle;
    },
  } as unknown as ProcSource;
  const open = (pid: number) => gates.get(pid)?.();
  return { proc, reads, open };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("ExeDigestCache: hashes of new executables are capped", () => {
  it("at most maxHashes run; the next waits its turn, gives up at its deadline without hashing, and cached lookups never wait", async () => {
    const { proc, reads, open } = gatedExes();
    const cache = new ExeDigestCache({ maxHashes: 2 });
    const first = cache.digest(1, proc);
    await tick();
    open(1);
    await first; // version 1 is cached now
    const b = cache.digest(2, proc);
    const c = cache.digest(3, proc);
    const d = cache.digest(4, proc, AbortSignal.timeout(30));
    const e = cache.digest(5, proc);
    await tick();
    expect(reads).toEqual([1, 2, 3]);
    expect(cache.waitingForHash).toBe(2);
    // A cached executable is answered while both slots are busy.
    expect((await cache.digest(1, proc)).file.ino).toBe(1n);
    await expect(d).rejects.toMatchObject({ code: "timeout" });
    expect(cache.waitingForHash).toBe(1);
    open(2);
    await b;
    await tick();
    expect(reads).toEqual([1, 2, 3, 5]); // 4 gave up: never hashed
    open(3);
    open(5);
    await Promise.all([c, e]);
    expect(cache.waitingForHash).toBe(0);
  });
});
