import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { makeDirs } from "../core/mkdirs.js";
import { type AppendResult, CommitLoop, type Item } from "./commit.js";
import { MAX_ENTRY_READ_BYTES } from "./entry.js";
import { extendFrontier, type Frontier, frontierRoot } from "./frontier.js";
import { ioError, writeAll } from "./fsutil.js";
import { leafHash } from "./hash.js";
import type { KeptLeaves } from "./kept.js";
import { LockFile } from "./lock.js";
import {
  checkRecord,
  frameRecord,
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  segmentName,
} from "./record.js";
import { type Recovered, type RecoveryReport, recoverJournal } from "./recovery.js";
import type { ResumePoint } from "./resume.js";
import { createSegment, readAt, type Segment, segmentFirst, segmentIndexOf } from "./segments.js";

/**
 * The lineage journal: append-only segment files of framed entries (record.ts, segments.ts), with
 * group commit (commit.ts). Layout under `dir`:
 *
 *   LOCK                         one writer (lock.ts)
 *   segments/<first index>.seg   20-digit zero-padded index of the segment's first entry
 *
 * Segments rotate when the next batch would pass `segmentBytes`. Each batch is one positional
 * write on an O_DSYNC descriptor; while it is with the disk, the batch's leaf hashes and the
 * tree's next frontier are computed (CPU work overlapping the I/O wait); only when the write
 * returns do `size`, the root and every append's {index, leafHash} take effect.
 *
 * Memory is bounded by what has not been checkpointed yet (kept.ts): the tree is kept as its
 * frontier plus the leaf hashes and record offsets from `base` on; `keepFrom` at open sets the
 * first base (the last recorded intent's size, whose root the checkpointer checks). Crash
 * recovery at open is recovery.ts.
 */

export type { AppendResult, Item } from "./commit.js";
export { SEGMENT_HEADER_BYTES, SEGMENT_MAGIC } from "./record.js";
export type { RecoveryReport } from "./recovery.js";
export const DEFAULT_SEGMENT_BYTES = 64 << 20;
export const DEFAULT_MAX_BATCH_BYTES = 4 << 20;

export interface JournalOptions {
  readonly dir: string;
  /** Keep leaf hashes and offsets from this index on (default 0: everything); see prune(). */
  readonly keepFrom?: number;
  /**
   * Replay only from this signed checkpoint on (resume.ts), when it fits the files: at most
   * keepFrom, its segment present and long enough, a valid record where it says entry `size`
   * starts. Otherwise, or without it, every segment is replayed.
   */
  readonly resume?: ResumePoint;
  readonly segmentBytes?: number;
  readonly maxBatchBytes?: number;
}

export class Journal {
  /** Durable entry count. */
  private durable: number;
  /** The tree's frontier at `durable`. Frontier arrays are never mutated once assigned here. */
  private frontier: Frontier;
  private readonly kept: KeptLeaves;
  private readonly segments: Segment[];
  private fh: FileHandle | undefined;
  private readonly loop: CommitLoop;
  private readonly segDir: string;
  readonly recovery: RecoveryReport;
  /** Counters for metrics and tests: batches written (one fdatasync each) and entries in them. */
  readonly stats = { batches: 0, entries: 0 };

  private constructor(
    readonly dir: string,
    private readonly lock: LockFile,
    private readonly segmentBytes: number,
    readonly maxBatchBytes: number,
    r: Recovered,
  ) {
    this.segDir = join(dir, "segments");
    this.durable = r.durable;
    this.frontier = r.frontier;
    this.kept = r.kept;
    this.segments = r.segments;
    this.fh = r.fh;
    this.recovery = r.report;
    this.loop = new CommitLoop({
      size: () => this.durable,
      maxBatchBytes,
      write: (batch, bytes) => this.writeBatch(batch, bytes),
    });
  }

  /** Why appends now fail (a write or sync failed), or undefined while the journal is healthy. */
  get failure(): ExecgateError | undefined {
    return this.loop.failure;
  }

  /** Durable entry count. */
  get size(): number {
    return this.durable;
  }

  static async open(opts: JournalOptions): Promise<Journal> {
    const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    const maxBatchBytes = opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
    if (maxBatchBytes < MAX_ENTRY_READ_BYTES + RECORD_HEADER_BYTES) {
      throw new ExecgateError("config_invalid", "lineage journal: maxBatchBytes must hold one maximal entry");
    }
    try {
      await makeDirs(join(opts.dir, "segments"), 0o750);
    } catch (e) {
      throw ioError(`lineage directory ${opts.dir}`, e);
    }
    const keepFrom = opts.keepFrom ?? 0;
    if (!Number.isSafeInteger(keepFrom) || keepFrom < 0)
      throw new ExecgateError("config_invalid", "lineage journal: keepFrom must be a non-negative integer");
    const lock = await LockFile.acquire(opts.dir);
    let recovered: Recovered;
    try {
      recovered = await recoverJournal({
        segDir: join(opts.dir, "segments"),
        keepFrom,
        maxBatchBytes,
        resume: opts.resume,
      });
    } catch (e) {
      await lock.release();
      throw e;
    }
    return new Journal(opts.dir, lock, segmentBytes, maxBatchBytes, recovered);
  }

  /** Appends entries (CommitLoop.add): each result once durable. */
  add(items: readonly Item[] | ((firstIndex: number) => readonly Item[])): Promise<AppendResult[]> {
    return this.loop.add(items);
  }

  /** Waits until everything appended so far has been flushed (or failed). */
  drain(): Promise<void> {
    return this.loop.drain();
  }

  /**
   * Where a restart could resume at `size` (a checkpointed size at or after `base`): the segment
   * in which entry `size` starts and the offset there (resume.ts).
   */
  resumePosition(size: number): Pick<ResumePoint, "segment" | "offset" | "earlierSegments" | "earlierBytes"> {
    const extents = this.extentsFor(size);
    const last = extents.at(-1)!;
    return {
      segment: segmentFirst(last.name),
      offset: last.length,
      earlierSegments: extents.length - 1,
      earlierBytes: extents.slice(0, -1).reduce((n, x) => n + x.length, 0),
    };
  }

  /** The leaf hash of a durable entry at or after `base`. */
  leafHash(index: number): Uint8Array {
    this.kept.check(index, this.durable - 1, "leaf index");
    return this.kept.leafHash(index);
  }

  /** The RFC 9162 root of the durable entries. */
  root(): Uint8Array {
    return frontierRoot(this.frontier);
  }

  /** The root at `size` for base ≤ size ≤ the durable size (older sizes cost size - base hashes). */
  rootAt(size: number): Uint8Array {
    this.kept.check(size, this.durable, "tree size");
    if (size === this.durable) return this.root();
    return this.kept.rootAt(size);
  }

  /** The durable size and its frontier, taken together (for a later prune). */
  snapshot(): { readonly size: number; readonly frontier: Frontier } {
    return { size: this.durable, frontier: this.frontier };
  }

  /**
   * Forgets leaf hashes and offsets below `snap.size` (a snapshot() taken earlier): called once a
   * checkpoint covering them is durable. Roots, leaf hashes and reads then start at snap.size.
   */
  prune(snap: { readonly size: number; readonly frontier: Frontier }): void {
    if (snap.size <= this.kept.base) return;
    this.kept.check(snap.size, this.durable, "prune size");
    // Offsets exist for the durable entries and the batch in flight; leaf hashes as far as hashed.
    this.kept.prune(snap, this.durable + this.loop.inFlight - this.kept.base);
  }

  private async writeBatch(
    batch: readonly Uint8Array[],
    bytes: number,
  ): Promise<() => readonly Uint8Array[]> {
    let seg = this.segments[this.segments.length - 1]!;
    if (seg.end + bytes > this.segmentBytes && seg.end > SEGMENT_HEADER_BYTES) {
      const created = await createSegment(this.segDir, this.durable);
      await this.fh?.close();
      this.fh = created.fh;
      this.segments.push(created.segment);
      seg = created.segment;
    }
    const buf = new Uint8Array(bytes);
    const first = this.durable;
    let at = 0;
    for (let i = 0; i < batch.length; i++) {
      this.kept.pushOffset(first + i, seg.end + at);
      at = frameRecord(batch[i]!, buf, at);
    }
    // Durability: one positional write of the whole batch on a descriptor opened O_DSYNC, so the
    // write returns only when the data and the size needed to read it back are on stable storage
    // (fdatasync semantics, one system call and one thread-pool hop instead of two). Nothing is
    // acknowledged before it returns. The write is issued now; the hashing below runs meanwhile.
    const written = writeAll(this.fh!, buf, seg.end);
    let leaves: Uint8Array[];
    let frontier: Frontier;
    try {
      leaves = batch.map((b) => leafHash(b));
      frontier = extendFrontier(this.frontier, first, leaves);
      for (const leaf of leaves) this.kept.leaves.push(leaf);
      await written;
    } catch (e) {
      await written.catch(() => undefined); // never leave the write unobserved
      this.kept.leaves.truncate(first - this.kept.base);
      throw e;
    }
    return () => {
      seg.end += bytes;
      this.frontier = frontier;
      this.durable = first + batch.length;
      this.stats.batches += 1;
      this.stats.entries += batch.length;
      return leaves;
    };
  }

  /** Reads entries [from, to) back from disk, checking each record's CRC. */
  async readRange(from: number, to: number): Promise<Uint8Array[]> {
    if (
      !Number.isSafeInteger(from) ||
      !Number.isSafeInteger(to) ||
      from < this.kept.base ||
      to > this.size ||
      from > to
    ) {
      throw new ExecgateError(
        "malformed",
        `lineage journal: range ${from}..${to} outside ${this.kept.base}..${this.size}${from < this.kept.base ? ` (entries before ${this.kept.base} are checkpointed: read them from the segments)` : ""}`,
      );
    }
    const out: Uint8Array[] = [];
    let i = from;
    while (i < to) {
      const k = segmentIndexOf(this.segments, i);
      const seg = this.segments[k]!;
      const segEndIndex = this.segments[k + 1]?.first ?? this.size;
      const segLast = Math.min(to, segEndIndex);
      const start = this.kept.offset(i);
      const end = segLast < segEndIndex ? this.kept.offset(segLast) : seg.end;
      const buf = await readAt(seg.path, start, end - start);
      let pos = 0;
      for (; i < segLast; i++) {
        const len = checkRecord(buf, pos, MAX_ENTRY_READ_BYTES);
        if (len < 0) {
          throw new ExecgateError(
            "io_error",
            `lineage journal: record ${i} in ${seg.path} no longer reads back intact`,
          );
        }
        out.push(buf.slice(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + len));
        pos += RECORD_HEADER_BYTES + len;
      }
    }
    return out;
  }

  async readEntry(index: number): Promise<Uint8Array> {
    return (await this.readRange(index, index + 1))[0]!;
  }

  /** Segment files, oldest first (for export). */
  segmentPaths(): string[] {
    return this.segments.map((s) => s.path);
  }

  /**
   * The byte extents holding exactly entries [0, n): for each segment file its path and the
   * length to copy (the last one cut right after entry n-1). Used by export to take a snapshot
   * consistent with a checkpoint of size n while appends continue.
   */
  extentsFor(n: number): { readonly name: string; readonly path: string; readonly length: number }[] {
    if (!Number.isSafeInteger(n) || n < this.kept.base || n > this.size) {
      throw new ExecgateError(
        "malformed",
        `lineage journal: size ${n} outside ${this.kept.base}..${this.size} (sizes below ${this.kept.base} are checkpointed)`,
      );
    }
    const out: { name: string; path: string; length: number }[] = [];
    for (let k = 0; k < this.segments.length; k++) {
      const seg = this.segments[k]!;
      if (seg.first > n || (seg.first === n && k > 0)) break;
      const next = this.segments[k + 1]?.first ?? this.size;
      const length = n < next ? (n === seg.first ? SEGMENT_HEADER_BYTES : this.kept.offset(n)) : seg.end;
      out.push({ name: segmentName(seg.first), path: seg.path, length });
    }
    return out;
  }

  /** Writes what was appended before the call, refuses appends from then on, closes the files. */
  close(): Promise<void> {
    return this.loop.close(
      () => this.drain(),
      async () => {
        try {
          await this.fh?.close();
        } finally {
          this.fh = undefined;
          await this.lock.release();
        }
      },
    );
  }
}
