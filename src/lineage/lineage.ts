import { bytesEqual } from "../core/hex.js";
import { parseCheckpoint } from "./checkpoint.js";
import { Checkpointer, readCheckpointLog, type SignedCheckpoint } from "./checkpointer.js";
import { frontierRoot } from "./frontier.js";
import { Journal } from "./journal.js";
import { type NoteVerifier, parseNote } from "./note.js";
import { type ResumePoint, readResume } from "./resume.js";
import type { NoteSigner } from "./signer.js";

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

export interface Lineage {
  readonly journal: Journal;
  readonly checkpointer: Checkpointer;
  /** Flushes appends, signs a final checkpoint if the tree grew, closes files, releases the lock. */
  close(): Promise<SignedCheckpoint | undefined>;
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
  return {
    journal,
    checkpointer,
    async close() {
      await journal.drain();
      let last: SignedCheckpoint | undefined;
      try {
        last = await checkpointer.signCovering();
      } finally {
        try {
          await checkpointer.close();
        } finally {
          await journal.close();
        }
      }
      return last;
    },
  };
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
