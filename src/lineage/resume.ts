import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { type CborValue, decode, encode } from "../cbor/index.js";
import type { Frontier } from "./frontier.js";
import { ioError, replaceFileDurably } from "./fsutil.js";
import { HASH_SIZE } from "./hash.js";
import { checkRecord, frameRecord, RECORD_HEADER_BYTES } from "./record.js";

/*
 * The resume point: where a restart picks the log up without replaying all of it. Written after
 * a checkpoint is signed and durable, it holds that checkpoint (size N, root, signed note), the
 * tree's frontier at N, where entry N starts in the segments, and where checkpoints.log continues
 * after the checkpoint's record. At open the journal replays only from there and the checkpoint
 * log is read only from there: start-up costs the entries and records since the resume point,
 * not the whole history.
 *
 * It is a hint, never an authority: the note's signature is verified at open and the frontier
 * must fold to the note's root, so a bad or stale file cannot make the daemon extend anything
 * but the signed tree. Any mismatch (unreadable, torn, pointing past the files) means a full
 * replay, as without the file. Entries before N are not re-hashed at start: the signed root
 * covers them, and `execgate audit verify` checks them against it.
 *
 * File `resume` in the lineage directory: one record (record.ts framing: length, CRC) holding a
 * deterministic-CBOR map {size, root, note, frontier: [bstr], segment, offset, earlier_segments,
 * earlier_bytes, log_offset, log_record_bytes}.
 * Written to `resume.tmp`, fsynced, renamed over `resume`, directory fsynced.
 */
export interface ResumePoint {
  /** Size of the signed checkpoint. */
  readonly size: number;
  readonly root: Uint8Array;
  /** The checkpoint's signed note (verified again at open). */
  readonly note: string;
  /** The tree's frontier at `size` (src/lineage/frontier.ts). */
  readonly frontier: Frontier;
  /** First index of the segment in which entry `size` starts (or the last entry before it ends). */
  readonly segment: number;
  /** Byte offset in that segment where entry `size` starts. */
  readonly offset: number;
  /** How many segments come before that one, and their bytes in all (checked at open). */
  readonly earlierSegments: number;
  readonly earlierBytes: number;
  /** Bytes of checkpoints.log up to and including the checkpoint's record. */
  readonly logOffset: number;
  /** That record's framed size: at open it must end at logOffset and carry `note`. */
  readonly logRecordBytes: number;
}

export const RESUME_NAME = "resume";
const MAX_RESUME_BYTES = 64 * 1024;

const count = (v: CborValue | undefined): boolean =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const hash = (v: CborValue | undefined): boolean => v instanceof Uint8Array && v.length === HASH_SIZE;

/** Each field's key in the file's map, and the check its value must pass. */
const FIELDS: {
  readonly [F in keyof ResumePoint]: readonly [string, (v: CborValue | undefined) => boolean];
} = {
  size: ["size", count],
  root: ["root", hash],
  note: ["note", (v) => typeof v === "string"],
  frontier: ["frontier", (v) => Array.isArray(v) && v.every(hash)],
  segment: ["segment", count],
  offset: ["offset", count],
  earlierSegments: ["earlier_segments", count],
  earlierBytes: ["earlier_bytes", count],
  logOffset: ["log_offset", count],
  logRecordBytes: ["log_record_bytes", count],
};
const FIELD_LIST = Object.entries(FIELDS) as [keyof ResumePoint, (typeof FIELDS)[keyof ResumePoint]][];

export function encodeResume(r: ResumePoint): Uint8Array {
  const payload = encode(new Map(FIELD_LIST.map(([f, [key]]) => [key, r[f] as CborValue])));
  const out = new Uint8Array(RECORD_HEADER_BYTES + payload.length);
  frameRecord(payload, out, 0);
  return out;
}

/** The resume point in `bytes`, or undefined for anything but one intact, well-formed record. */
export function decodeResume(bytes: Uint8Array): ResumePoint | undefined {
  const len = checkRecord(bytes, 0, MAX_RESUME_BYTES);
  if (len < 0 || RECORD_HEADER_BYTES + len !== bytes.length) return undefined;
  let m: CborValue;
  try {
    m = decode(bytes.subarray(RECORD_HEADER_BYTES));
  } catch {
    return undefined;
  }
  if (!(m instanceof Map) || m.size !== FIELD_LIST.length) return undefined;
  const fields: Record<string, CborValue | undefined> = {};
  for (const [f, [key, valid]] of FIELD_LIST) {
    const v = m.get(key);
    if (!valid(v)) return undefined;
    fields[f] = v;
  }
  const r = fields as unknown as ResumePoint; // every field checked above
  // One frontier hash per set bit of the size; offsets within what they point into.
  if (r.frontier.length !== r.size.toString(2).replaceAll("0", "").length) return undefined;
  if (r.segment > r.size || r.logRecordBytes > r.logOffset) return undefined;
  return r;
}

/** The lineage directory's resume point, or undefined when there is none or it is unusable. */
export async function readResume(dir: string): Promise<ResumePoint | undefined> {
  try {
    const bytes = await readFile(join(dir, RESUME_NAME));
    return bytes.length > RECORD_HEADER_BYTES + MAX_RESUME_BYTES
      ? undefined
      : decodeResume(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
}

/** Replaces the resume point atomically (write, fsync, rename, fsync the directory). */
export async function writeResume(dir: string, r: ResumePoint): Promise<void> {
  const tmp = join(dir, `${RESUME_NAME}.tmp`);
  try {
    await rm(tmp, { force: true });
    await replaceFileDurably(dir, tmp, join(dir, RESUME_NAME), encodeResume(r));
  } catch (e) {
    throw ioError(`lineage: write ${join(dir, RESUME_NAME)}`, e);
  }
}
