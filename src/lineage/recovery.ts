import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { MAX_ENTRY_READ_BYTES } from "./entry.js";
import { type Frontier, pushLeaf } from "./frontier.js";
import { fsyncDir, ioError } from "./fsutil.js";
import { leafHash } from "./hash.js";
import { KeptLeaves } from "./kept.js";
import { checkRecord, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, segmentName } from "./record.js";
import type { ResumePoint } from "./resume.js";
import {
  createSegment,
  headerValid,
  openRw,
  SEGMENT_NAME,
  type Segment,
  segmentFirst,
  truncateFile,
} from "./segments.js";

/**
 * Crash recovery at open: segments must be contiguous and every header valid. In the last segment
 * the first bad record (short, bad length, CRC mismatch) starts a torn tail, which is truncated —
 * only if it is no longer than one batch, since only the single unacknowledged batch in flight at
 * a crash can be torn. A bad record anywhere else, or a longer bad tail, refuses to open.
 */

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

/** What replay found: the journal starts from it. */
export interface Recovered {
  readonly segments: Segment[];
  readonly durable: number;
  readonly frontier: Frontier;
  readonly kept: KeptLeaves;
  /** The last segment, opened O_DSYNC for the batch writes. */
  readonly fh: FileHandle;
  readonly report: RecoveryReport;
}

/** Replays the segments under `segDir` (the caller holds the lock). */
export async function recoverJournal(o: {
  readonly segDir: string;
  readonly keepFrom: number;
  readonly maxBatchBytes: number;
  readonly resume: ResumePoint | undefined;
}): Promise<Recovered> {
  const r = new Replay(o.segDir, o.keepFrom, o.maxBatchBytes);
  try {
    await r.recover(o.resume);
  } catch (e) {
    await r.fh?.close().catch(() => undefined);
    throw e;
  }
  return {
    segments: r.segments,
    durable: r.durable,
    frontier: r.frontier,
    kept: r.kept,
    fh: r.fh!,
    report: r.recovery,
  };
}

class Replay {
  readonly segments: Segment[] = [];
  durable = 0;
  frontier: Frontier = [];
  readonly kept = new KeptLeaves();
  fh: FileHandle | undefined;
  recovery: RecoveryReport = { truncatedBytes: 0, removedSegments: [], size: 0, resumedAt: 0 };

  constructor(
    private readonly segDir: string,
    private readonly keepFrom: number,
    private readonly maxBatchBytes: number,
  ) {}

  /**
   * Replays the segments: from the resume point when it fits the files, else from the beginning.
   * The resume point's offset is pinned by walking its segment's records from the header, so
   * records after it have the boundaries a full replay finds: a torn tail in the last segment is
   * cut (and a headerless last segment removed) exactly as a full replay would. Anything that
   * would refuse to open (a bad record before the last segment's tail, a longer bad tail, a
   * segment that does not start where expected) sets the resume point aside instead, and the
   * full replay decides.
   */
  async recover(resume: ResumePoint | undefined): Promise<void> {
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
    this.kept.reset();
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
      const first = segmentFirst(name);
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
      if (!headerValid(data, first)) {
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
    if (this.keepFrom >= this.durable) this.kept.startAt(this.durable, frontier.slice());
    if (this.segments.length === 0) {
      const created = await createSegment(this.segDir, 0);
      this.fh = created.fh;
      this.segments.push(created.segment);
    } else this.fh = await openRw(this.segments[this.segments.length - 1]!.path, constants.O_DSYNC);
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
        earlier.push({ first: segmentFirst(name), path: p, end });
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
    if (!headerValid(data, resume.segment) || resume.offset > data.length) return undefined;
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

  /** One entry replayed at open: into the frontier; kept (leaf, offset) from keepFrom on. */
  private recoverEntry(frontier: Uint8Array[], offset: number, payload: Uint8Array): void {
    const index = this.durable;
    if (index === this.keepFrom) this.kept.startAt(index, frontier.slice());
    const leaf = leafHash(payload);
    pushLeaf(frontier, index, leaf);
    if (index >= this.keepFrom) {
      this.kept.pushOffset(index, offset);
      this.kept.leaves.push(leaf);
    }
    this.durable = index + 1;
  }
}
