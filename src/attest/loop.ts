import type { KeyObject } from "node:crypto";
import { randomBytes } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { DenialReason } from "../core/denial.js";
import { asExecgateError } from "../core/errors.js";
import { RepeatedFailure } from "../core/repeated-failure.js";
import type { BlobStore } from "../lineage/blobs.js";
import { makeEntry } from "../lineage/entry.js";
import type { Lineage } from "../lineage/lineage.js";
import { type EventLog, parseEventLog } from "../measure/eventlog-parse.js";
import type { Allowlist } from "../measure/ima-allowlist.js";
import { checkMeasured, ImaMeasuredSet, sha256FileDigests } from "../measure/ima-measured.js";
import type { ImaEntry } from "../measure/ima-parse.js";
import { detectImaFormat } from "../measure/ima-parse.js";
import { type ImaState, initialImaState, parseNewEntries } from "../measure/ima-replay.js";
import {
  type BootAggregateVerdict,
  type IntegrityPolicy,
  MAX_DETAIL_ITEMS,
  type PriorImaViolations,
} from "../policy/integrity.js";
import { quote } from "../tpm/ops/attest.js";
import type { TpmRunner } from "../tpm/runner.js";
import type { PcrSelection } from "../tpm/structures/pcr-selection.js";
import { type EpochBinding, encodeEpochBinding } from "./binding.js";
import { readBootId } from "./boot-id.js";
import { type EpochSigner, evaluateEpoch } from "./epoch.js";
import type { EvidenceState } from "./evidence.js";

/** The TPM root: one quote per epoch over SHA-256(binding). */
export interface TpmEpochRoot {
  readonly runner: TpmRunner;
  readonly akHandle: number;
  readonly akPublic: KeyObject;
  readonly selection: PcrSelection;
}

/**
 * The TPM fields are the TPM root; without them (HSM-only mode) `hsm` must be given. With both
 * (tpm+hsm) each epoch carries the quote and the HSM signature, and both must verify.
 */
export type AttestationLoopOptions = (TpmEpochRoot | { readonly runner?: undefined }) & LoopCommonOptions;

interface LoopCommonOptions {
  /** The HSM root: signs each epoch's binding (docs/hsm.md). */
  readonly hsm?: EpochSigner;
  /**
   * The policy in force and its digest, LoadedPolicy.digest (re-read on every epoch, so a reload
   * applies at the next one; the daemon starts one at once with refresh()).
   */
  readonly policy: () => { readonly integrity: IntegrityPolicy; readonly digest: Uint8Array };
  /** Raw Ed25519 public key of the token issuer. */
  readonly issuerKey: Uint8Array;
  readonly lineage: Lineage;
  readonly blobs: BlobStore;
  readonly bootIdPath: string;
  readonly eventlogPath?: string;
  readonly imaPath?: string;
  /** Epoch period while there is activity, and while idle. */
  readonly epochMs: number;
  readonly idleEpochMs: number;
  readonly now: () => number;
  readonly monoUs: () => number;
  readonly log: Logger;
}

interface Waiter {
  /** Monotonic µs (EvidenceState.startedMonoUs). */
  readonly after: number;
  readonly resolve: (s: EvidenceState | undefined) => void;
}

const ZERO32 = new Uint8Array(32);
/** Epoch records kept in memory for `evidence {epoch}` (tokens live minutes; epochs are ~1 s). */
const RECENT_RECORDS = 4096;

/**
 * The attestation loop (docs/architecture.md, "Epochs"): one TPM quote per epoch, bound to the issuer key,
 * the latest lineage checkpoint, the previous epoch and a fresh nonce; verified here; checked
 * against the integrity policy; logged as an epoch entry, good or bad. `current()` is the only
 * evidence the gate ever decides against. One epoch runs at a time.
 */
export class AttestationLoop {
  private state: EvidenceState | undefined;
  private record: Uint8Array | undefined;
  private readonly recent = new Map<string, Uint8Array>();
  /** HSM signatures of the same recent epochs (HSM modes), by epoch hash. */
  private readonly recentHsm = new Map<string, Uint8Array>();
  private seq = 0;
  private prev: Uint8Array = ZERO32;
  /**
   * The epoch in progress, settled when it ends. It never rejects: an epoch's failure goes to
   * the caller of the runEpoch() that started it (the scheduler logs it), not to stop() or to
   * the next runEpoch(), which only wait for it to end.
   */
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private lastActivityMs = Number.NEGATIVE_INFINITY;
  private waiters: Waiter[] = [];
  /** refresh() was called at this monotonic time (µs): an epoch that started at or after it is due. */
  private refreshAfterUs = Number.NEGATIVE_INFINITY;
  private imaState: ImaState | undefined;
  private imaPending: ImaEntry[] = [];
  /**
   * Bytes of the IMA list already parsed (complete records), pending ones included. Entries
   * are pending until an epoch under IMA rules judged them; while the policy has no IMA rules
   * the list is not read, so a reload that brings them back judges everything from here on.
   */
  private imaReadOffset = 0;
  /**
   * Every measurement this boot that a verified quote's PCR 10 covers, compactly: peer
   * identification checks executables against it (imaMeasurements), and a new allowlist
   * judges it all again.
   */
  private readonly imaMeasured = new ImaMeasuredSet();
  /**
   * The verdict of `imaJudgedUnder` on imaMeasured. The current policy judges everything
   * measured this boot: when its allowlist is another one (a reload builds a new Allowlist, so
   * identity tells), imaMeasured is judged again and this is replaced — a stricter allowlist
   * catches a file run before the reload, a looser one clears what it now allows.
   */
  private imaViolations: PriorImaViolations = { count: 0, first: [] };
  private imaJudgedUnder: Allowlist | undefined;
  /**
   * The boot_aggregate verdict, once an epoch covered the list's first entry. Not about the
   * allowlist, so no reload clears it; nor do a failed PCR 10 replay (nothing is consumed, so
   * every later epoch fails it again) or a list that does not parse (read again, and again
   * refused, at every epoch).
   */
  private imaBootAggregate: BootAggregateVerdict | undefined;
  /** Counters for status and metrics. */
  readonly stats = { epochs: 0, failed: 0, lastDurationMs: 0 };
  private readonly listeners: ((s: EvidenceState) => void)[] = [];
  /** A TPM that is down fails every epoch: epoch_failed is logged on the change, then once a minute. */
  private readonly failures = new RepeatedFailure();

  constructor(private readonly o: AttestationLoopOptions) {}

  current(): EvidenceState | undefined {
    return this.state;
  }

  /** The latest epoch's lineage record (binding, quote, PCR values, outcome), for `evidence`. */
  currentRecord(): Uint8Array | undefined {
    return this.record;
  }

  /** The record of a recent epoch by its hash (the last RECENT_RECORDS are kept), for verifiers of a token. */
  recordOf(epochHash: Uint8Array): Uint8Array | undefined {
    return this.recent.get(Buffer.from(epochHash).toString("hex"));
  }

  /** The HSM signature over a recent epoch's binding (HSM modes; docs/hsm.md). */
  hsmSignatureOf(epochHash: Uint8Array): Uint8Array | undefined {
    return this.recentHsm.get(Buffer.from(epochHash).toString("hex"));
  }

  /** Called after every epoch, verified or not; a listener that throws is logged and skipped. */
  onEpoch(f: (s: EvidenceState) => void): void {
    this.listeners.push(f);
  }

  /** Starts the periodic loop (the first epoch runs at once). */
  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    for (const w of this.waiters.splice(0)) w.resolve(undefined);
  }

  /** A request arrived: keep the fast cadence. */
  touch(): void {
    const idle = this.o.now() - this.lastActivityMs > this.o.idleEpochMs;
    this.lastActivityMs = this.o.now();
    if (idle && !this.stopped && !this.running) this.schedule(0);
  }

  /** The evidence depends on something that changed (a policy reload): an epoch now, or right after the one running. */
  refresh(): void {
    this.refreshAfterUs = this.o.monoUs();
    if (!this.running) this.schedule(0);
  }

  /**
   * Resolves with the first epoch that STARTED at or after `afterMonoUs` (the `monoUs` clock; a
   * fresh-quote scope waits here).
   */
  waitForEpochAfter(afterMonoUs: number, timeoutMs: number): Promise<EvidenceState | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(undefined);
      }, timeoutMs);
      const waiter: Waiter = {
        after: afterMonoUs,
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
      };
      this.waiters.push(waiter);
      if (!this.running) this.schedule(0);
    });
  }

  /** Runs one epoch now (or waits for the one in progress and then runs another). */
  async runEpoch(): Promise<EvidenceState> {
    while (this.running) await this.running;
    const p = this.epoch();
    const ended = () => {
      this.running = undefined;
    };
    this.running = p.then(ended, ended);
    await this.running;
    await p; // this caller's to handle
    return this.state!;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runEpoch().then(
        () => this.afterEpoch(),
        (e: unknown) => {
          this.o.log.error({ err: asExecgateError(e).message }, "epoch_crashed");
          this.afterEpoch();
        },
      );
    }, delayMs);
    this.timer.unref?.();
  }

  private afterEpoch(): void {
    const started = this.state?.startedMonoUs ?? Number.NEGATIVE_INFINITY;
    if (started < this.refreshAfterUs || this.waiters.some((w) => started < w.after)) {
      this.schedule(0);
      return;
    }
    const active = this.o.now() - this.lastActivityMs <= this.o.idleEpochMs;
    this.schedule(active ? this.o.epochMs : this.o.idleEpochMs);
  }

  private async epoch(): Promise<void> {
    const startedAtMs = this.o.now();
    const startedMonoUs = this.o.monoUs();
    const cp = this.o.lineage.latestCheckpoint();
    const boot = await this.readBootId();
    const binding: EpochBinding = {
      seq: this.seq,
      prev: this.prev,
      issuer: this.o.issuerKey,
      checkpoint: cp ? { size: cp.checkpoint.size, root: cp.checkpoint.rootHash } : { size: 0, root: ZERO32 },
      // An unreadable boot id is bound as "" (which never matches) and fails the epoch.
      bootId: "id" in boot ? boot.id : "",
      nonce: new Uint8Array(randomBytes(32)),
    };
    const [q, hsm] = await Promise.all([this.takeQuote(binding), this.takeHsmSignature(binding)]);
    // One policy for the whole epoch: whether the IMA list is read must agree with whether it
    // is judged, or a reload in between could read entries past the offset that nothing judges.
    const policy = this.o.policy();
    const evidenceDigests: Uint8Array[] = [];
    const eventlog = await this.readEventLog(evidenceDigests);
    const ima = policy.integrity.ima ? await this.readIma(evidenceDigests) : undefined;
    if (policy.integrity.ima) this.judgeMeasuredUnder(policy.integrity.ima.allowlist);
    const result = evaluateEpoch({
      binding,
      ...(q ? { quote: q } : {}),
      ...(this.o.runner ? { akPublic: this.o.akPublic, selection: this.o.selection } : {}),
      ...(hsm ? { hsm } : {}),
      ...("unreadable" in boot ? { bootIdUnreadable: boot.unreadable } : {}),
      policy: policy.integrity,
      policyDigest: policy.digest,
      ...(eventlog ? { eventlog } : {}),
      ...(ima
        ? {
            ima: {
              state: ima.state,
              entries: ima.entries,
              priorViolations: this.imaViolations,
              ...(this.imaBootAggregate ? { bootAggregate: this.imaBootAggregate } : {}),
            },
          }
        : {}),
      startedAtMs,
      startedMonoUs,
      verifiedAtMs: this.o.now(),
    });
    if (result.ima) {
      if (ima) this.imaMeasured.add(ima.entries.slice(0, ima.entries.length - result.ima.pending.length));
      this.imaState = result.ima.state;
      this.imaPending = [...result.ima.pending];
      const v = result.ima.violations;
      this.imaViolations = {
        count: this.imaViolations.count + v.length,
        first: [...this.imaViolations.first, ...v.slice(0, MAX_DETAIL_ITEMS)].slice(0, MAX_DETAIL_ITEMS),
      };
      this.imaBootAggregate ??= result.ima.bootAggregate;
    } else if (ima) {
      // Read, but not judged (no quote, no PCR 10): the next epoch judges them. Past the read
      // offset now, so dropping them would leave the replay short of PCR 10 for good.
      this.imaPending = ima.entries;
    }
    let state = result.state;
    try {
      const [appended] = await this.o.lineage.add([
        makeEntry(
          "epoch",
          {
            wallMs: state.verifiedAtMs,
            monoUs: this.o.monoUs(),
            ...(result.tpmClock !== undefined
              ? {
                  tpm: {
                    clock: result.tpmClock,
                    resetCount: state.resetCount,
                    restartCount: state.restartCount,
                  },
                }
              : {}),
          },
          {
            quote: result.record,
            issuerKey: this.o.issuerKey,
            verified: state.integrity.ok,
            ...(state.integrity.ok ? {} : { reason: state.integrity.reason }),
            ...(evidenceDigests.length > 0 ? { evidence: evidenceDigests } : {}),
            ...(result.hsmSignature ? { hsmSignature: result.hsmSignature } : {}),
            policyDigest: state.policyDigest,
          },
        ),
      ]);
      state = { ...state, entry: { index: appended!.index, leafHash: appended!.leafHash } };
    } catch (e) {
      // An epoch that cannot be recorded cannot be relied on.
      state = {
        ...state,
        integrity: { ok: false, reason: "lineage_unavailable", detail: asExecgateError(e).message },
      };
    }
    this.seq++;
    this.prev = result.hash;
    this.state = state;
    this.record = result.record;
    this.recent.set(Buffer.from(result.hash).toString("hex"), result.record);
    if (this.recent.size > RECENT_RECORDS) this.recent.delete(this.recent.keys().next().value!);
    if (result.hsmSignature)
      this.recentHsm.set(Buffer.from(result.hash).toString("hex"), result.hsmSignature);
    if (this.recentHsm.size > RECENT_RECORDS) this.recentHsm.delete(this.recentHsm.keys().next().value!);
    this.stats.epochs++;
    if (!state.integrity.ok) this.stats.failed++;
    this.stats.lastDurationMs = state.verifiedAtMs - startedAtMs;
    if (state.integrity.ok) {
      this.o.log.debug({ seq: state.epochSeq }, "epoch_verified");
      const failedInRow = this.failures.succeeded();
      if (failedInRow !== undefined) this.o.log.info({ seq: state.epochSeq, failedInRow }, "epoch_recovered");
    } else {
      const line = this.failures.failed(state.integrity.reason, this.o.monoUs() / 1000);
      if (line)
        this.o.log.warn(
          { seq: state.epochSeq, reason: state.integrity.reason, detail: state.integrity.detail, ...line },
          "epoch_failed",
        );
    }
    // Listeners report (metrics, systemd); none grants anything. One that throws must not keep
    // the others, or the requests waiting for this epoch, from hearing of it.
    for (const f of this.listeners) {
      try {
        f(state);
      } catch (e) {
        this.o.log.error({ seq: state.epochSeq, err: asExecgateError(e).message }, "epoch_listener_failed");
      }
    }
    const ready = this.waiters.filter((w) => state.startedMonoUs >= w.after);
    this.waiters = this.waiters.filter((w) => state.startedMonoUs < w.after);
    for (const w of ready) w.resolve(state);
  }

  private async takeHsmSignature(binding: EpochBinding) {
    const hsm = this.o.hsm;
    if (!hsm) return undefined;
    try {
      return { signature: await hsm.sign(encodeEpochBinding(binding)), publicKey: hsm.publicKey };
    } catch (e) {
      const err = asExecgateError(e);
      const failure: DenialReason = "hardware_unavailable";
      return { failure, detail: `HSM ${err.code}: ${err.message}` };
    }
  }

  private async takeQuote(binding: EpochBinding) {
    if (!this.o.runner) return undefined;
    const { epochHash } = await import("./binding.js");
    try {
      return await quote(this.o.runner, {
        akHandle: this.o.akHandle,
        selection: this.o.selection,
        qualifyingData: epochHash(binding),
      });
    } catch (e) {
      const err = asExecgateError(e);
      const failure: DenialReason = "hardware_unavailable";
      return { failure, detail: `${err.code}: ${err.message}` };
    }
  }

  /** Makes imaViolations the verdict of `allowlist` (none: nothing is judged) on imaMeasured. */
  private judgeMeasuredUnder(allowlist: Allowlist | undefined): void {
    if (allowlist === this.imaJudgedUnder) return;
    const v = allowlist ? checkMeasured(this.imaMeasured, allowlist) : [];
    this.imaViolations = { count: v.length, first: v.slice(0, MAX_DETAIL_ITEMS) };
    this.imaJudgedUnder = allowlist;
    if (this.imaMeasured.size > 0)
      this.o.log.info({ measurements: this.imaMeasured.size, violations: v.length }, "ima_rejudged");
  }

  /**
   * The SHA-256 digests (hex) IMA measured at the file `path` this boot, as far as a verified
   * quote covers the list. Undefined when there is nothing to check against: no such
   * measurement, one that is not a plain SHA-256 file digest, or a policy without IMA rules
   * (whose epochs do not read the list, so a file measured anew would never be noted).
   */
  imaMeasurements(path: string): ReadonlySet<string> | undefined {
    if (!this.o.policy().integrity.ima) return undefined;
    return sha256FileDigests(this.imaMeasured, path);
  }

  /** The boot id, or why there is none (the epoch then fails environment_mismatch). */
  private async readBootId(): Promise<{ id: string } | { unreadable: string }> {
    try {
      return { id: await readBootId(this.o.bootIdPath) };
    } catch (e) {
      return { unreadable: asExecgateError(e).message };
    }
  }

  private async readEventLog(digests: Uint8Array[]): Promise<EventLog | undefined> {
    if (!this.o.eventlogPath) return undefined;
    try {
      const bytes = new Uint8Array(await readFile(this.o.eventlogPath));
      digests.push(await this.o.blobs.put(bytes));
      return parseEventLog(bytes);
    } catch (e) {
      // Missing or malformed: the integrity rules that need it fail closed.
      this.o.log.warn({ err: asExecgateError(e).message }, "eventlog_unreadable");
      return undefined;
    }
  }

  private async readIma(
    digests: Uint8Array[],
  ): Promise<{ state: ImaState; entries: ImaEntry[] } | undefined> {
    // Without a TPM nothing quotes PCR 10, so no entry could ever be judged: kept pending, they
    // would pile up with the kernel's list. The IMA rules fail closed on the missing evidence.
    if (!this.o.imaPath || !this.o.runner) return undefined;
    try {
      const fh = await open(this.o.imaPath, "r");
      try {
        const chunks: Buffer[] = [];
        let read = 0;
        for (;;) {
          const buf = Buffer.alloc(1 << 20);
          const { bytesRead } = await fh.read(buf, 0, buf.length, this.imaReadOffset + read);
          if (bytesRead === 0) break;
          chunks.push(buf.subarray(0, bytesRead));
          read += bytesRead;
        }
        const appended = new Uint8Array(Buffer.concat(chunks));
        if (!this.imaState) {
          if (appended.length === 0) return undefined;
          this.imaState = initialImaState(detectImaFormat(appended));
        }
        // Parse what follows the pending entries; they are already parsed and kept.
        const cursor = {
          ...this.imaState,
          offset: this.imaReadOffset,
          entries: this.imaState.entries + this.imaPending.length,
        };
        const fresh = parseNewEntries(cursor, appended);
        if (fresh.length > 0) {
          // The offset moves only once the entries are stored: if storing fails they are read
          // again next epoch (moved first, they were lost and PCR 10 never replayed again).
          const end = fresh[fresh.length - 1]!.end;
          digests.push(await this.o.blobs.put(appended.subarray(0, end - cursor.offset)));
          this.imaReadOffset = end;
        }
        return { state: this.imaState, entries: [...this.imaPending, ...fresh] };
      } finally {
        await fh.close();
      }
    } catch (e) {
      this.o.log.warn({ err: asExecgateError(e).message }, "ima_unreadable");
      return undefined;
    }
  }
}
