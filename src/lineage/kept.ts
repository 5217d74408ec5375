import { ExecgateError } from "../core/errors.js";
import { extendFrontier, type Frontier, frontierRoot } from "./frontier.js";
import { HashColumn } from "./hash-column.js";

/**
 * What the journal holds in memory: from `base` on, each entry's leaf hash and the offset of its
 * record within its segment, and the tree's frontier at `base`. The checkpointer moves `base`
 * forward (prune) once a checkpoint covers the entries before it, so memory is bounded by what is
 * not checkpointed yet, not by the length of the log.
 */
export class KeptLeaves {
  /** First index whose leaf hash and offset are kept, and the frontier at that size. */
  base = 0;
  baseFrontier: Frontier = [];
  /** Leaf hashes of entries base.. (32 bytes each; runs ahead of the durable size during a write). */
  readonly leaves = new HashColumn(1024);
  /** Offset of each entry's record within its segment, for entries base.. (at index - base). */
  private offsets = new Float64Array(1024);

  /** Keeps entries from `index` on, `frontier` being the tree at that size. */
  startAt(index: number, frontier: Frontier): void {
    this.base = index;
    this.baseFrontier = frontier;
  }

  reset(): void {
    this.base = 0;
    this.baseFrontier = [];
    this.leaves.truncate(0);
  }

  pushOffset(index: number, offset: number): void {
    const k = index - this.base;
    if (k >= this.offsets.length) {
      const next = new Float64Array(this.offsets.length * 2);
      next.set(this.offsets);
      this.offsets = next;
    }
    this.offsets[k] = offset;
  }

  /** The record offset of kept entry `index` within its segment. */
  offset(index: number): number {
    return this.offsets[index - this.base]!;
  }

  /** Throws unless base ≤ index ≤ end. */
  check(index: number, end: number, what: string): void {
    if (!Number.isSafeInteger(index) || index < this.base || index > end) {
      throw new ExecgateError(
        "malformed",
        `lineage journal: ${what} ${index} outside ${this.base}..${end} (entries before ${this.base} are checkpointed and no longer held in memory)`,
      );
    }
  }

  /** The leaf hash of kept entry `index` (checked by the caller). */
  leafHash(index: number): Uint8Array {
    return this.leaves.get(index - this.base).slice();
  }

  /** The root at `size` (base ≤ size, its leaves kept): costs size - base hashes. */
  rootAt(size: number): Uint8Array {
    const leaves: Uint8Array[] = [];
    for (let i = this.base; i < size; i++) leaves.push(this.leafHash(i));
    return frontierRoot(extendFrontier(this.baseFrontier, this.base, leaves));
  }

  /**
   * Forgets leaf hashes and offsets below `snap.size`; `offsetCount` is how many offsets exist
   * from base on (the durable entries and the batch in flight).
   */
  prune(snap: { readonly size: number; readonly frontier: Frontier }, offsetCount: number): void {
    const drop = snap.size - this.base;
    this.leaves.dropFront(drop);
    this.offsets.copyWithin(0, drop, offsetCount);
    this.base = snap.size;
    this.baseFrontier = snap.frontier;
    // Give memory back after a burst (keeping room to grow without reallocating at once).
    const room = 2 * Math.max(1024, offsetCount - drop);
    this.leaves.fit(room);
    if (this.offsets.length > 2 * room) this.offsets = this.offsets.slice(0, room);
  }
}
