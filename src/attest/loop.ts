import type { KeyObject } from "node:crypto";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { DenialReason } from "../core/denial.js";
import { asExecgateError } from "../core/errors.js";
import { RepeatedFailure } from "../core/repeated-failure.js";
import type { BlobStore } from "../lineage/blobs.js";
import { makeEntry } from "../lineage/entry.js";
import type { Lineage } from "../lineage/lineage.js";
import { type EventLog, parseEventLog } from "../measure/eventlog-parse.js";
import type { IntegrityPolicy } from "../policy/integrity.js";
import { quote } from "../tpm/ops/attest.js";
import type { TpmRunner } from "../tpm/runner.js";
import type { PcrSelection } from "../tpm/structures/pcr-selection.js";
import { type EpochBinding, encodeEpochBinding, epochHash } from "./binding.js";
import { readBootId } from "./boot-id.js";
import { type EpochResult, type EpochSigner, evaluateEpoch } from "./epoch.js";
import type { EvidenceState } from "./evidence.js";
import { ImaTracker } from "./ima-tracker.js";
import { RecentEpochs } from "./recent-epochs.js";
import { EpochScheduler } from "./scheduler.js";

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

const ZERO32 = new Uint8Array(32);

/**
 * The attestation loop (docs/architecture.md, "Epochs"): one TPM quote per epoch, bound to the issuer key,
 * the latest lineage checkpoint, the previous epoch and a fresh nonce; verified here; checked
 * against the integrity policy; logged as an epoch entry, good or bad. `current()` is the only
 * evidence the gate ever decides against. One epoch runs at a time (EpochScheduler); the IMA
 * list's reader state is an ImaTracker's, the recent epochs a RecentEpochs store.
 */
export class AttestationLoop {
  private seq = 0;
  private prev: Uint8Array = ZERO32;
  private readonly scheduler: EpochScheduler;
  private readonly ima: ImaTracker;
  /** The latest epoch and recent epochs' records by hash, for `evidence`. */
  readonly recent = new RecentEpochs();
  /** Counters for status and metrics. */
  readonly stats = { epochs: 0, failed: 0, lastDurationMs: 0 };
  private readonly listeners: ((s: EvidenceState) => void)[] = [];
  /** A TPM that is down fails every epoch: epoch_failed is logged on the change, then once a minute. */
  private readonly failures = new RepeatedFailure();

  constructor(private readonly o: AttestationLoopOptions) {
    this.scheduler = new EpochScheduler({
      run: () => this.epoch(),
      epochMs: o.epochMs,
      idleEpochMs: o.idleEpochMs,
      now: o.now,
      monoUs: o.monoUs,
      log: o.log,
    });
    // Without a TPM nothing quotes PCR 10: the list is not read (ImaTracker).
    this.ima = new ImaTracker({ path: o.runner ? o.imaPath : undefined, blobs: o.blobs, log: o.log });
  }

  current(): EvidenceState | undefined {
    return this.recent.current();
  }

  /** The latest epoch's lineage record (binding, quote, PCR values, outcome), for `evidence`. */
  currentRecord(): Uint8Array | undefined {
    return this.recent.currentRecord();
  }

  /** The record of a recent epoch by its hash (the last RECENT_RECORDS are kept), for verifiers of a token. */
  recordOf(epochHash: Uint8Array): Uint8Array | undefined {
    return this.recent.recordOf(epochHash);
  }

  /** The HSM signature over a recent epoch's binding (HSM modes; docs/hsm.md). */
  hsmSignatureOf(epochHash: Uint8Array): Uint8Array | undefined {
    return this.recent.hsmSignatureOf(epochHash);
  }

  /** Called after every epoch, verified or not; a listener that throws is logged and skipped. */
  onEpoch(f: (s: EvidenceState) => void): void {
    this.listeners.push(f);
  }

  /** Starts the periodic loop (the first epoch runs at once). */
  start(): void {
    this.scheduler.start();
  }

  stop(): Promise<void> {
    return this.scheduler.stop();
  }

  /** A request arrived: keep the fast cadence. */
  touch(): void {
    this.scheduler.touch();
  }

  /** The evidence depends on something that changed (a policy reload): an epoch now, or right after the one running. */
  refresh(): void {
    this.scheduler.refresh();
  }

  /**
   * Resolves with the first epoch that STARTED at or after `afterMonoUs` (the `monoUs` clock; a
   * fresh-quote scope waits here).
   */
  waitForEpochAfter(afterMonoUs: number, timeoutMs: number): Promise<EvidenceState | undefined> {
    return this.scheduler.waitForEpochAfter(afterMonoUs, timeoutMs);
  }

  /** Runs one epoch now (or waits for the one in progress and then runs another). */
  runEpoch(): Promise<EvidenceState> {
    return this.scheduler.runEpoch();
  }

  /**
   * The SHA-256 digests (hex) IMA measured at the file `path` this boot, as far as a verified
   * quote covers the list. Undefined when there is nothing to check against: no such
   * measurement, one that is not a plain SHA-256 file digest, or a policy without IMA rules
   * (whose epochs do not read the list, so a file measured anew would never be noted).
   */
  imaMeasurements(path: string): ReadonlySet<string> | undefined {
    if (!this.o.policy().integrity.ima) return undefined;
    return this.ima.measurements(path);
  }

  /** One epoch: bind, gather the evidence, judge it, record it, then tell listeners. */
  private async epoch(): Promise<EvidenceState> {
    const startedAtMs = this.o.now();
    const startedMonoUs = this.o.monoUs();
    const cp = this.o.lineage.latestCheckpoint();
    const boot = await this.readBootId();
    const binding = this.binding("id" in boot ? boot.id : "", cp);
    const [q, hsm] = await Promise.all([this.takeQuote(binding), this.takeHsmSignature(binding)]);
    // One policy for the whole epoch: whether the IMA list is read must agree with whether it
    // is judged, or a reload in between could read entries past the offset that nothing judges.
    const policy = this.o.policy();
    const evidenceDigests: Uint8Array[] = [];
    const eventlog = await this.readEventLog(evidenceDigests);
    const ima = policy.integrity.ima ? await this.ima.read(evidenceDigests) : undefined;
    if (policy.integrity.ima) this.ima.judgeUnder(policy.integrity.ima.allowlist);
    const result = evaluateEpoch({
      binding,
      ...(q ? { quote: q } : {}),
      ...(this.o.runner ? { akPublic: this.o.akPublic, selection: this.o.selection } : {}),
      ...(hsm ? { hsm } : {}),
      ...("unreadable" in boot ? { bootIdUnreadable: boot.unreadable } : {}),
      policy: policy.integrity,
      policyDigest: policy.digest,
      ...(eventlog ? { eventlog } : {}),
      ...(ima ? { ima: this.ima.evidence(ima) } : {}),
      startedAtMs,
      startedMonoUs,
      verifiedAtMs: this.o.now(),
    });
    this.ima.settle(ima, result.ima);
    const state = await this.recordEpoch(result, evidenceDigests);
    this.seq++;
    this.prev = result.hash;
    this.recent.add(result.hash, state, result.record, result.hsmSignature);
    this.report(state, startedAtMs);
    return state;
  }

  /** The next epoch's binding; an unreadable boot id is bound as "" (which never matches) and fails the epoch. */
  private binding(bootId: string, cp: ReturnType<Lineage["checkpointer"]["latest"]>): EpochBinding {
    return {
      seq: this.seq,
      prev: this.prev,
      issuer: this.o.issuerKey,
      checkpoint: cp ? { size: cp.checkpoint.size, root: cp.checkpoint.rootHash } : { size: 0, root: ZERO32 },
      bootId,
      nonce: new Uint8Array(randomBytes(32)),
    };
  }

  /** Appends the epoch entry; the state names it, or fails lineage_unavailable when it cannot be recorded. */
  private async recordEpoch(result: EpochResult, evidenceDigests: Uint8Array[]): Promise<EvidenceState> {
    const state = result.state;
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
      return { ...state, entry: { index: appended!.index, leafHash: appended!.leafHash } };
    } catch (e) {
      // An epoch that cannot be recorded cannot be relied on.
      return {
        ...state,
        integrity: { ok: false, reason: "lineage_unavailable", detail: asExecgateError(e).message },
      };
    }
  }

  /** Counts, logs and tells the listeners of an epoch that ended. */
  private report(state: EvidenceState, startedAtMs: number): void {
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
}
