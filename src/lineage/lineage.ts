import type { ExecgateError } from "../core/errors.js";
import { bytesEqual } from "../core/hex.js";
import { parseCheckpoint } from "./checkpoint.js";
import { Checkpointer, readCheckpointLog, type SignedCheckpoint } from "./checkpointer.js";
import { frontierRoot } from "./frontier.js";
import { type AppendResult, type Item, Journal, type RecoveryReport } from "./journal.js";
import { type NoteVerifier, parseNote } from "./note.js";
import { type ResumePoint, readResume } from "./resume.js";
import type { NoteSigner } from "./signer.js";

interface LineageParts {
  readonly journal: Journal;
  readonly checkpointer: Checkpointer;
}

const partsOf = new WeakMap<Lineage, LineageParts>();

/** A lineage's journal and checkpointer, for src/lineage modules only (export; not in index.ts). */
export function lineageParts(l: Lineage): LineageParts {
  return partsOf.get(l)!;
}

export interface LineageOptions {
  readonly dir: string;
  /** Checkpoint origin line, e.g. "execgate/<host id>". */
  readonly origin: string;
  readonly signer: NoteSigner;
  /** Further keys that co-sign every checkpoint (the log key stays `signer`). */
  readonly cosigners?: readonly NoteSigner[];
  /** Injected clock, milliseconds (cadence decisions only). */
  readonly now: () => number;
  readonly checkpointMs?: number;
  readonly segmentBytes?: number;
  readonly maxBatchBytes?: number;
  readonly previousVerifiers?: readonly NoteVerifier[];
  /** Entries signed between saved resume points (resume.ts; default 65,536). */
  readonly resumeEvery?: number;
}

/**
 * The lineage as the rest of the daemon sees it: one way to append (add), reads of what is
 * durable, and the checkpoints. Its journal and checkpointer stay inside src/lineage.
 */
export class Lineage {
  private readonly journal: Journal;
  private readonly checkpointer: Checkpointer;

  constructor(p: LineageParts) {
    this.journal = p.journal;
    this.checkpointer = p.checkpointer;
    partsOf.set(this, p);
  }

  /** Appends entries (Journal.add): each result once durable, in one group commit when they fit. */
  add(items: readonly Item[] | ((firstIndex: number) => readonly Item[])): Promise<AppendResult[]> {
    return this.journal.add(items);
  }

  /** Durable entry count. */
  get size(): number {
    return this.journal.size;
  }

  /** Why appends now fail, or undefined while the journal is healthy. */
  get failure(): ExecgateError | undefined {
    return this.journal.failure;
  }

  /** What crash recovery found at open. */
  get recovery(): RecoveryReport {
    return this.journal.recovery;
  }

  root(): Uint8Array {
    return this.journal.root();
  }

  /** The root at a size not yet covered by a checkpoint (earlier ones: read the segments). */
  rootAt(size: number): Uint8Array {
    return this.journal.rootAt(size);
  }

  leafHash(index: number): Uint8Array {
    return this.journal.leafHash(index);
  }

  /** Entries [from, to) as written, each record's CRC checked. */
  read(from: number, to: number): Promise<Uint8Array[]> {
    return this.journal.readRange(from, to);
  }

  /** The segment byte extents holding exactly entries [0, n). */
  extentsFor(n: number): ReturnType<Journal["extentsFor"]> {
    return this.journal.extentsFor(n);
  }

  latestCheckpoint(): SignedCheckpoint | undefined {
    return this.checkpointer.latest();
  }

  /** Bytes of checkpoints.log. */
  get checkpointLogLength(): number {
    return this.checkpointer.logLength;
  }

  /** Signs checkpoints on their cadence from now on (Checkpointer.start). */
  startCheckpoints(onError: (e: unknown) => void, onSigned?: (cp: SignedCheckpoint) => void): void {
    this.checkpointer.start(onError, onSigned);
  }

  /** One cadence step: signs when the tree grew and the interval passed (Checkpointer.tick). */
  checkpointTick(): Promise<SignedCheckpoint | undefined> {
    return this.checkpointer.tick();
  }

  /** Signs a checkpoint of the current size now, if the tree grew (Checkpointer.signNow). */
  checkpointNow(): Promise<SignedCheckpoint | undefined> {
    return this.checkpointer.signNow();
  }

  /** Flushes appends, signs a final checkpoint if the tree grew, closes files, releases the lock. */
  async close(): Promise<SignedCheckpoint | undefined> {
    await this.journal.drain();
    let last: SignedCheckpoint | undefined;
    try {
      last = await this.checkpointer.signCovering();
    } finally {
      await this.closeWithoutCheckpoint();
    }
    return last;
  }

  /** Closes files and releases the lock without a final checkpoint (as after a failed signer). */
  async closeWithoutCheckpoint(): Promise<void> {
    try {
      await this.checkpointer.close();
    } finally {
      await this.journal.close();
    }
  }
}

/**
 * Opens the journal (lock, crash recovery, tree rebuild) and the checkpoint log, cross-checking
 * them; any inconsistency throws ExecgateError("config_invalid") and the daemon must not run.
 */
export async function openLineage(opts: LineageOptions): Promise<Lineage> {
  // checkpoints.log is read once (from the resume point, when there is one): the journal keeps
  // entries from its last intent on, whose root the checkpointer then checks, and verifies the
  // last note's signature — the resume point's own, when nothing was signed after it.
  const resume = selfConsistent(await readResume(opts.dir));
  const log = await readCheckpointLog(opts.dir, resume);
  const journal = await Journal.open({
    dir: opts.dir,
    keepFrom: log.lastIntent?.size ?? 0,
    ...(log.resumed && resume ? { resume } : {}),
    ...(opts.segmentBytes !== undefined ? { segmentBytes: opts.segmentBytes } : {}),
    ...(opts.maxBatchBytes !== undefined ? { maxBatchBytes: opts.maxBatchBytes } : {}),
  });
  let checkpointer: Checkpointer;
  try {
    checkpointer = await Checkpointer.open({
      journal,
      log,
      origin: opts.origin,
      signer: opts.signer,
      ...(opts.cosigners !== undefined ? { cosigners: opts.cosigners } : {}),
      now: opts.now,
      ...(opts.checkpointMs !== undefined ? { checkpointMs: opts.checkpointMs } : {}),
      ...(opts.previousVerifiers !== undefined ? { previousVerifiers: opts.previousVerifiers } : {}),
      ...(opts.resumeEvery !== undefined ? { resumeEvery: opts.resumeEvery } : {}),
    });
  } catch (e) {
    await journal.close();
    throw e;
  }
  return new Lineage({ journal, checkpointer });
}

/** A resume point whose note is a checkpoint of its size and root, and whose frontier folds to that root. */
function selfConsistent(r: ResumePoint | undefined): ResumePoint | undefined {
  if (r === undefined) return undefined;
  try {
    const cp = parseCheckpoint(parseNote(r.note).text);
    const ok =
      cp.size === r.size && bytesEqual(cp.rootHash, r.root) && bytesEqual(frontierRoot(r.frontier), r.root);
    return ok ? r : undefined;
  } catch {
    return undefined;
  }
}
