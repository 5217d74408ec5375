import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { mkdir, open, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { type Entry, encodeEntry, MAX_ENTRY_BYTES } from "./entry.js";
import { fsyncDir, ioError, writeAll } from "./fsutil.js";
import { leafHash } from "./hash.js";
import { LockFile } from "./lock.js";
import { MerkleTree } from "./merkle.js";
import {
  checkRecord,
  frameRecord,
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
} from "./record.js";

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
 * Group commit: append() queues the encoded entry; one flush at a time takes everything queued
 * (up to maxBatchBytes) and writes it with one positional write on an O_DSYNC descriptor. While
 * that write is with the disk, the batch's leaf hashes are computed and added to the Merkle tree
 * (CPU work overlapping the I/O wait); the tree runs ahead of `size` until the write returns, and
 * only then do `size` and every append resolve with {index, leafHash}. While a
 * flush is in flight, new appends wait for the next batch. A failed write or sync poisons the
 * journal: every pending and later append rejects ("io_error") — the bytes on disk are unknown
 * until recovery runs at the next open, and the daemon must deny (lineage_unavailable).
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
}

interface Pending {
  readonly bytes: Uint8Array;
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

function segmentName(first: number): string {
  return `${String(first).padStart(20, "0")}.seg`;
}

function corrupt(message: string, detail: Record<string, unknown> = {}): ExecgateError {
  return new ExecgateError("config_invalid", `lineage journal: ${message}; refusing to open`, detail);
}

export class Journal {
  /**
   * Merkle tree of the entries: the durable ones, and — only while a write is in flight — that
   * batch's. Read it at `size` (rootAt(size), proofs up to size), never at tree.size.
   */
  readonly tree = new MerkleTree();
  /** Durable entry count. */
  private durable = 0;
  private readonly segments: Segment[] = [];
  /** Offset of each entry's record within its segment. */
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
  private closed = false;
  private readonly segDir: string;
  /** Counters for metrics and tests: batches written (one fdatasync each) and entries in them. */
  readonly stats = { batches: 0, entries: 0 };

  private constructor(
    readonly dir: string,
    private readonly lock: LockFile,
    private readonly segmentBytes: number,
    readonly maxBatchBytes: number,
    public recovery: RecoveryReport,
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
    if (maxBatchBytes < MAX_ENTRY_BYTES + RECORD_HEADER_BYTES) {
      throw new ExecgateError("config_invalid", "lineage journal: maxBatchBytes must hold one maximal entry");
    }
    try {
      await mkdir(join(opts.dir, "segments"), { recursive: true, mode: 0o750 });
    } catch (e) {
      throw ioError(`lineage directory ${opts.dir}`, e);
    }
    const lock = await LockFile.acquire(opts.dir);
    const j = new Journal(opts.dir, lock, segmentBytes, maxBatchBytes, {
      truncatedBytes: 0,
      removedSegments: [],
      size: 0,
    });
    try {
      await j.recover();
    } catch (e) {
      await j.fh?.close().catch(() => undefined);
      await lock.release();
      throw e;
    }
    return j;
  }

  private async recover(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.segDir)).filter((n) => SEGMENT_NAME.test(n)).sort();
    } catch (e) {
      throw ioError(`lineage segments ${this.segDir}`, e);
    }
    let truncatedBytes = 0;
    const removedSegments: string[] = [];
    for (let k = 0; k < names.length; k++) {
      const name = names[k]!;
      const path = join(this.segDir, name);
      const isLast = k === names.length - 1;
      const first = Number(SEGMENT_NAME.exec(name)![1]);
      if (first !== this.tree.size) {
        throw corrupt(`segment ${name} starts at ${first}, expected ${this.tree.size}`, { segment: path });
      }
      let data: Uint8Array;
      try {
        data = new Uint8Array(await readFile(path));
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
      if (!this.headerValid(data, first))
        throw corrupt(`segment ${name} has an invalid header`, { segment: path });
      let pos = SEGMENT_HEADER_BYTES;
      while (pos < data.length) {
        const len = checkRecord(data, pos, MAX_ENTRY_BYTES);
        if (len < 0) {
          const tail = data.length - pos;
          if (!isLast)
            throw corrupt(`bad record in ${name} at offset ${pos}`, { segment: path, offset: pos });
          if (tail > this.maxBatchBytes) {
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
        this.pushOffset(this.tree.size, pos);
        this.tree.append(leafHash(data.subarray(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + len)));
        pos += RECORD_HEADER_BYTES + len;
      }
      this.segments.push({ first, path, end: pos });
    }
    if (this.segments.length === 0) await this.createSegment(0);
    else this.fh = await openRw(this.segments[this.segments.length - 1]!.path, constants.O_DSYNC);
    this.durable = this.tree.size;
    this.recovery = { truncatedBytes, removedSegments, size: this.durable };
  }

  private headerValid(data: Uint8Array, first: number): boolean {
    if (data.length < SEGMENT_HEADER_BYTES) return false;
    for (let i = 0; i < SEGMENT_MAGIC.length; i++) if (data[i] !== SEGMENT_MAGIC[i]) return false;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    return view.getBigUint64(8) === BigInt(first);
  }

  private pushOffset(index: number, offset: number): void {
    if (index >= this.offsets.length) {
      const next = new Float64Array(this.offsets.length * 2);
      next.set(this.offsets);
      this.offsets = next;
    }
    this.offsets[index] = offset;
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

  /** Appends an entry; resolves once it is durable (group commit). */
  append(entry: Entry): Promise<AppendResult> {
    let bytes: Uint8Array;
    try {
      bytes = encodeEntry(entry);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.appendEncoded(bytes);
  }

  /**
   * Appends entries that refer to each other: `build` receives the index the first of them will
   * get (they are queued together, in order, with nothing in between) and returns the entries.
   * Resolves when all of them are durable, in one group commit when they fit one batch.
   */
  appendLinked(build: (firstIndex: number) => readonly (Entry | Uint8Array)[]): Promise<AppendResult[]> {
    const first = this.durable + this.inFlight + this.pending.length;
    let encoded: Uint8Array[];
    try {
      // Uint8Array items are entries the caller already encoded with encodeEntry (to hash them).
      encoded = build(first).map((e) => (e instanceof Uint8Array ? e : encodeEntry(e)));
    } catch (e) {
      return Promise.reject(e);
    }
    // All or none: a rejected entry must not shift the indices the others refer to.
    const bad = encoded.find((b) => b.length === 0 || b.length > MAX_ENTRY_BYTES);
    if (bad)
      return Promise.reject(new ExecgateError("limit_exceeded", `lineage entry of ${bad.length} bytes`));
    return Promise.all(encoded.map((b) => this.appendEncoded(b)));
  }

  /** Appends already-encoded entry bytes (the caller guarantees they came from encodeEntry). */
  appendEncoded(bytes: Uint8Array): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new ExecgateError("io_error", "lineage journal is closed"));
    if (this.failed) return Promise.reject(this.failed);
    if (bytes.length === 0 || bytes.length > MAX_ENTRY_BYTES) {
      return Promise.reject(new ExecgateError("limit_exceeded", `lineage entry of ${bytes.length} bytes`));
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ bytes, resolve, reject });
      if (!this.active && !this.scheduled) {
        this.scheduled = true;
        // setImmediate, not a microtask: appenders resuming in this turn join the same batch.
        setImmediate(() => {
          this.scheduled = false;
          void this.run();
        });
      }
    });
  }

  /**
   * The flush loop. It exits only when it finds the queue empty, and clears `active` in the same
   * synchronous step, so an append either lands in the queue this loop will see or starts a new one.
   */
  private async run(): Promise<void> {
    if (this.active) return;
    this.active = true;
    try {
      while (this.pending.length > 0 && this.failed === undefined) {
        let bytes = 0;
        let n = 0;
        while (n < this.pending.length) {
          const sz = RECORD_HEADER_BYTES + this.pending[n]!.bytes.length;
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
      at = frameRecord(batch[i]!.bytes, buf, at);
    }
    // Durability: one positional write of the whole batch on a descriptor opened O_DSYNC, so the
    // write returns only when the data and the size needed to read it back are on stable storage
    // (fdatasync semantics, one system call and one thread-pool hop instead of two). Nothing is
    // acknowledged before it returns. The write is issued now; the hashing below runs meanwhile.
    const written = writeAll(this.fh!, buf, seg.end);
    let leaves: Uint8Array[];
    try {
      leaves = this.hashIntoTree(batch);
      await written;
    } catch (e) {
      await written.catch(() => undefined); // never leave the write unobserved
      this.tree.truncate(first);
      throw e;
    }
    seg.end += bytes;
    this.durable = first + batch.length;
    this.stats.batches += 1;
    this.stats.entries += batch.length;
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve({ index: first + i, leafHash: leaves[i]! });
    // The batch is durable now. Cleared here, synchronously, because the appenders resumed by the
    // resolves above run before run() continues, and appendLinked counts durable + inFlight.
    this.inFlight = 0;
  }

  private hashIntoTree(batch: readonly Pending[]): Uint8Array[] {
    const leaves: Uint8Array[] = [];
    for (const p of batch) {
      const leaf = leafHash(p.bytes);
      leaves.push(leaf);
      this.tree.append(leaf);
    }
    return leaves;
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
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || to > this.size || from > to) {
      throw new ExecgateError("malformed", `lineage journal: range ${from}..${to} outside 0..${this.size}`);
    }
    const out: Uint8Array[] = [];
    let i = from;
    while (i < to) {
      const k = this.segmentIndexOf(i);
      const seg = this.segments[k]!;
      const segEndIndex = this.segments[k + 1]?.first ?? this.size;
      const segLast = Math.min(to, segEndIndex);
      const start = this.offsets[i]!;
      const end = segLast < segEndIndex ? this.offsets[segLast]! : seg.end;
      const buf = await readAt(seg.path, start, end - start);
      let pos = 0;
      for (; i < segLast; i++) {
        const len = checkRecord(buf, pos, MAX_ENTRY_BYTES);
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
    if (!Number.isSafeInteger(n) || n < 0 || n > this.size) {
      throw new ExecgateError("malformed", `lineage journal: size ${n} outside 0..${this.size}`);
    }
    const out: { name: string; path: string; length: number }[] = [];
    for (let k = 0; k < this.segments.length; k++) {
      const seg = this.segments[k]!;
      if (seg.first > n || (seg.first === n && k > 0)) break;
      const next = this.segments[k + 1]?.first ?? this.size;
      const length = n < next ? (n === seg.first ? SEGMENT_HEADER_BYTES : this.offsets[n]!) : seg.end;
      out.push({ name: segmentName(seg.first), path: seg.path, length });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.drain();
    this.closed = true;
    await this.fh?.close();
    this.fh = undefined;
    await this.lock.release();
  }
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
