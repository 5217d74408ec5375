import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { open, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { asExecgateError, ExecgateError } from "../core/errors.js";
import { makeDirs } from "../core/mkdirs.js";
import { type Entry, encodeEntry, MAX_ENTRY_BYTES, MAX_ENTRY_READ_BYTES } from "./entry.js";
import { extendFrontier, type Frontier, frontierRoot, pushLeaf } from "./frontier.js";
import { fsyncDir, ioError, writeAll } from "./fsutil.js";
import { leafHash } from "./hash.js";
import { HashColumn } from "./hash-column.js";
import { LockFile } from "./lock.js";
import {
  checkRecord,
  frameRecord,
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  segmentName,
} from "./record.js";
import type { ResumePoint } from "./resume.js";

/**
 * The lineage journal: append-only segment files of framed entries (record.ts), with group
 * commit. Layout under `dir`:
 *
 *   LOCK                         one writer (lock.ts)
 *   segments/<first index>.seg   20-digit zero-padded index of the segment's first entry
 *
 * A segment starts with a 16-byte header: magic "EXGLSEG1" and the first index as u64be; then
 * records back to back. Segments rotate when the next batch would pass `segmentBytes`.
 *
 * Group commit: add() queues the encoded entry; one flush at a time takes everything queued
 * (up to maxBatchBytes) and writes it with one positional write on an O_DSYNC descriptor. While
 * that write is with the disk, the batch's leaf hashes and the tree's next frontier are computed
 * (CPU work overlapping the I/O wait); only when the write returns do `size`, the root and every
 * append's {index, leafHash} take effect. While a
 * flush is in flight, new appends wait for the next batch. A failed write or sync poisons the
 * journal: every pending and later append rejects ("io_error") — the bytes on disk are unknown
 * until recovery runs at the next open, and the daemon must deny (lineage_unavailable).
 *
 * Memory is bounded by what has not been checkpointed yet, not by the length of the log: the tree
 * is kept as its frontier (frontier.ts, O(log n) hashes), plus the leaf hashes and record offsets
 * of the entries from `base` on. The checkpointer moves `base` forward (prune) once a checkpoint
 * covers them; `keepFrom` at open sets the first base (the last recorded intent's size, whose root
 * the checkpointer checks). Roots, leaf hashes and reads are available from `base` on.
 *
 * Recovery (open): segments must be contiguous and every header valid. In the last segment the
 * first bad record (short, bad length, CRC mismatch) starts a torn tail, which is truncated —
 * only if it is no longer than one batch, since only the single unacknowledged batch in flight
 * at a crash can be torn. A bad record anywhere else, or a longer bad tail, refuses to open.
 */

export { SEGMENT_HEADER_BYTES, SEGMENT_MAGIC } from "./record.js";
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

export interface AppendResult {
  readonly index: number;
  readonly leafHash: Uint8Array;
}

export interface RecoveryReport {
  /** Bytes cut from the end of the last segment (a torn tail), 0 if none. */
  readonly truncatedBytes: number;
  /** Segment files removed because a crash left them without a complete header. */
  readonly removedSegments: readonly string[];
  /** Entries present after recovery. */
  readonly size: number;
  /** Entries taken from the resume point instead of replayed (0: a full replay). */
  readonly resumedAt: number;
}

/** What add() takes: an entry, its encodeEntry bytes, or either to come (see add()). */
export type Item = Entry | Uint8Array | Promise<Entry | Uint8Array>;

interface Pending {
  /** Undefined while the slot waits for its entry (a promised item, see add()). */
  bytes: Uint8Array | undefined;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: unknown) => void;
}

interface Segment {
  readonly first: number;
  readonly path: string;
  /** Bytes of valid data (header + records). */
  end: number;
}

const SEGMENT_NAME = /^(\d{20})\.seg$/;

/** A resume point that does not fit what replay finds: start over from the beginning. */
class ResumeMisfit extends Error {}

interface ResumeStart {
  /** Position of the resume point's segment in the sorted segment names. */
  readonly k: number;
  /** That segment's bytes (read to check the offset). */
  readonly data: Uint8Array;
  /** The segments before it, taken without replay. */
  readonly earlier: Segment[];
}

function corrupt(message: string, detail: Record<string, unknown> = {}): ExecgateError {
  return new ExecgateError("config_invalid", `lineage journal: ${message}; refusing to open`, detail);
}

export class Journal {
  /** Durable entry count. */
  private durable = 0;
  /** The tree's frontier at `durable`. Frontier arrays are never mutated once assigned here. */
  private frontier: Frontier = [];
  /** First index whose leaf hash and offset are kept, and the frontier at that size. */
  private base = 0;
  private baseFrontier: Frontier = [];
  /** Leaf hashes of entries base.. (32 bytes each; runs ahead of `durable` during a write). */
  private readonly leaves = new HashColumn(1024);
  private readonly segments: Segment[] = [];
  /** Offset of each entry's record within its segment, for entries base.. (at index - base). */
  private offsets = new Float64Array(1024);
  private fh: FileHandle | undefined;
  private pending: Pending[] = [];
  /** Entries of the batch being written (already out of `pending`, not yet in the tree). */
  private inFlight = 0;
  /** A flush loop is running. Checked and cleared with no await in between (see run()). */
  private active = false;
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];
  private failed: ExecgateError | undefined;
  /**
   * Set when close() starts, before its final drain: appends from then on are refused. Set only
   * after the drain, an append queued in between was written to the handle being closed.
   */
  private closing: Promise<void> | undefined;
  private readonly segDir: string;
  /** Counters for metrics and tests: batches written (one fdatasync each) and entries in them. */
  readonly stats = { batches: 0, entries: 0 };

  private constructor(
    readonly dir: string,
    private readonly lock: LockFile,
    private readonly segmentBytes: number,
    readonly maxBatchBytes: number,
    public recovery: RecoveryReport,
    private readonly keepFrom: number,
  ) {
    this.segDir = join(dir, "segments");
  }

  /** Why appends now fail (a write or sync failed), or undefined while the journal is healthy. */
  get failure(): ExecgateError | undefined {
    return this.failed;
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
    const j = new Journal(
      opts.dir,
      lock,
      segmentBytes,
      maxBatchBytes,
      { truncatedBytes: 0, removedSegments: [], size: 0, resumedAt: 0 },
      keepFrom,
    );
    try {
      await j.recover(opts.resume);
    } catch (e) {
      await j.fh?.close().catch(() => undefined);
      await lock.release();
      throw e;
    }
    return j;
  }

  /**
   * Replays the segments: from the resume point when it fits the files, else from the beginning.
   * The resume point's offset is pinned by walking its segment's records from the header, so
   * records after it have the boundaries a full replay finds: a torn tail in the last segment is
   * cut (and a headerless last segment removed) exactly as a full replay would. Anything that
   * would refuse to open (a bad record before the last segment's tail, a longer bad tail, a
   * segment that does not start where expected) sets the resume point aside instead, and the
   * full replay decides.
   */
  private async recover(resume: ResumePoint | undefined): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.segDir)).filter((n) => SEGMENT_NAME.test(n)).sort();
    } catch (e) {
      throw ioError(`lineage segments ${this.segDir}`, e);
    }
    const from = await this.resumeStart(names, resume);
    if (from !== undefined) {
      try {
        await this.replay(names, { ...from, point: resume! });
        return;
      } catch (e) {
        if (!(e instanceof ResumeMisfit)) throw e;
        this.resetReplay();
      }
    }
    await this.replay(names, undefined);
  }

  private resetReplay(): void {
    this.segments.length = 0;
    this.durable = 0;
    this.base = 0;
    this.baseFrontier = [];
    this.leaves.truncate(0);
  }

  private async replay(
    names: readonly string[],
    from: (ResumeStart & { readonly point: ResumePoint }) | undefined,
  ): Promise<void> {
    // Built in place during replay, then frozen into this.frontier.
    let frontier: Uint8Array[] = [];
    let truncatedBytes = 0;
    const removedSegments: string[] = [];
    if (from !== undefined) {
      // The segments before the resume point's own are taken as they are (only the last segment
      // can have a torn tail), and replay starts where entry `point.size` starts.
      this.segments.push(...from.earlier);
      this.durable = from.point.size;
      frontier = from.point.frontier.slice();
    }
    const misfit = (why: string) => {
      if (from !== undefined) throw new ResumeMisfit(why);
    };
    for (let k = from?.k ?? 0; k < names.length; k++) {
      const name = names[k]!;
      const path = join(this.segDir, name);
      const isLast = k === names.length - 1;
      const first = Number(SEGMENT_NAME.exec(name)![1]);
      const resuming = from !== undefined && k === from.k;
      if (first !== this.durable && !resuming) {
        misfit("segment start");
        throw corrupt(`segment ${name} starts at ${first}, expected ${this.durable}`, { segment: path });
      }
      let data: Uint8Array;
      try {
        data = resuming ? from.data : new Uint8Array(await readFile(path));
      } catch (e) {
        throw ioError(`read ${path}`, e);
      }
      if (data.length < SEGMENT_HEADER_BYTES && isLast) {
        // A crash while rotating: the new segment never got its header. No entry can be in it.
        await rm(path);
        await fsyncDir(this.segDir);
        removedSegments.push(name);
        continue;
      }
      if (!this.headerValid(data, first)) {
        misfit("segment header");
        throw corrupt(`segment ${name} has an invalid header`, { segment: path });
      }
      let pos = resuming ? from.point.offset : SEGMENT_HEADER_BYTES;
      while (pos < data.length) {
        const len = checkRecord(data, pos, MAX_ENTRY_READ_BYTES);
        if (len < 0) {
          const tail = data.length - pos;
          if (!isLast) {
            misfit("bad record");
            throw corrupt(`bad record in ${name} at offset ${pos}`, { segment: path, offset: pos });
          }
          if (tail > this.maxBatchBytes) {
            misfit("long bad tail");
            throw corrupt(
              `bad record in ${name} at offset ${pos} with ${tail} bytes after it (more than one batch)`,
              {
                segment: path,
                offset: pos,
              },
            );
          }
          await truncateFile(path, pos);
          truncatedBytes = tail;
          break;
        }
        this.recoverEntry(
          frontier,
          pos,
          data.subarray(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + len),
        );
        pos += RECORD_HEADER_BYTES + len;
      }
      this.segments.push({ first, path, end: pos });
    }
    if (this.keepFrom >= this.durable) {
      this.base = this.durable;
      this.baseFrontier = frontier.slice();
    }
    if (this.segments.length === 0) await this.createSegment(0);
    else this.fh = await openRw(this.segments[this.segments.length - 1]!.path, constants.O_DSYNC);
    this.frontier = frontier;
    this.recovery = {
      truncatedBytes,
      removedSegments,
      size: this.durable,
      resumedAt: from ? from.point.size : 0,
    };
  }

  /**
   * Whether replay can start at `resume`, checked without changing anything: its size within
   * keepFrom; the segments before its own as many and as long as it recorded; its segment present
   * with a valid header, and its offset the end of the segment's first size - segment records. Returns the segment's position in `names`, its bytes and the segments before it.
   */
  private async resumeStart(
    names: readonly string[],
    resume: ResumePoint | undefined,
  ): Promise<ResumeStart | undefined> {
    if (resume === undefined || resume.size > this.keepFrom) return undefined;
    const k = names.indexOf(segmentName(resume.segment));
    if (k < 0 || k !== resume.earlierSegments || resume.offset < SEGMENT_HEADER_BYTES) return undefined;
    const earlier: Segment[] = [];
    let earlierBytes = 0;
    for (const name of names.slice(0, k)) {
      const p = join(this.segDir, name);
      try {
        const end = (await stat(p)).size;
        earlier.push({ first: Number(SEGMENT_NAME.exec(name)![1]), path: p, end });
        earlierBytes += end;
      } catch {
        return undefined;
      }
    }
    if (earlierBytes !== resume.earlierBytes || (k > 0 && earlier[0]!.first !== 0)) return undefined;
    let data: Uint8Array;
    try {
      data = new Uint8Array(await readFile(join(this.segDir, names[k]!)));
    } catch {
      return undefined;
    }
    if (!this.headerValid(data, resume.segment) || resume.offset > data.length) return undefined;
    // The offset must be where exactly size - segment intact records from the header end (CRCs
    // only, no hashing): not a boundary found elsewhere, which would replay entries twice or skip some.
    let pos = SEGMENT_HEADER_BYTES;
    let records = 0;
    while (pos < resume.offset) {
      const len = checkRecord(data, pos, MAX_ENTRY_READ_BYTES);
      if (len < 0) return undefined;
      pos += RECORD_HEADER_BYTES + len;
      records += 1;
    }
    if (pos !== resume.offset || records !== resume.size - resume.segment) return undefined;
    return { k, data, earlier };
  }

  /**
   * Where a restart could resume at `size` (a checkpointed size at or after `base`): the segment
   * in which entry `size` starts and the offset there (resume.ts).
   */
  resumePosition(size: number): Pick<ResumePoint, "segment" | "offset" | "earlierSegments" | "earlierBytes"> {
    const extents = this.extentsFor(size);
    const last = extents.at(-1)!;
    return {
      segment: Number(SEGMENT_NAME.exec(last.name)![1]),
      offset: last.length,
      earlierSegments: extents.length - 1,
      earlierBytes: extents.slice(0, -1).reduce((n, x) => n + x.length, 0),
    };
  }

  private headerValid(data: Uint8Array, first: number): boolean {
    if (data.length < SEGMENT_HEADER_BYTES) return false;
    for (let i = 0; i < SEGMENT_MAGIC.length; i++) if (data[i] !== SEGMENT_MAGIC[i]) return false;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    return view.getBigUint64(8) === BigInt(first);
  }

  /** One entry replayed at open: into the frontier; kept (leaf, offset) from keepFrom on. */
  private recoverEntry(frontier: Uint8Array[], offset: number, payload: Uint8Array): void {
    const index = this.durable;
    if (index === this.keepFrom) {
      this.base = index;
      this.baseFrontier = frontier.slice();
    }
    const leaf = leafHash(payload);
    pushLeaf(frontier, index, leaf);
    if (index >= this.keepFrom) {
      this.pushOffset(index, offset);
      this.leaves.push(leaf);
    }
    this.durable = index + 1;
  }

  private pushOffset(index: number, offset: number): void {
    const k = index - this.base;
    if (k >= this.offsets.length) {
      const next = new Float64Array(this.offsets.length * 2);
      next.set(this.offsets);
      this.offsets = next;
    }
    this.offsets[k] = offset;
  }

  private checkKept(index: number, end: number, what: string): void {
    if (!Number.isSafeInteger(index) || index < this.base || index > end) {
      throw new ExecgateError(
        "malformed",
        `lineage journal: ${what} ${index} outside ${this.base}..${end} (entries before ${this.base} are checkpointed and no longer held in memory)`,
      );
    }
  }

  /** The leaf hash of a durable entry at or after `base`. */
  leafHash(index: number): Uint8Array {
    this.checkKept(index, this.durable - 1, "leaf index");
    const k = index - this.base;
    return this.leaves.get(k).slice();
  }

  /** The RFC 9162 root of the durable entries. */
  root(): Uint8Array {
    return frontierRoot(this.frontier);
  }

  /** The root at `size` for base ≤ size ≤ the durable size (older sizes cost size - base hashes). */
  rootAt(size: number): Uint8Array {
    this.checkKept(size, this.durable, "tree size");
    if (size === this.durable) return this.root();
    const leaves: Uint8Array[] = [];
    for (let i = this.base; i < size; i++) leaves.push(this.leafHash(i));
    return frontierRoot(extendFrontier(this.baseFrontier, this.base, leaves));
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
    if (snap.size <= this.base) return;
    this.checkKept(snap.size, this.durable, "prune size");
    const drop = snap.size - this.base;
    // Offsets exist for the durable entries and the batch in flight; leaf hashes as far as hashed.
    const offsetCount = this.durable + this.inFlight - this.base;
    this.leaves.dropFront(drop);
    this.offsets.copyWithin(0, drop, offsetCount);
    this.base = snap.size;
    this.baseFrontier = snap.frontier;
    // Give memory back after a burst (keeping room to grow without reallocating at once).
    const room = 2 * Math.max(1024, offsetCount - drop);
    this.leaves.fit(room);
    if (this.offsets.length > 2 * room) this.offsets = this.offsets.slice(0, room);
  }

  private async createSegment(first: number): Promise<void> {
    const path = join(this.segDir, segmentName(first));
    const header = new Uint8Array(SEGMENT_HEADER_BYTES);
    header.set(SEGMENT_MAGIC);
    new DataView(header.buffer).setBigUint64(8, BigInt(first));
    // Durability: create (O_EXCL), write the header, fsync the file, then fsync the directory
    // so the new name survives; only then do records go into it.
    let fh: FileHandle;
    try {
      // O_DSYNC: every later write of a batch returns only once its data (and the size needed to
      // read it back) is on stable storage — fdatasync in the same system call.
      fh = await open(
        path,
        constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC,
        0o640,
      );
      await writeAll(fh, header, 0);
      await fh.sync();
      await fsyncDir(this.segDir);
    } catch (e) {
      throw ioError(`create segment ${path}`, e);
    }
    await this.fh?.close();
    this.fh = fh;
    this.segments.push({ first, path, end: SEGMENT_HEADER_BYTES });
  }

  /**
   * The one way to append: `items` (or what `build` returns given the index the first of them
   * will get, for entries that name each other) are queued together, in order, with nothing in
   * between, and each resolves when durable (one group commit when they fit one batch). An item
   * that is a promise holds its slot — and everything queued after it — until it settles: a token
   * signed elsewhere names the decision before it. Such a promise must not reject; if it does, or
   * gives an entry that cannot be written, the journal is poisoned (a slot that can never be
   * filled would hold back every later entry).
   */
  add(items: readonly Item[] | ((firstIndex: number) => readonly Item[])): Promise<AppendResult[]> {
    if (this.closing) return Promise.reject(closedError());
    if (this.failed) return Promise.reject(this.failed);
    const first = this.durable + this.inFlight + this.pending.length;
    let ready: (Uint8Array | Promise<Entry | Uint8Array>)[];
    try {
      const list = typeof items === "function" ? items(first) : items;
      // All or none: a rejected entry must not shift the indices the others refer to.
      ready = list.map((x) => (x instanceof Promise ? x : checkedBytes(x)));
    } catch (e) {
      return Promise.reject(e);
    }
    const results = ready.map(
      (x) =>
        new Promise<AppendResult>((resolve, reject) => {
          const p: Pending = { bytes: x instanceof Promise ? undefined : x, resolve, reject };
          this.pending.push(p);
          if (x instanceof Promise)
            x.then(
              (v) => this.fill(p, v),
              (e: unknown) =>
                this.poison(new ExecgateError("internal", `lineage entry not made: ${String(e)}`)),
            );
        }),
    );
    this.schedule();
    return Promise.all(results);
  }

  /** A held slot's entry has come: the flush loop may go past it. */
  private fill(p: Pending, v: Entry | Uint8Array): void {
    if (this.failed !== undefined || p.bytes !== undefined) return;
    try {
      p.bytes = checkedBytes(v);
    } catch (e) {
      this.poison(asExecgateError(e));
      return;
    }
    this.schedule();
  }

  /** Every queued append fails from now on; a batch already with the disk completes. */
  private poison(e: ExecgateError): void {
    if (this.failed !== undefined) return;
    this.failed = e;
    for (const p of this.pending.splice(0)) p.reject(e);
  }

  private schedule(): void {
    if (!this.active && !this.scheduled) {
      this.scheduled = true;
      // A microtask: the write starts as soon as the appends of this synchronous step are queued,
      // while the event loop goes on to the next requests. Waiting for setImmediate gathered every
      // client of one read burst into the same batch, so they all waited on the same fsync and
      // came back together. Requests arriving during a write form the next batch either way.
      queueMicrotask(() => {
        this.scheduled = false;
        void this.run();
      });
    }
  }

  /**
   * The flush loop. It exits only when it finds the queue empty, and clears `active` in the same
   * synchronous step, so an append either lands in the queue this loop will see or starts a new one.
   */
  private async run(): Promise<void> {
    if (this.active) return;
    this.active = true;
    try {
      // A slot still waiting for its entry stops the batch there: nothing after it may be
      // written first. fill() starts the loop again.
      while (this.pending.length > 0 && this.pending[0]!.bytes !== undefined && this.failed === undefined) {
        let bytes = 0;
        let n = 0;
        while (n < this.pending.length && this.pending[n]!.bytes !== undefined) {
          const sz = RECORD_HEADER_BYTES + this.pending[n]!.bytes!.length;
          if (n > 0 && bytes + sz > this.maxBatchBytes) break;
          bytes += sz;
          n += 1;
        }
        const batch = this.pending.splice(0, n);
        this.inFlight = batch.length;
        try {
          await this.writeBatch(batch, bytes);
        } catch (e) {
          this.failed =
            e instanceof ExecgateError && e.code === "io_error" ? e : ioError("lineage journal write", e);
          for (const p of batch) p.reject(this.failed);
          for (const p of this.pending.splice(0)) p.reject(this.failed);
        } finally {
          this.inFlight = 0;
        }
      }
    } finally {
      this.active = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async writeBatch(batch: readonly Pending[], bytes: number): Promise<void> {
    let seg = this.segments[this.segments.length - 1]!;
    if (seg.end + bytes > this.segmentBytes && seg.end > SEGMENT_HEADER_BYTES) {
      await this.createSegment(this.durable);
      seg = this.segments[this.segments.length - 1]!;
    }
    const buf = new Uint8Array(bytes);
    const first = this.durable;
    let at = 0;
    for (let i = 0; i < batch.length; i++) {
      this.pushOffset(first + i, seg.end + at);
      at = frameRecord(batch[i]!.bytes!, buf, at);
    }
    // Durability: one positional write of the whole batch on a descriptor opened O_DSYNC, so the
    // write returns only when the data and the size needed to read it back are on stable storage
    // (fdatasync semantics, one system call and one thread-pool hop instead of two). Nothing is
    // acknowledged before it returns. The write is issued now; the hashing below runs meanwhile.
    const written = writeAll(this.fh!, buf, seg.end);
    let leaves: Uint8Array[];
    let frontier: Frontier;
    try {
      leaves = batch.map((p) => leafHash(p.bytes!));
      frontier = extendFrontier(this.frontier, first, leaves);
      for (const leaf of leaves) this.leaves.push(leaf);
      await written;
    } catch (e) {
      await written.catch(() => undefined); // never leave the write unobserved
      this.leaves.truncate(first - this.base);
      throw e;
    }
    seg.end += bytes;
    this.frontier = frontier;
    this.durable = first + batch.length;
    this.stats.batches += 1;
    this.stats.entries += batch.length;
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve({ index: first + i, leafHash: leaves[i]! });
    // The batch is durable now. Cleared here, synchronously, because the appenders resumed by the
    // resolves above run before run() continues, and add() counts durable + inFlight.
    this.inFlight = 0;
  }

  /** Waits until everything appended so far has been flushed (or failed). */
  async drain(): Promise<void> {
    while (this.active || this.scheduled || this.pending.length > 0) {
      await new Promise<void>((r) => {
        if (this.active) this.idleWaiters.push(r);
        else setImmediate(r);
      });
    }
  }

  /** Reads entries [from, to) back from disk, checking each record's CRC. */
  async readRange(from: number, to: number): Promise<Uint8Array[]> {
    if (
      !Number.isSafeInteger(from) ||
      !Number.isSafeInteger(to) ||
      from < this.base ||
      to > this.size ||
      from > to
    ) {
      throw new ExecgateError(
        "malformed",
        `lineage journal: range ${from}..${to} outside ${this.base}..${this.size}${from < this.base ? ` (entries before ${this.base} are checkpointed: read them from the segments)` : ""}`,
      );
    }
    const out: Uint8Array[] = [];
    let i = from;
    while (i < to) {
      const k = this.segmentIndexOf(i);
      const seg = this.segments[k]!;
      const segEndIndex = this.segments[k + 1]?.first ?? this.size;
      const segLast = Math.min(to, segEndIndex);
      const start = this.offsets[i - this.base]!;
      const end = segLast < segEndIndex ? this.offsets[segLast - this.base]! : seg.end;
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

  private segmentIndexOf(index: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid]!.first <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
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
    if (!Number.isSafeInteger(n) || n < this.base || n > this.size) {
      throw new ExecgateError(
        "malformed",
        `lineage journal: size ${n} outside ${this.base}..${this.size} (sizes below ${this.base} are checkpointed)`,
      );
    }
    const out: { name: string; path: string; length: number }[] = [];
    for (let k = 0; k < this.segments.length; k++) {
      const seg = this.segments[k]!;
      if (seg.first > n || (seg.first === n && k > 0)) break;
      const next = this.segments[k + 1]?.first ?? this.size;
      const length =
        n < next ? (n === seg.first ? SEGMENT_HEADER_BYTES : this.offsets[n - this.base]!) : seg.end;
      out.push({ name: segmentName(seg.first), path: seg.path, length });
    }
    return out;
  }

  /** Writes what was appended before the call, refuses appends from then on, closes the files. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    await this.drain();
    try {
      await this.fh?.close();
    } finally {
      this.fh = undefined;
      await this.lock.release();
    }
  }
}

/** An entry's bytes (encoded once: the same bytes are hashed and written), within the size limit. */
function checkedBytes(x: Entry | Uint8Array): Uint8Array {
  // Uint8Array items are entries the caller already encoded with encodeEntry (to hash them).
  const bytes = x instanceof Uint8Array ? x : encodeEntry(x);
  if (bytes.length === 0 || bytes.length > MAX_ENTRY_BYTES)
    throw new ExecgateError("limit_exceeded", `lineage entry of ${bytes.length} bytes`);
  return bytes;
}

function closedError(): ExecgateError {
  return new ExecgateError("io_error", "lineage journal is closed");
}

async function openRw(path: string, extraFlags = 0): Promise<FileHandle> {
  try {
    return await open(path, constants.O_RDWR | extraFlags);
  } catch (e) {
    throw ioError(`open ${path}`, e);
  }
}

async function truncateFile(path: string, length: number): Promise<void> {
  // Durability: truncate, then fsync, so the torn bytes cannot reappear after another crash.
  const fh = await openRw(path);
  try {
    await fh.truncate(length);
    await fh.sync();
  } catch (e) {
    throw ioError(`truncate ${path}`, e);
  } finally {
    await fh.close();
  }
}

async function readAt(path: string, position: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, "r");
    let off = 0;
    while (off < length) {
      const { bytesRead } = await fh.read(buf, off, length - off, position + off);
      if (bytesRead === 0) throw new ExecgateError("io_error", `short read of ${path}`);
      off += bytesRead;
    }
    return buf;
  } catch (e) {
    if (e instanceof ExecgateError) throw e;
    throw ioError(`read ${path}`, e);
  } finally {
    await fh?.close();
  }
}
