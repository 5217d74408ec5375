import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { fsyncDir, ioError, writeAll } from "./fsutil.js";
import { SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, segmentName } from "./record.js";

/**
 * Segment files: `segments/<first index>.seg`, a 16-byte header (magic "EXGLSEG1" and the first
 * index as u64be), then records back to back (record.ts).
 */
export interface Segment {
  readonly first: number;
  readonly path: string;
  /** Bytes of valid data (header + records). */
  end: number;
}

export const SEGMENT_NAME = /^(\d{20})\.seg$/;

/** The first index a segment file's name gives (a name SEGMENT_NAME matched). */
export function segmentFirst(name: string): number {
  return Number(SEGMENT_NAME.exec(name)![1]);
}

/** Creates the segment starting at `first`, opened for the batch writes. */
export async function createSegment(
  segDir: string,
  first: number,
): Promise<{ fh: FileHandle; segment: Segment }> {
  const path = join(segDir, segmentName(first));
  const header = new Uint8Array(SEGMENT_HEADER_BYTES);
  header.set(SEGMENT_MAGIC);
  new DataView(header.buffer).setBigUint64(8, BigInt(first));
  // Durability: create (O_EXCL), write the header, fsync the file, then fsync the directory
  // so the new name survives; only then do records go into it.
  let fh: FileHandle;
  try {
    // O_DSYNC: every later write of a batch returns only once its data (and the size needed to
    // read it back) is on stable storage — fdatasync in the same system call.
    fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC, 0o640);
    await writeAll(fh, header, 0);
    await fh.sync();
    await fsyncDir(segDir);
  } catch (e) {
    throw ioError(`create segment ${path}`, e);
  }
  return { fh, segment: { first, path, end: SEGMENT_HEADER_BYTES } };
}

export function headerValid(data: Uint8Array, first: number): boolean {
  if (data.length < SEGMENT_HEADER_BYTES) return false;
  for (let i = 0; i < SEGMENT_MAGIC.length; i++) if (data[i] !== SEGMENT_MAGIC[i]) return false;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return view.getBigUint64(8) === BigInt(first);
}

/** Position in `segments` (sorted, non-empty) of the one holding entry `index`. */
export function segmentIndexOf(segments: readonly Segment[], index: number): number {
  let lo = 0;
  let hi = segments.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (segments[mid]!.first <= index) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export async function openRw(path: string, extraFlags = 0): Promise<FileHandle> {
  try {
    return await open(path, constants.O_RDWR | extraFlags);
  } catch (e) {
    throw ioError(`open ${path}`, e);
  }
}

export async function truncateFile(path: string, length: number): Promise<void> {
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

export async function readAt(path: string, position: number, length: number): Promise<Uint8Array> {
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
