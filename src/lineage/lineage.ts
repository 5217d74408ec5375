import { Checkpointer, readCheckpointLog, type SignedCheckpoint } from "./checkpointer.js";
import { Journal } from "./journal.js";
import type { NoteVerifier } from "./note.js";
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
  // checkpoints.log is read once: the journal keeps entries from its last intent on, whose root
  // the checkpointer then checks.
  const log = await readCheckpointLog(opts.dir);
  const journal = await Journal.open({
    dir: opts.dir,
    keepFrom: log.lastIntent?.size ?? 0,
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
        last = await checkpointer.signNow();
      } finally {
        await checkpointer.close();
        await journal.close();
      }
      return last;
    },
  };
}
