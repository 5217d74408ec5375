import { asExecgateError, ExecgateError } from "../core/errors.js";
import { type Entry, encodeEntry, MAX_ENTRY_BYTES } from "./entry.js";
import { ioError } from "./fsutil.js";
import { RECORD_HEADER_BYTES } from "./record.js";

/**
 * The journal's group commit: add() queues encoded entries; one flush at a time takes everything
 * queued (up to maxBatchBytes) and hands it to `write` (one O_DSYNC write, journal.ts). While a
 * flush is in flight, new appends wait for the next batch. A failed write poisons the loop: every
 * pending and later append rejects ("io_error") — the bytes on disk are unknown until recovery
 * runs at the next open, and the daemon must deny (lineage_unavailable).
 */

export interface AppendResult {
  readonly index: number;
  readonly leafHash: Uint8Array;
}

/** What add() takes: an entry, its encodeEntry bytes, or either to come (see add()). */
export type Item = Entry | Uint8Array | Promise<Entry | Uint8Array>;

/**
 * Writes one batch durably; resolves to the function that makes it count (size, root) and gives
 * its leaf hashes, called synchronously with the appends' resolves.
 */
export type BatchWriter = (
  batch: readonly Uint8Array[],
  bytes: number,
) => Promise<() => readonly Uint8Array[]>;

interface Pending {
  /** Undefined while the slot waits for its entry (a promised item, see add()). */
  bytes: Uint8Array | undefined;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: unknown) => void;
}

export class CommitLoop {
  private pending: Pending[] = [];
  /** Entries of the batch being written (already out of `pending`, not yet durable). */
  private inFlightCount = 0;
  /** A flush loop is running. Checked and cleared with no await in between (see run()). */
  private active = false;
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];
  private failed: ExecgateError | undefined;
  /**
   * Set when close() starts, before its final drain: appends from then on are refused. Set only
   * after the drain, an append queued in between was written to the handle being closed.
   */
  private closing: Promise<void> | undefined;

  constructor(
    private readonly o: {
      /** The durable entry count. */
      readonly size: () => number;
      readonly maxBatchBytes: number;
      readonly write: BatchWriter;
    },
  ) {}

  /** Why appends now fail, or undefined while the journal is healthy. */
  get failure(): ExecgateError | undefined {
    return this.failed;
  }

  /** Entries of the batch being written. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  /**
   * The one way to append: `items` (or what `build` returns given the index the first of them
   * will get, for entries that name each other) are queued together, in order, with nothing in
   * between, and each resolves when durable (one group commit when they fit one batch). An item
   * that is a promise holds its slot — and everything queued after it — until it settles: a token
   * signed elsewhere names the decision before it. Such a promise must not reject; if it does, or
   * gives an entry that cannot be written, the journal is poisoned (a slot that can never be
   * filled would hold back every later entry).
   */
  add(items: readonly Item[] | ((firstIndex: number) => readonly Item[])): Promise<AppendResult[]> {
    if (this.closing) return Promise.reject(closedError());
    if (this.failed) return Promise.reject(this.failed);
    const first = this.o.size() + this.inFlightCount + this.pending.length;
    let ready: (Uint8Array | Promise<Entry | Uint8Array>)[];
    try {
      const list = typeof items === "function" ? items(first) : items;
      // All or none: a rejected entry must not shift the indices the others refer to.
      ready = list.map((x) => (x instanceof Promise ? x : checkedBytes(x)));
    } catch (e) {
      return Promise.reject(e);
    }
    const results = ready.map(
      (x) =>
        new Promise<AppendResult>((resolve, reject) => {
          const p: Pending = { bytes: x instanceof Promise ? undefined : x, resolve, reject };
          this.pending.push(p);
          if (x instanceof Promise)
            x.then(
              (v) => this.fill(p, v),
              (e: unknown) =>
                this.poison(new ExecgateError("internal", `lineage entry not made: ${String(e)}`)),
            );
        }),
    );
    this.schedule();
    return Promise.all(results);
  }

  /** A held slot's entry has come: the flush loop may go past it. */
  private fill(p: Pending, v: Entry | Uint8Array): void {
    if (this.failed !== undefined || p.bytes !== undefined) return;
    try {
      p.bytes = checkedBytes(v);
    } catch (e) {
      this.poison(asExecgateError(e));
      return;
    }
    this.schedule();
  }

  /** Every queued append fails from now on; a batch already with the disk completes. */
  private poison(e: ExecgateError): void {
    if (this.failed !== undefined) return;
    this.failed = e;
    for (const p of this.pending.splice(0)) p.reject(e);
  }

  private schedule(): void {
    if (!this.active && !this.scheduled) {
      this.scheduled = true;
      // A microtask: the write starts as soon as the appends of this synchronous step are queued,
      // while the event loop goes on to the next requests. Waiting for setImmediate gathered every
      // client of one read burst into the same batch, so they all waited on the same fsync and
      // came back together. Requests arriving during a write form the next batch either way.
      queueMicrotask(() => {
        this.scheduled = false;
        void this.run();
      });
    }
  }

  /**
   * The flush loop. It exits only when it finds the queue empty, and clears `active` in the same
   * synchronous step, so an append either lands in the queue this loop will see or starts a new one.
   */
  private async run(): Promise<void> {
    if (this.active) return;
    this.active = true;
    try {
      // A slot still waiting for its entry stops the batch there: nothing after it may be
      // written first. fill() starts the loop again.
      while (this.pending.length > 0 && this.pending[0]!.bytes !== undefined && this.failed === undefined) {
        let bytes = 0;
        let n = 0;
        while (n < this.pending.length && this.pending[n]!.bytes !== undefined) {
          const sz = RECORD_HEADER_BYTES + this.pending[n]!.bytes!.length;
          if (n > 0 && bytes + sz > this.o.maxBatchBytes) break;
          bytes += sz;
          n += 1;
        }
        const batch = this.pending.splice(0, n);
        this.inFlightCount = batch.length;
        const first = this.o.size();
        try {
          const commit = await this.o.write(
            batch.map((p) => p.bytes!),
            bytes,
          );
          // The batch is durable now: it counts, and every append in it resolves, in this one
          // synchronous step — appenders resumed by the resolves compute indices from size and
          // inFlight, which must already agree.
          const leaves = commit();
          this.inFlightCount = 0;
          for (let i = 0; i < batch.length; i++)
            batch[i]!.resolve({ index: first + i, leafHash: leaves[i]! });
        } catch (e) {
          this.failed =
            e instanceof ExecgateError && e.code === "io_error" ? e : ioError("lineage journal write", e);
          for (const p of batch) p.reject(this.failed);
          for (const p of this.pending.splice(0)) p.reject(this.failed);
        } finally {
          this.inFlightCount = 0;
        }
      }
    } finally {
      this.active = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Waits until everything appended so far has been flushed (or failed). */
  async drain(): Promise<void> {
    while (this.active || this.scheduled || this.pending.length > 0) {
      await new Promise<void>((r) => {
        if (this.active) this.idleWaiters.push(r);
        else setImmediate(r);
      });
    }
  }

  /**
   * Refuses adds from now on, then `drain` (the journal's: it writes what was added before the
   * call), then `closeFiles`.
   */
  close(drain: () => Promise<void>, closeFiles: () => Promise<void>): Promise<void> {
    this.closing ??= drain().then(closeFiles);
    return this.closing;
  }
}

/** An entry's bytes (encoded once: the same bytes are hashed and written), within the size limit. */
function checkedBytes(x: Entry | Uint8Array): Uint8Array {
  // Uint8Array items are entries the caller already encoded with encodeEntry (to hash them).
  const bytes = x instanceof Uint8Array ? x : encodeEntry(x);
  if (bytes.length === 0 || bytes.length > MAX_ENTRY_BYTES)
    throw new ExecgateError("limit_exceeded", `lineage entry of ${bytes.length} bytes`);
  return bytes;
}

function closedError(): ExecgateError {
  return new ExecgateError("io_error", "lineage journal is closed");
}
