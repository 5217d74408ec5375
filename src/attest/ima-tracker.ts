import { open } from "node:fs/promises";
import type { Logger } from "pino";
import { asExecgateError } from "../core/errors.js";
import type { BlobStore } from "../lineage/blobs.js";
import type { Allowlist } from "../measure/ima-allowlist.js";
import { checkMeasured, ImaMeasuredSet, sha256FileDigests } from "../measure/ima-measured.js";
import { detectImaFormat, type ImaEntry } from "../measure/ima-parse.js";
import { type ImaState, initialImaState, parseNewEntries } from "../measure/ima-replay.js";
import {
  type BootAggregateVerdict,
  type ImaEvidence,
  type ImaOutcome,
  MAX_DETAIL_ITEMS,
  type PriorImaViolations,
} from "../policy/integrity.js";

/** What one epoch read of the IMA list: where the replay stands and the entries after it. */
export interface ImaRead {
  readonly state: ImaState;
  readonly entries: ImaEntry[];
}

/** Bytes read from the IMA list per read call. */
const READ_CHUNK = 1 << 20;

/**
 * The IMA reader state across epochs of one boot: how far the kernel's list was read, the
 * entries read but not yet covered by a quote, everything a verified quote covered (the
 * measured set) and the allowlist's verdict on it. The attestation loop owns one.
 */
export class ImaTracker {
  private state: ImaState | undefined;
  private pending: ImaEntry[] = [];
  /**
   * Bytes of the IMA list already parsed (complete records), pending ones included. Entries
   * are pending until an epoch under IMA rules judged them; while the policy has no IMA rules
   * the list is not read, so a reload that brings them back judges everything from here on.
   */
  private readOffset = 0;
  /**
   * Every measurement this boot that a verified quote's PCR 10 covers, compactly: peer
   * identification checks executables against it (measurements), and a new allowlist
   * judges it all again.
   */
  private readonly measured = new ImaMeasuredSet();
  /**
   * The verdict of `judgedUnder` on `measured`. The current policy judges everything measured
   * this boot: when its allowlist is another one (a reload builds a new Allowlist, so identity
   * tells), `measured` is judged again and this is replaced — a stricter allowlist catches a
   * file run before the reload, a looser one clears what it now allows.
   */
  private violations: PriorImaViolations = { count: 0, first: [] };
  private judgedUnder: Allowlist | undefined;
  /**
   * The boot_aggregate verdict, once an epoch covered the list's first entry. Not about the
   * allowlist, so no reload clears it; nor do a failed PCR 10 replay (nothing is consumed, so
   * every later epoch fails it again) or a list that does not parse (read again, and again
   * refused, at every epoch).
   */
  private bootAggregate: BootAggregateVerdict | undefined;

  /**
   * `path` undefined: nothing is read. Without a TPM nothing quotes PCR 10, so no entry could
   * ever be judged: kept pending, they would pile up with the kernel's list.
   */
  constructor(
    private readonly o: {
      readonly path: string | undefined;
      readonly blobs: BlobStore;
      readonly log: Logger;
    },
  ) {}

  /**
   * Reads what the list gained since the last read; each new chunk is stored as a blob and its
   * digest pushed to `digests`. Undefined when there is no list to judge (unreadable: logged).
   */
  async read(digests: Uint8Array[]): Promise<ImaRead | undefined> {
    if (!this.o.path) return undefined;
    try {
      const fh = await open(this.o.path, "r");
      try {
        const appended = await readFrom(fh, this.readOffset);
        if (!this.state) {
          if (appended.length === 0) return undefined;
          this.state = initialImaState(detectImaFormat(appended));
        }
        // Parse what follows the pending entries; they are already parsed and kept.
        const cursor = {
          ...this.state,
          offset: this.readOffset,
          entries: this.state.entries + this.pending.length,
        };
        const fresh = parseNewEntries(cursor, appended);
        if (fresh.length > 0) {
          // The offset moves only once the entries are stored: if storing fails they are read
          // again next epoch (moved first, they were lost and PCR 10 never replayed again).
          const end = fresh[fresh.length - 1]!.end;
          digests.push(await this.o.blobs.put(appended.subarray(0, end - cursor.offset)));
          this.readOffset = end;
        }
        return { state: this.state, entries: [...this.pending, ...fresh] };
      } finally {
        await fh.close();
      }
    } catch (e) {
      this.o.log.warn({ err: asExecgateError(e).message }, "ima_unreadable");
      return undefined;
    }
  }

  /** The evidence an epoch judges: what `read` returned and the boot's verdicts so far. */
  evidence(read: ImaRead): ImaEvidence {
    return {
      state: read.state,
      entries: read.entries,
      priorViolations: this.violations,
      ...(this.bootAggregate ? { bootAggregate: this.bootAggregate } : {}),
    };
  }

  /**
   * After an epoch: `outcome` when the epoch judged the entries (a quote covered PCR 10), the
   * entries it read in `read`.
   */
  settle(read: ImaRead | undefined, outcome: ImaOutcome | undefined): void {
    if (outcome) {
      if (read) this.measured.add(read.entries.slice(0, read.entries.length - outcome.pending.length));
      this.state = outcome.state;
      this.pending = [...outcome.pending];
      const v = outcome.violations;
      this.violations = {
        count: this.violations.count + v.length,
        first: [...this.violations.first, ...v.slice(0, MAX_DETAIL_ITEMS)].slice(0, MAX_DETAIL_ITEMS),
      };
      this.bootAggregate ??= outcome.bootAggregate;
    } else if (read) {
      // Read, but not judged (no quote, no PCR 10): the next epoch judges them. Past the read
      // offset now, so dropping them would leave the replay short of PCR 10 for good.
      this.pending = read.entries;
    }
  }

  /** Makes the prior violations the verdict of `allowlist` (none: nothing is judged) on the measured set. */
  judgeUnder(allowlist: Allowlist | undefined): void {
    if (allowlist === this.judgedUnder) return;
    const v = allowlist ? checkMeasured(this.measured, allowlist) : [];
    this.violations = { count: v.length, first: v.slice(0, MAX_DETAIL_ITEMS) };
    this.judgedUnder = allowlist;
    if (this.measured.size > 0)
      this.o.log.info({ measurements: this.measured.size, violations: v.length }, "ima_rejudged");
  }

  /** The SHA-256 file digests (hex) measured at `path` this boot as far as a verified quote covers. */
  measurements(path: string): ReadonlySet<string> | undefined {
    return sha256FileDigests(this.measured, path);
  }
}

/** Everything in the file from `offset` to its current end. */
async function readFrom(fh: Awaited<ReturnType<typeof open>>, offset: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let read = 0;
  for (;;) {
    const buf = Buffer.alloc(READ_CHUNK);
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset + read);
    if (bytesRead === 0) break;
    chunks.push(buf.subarray(0, bytesRead));
    read += bytesRead;
  }
  return new Uint8Array(Buffer.concat(chunks));
}
