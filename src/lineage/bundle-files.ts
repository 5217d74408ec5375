import { type CborValue, decode } from "../cbor/index.js";
import { asExecgateError, ExecgateError } from "../core/errors.js";
import { MAX_ENTRY_READ_BYTES } from "./entry.js";
import { checkRecord, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC } from "./record.js";

/**
 * Pure parsing of the lineage files an exported bundle carries (formats in docs/lineage.md):
 * journal segments and checkpoints.log. No I/O: the caller reads the files and passes bytes.
 */

const MAX_CHECKPOINT_RECORD = 64 * 1024;

export interface SegmentFile {
  readonly name: string;
  readonly bytes: Uint8Array;
}

export interface ParsedSegment {
  readonly name: string;
  readonly first: number;
  readonly entries: readonly Uint8Array[];
  /** Offset of the first byte that is not a complete, intact record; undefined if none. */
  readonly badOffset?: number;
}

export function parseSegment(file: SegmentFile): ParsedSegment {
  const b = file.bytes;
  const header = segmentHeader(file.name, b);
  if ("reason" in header) throw new ExecgateError("malformed", header.reason);
  const first = header.first;
  const entries: Uint8Array[] = [];
  let pos = SEGMENT_HEADER_BYTES;
  while (pos < b.length) {
    const len = checkRecord(b, pos, MAX_ENTRY_READ_BYTES);
    if (len < 0) return { name: file.name, first, entries, badOffset: pos };
    entries.push(b.subarray(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + len));
    pos += RECORD_HEADER_BYTES + len;
  }
  return { name: file.name, first, entries };
}

export type CheckpointLogRecord =
  | { readonly kind: "intent"; readonly size: number; readonly root: Uint8Array }
  | { readonly kind: "checkpoint"; readonly note: string };

export interface ParsedCheckpointLog {
  readonly records: readonly CheckpointLogRecord[];
  readonly badOffset?: number;
}

export function parseCheckpointLog(bytes: Uint8Array): ParsedCheckpointLog {
  const records: CheckpointLogRecord[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const len = checkRecord(bytes, pos, MAX_CHECKPOINT_RECORD);
    if (len < 0) return { records, badOffset: pos };
    let rec: CborValue;
    try {
      rec = decode(bytes.subarray(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + len));
    } catch {
      return { records, badOffset: pos };
    }
    const kind = rec instanceof Map ? rec.get("kind") : undefined;
    if (kind === "intent" && rec instanceof Map) {
      const size = rec.get("size");
      const root = rec.get("root");
      if (typeof size !== "number" || !(root instanceof Uint8Array)) return { records, badOffset: pos };
      records.push({ kind, size, root });
    } else if (kind === "checkpoint" && rec instanceof Map) {
      const note = rec.get("note");
      if (typeof note !== "string") return { records, badOffset: pos };
      records.push({ kind, note });
    } else {
      return { records, badOffset: pos };
    }
    pos += RECORD_HEADER_BYTES + len;
  }
  return { records };
}

/**
 * A journal segment as the verifier consumes it, one record at a time: its header, each intact
 * entry, and where it stops being intact. Produced from bytes in memory (segmentEvents) or read
 * from files with bounded buffers (read-segments.ts).
 */
export type SegmentEvent =
  | { readonly kind: "segment"; readonly name: string; readonly first: number }
  | { readonly kind: "header_error"; readonly name: string; readonly reason: string }
  | { readonly kind: "entry"; readonly bytes: Uint8Array }
  | { readonly kind: "bad_record"; readonly name: string; readonly offset: number };

/** Segments sorted by name (= by first index), as events. */
export function* segmentEvents(files: Iterable<SegmentFile>): Generator<SegmentEvent> {
  for (const file of [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    let seg: ParsedSegment;
    try {
      seg = parseSegment(file);
    } catch (e) {
      yield { kind: "header_error", name: file.name, reason: asExecgateError(e).message };
      continue;
    }
    yield { kind: "segment", name: file.name, first: seg.first };
    for (const bytes of seg.entries) yield { kind: "entry", bytes };
    if (seg.badOffset !== undefined) yield { kind: "bad_record", name: file.name, offset: seg.badOffset };
  }
}

/** The segment header's first index, or why the header is not one (pure). */
export function segmentHeader(name: string, b: Uint8Array): { first: number } | { reason: string } {
  if (b.length < SEGMENT_HEADER_BYTES || SEGMENT_MAGIC.some((m, i) => b[i] !== m))
    return { reason: `segment ${name}: bad header` };
  const first = new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(8);
  if (first > BigInt(Number.MAX_SAFE_INTEGER)) return { reason: `segment ${name}: bad index` };
  return { first: Number(first) };
}
