import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { type CborValue, decode, encode } from "../cbor/index.js";
import { ExecgateError } from "../core/errors.js";
import { bytesEqual } from "../core/hex.js";
import { type Checkpoint, openCheckpoint, parseCheckpoint, signCheckpoint } from "./checkpoint.js";
import { frontierRoot } from "./frontier.js";
import { fsyncDir, ioError, writeAll } from "./fsutil.js";
import { HASH_SIZE, leafHash } from "./hash.js";
import type { Journal } from "./journal.js";
import { type NoteVerifier, parseNote, verifierFromSigner } from "./note.js";
import { checkRecord, frameRecord, RECORD_HEADER_BYTES } from "./record.js";
import { type ResumePoint, writeResume } from "./resume.js";
import type { NoteSigner } from "./signer.js";

/**
 * Signs checkpoints of the journal's tree and keeps them in `<dir>/checkpoints.log`, framed like
 * journal records (record.ts). Each payload is deterministic CBOR, one of:
 *
 *   {"kind": "intent", "size": uint, "root": bstr .size 32}   ; written + fdatasync'd BEFORE signing
 *   {"kind": "checkpoint", "note": text}                      ; the signed note, after signing
 *
 * The intent makes "two roots for one size" impossible across crashes: before the signer sees a
 * (size, root) that pair is durable, and at open the journal must reproduce every intent's root
 * at its size (otherwise: refuse to open). A checkpoint must match the intent before it.
 *
 * Cadence: sign when the tree grew and `checkpointMs` (default 1000) passed since the last
 * signature, at most one signature in flight. Before signing, the entries added since the last
 * check are read back from disk and their leaf hashes recomputed and compared with the tree.
 * The clock is injected (`now`, milliseconds).
 *
 * Resume point (resume.ts): after a checkpoint, once `resumeEvery` entries have been signed since
 * the last one saved, and at close, the checkpoint's tree state is saved so that the next open
 * replays only what came after it.
 */

export const DEFAULT_CHECKPOINT_MS = 1000;
const MAX_CHECKPOINT_RECORD = 64 * 1024;
const LOG_NAME = "checkpoints.log";
/** Entries re-read and re-hashed per step before signing (about a millisecond of work). */
const RECHECK_SLICE = 256;
const READ_CHUNK = 1 << 20;
/** Entries signed between saved resume points: at most about a second of replay at the next open. */
const DEFAULT_RESUME_EVERY = 65_536;

export interface CheckpointerOptions {
  readonly journal: Journal;
  readonly origin: string;
  readonly signer: NoteSigner;
  /** Further keys that sign every checkpoint too (e.g. the HSM beside the TPM); the log key stays `signer`. */
  readonly cosigners?: readonly NoteSigner[];
  readonly now: () => number;
  readonly checkpointMs?: number;
  /** Further keys whose older checkpoints are accepted at open (key rotation). */
  readonly previousVerifiers?: readonly NoteVerifier[];
  /** checkpoints.log as readCheckpointLog() found it (read here when absent). */
  readonly log?: CheckpointLogScan;
  /** Entries signed between saved resume points (default DEFAULT_RESUME_EVERY). */
  readonly resumeEvery?: number;
}

/** What checkpoints.log holds, read and checked record by record (nothing written). */
export interface CheckpointLogScan {
  readonly lastIntent: Intent | undefined;
  readonly lastNote: string | undefined;
  /** End of the last checkpoint's record (0 when there is none). */
  readonly lastNoteEnd: number;
  /** End of the last intact record. */
  readonly end: number;
  /** The scan started at the resume point it was given (not at the beginning of the log). */
  readonly resumed: boolean;
  /** File size (greater than `end` when the last record is torn). */
  readonly size: number;
  /**
   * Whether the bad bytes at `end` can be the last record, torn by a crash: records are written
   * and fdatasync'd one at a time, so only the last can be torn — a bad record whose declared
   * length leaves bytes after it is damage, not a tear.
   */
  readonly tailTorn: boolean;
}

export interface SignedCheckpoint {
  readonly checkpoint: Checkpoint;
  /** The complete signed note text. */
  readonly note: string;
  /** Bytes of checkpoints.log up to and including this checkpoint's record (what an export copies). */
  readonly logEnd: number;
}

interface Intent {
  readonly size: number;
  readonly root: Uint8Array;
}

function refuse(message: string, detail: Record<string, unknown> = {}): ExecgateError {
  return new ExecgateError("config_invalid", `lineage checkpoints: ${message}; refusing to open`, detail);
}

export class Checkpointer {
  private fh: FileHandle | undefined;
  private logEnd = 0;
  private lastIntent: Intent | undefined;
  private last: SignedCheckpoint | undefined;
  /** When the last signing attempt started (success or not): failures also wait checkpointMs. */
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private inFlight: Promise<SignedCheckpoint | undefined> | undefined;
  private verifiedUpTo: number;
  private poisoned: ExecgateError | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reportError: ((e: unknown) => void) | undefined;
  /** The latest checkpoint as a resume point, and the size of the one saved last. */
  private resumeCandidate: ResumePoint | undefined;
  private resumeSaved: number;
  readonly verifier: NoteVerifier;
  readonly coVerifiers: readonly NoteVerifier[];
  readonly checkpointMs: number;
  readonly logPath: string;

  private constructor(private readonly opts: CheckpointerOptions) {
    this.verifier = verifierFromSigner(opts.signer);
    this.coVerifiers = (opts.cosigners ?? []).map(verifierFromSigner);
    this.checkpointMs = opts.checkpointMs ?? DEFAULT_CHECKPOINT_MS;
    this.logPath = join(opts.journal.dir, LOG_NAME);
    // Entries recovered at open were hashed from the bytes on disk already.
    this.verifiedUpTo = opts.journal.recovery.size;
    this.resumeSaved = opts.journal.recovery.resumedAt;
  }

  /** Loads checkpoints.log, truncates a torn tail, and cross-checks it against the journal. */
  static async open(opts: CheckpointerOptions): Promise<Checkpointer> {
    const c = new Checkpointer(opts);
    try {
      await c.load();
    } catch (e) {
      await c.fh?.close().catch(() => undefined);
      throw e;
    }
    return c;
  }

  latest(): SignedCheckpoint | undefined {
    return this.last;
  }

  /** Bytes of checkpoints.log written so far (every record below this offset is complete). */
  get logLength(): number {
    return this.logEnd;
  }

  private async load(): Promise<void> {
    const journal = this.opts.journal;
    const verifiers = [this.verifier, ...(this.opts.previousVerifiers ?? [])];
    const log = this.opts.log ?? (await readCheckpointLog(journal.dir));
    const { lastIntent, lastNote, lastNoteEnd, end: pos } = log;
    this.lastIntent = lastIntent;
    if (pos < log.size) {
      if (!log.tailTorn || log.size - pos > MAX_CHECKPOINT_RECORD + RECORD_HEADER_BYTES) {
        throw refuse(
          `bad record at offset ${pos} followed by ${log.size - pos} bytes (not a torn last record)`,
        );
      }
      await this.openLog();
      // Durability: truncate the torn record and fsync before anything else is appended.
      await this.fh!.truncate(pos);
      await this.fh!.sync();
    }
    this.logEnd = pos;
    if (this.lastIntent !== undefined) {
      const { size, root } = this.lastIntent;
      if (size > journal.size) {
        throw refuse(`an intent covers ${size} entries but the journal has only ${journal.size}`, { size });
      }
      if (!bytesEqual(journal.rootAt(size), root)) {
        throw refuse(`the journal's root at size ${size} differs from the recorded intent`, { size });
      }
    }
    if (lastNote !== undefined) {
      const { checkpoint } = openCheckpoint(lastNote, this.opts.origin, verifiers[0]!, verifiers.slice(1));
      this.last = { checkpoint, note: lastNote, logEnd: lastNoteEnd };
    }
  }

  private async openLog(): Promise<void> {
    if (this.fh !== undefined) return;
    try {
      try {
        this.fh = await open(this.logPath, "r+");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
        this.fh = await open(this.logPath, "wx+", 0o640);
        // A created log must survive a crash as a name, too.
        await fsyncDir(this.opts.journal.dir);
      }
    } catch (e) {
      throw ioError(`open ${this.logPath}`, e);
    }
  }

  private async appendRecord(value: CborValue): Promise<void> {
    await this.openLog();
    const payload = encode(value);
    const buf = new Uint8Array(RECORD_HEADER_BYTES + payload.length);
    frameRecord(payload, buf, 0);
    // Durability: write the record at the end of the log, then fdatasync before going on.
    try {
      await writeAll(this.fh!, buf, this.logEnd);
      await this.fh!.datasync();
    } catch (e) {
      throw ioError(`append ${this.logPath}`, e);
    }
    this.logEnd += buf.length;
  }

  /** Signs if the tree grew and checkpointMs passed; joins a signature already in flight. */
  tick(): Promise<SignedCheckpoint | undefined> {
    if (this.inFlight !== undefined) return this.inFlight;
    const size = this.opts.journal.size;
    if (size === 0 || size <= (this.last?.checkpoint.size ?? 0)) return Promise.resolve(undefined);
    if (this.opts.now() - this.lastAttemptAt < this.checkpointMs) return Promise.resolve(undefined);
    return this.signNow();
  }

  /** Signs the current tree now (shutdown, tests), unless it is already the latest checkpoint. */
  signNow(): Promise<SignedCheckpoint | undefined> {
    if (this.inFlight !== undefined) return this.inFlight;
    this.lastAttemptAt = this.opts.now();
    this.inFlight = this.sign().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /**
   * Signs until a checkpoint covers every entry appended before the call (shutdown, export): a periodic
   * signature in flight was snapshotted earlier and may miss the last entries, such as daemon_stop.
   */
  async signCovering(): Promise<SignedCheckpoint | undefined> {
    const target = this.opts.journal.size;
    let last = await this.signNow();
    // A second call cannot join the first: it snapshots a size of at least `target`.
    if ((last?.checkpoint.size ?? 0) < target) last = await this.signNow();
    return last;
  }

  private async sign(): Promise<SignedCheckpoint | undefined> {
    if (this.poisoned) throw this.poisoned;
    const journal = this.opts.journal;
    // The size and the tree's frontier at it, taken together: appends go on while this signs.
    const snap = journal.snapshot();
    const size = snap.size;
    if (size === 0 || size <= (this.last?.checkpoint.size ?? 0)) return this.last;
    await this.recheckLeaves(size);
    const root = frontierRoot(snap.frontier);
    if (this.lastIntent === undefined || this.lastIntent.size !== size) {
      await this.appendRecord(
        new Map<string, CborValue>([
          ["kind", "intent"],
          ["size", size],
          ["root", root],
        ]),
      );
      this.lastIntent = { size, root };
    }
    const checkpoint: Checkpoint = { origin: this.opts.origin, size, rootHash: root, extensions: [] };
    const cosigners = this.opts.cosigners ?? [];
    const note = await signCheckpoint(checkpoint, [this.opts.signer, ...cosigners]);
    // A signer (TPM, HSM) that returns a bad signature must not leave an unverifiable checkpoint.
    const opened = openCheckpoint(note, this.opts.origin, this.verifier, this.coVerifiers);
    if (opened.note.verified.length !== 1 + cosigners.length) {
      throw new ExecgateError(
        "hardware_error",
        "a checkpoint cosigner returned a signature that does not verify",
      );
    }
    const recordStart = this.logEnd;
    await this.appendRecord(
      new Map<string, CborValue>([
        ["kind", "checkpoint"],
        ["note", note],
      ]),
    );
    this.last = { checkpoint, note, logEnd: this.logEnd };
    // Signed and durable: the journal no longer needs to hold what this checkpoint covers.
    journal.prune(snap);
    this.resumeCandidate = {
      size,
      root,
      note,
      frontier: snap.frontier,
      ...journal.resumePosition(size),
      logOffset: this.logEnd,
      logRecordBytes: this.logEnd - recordStart,
    };
    if (size - this.resumeSaved >= (this.opts.resumeEvery ?? DEFAULT_RESUME_EVERY)) {
      // The checkpoint stands whether or not this is saved; a failure only costs a longer replay.
      await this.saveResume().catch((e) => this.reportError?.(e));
    }
    return this.last;
  }

  /** Saves the latest checkpoint as the resume point, unless it is already the one saved. */
  private async saveResume(): Promise<void> {
    const r = this.resumeCandidate;
    if (r === undefined || r.size <= this.resumeSaved) return;
    await writeResume(this.opts.journal.dir, r);
    this.resumeSaved = r.size;
  }

  /**
   * Reads entries [verifiedUpTo, size) back from disk and compares their leaf hashes, in slices:
   * a second's worth of entries re-hashed at once held the event loop for tens of milliseconds
   * (every request in that window waited); each slice ends in an I/O wait instead.
   */
  private async recheckLeaves(size: number): Promise<void> {
    const journal = this.opts.journal;
    while (this.verifiedUpTo < size) {
      const from = this.verifiedUpTo;
      const to = Math.min(size, from + RECHECK_SLICE);
      const entries = await journal.readRange(from, to);
      for (let i = 0; i < entries.length; i++) {
        const index = from + i;
        if (!bytesEqual(leafHash(entries[i]!), journal.leafHash(index))) {
          this.poisoned = new ExecgateError(
            "verification_failed",
            `lineage: entry ${index} on disk no longer matches its leaf hash; not signing`,
            { check: "leaf_recompute", index },
          );
          throw this.poisoned;
        }
      }
      this.verifiedUpTo = to;
    }
  }

  /**
   * Starts a timer calling tick(); errors are reported to onError, and each checkpoint it signs to
   * onSigned (the daemon logs failures, and the first success after them).
   */
  start(onError: (e: unknown) => void, onSigned?: (cp: SignedCheckpoint) => void): void {
    this.reportError = onError;
    if (this.timer !== undefined) return;
    const period = Math.max(10, Math.floor(this.checkpointMs / 4));
    this.timer = setInterval(() => {
      this.tick().then((cp) => {
        if (cp) onSigned?.(cp);
      }, onError);
    }, period);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    if (this.inFlight !== undefined) await this.inFlight.catch(() => undefined);
    // Like in sign(): a resume point not saved only costs a longer replay at the next open.
    await this.saveResume().catch((e) => this.reportError?.(e));
    await this.fh?.close();
    this.fh = undefined;
  }
}

function parseIntent(rec: CborValue): Intent {
  if (!(rec instanceof Map)) throw refuse("intent is not a map");
  const size = rec.get("size");
  const root = rec.get("root");
  if (typeof size !== "number" || size < 0 || !(root instanceof Uint8Array) || root.length !== HASH_SIZE) {
    throw refuse("malformed intent record");
  }
  return { size, root };
}

/**
 * Reads a lineage directory's checkpoints.log record by record and checks its sequence: intent
 * sizes never go back, one size never has two roots, every checkpoint equals the intent before it.
 * Nothing is written (a torn tail is reported in `end` < `size`), so it may run before the journal
 * lock is taken: openLineage reads it once, opens the journal holding entries from the last
 * intent on, and hands the result to Checkpointer.open.
 */
export async function readCheckpointLog(dir: string, resume?: ResumePoint): Promise<CheckpointLogScan> {
  const reader = await LogReader.open(join(dir, LOG_NAME));
  let pos = 0;
  let lastIntent: Intent | undefined;
  let lastNote: string | undefined;
  let lastNoteEnd = 0;
  let resumed = false;
  let tailTorn = true;
  try {
    // From a resume point: the scan starts where its checkpoint's record ends — pinned by finding
    // that record there, whole, carrying its note — so a torn tail after it is cut where a scan
    // from the beginning would cut it.
    if (resume !== undefined && (await endsWithCheckpoint(reader, resume))) {
      pos = resume.logOffset;
      lastIntent = { size: resume.size, root: resume.root };
      lastNote = resume.note;
      lastNoteEnd = resume.logOffset;
      resumed = true;
    }
    for (;;) {
      const payload = await reader.recordAt(pos);
      if (payload === undefined) break; // end, or a torn tail: at most the record being written
      let rec: CborValue;
      try {
        rec = decode(payload);
      } catch (e) {
        throw refuse(`undecodable record at offset ${pos}: ${(e as Error).message}`);
      }
      const kind = rec instanceof Map ? rec.get("kind") : undefined;
      if (kind === "intent") {
        const intent = parseIntent(rec);
        if (lastIntent !== undefined) {
          if (intent.size < lastIntent.size) throw refuse(`intent size went back to ${intent.size}`);
          if (intent.size === lastIntent.size && !bytesEqual(intent.root, lastIntent.root)) {
            throw refuse(`two roots recorded for size ${intent.size}`);
          }
        }
        lastIntent = intent;
      } else if (kind === "checkpoint") {
        const note = rec instanceof Map ? rec.get("note") : undefined;
        if (typeof note !== "string") throw refuse("checkpoint record without a note");
        const cp = parseCheckpoint(parseNote(note).text);
        if (
          lastIntent === undefined ||
          cp.size !== lastIntent.size ||
          !bytesEqual(cp.rootHash, lastIntent.root)
        ) {
          throw refuse(`checkpoint for size ${cp.size} does not match the intent before it`);
        }
        lastNote = note;
        lastNoteEnd = pos + RECORD_HEADER_BYTES + payload.length;
      } else {
        throw refuse(`unknown record at offset ${pos}`);
      }
      pos += RECORD_HEADER_BYTES + payload.length;
    }
    // A torn last record: its header cut short, or its declared length reaching past the end.
    const declared = await reader.declaredLength(pos);
    tailTorn = declared === undefined || pos + RECORD_HEADER_BYTES + declared >= reader.size;
  } finally {
    await reader.close();
  }
  return { lastIntent, lastNote, lastNoteEnd, end: pos, size: reader.size, resumed, tailTorn };
}

/** True when the record of `r.logRecordBytes` ending at `r.logOffset` is the checkpoint of `r.note`. */
async function endsWithCheckpoint(reader: LogReader, r: ResumePoint): Promise<boolean> {
  const start = r.logOffset - r.logRecordBytes;
  if (start < 0 || r.logOffset > reader.size) return false;
  const payload = await reader.recordAt(start);
  if (payload === undefined || RECORD_HEADER_BYTES + payload.length !== r.logRecordBytes) return false;
  try {
    const rec = decode(payload);
    return rec instanceof Map && rec.get("kind") === "checkpoint" && rec.get("note") === r.note;
  } catch {
    return false;
  }
}

/**
 * Reads checkpoints.log record by record with a bounded buffer (the log grows by about one
 * intent and one checkpoint per second of activity, so it is not read into memory whole).
 */
class LogReader {
  private buf = new Uint8Array(0);
  private bufStart = 0;

  private constructor(
    private readonly fh: FileHandle | undefined,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<LogReader> {
    try {
      const fh = await open(path, "r");
      return new LogReader(fh, (await fh.stat()).size);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return new LogReader(undefined, 0);
      throw ioError(`read ${path}`, e);
    }
  }

  /** The payload of the intact record at `pos`, or undefined at the end or a bad record. */
  async recordAt(pos: number): Promise<Uint8Array | undefined> {
    if (pos >= this.size || this.fh === undefined) return undefined;
    const want = Math.min(this.size - pos, RECORD_HEADER_BYTES + MAX_CHECKPOINT_RECORD);
    if (pos < this.bufStart || pos + want > this.bufStart + this.buf.length) {
      const length = Math.min(this.size - pos, Math.max(READ_CHUNK, want));
      const next = new Uint8Array(length);
      let off = 0;
      while (off < length) {
        const { bytesRead } = await this.fh.read(next, off, length - off, pos + off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      this.buf = next.subarray(0, off);
      this.bufStart = pos;
    }
    const local = pos - this.bufStart;
    const len = checkRecord(this.buf, local, MAX_CHECKPOINT_RECORD);
    return len < 0
      ? undefined
      : this.buf.subarray(local + RECORD_HEADER_BYTES, local + RECORD_HEADER_BYTES + len);
  }

  /** The length field of the record header at `pos`, or undefined when fewer than 4 bytes remain. */
  async declaredLength(pos: number): Promise<number | undefined> {
    if (this.fh === undefined || pos + 4 > this.size) return undefined;
    const b = new Uint8Array(4);
    await this.fh.read(b, 0, 4, pos);
    return new DataView(b.buffer).getUint32(0);
  }

  async close(): Promise<void> {
    await this.fh?.close();
  }
}
