import type { EvidenceState } from "../attest/evidence.js";
import { epochKeepsWatchdog } from "../attest/evidence.js";
import type { CborValue } from "../cbor/index.js";
import type { DenialReason } from "../core/denial.js";
import type { DiskSpace } from "../lineage/disk-space.js";
import type { Lineage } from "../lineage/lineage.js";

/** What `execgate status` reports of the gate, read at one moment. */
export interface StatusInput {
  readonly evidence: EvidenceState | undefined;
  readonly loopStats: { readonly epochs: number; readonly failed: number; readonly lastDurationMs: number };
  readonly lineage: Pick<Lineage, "size" | "latestCheckpoint">;
  readonly counters: {
    readonly requests: number;
    readonly allowed: number;
    readonly redeemed: number;
    readonly reports: number;
    readonly denials: ReadonlyMap<DenialReason, number>;
    readonly lastDenials: readonly { readonly reason: DenialReason; readonly atMs: number }[];
  };
  readonly liveTokens: number;
  /** The policy in force and the last reload's outcome. */
  readonly policy: Record<string, CborValue>;
  readonly disk: DiskSpace | undefined;
  readonly now: number;
  readonly monoUs: number;
}

/** Status for `execgate status` (coarse: no secrets, no peer details). */
export function gateStatus(s: StatusInput): Record<string, CborValue> {
  const ev = s.evidence;
  const cp = s.lineage.latestCheckpoint();
  const size = s.lineage.size;
  const now = s.now;
  const stats = s.loopStats;
  const disk = s.disk;
  // Newest first: the reasons of the last denials, each with how often it occurred among them.
  const recent = [...s.counters.lastDenials].reverse();
  const recentCounts = new Map<string, number>();
  for (const d of recent) recentCounts.set(d.reason, (recentCounts.get(d.reason) ?? 0) + 1);
  const last = recent[0];
  return {
    up: true,
    // Age of the evidence tokens are issued on: null when the latest epoch is not verified.
    evidence_age_ms: ev?.integrity.ok ? Math.max(0, Math.floor((s.monoUs - ev.startedMonoUs) / 1000)) : null,
    epoch: ev
      ? {
          seq: ev.epochSeq,
          // From the epoch's start on the monotonic clock, as evidence_age_ms: a wall-clock
          // step does not change it.
          age_ms: Math.max(0, Math.floor((s.monoUs - ev.startedMonoUs) / 1000)),
          verified: ev.integrity.ok,
          ...(ev.integrity.ok ? {} : { reason: ev.integrity.reason }),
          reset_count: ev.resetCount,
          restart_count: ev.restartCount,
        }
      : null,
    lineage: {
      size,
      checkpoint_size: cp?.checkpoint.size ?? 0,
      checkpoint_lag: size - (cp?.checkpoint.size ?? 0),
      ...(disk ? { fs_free_bytes: disk.freeBytes, fs_size_bytes: disk.sizeBytes } : {}),
    },
    tokens: {
      requests: s.counters.requests,
      issued: s.counters.allowed,
      redeemed: s.counters.redeemed,
      reports: s.counters.reports,
      live: s.liveTokens,
    },
    // The policy in force and the last reload's outcome (a refused reload keeps the old policy).
    policy: s.policy,
    denials: Object.fromEntries(s.counters.denials),
    last_denial: last ? { reason: last.reason, age_ms: Math.max(0, now - last.atMs) } : null,
    recent_denials: Object.fromEntries(recentCounts),
    // The roots of trust (TPM and/or HSM, hsm.require) answered the latest epoch: an epoch
    // that fails the policy still had healthy hardware; hardware_unavailable did not.
    hardware: {
      healthy: ev !== undefined && epochKeepsWatchdog(ev),
      epochs: stats.epochs,
      failed_epochs: stats.failed,
      last_epoch_ms: stats.lastDurationMs,
    },
  };
}
