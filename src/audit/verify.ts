import { asExecgateError } from "../core/errors.js";
import { bytesEqual, toHex } from "../core/hex.js";
import {
  parseCheckpointLog,
  type SegmentEvent,
  type SegmentFile,
  segmentEvents,
} from "../lineage/bundle-files.js";
import { type Checkpoint, openCheckpoint } from "../lineage/checkpoint.js";
import { decodeEntry, type Entry } from "../lineage/entry.js";
import { leafHash } from "../lineage/hash.js";
import { verifyConsistency } from "../lineage/merkle.js";
import type { NoteVerifier } from "../lineage/note.js";
import { segmentName } from "../lineage/record.js";
import { type LeafStore, StreamTree } from "./stream-tree.js";

/**
 * Offline verification of a lineage bundle (pure; the CLI reads the files). Order:
 *   1. segments: headers, contiguity, every record intact (CRC) — no torn tail in an export;
 *   2. entries: each decodes under the closed schema; back-references point to earlier entries
 *      with the right leaf hash;
 *   3. tree: RFC 9162 root recomputed from the leaf hashes of the bytes received;
 *   4. checkpoints: each signed note verifies with the log key and origin; its (size, root)
 *      equals the recomputed tree at that size; intents never give two roots for one size;
 *   5. consistency: a consistency proof between each pair of consecutive checkpoints verifies
 *      against the signed roots; each checkpoint the auditor held before (if given) has the
 *      tree's root at its size, and the latest signed checkpoint is at least as large.
 * Every failure is listed with the entry index or checkpoint position and a reason; the result
 * is ok only if there are none and at least one checkpoint covers the whole log.
 */

export interface AuditInputBase {
  readonly origin: string;
  readonly logVerifier: NoteVerifier;
  readonly otherVerifiers?: readonly NoteVerifier[];
  /** Where the tree keeps its leaf hashes (default: memory). */
  readonly leaves?: LeafStore;
  /** Each entry as it passes (tiles are recomputed from the same pass). */
  readonly onEntry?: (
    index: number,
    bytes: Uint8Array,
    leaf: Uint8Array,
    /** Undefined when it does not decode (error says why). */
    entry: Entry | undefined,
    error: unknown,
  ) => void;
  readonly checkpointLog: Uint8Array;
  /** Checkpoints the auditor obtained earlier (e.g. from a previous audit) — anti-rollback. */
  readonly trustedCheckpoints?: readonly Checkpoint[];
  /** The same as signed notes, as kept: each is opened with the log key before it is trusted. */
  readonly trustedCheckpointNotes?: readonly { readonly source: string; readonly note: Uint8Array }[];
  /** The bundle's `checkpoint` file: it must be the latest signed checkpoint of checkpoints.log. */
  readonly checkpointFile?: Uint8Array;
  /** Called every `progressEvery` entries with the count so far (a terminal progress line). */
  readonly onProgress?: (entries: number) => void;
  readonly progressEvery?: number;
}

/** The segments in memory. */
export interface AuditInput extends AuditInputBase {
  readonly segments: readonly SegmentFile[];
}

/** The segments as events, e.g. read from disk record by record (large bundles). */
export interface StreamAuditInput extends AuditInputBase {
  readonly segmentEvents: Iterable<SegmentEvent>;
}

export const PROGRESS_EVERY = 65_536;

export interface AuditFailure {
  readonly check: string;
  readonly reason: string;
  readonly index?: number;
  readonly checkpoint?: number;
  readonly segment?: string;
  /** The bundle file at fault, when the failure is about one file. */
  readonly path?: string;
}

export interface AuditReport {
  readonly ok: boolean;
  readonly entries: number;
  readonly root: string;
  readonly checkpointsVerified: number;
  readonly latestCheckpoint?: { readonly size: number; readonly root: string };
  readonly failures: readonly AuditFailure[];
}

export function verifyBundle(input: AuditInput | StreamAuditInput): AuditReport {
  const tree = new StreamTree(input.leaves);
  try {
    return verifyWith(input, tree);
  } finally {
    tree.close();
  }
}

function verifyWith(input: AuditInput | StreamAuditInput, tree: StreamTree): AuditReport {
  const failures: AuditFailure[] = [];
  const every = input.progressEvery ?? PROGRESS_EVERY;

  // 1–3: segments → entries → tree, one record at a time
  let segment = "";
  for (const ev of "segments" in input ? segmentEvents(input.segments) : input.segmentEvents) {
    if (ev.kind === "header_error") {
      failures.push({ check: "segment_header", reason: ev.reason, segment: ev.name });
      continue;
    }
    if (ev.kind === "segment") {
      segment = ev.name;
      if (ev.name !== segmentName(ev.first)) {
        failures.push({
          check: "segment_name",
          reason: `segment named ${ev.name} starts at entry ${ev.first}`,
          segment: ev.name,
        });
      }
      if (ev.first !== tree.size) {
        failures.push({
          check: "segment_sequence",
          reason: `segment starts at ${ev.first}, expected ${tree.size}`,
          segment: ev.name,
          index: tree.size,
        });
      }
      continue;
    }
    if (ev.kind === "bad_record") {
      failures.push({
        check: "record",
        reason: `bad record at offset ${ev.offset} (after entry ${tree.size - 1})`,
        segment,
        index: tree.size,
      });
      continue;
    }
    const bytes = ev.bytes;
    const index = tree.size;
    const leaf = leafHash(bytes);
    tree.append(leaf);
    if (input.onProgress && (index + 1) % every === 0) input.onProgress(index + 1);
    let e: Entry | undefined;
    let error: unknown;
    try {
      e = decodeEntry(bytes);
      e.refs.forEach((r, k) => {
        if (r.index >= index) {
          failures.push({ check: "backref", reason: `refs[${k}] points forward to ${r.index}`, index });
        } else if (!bytesEqual(tree.leafHash(r.index), r.leafHash)) {
          failures.push({
            check: "backref",
            reason: `refs[${k}] leaf hash differs from entry ${r.index}`,
            index,
          });
        }
      });
    } catch (err) {
      error = err;
      failures.push({ check: "entry_decode", reason: asExecgateError(err).message, index });
    }
    input.onEntry?.(index, bytes, leaf, error === undefined ? e : undefined, error);
  }

  // 4: checkpoints
  const log = parseCheckpointLog(input.checkpointLog);
  if (log.badOffset !== undefined) {
    failures.push({ check: "checkpoint_log", reason: `bad record at offset ${log.badOffset}` });
  }
  const rootsBySize = new Map<number, Uint8Array>();
  const verified: Checkpoint[] = [];
  let position = 0;
  for (const rec of log.records) {
    if (rec.kind === "intent") {
      const seen = rootsBySize.get(rec.size);
      if (seen !== undefined && !bytesEqual(seen, rec.root)) {
        failures.push({ check: "intent_fork", reason: `two roots recorded for size ${rec.size}` });
      }
      rootsBySize.set(rec.size, rec.root);
      continue;
    }
    const k = position++;
    let cp: Checkpoint;
    try {
      cp = openCheckpoint(rec.note, input.origin, input.logVerifier, input.otherVerifiers ?? []).checkpoint;
    } catch (e) {
      failures.push({ check: "checkpoint_signature", reason: asExecgateError(e).message, checkpoint: k });
      continue;
    }
    const seen = rootsBySize.get(cp.size);
    if (seen !== undefined && !bytesEqual(seen, cp.rootHash)) {
      failures.push({
        check: "checkpoint_fork",
        reason: `size ${cp.size} signed with another root`,
        checkpoint: k,
      });
    }
    rootsBySize.set(cp.size, cp.rootHash);
    if (cp.size > tree.size) {
      failures.push({
        check: "checkpoint_size",
        reason: `checkpoint covers ${cp.size} entries, bundle has ${tree.size}`,
        checkpoint: k,
      });
      continue;
    }
    if (!bytesEqual(tree.rootAt(cp.size), cp.rootHash)) {
      failures.push({ check: "checkpoint_root", reason: `root at size ${cp.size} differs`, checkpoint: k });
      continue;
    }
    verified.push(cp);
  }

  // 5: consistency between consecutive checkpoints of the bundle.
  for (let i = 1; i < verified.length; i++) {
    const a = verified[i - 1]!;
    const b = verified[i]!;
    if (b.size < a.size) {
      failures.push({ check: "checkpoint_rollback", reason: `size went from ${a.size} to ${b.size}` });
      continue;
    }
    if (a.size === 0) continue;
    try {
      verifyConsistency(a.size, b.size, a.rootHash, b.rootHash, tree.consistencyProof(a.size, b.size));
    } catch (e) {
      failures.push({
        check: "checkpoint_consistency",
        reason: `${a.size} → ${b.size}: ${asExecgateError(e).message}`,
      });
    }
  }

  // 5b: the auditor's earlier checkpoints, each against the bundle itself rather than in sequence
  // with its checkpoints (which start from the first one, so any later trusted one would look like
  // a rollback): the tree holds every leaf, so its root at that size is what a consistency proof
  // from there would prove; and the latest signed checkpoint must reach at least as far.
  const latest = verified[verified.length - 1];
  const trusted = [...(input.trustedCheckpoints ?? [])];
  for (const t of input.trustedCheckpointNotes ?? []) {
    try {
      trusted.push(
        openCheckpoint(t.note, input.origin, input.logVerifier, input.otherVerifiers ?? []).checkpoint,
      );
    } catch (e) {
      failures.push({
        check: "trusted_checkpoint_signature",
        path: t.source,
        reason: asExecgateError(e).message,
      });
    }
  }
  for (const t of trusted) {
    if (t.origin !== input.origin) {
      failures.push({
        check: "checkpoint_origin",
        reason: `trusted checkpoint of another log (${t.origin})`,
      });
    } else if (t.size > tree.size) {
      failures.push({
        check: "checkpoint_rollback",
        reason: `a trusted checkpoint covers ${t.size} entries, the bundle has ${tree.size}`,
      });
    } else if (!bytesEqual(tree.rootAt(t.size), t.rootHash)) {
      failures.push({
        check: "checkpoint_fork",
        reason: `a trusted checkpoint has another root at size ${t.size}`,
      });
    } else if (latest !== undefined && latest.size < t.size) {
      failures.push({
        check: "checkpoint_rollback",
        reason: `the latest signed checkpoint covers ${latest.size} entries, a trusted one ${t.size}`,
      });
    }
  }

  if (latest === undefined) {
    failures.push({ check: "checkpoint_missing", reason: "no verified checkpoint" });
  } else if (latest.size !== tree.size) {
    failures.push({
      check: "checkpoint_coverage",
      reason: `entries ${latest.size}..${tree.size - 1} are not covered by a signed checkpoint`,
      index: latest.size,
    });
  }
  // After coverage: a checkpoints.log rolled back shows there first, not as a stale file.
  const file =
    input.checkpointFile === undefined
      ? undefined
      : checkpointFileFailure(input, input.checkpointFile, tree, latest);
  if (file !== undefined) failures.push({ ...file, path: "checkpoint" });

  return {
    ok: failures.length === 0,
    entries: tree.size,
    root: toHex(tree.root()),
    checkpointsVerified: verified.length,
    // The latest checkpoint reported is the bundle's `checkpoint` file once it verified as such.
    ...(latest !== undefined && (input.checkpointFile === undefined || file === undefined)
      ? { latestCheckpoint: { size: latest.size, root: toHex(latest.rootHash) } }
      : {}),
    failures,
  };
}

/**
 * Why the bundle's `checkpoint` file is not the latest signed checkpoint of this log, in order:
 * it opens under the log key and origin; its root is the tree's at its size (else a fork, or a
 * size the log does not reach); it is, byte for byte, the latest checkpoint of checkpoints.log
 * (an older or re-signed one is stale: an auditor keeps this file for the next audit).
 */
function checkpointFileFailure(
  input: AuditInputBase,
  bytes: Uint8Array,
  tree: StreamTree,
  latest: Checkpoint | undefined,
): { check: string; reason: string } | undefined {
  let cp: Checkpoint;
  try {
    cp = openCheckpoint(bytes, input.origin, input.logVerifier, input.otherVerifiers ?? []).checkpoint;
  } catch (e) {
    return { check: "checkpoint_file_signature", reason: asExecgateError(e).message };
  }
  if (cp.size > tree.size)
    return {
      check: "checkpoint_file_size",
      reason: `covers ${cp.size} entries, the bundle has ${tree.size}`,
    };
  if (!bytesEqual(tree.rootAt(cp.size), cp.rootHash))
    return { check: "checkpoint_file_fork", reason: `another root at size ${cp.size} than the log's` };
  if (latest === undefined || latest.size !== cp.size)
    return {
      check: "checkpoint_file_stale",
      reason: `covers ${cp.size} entries, the latest signed checkpoint ${latest?.size ?? "none"}`,
    };
  const last = lastCheckpointNote(input.checkpointLog);
  if (last === undefined || !bytesEqual(new TextEncoder().encode(last), bytes))
    return {
      check: "checkpoint_file_stale",
      reason: "not the latest signed note of checkpoints.log, byte for byte",
    };
  return undefined;
}

function lastCheckpointNote(checkpointLog: Uint8Array): string | undefined {
  let note: string | undefined;
  for (const r of parseCheckpointLog(checkpointLog).records) if (r.kind === "checkpoint") note = r.note;
  return note;
}
