import type { EvidenceState } from "../attest/evidence.js";
import { DENIAL_REASONS, type DenialReason } from "../core/denial.js";
import type { DiskSpace } from "../lineage/disk-space.js";
import type { MetricFamily } from "./exposition.js";
import { Histogram, LabelledHistogram, REQUEST_BUCKETS_S } from "./histogram.js";

/** What the daemon's parts report at scrape time (read from their counters, nothing computed). */
export interface MetricsSnapshot {
  /** Now on the monotonic clock of EvidenceState.startedMonoUs, µs (evidence age). */
  readonly nowMonoUs: number;
  readonly tokens: {
    readonly requests: number;
    readonly issued: number;
    readonly redeemed: number;
    readonly reports: number;
  };
  readonly denials: ReadonlyMap<DenialReason, number>;
  readonly epoch: EvidenceState | undefined;
  readonly epochs: { readonly total: number; readonly failed: number };
  readonly lineage: {
    readonly size: number;
    readonly checkpointSize: number;
    /** The lineage filesystem's space (absent: not sampled yet, or unreadable). */
    readonly disk?: DiskSpace | undefined;
  };
  readonly connections: {
    readonly open: number;
    readonly accepted: number;
    readonly refused: number;
    readonly malformed: number;
    readonly rateLimited: number;
  };
}

/**
 * The daemon's metrics: latency histograms fed as things happen (tpm2-tools calls, epochs),
 * everything else read from counters at scrape time. Names are part of the operator interface
 * (docs/operations.md lists them): add, never rename.
 */
export class DaemonMetrics {
  /** Seconds per tpm2-tools call, by tool (fed by TimedTpmRunner). */
  readonly tpmLatency = new LabelledHistogram("command");
  /** Seconds per HSM signature (fed by timeHsmSigning); empty without an HSM. */
  readonly hsmLatency = new Histogram();
  /** Seconds per epoch: quote, verification, log replay, lineage append. */
  readonly epochDuration = new Histogram();
  /** Seconds per socket request in the daemon, by operation (fed by GateServer). */
  readonly requestDuration = new LabelledHistogram("op", REQUEST_BUCKETS_S);
  /** startedMonoUs of the newest verified epoch: its age counts from there, as the gate's does. */
  private lastVerifiedMonoUs: number | undefined;

  constructor(private readonly startedAtMs: number) {}

  /** The attestation loop's onEpoch listener. */
  readonly onEpoch = (s: EvidenceState): void => {
    this.epochDuration.observe(Math.max(0, s.verifiedAtMs - s.startedAtMs) / 1000);
    if (s.integrity.ok) this.lastVerifiedMonoUs = s.startedMonoUs;
  };

  families(s: MetricsSnapshot): MetricFamily[] {
    const g = (name: string, help: string, value: number): MetricFamily => ({
      name,
      help,
      type: "gauge",
      samples: [{ value }],
    });
    const c = (name: string, help: string, value: number): MetricFamily => ({
      name,
      help,
      type: "counter",
      samples: [{ value }],
    });
    const ev = s.epoch;
    return [
      g("execgate_up", "1 while the daemon answers", 1),
      g("execgate_start_time_seconds", "when the daemon started (Unix time)", this.startedAtMs / 1000),
      c("execgate_token_requests_total", "token requests received", s.tokens.requests),
      c("execgate_tokens_issued_total", "tokens issued", s.tokens.issued),
      c("execgate_tokens_redeemed_total", "tokens redeemed (execution started)", s.tokens.redeemed),
      c("execgate_execution_reports_total", "execution reports recorded", s.tokens.reports),
      {
        name: "execgate_denials_total",
        help: "denials by reason, every one (recorded, or counted in a denial_repeats entry), every reason listed",
        type: "counter",
        samples: DENIAL_REASONS.map((reason) => ({ labels: { reason }, value: s.denials.get(reason) ?? 0 })),
      },
      g("execgate_epoch_seq", "sequence number of the latest epoch (-1: none yet)", ev?.epochSeq ?? -1),
      g(
        "execgate_epoch_verified",
        "1 if the latest epoch passed verification and policy",
        ev?.integrity.ok ? 1 : 0,
      ),
      {
        name: "execgate_epoch_age_seconds",
        help: "age of the newest verified evidence, since its epoch started, on the monotonic clock (absent: none yet)",
        type: "gauge",
        samples:
          this.lastVerifiedMonoUs === undefined
            ? []
            : [{ value: Math.max(0, s.nowMonoUs - this.lastVerifiedMonoUs) / 1_000_000 }],
      },
      c("execgate_epochs_total", "epochs completed", s.epochs.total),
      c("execgate_epochs_failed_total", "epochs that failed (any reason)", s.epochs.failed),
      {
        name: "execgate_epoch_duration_seconds",
        help: "time from the start of an epoch to its verified result",
        type: "histogram",
        samples: this.epochDuration.samples(),
      },
      {
        name: "execgate_tpm_command_seconds",
        help: "tpm2-tools call latency by command, queueing behind the TPM's call in flight included",
        type: "histogram",
        samples: this.tpmLatency.samples(),
      },
      {
        name: "execgate_hsm_sign_seconds",
        help: "HSM signature latency (PKCS#11 C_Sign), failures included",
        type: "histogram",
        samples: this.hsmLatency.samples(),
      },
      {
        name: "execgate_request_duration_seconds",
        help: "socket requests by operation, from the parsed frame to the reply handed to the socket (a token's durable lineage write included)",
        type: "histogram",
        samples: this.requestDuration.samples(),
      },
      g("execgate_lineage_size", "entries in the lineage log", s.lineage.size),
      g(
        "execgate_lineage_checkpoint_size",
        "entries covered by the latest signed checkpoint",
        s.lineage.checkpointSize,
      ),
      g(
        "execgate_lineage_checkpoint_lag",
        "entries not yet covered by a signed checkpoint",
        Math.max(0, s.lineage.size - s.lineage.checkpointSize),
      ),
      ...(s.lineage.disk
        ? [
            g(
              "execgate_lineage_fs_free_bytes",
              "bytes free on the lineage's filesystem for the daemon's user",
              s.lineage.disk.freeBytes,
            ),
            g("execgate_lineage_fs_size_bytes", "size of the lineage's filesystem", s.lineage.disk.sizeBytes),
          ]
        : []),
      g("execgate_connections", "client connections being identified or served", s.connections.open),
      c("execgate_connections_accepted_total", "client connections accepted", s.connections.accepted),
      c("execgate_connections_refused_total", "connections refused (max_connections)", s.connections.refused),
      c("execgate_requests_malformed_total", "malformed requests", s.connections.malformed),
      c(
        "execgate_requests_rate_limited_total",
        "requests refused by the per-uid rate limit",
        s.connections.rateLimited,
      ),
    ];
  }
}
