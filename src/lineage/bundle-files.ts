import { type CborValue, decode } from "../cbor/index.js";
import { ExecgateError } from "../core/errors.js";
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
  if (b.length < SEGMENT_HEADER_BYTES || SEGMENT_MAGIC.some((m, i) => b[i] !== m)) {
    throw new ExecgateError("malformed", `segment ${file.name}: bad header`);
  }
  const first = new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(8);
  if (first > BigInt(Number.MAX_SAFE_INTEGER))
    throw new ExecgateError("malformed", `segment ${file.name}: bad index`);
  const entries: Uint8Array[] = [];
  let pos = SEGMENT_HEADER_BYTES;
  while (pos < b.length) {
    const len = checkRecord(b, pos, MAX_ENTRY_READ_BYTES);
    if (len < 0) return { name: file.name, first: Number(first), entries, badOffset: pos };
    entries.push(b.subarray(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + len));
    pos += RECORD_HEADER_BYTES + len;
  }
  return { name: file.name, first: Number(first), entries };
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
