import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { HASH_SIZE } from "../lineage/hash.js";
import type { LeafStore } from "./stream-tree.js";

/**
 * Leaf hashes in a temporary file, the most recent ones also in memory: back-references and
 * roots mostly look near the end, and a 10M-entry log's 320 MB of hashes stays out of the heap.
 */
const RECENT = 1 << 18;

export class FileLeafStore implements LeafStore {
  private readonly dir = mkdtempSync(join(tmpdir(), "execgate-audit-"));
  private readonly fd = openSync(join(this.dir, "leaves"), "w+", 0o600);
  /** Ring of the last RECENT leaves; the ones not yet written start at `written`. */
  private readonly ring: Uint8Array;
  private count = 0;
  private written = 0;

  /** `recent`: how many of the last leaves stay in memory (a multiple of 4). */
  constructor(private readonly recent = RECENT) {
    this.ring = new Uint8Array(recent * HASH_SIZE);
  }

  push(leaf: Uint8Array): void {
    this.ring.set(leaf, (this.count % this.recent) * HASH_SIZE);
    this.count += 1;
    // Flush a quarter of the ring at a time, long before it wraps over unwritten leaves.
    if (this.count - this.written >= this.recent / 4) this.flush();
  }

  get(i: number): Uint8Array {
    if (i >= this.count - this.recent + 1 && i < this.count)
      return this.ring.subarray((i % this.recent) * HASH_SIZE, ((i % this.recent) + 1) * HASH_SIZE);
    return this.range(i, i + 1);
  }

  range(lo: number, hi: number): Uint8Array {
    const out = new Uint8Array((hi - lo) * HASH_SIZE);
    for (let i = lo; i < hi; ) {
      if (i >= this.count - this.recent + 1 && i < this.count) {
        out.set(
          this.ring.subarray((i % this.recent) * HASH_SIZE, ((i % this.recent) + 1) * HASH_SIZE),
          (i - lo) * HASH_SIZE,
        );
        i += 1;
        continue;
      }
      // Before the ring: on disk (flushed, since the ring holds every unwritten leaf).
      const end = Math.min(hi, this.count - this.recent + 1);
      const len = (end - i) * HASH_SIZE;
      let got = 0;
      while (got < len) {
        const n = readSync(this.fd, out, (i - lo) * HASH_SIZE + got, len - got, i * HASH_SIZE + got);
        if (n === 0) throw new ExecgateError("io_error", `audit leaf store: short read at ${i}`);
        got += n;
      }
      i = end;
    }
    return out;
  }

  private flush(): void {
    while (this.written < this.count) {
      const at = this.written % this.recent;
      const n = Math.min(this.count - this.written, this.recent - at);
      const wrote = writeSync(this.fd, this.ring, at * HASH_SIZE, n * HASH_SIZE, this.written * HASH_SIZE);
      if (wrote !== n * HASH_SIZE) throw new ExecgateError("io_error", "audit leaf store: short write");
      this.written += n;
    }
  }

  close(): void {
    closeSync(this.fd);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
