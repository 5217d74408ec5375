import { describe, expect, it } from "vitest";
import type { EvidenceState } from "../../src/attest/evidence.js";
import { DENIAL_REASONS } from "../../src/core/denial.js";
import { DaemonMetrics } from "../../src/metrics/daemon-metrics.js";
import { escapeLabelValue, formatValue, renderExposition } from "../../src/metrics/exposition.js";
import { Histogram, LabelledHistogram } from "../../src/metrics/histogram.js";

describe("Prometheus text exposition", () => {
  it("renders HELP, TYPE and samples, escaping as the format requires", () => {
    const text = renderExposition([
      { name: "a_total", help: "line\\one\nline two", type: "counter", samples: [{ value: 3 }] },
      {
        name: "b",
        help: "labelled",
        type: "gauge",
        samples: [{ labels: { path: 'C:\\x "q"\nz' }, value: 0.5 }],
      },
    ]);
    expect(text).toBe(
      [
        "# HELP a_total line\\\\one\\nline two",
        "# TYPE a_total counter",
        "a_total 3",
        "# HELP b labelled",
        "# TYPE b gauge",
        'b{path="C:\\\\x \\"q\\"\\nz"} 0.5',
        "",
      ].join("\n"),
    );
    expect(escapeLabelValue("plain")).toBe("plain");
    expect([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN, 1e-3].map(formatValue)).toEqual([
      "+Inf",
      "-Inf",
      "NaN",
      "0.001",
    ]);
  });

  it("refuses names the format does not allow (a programming error, caught here)", () => {
    expect(() => renderExposition([{ name: "bad-name", help: "", type: "gauge", samples: [] }])).toThrow();
    expect(() =>
      renderExposition([
        { name: "ok", help: "", type: "gauge", samples: [{ labels: { "le-x": "1" }, value: 1 }] },
      ]),
    ).toThrow();
  });

  it("histogram buckets are cumulative, +Inf equals the count, and the sum adds up", () => {
    const h = new Histogram([0.1, 1]);
    for (const v of [0.05, 0.1, 0.5, 3, Number.NaN]) h.observe(v);
    expect(h.samples()).toEqual([
      { suffix: "_bucket", labels: { le: "0.1" }, value: 2 },
      { suffix: "_bucket", labels: { le: "1" }, value: 3 },
      { suffix: "_bucket", labels: { le: "+Inf" }, value: 4 },
      { suffix: "_sum", labels: {}, value: 3.65 },
      { suffix: "_count", labels: {}, value: 4 },
    ]);
    expect(() => new Histogram([1, 1])).toThrow();
    const l = new LabelledHistogram("command", [1]);
    l.observe("tpm2_sign", 0.2);
    l.observe("tpm2_quote", 2);
    expect(l.samples().map((s) => s.labels)).toEqual([
      { command: "tpm2_quote", le: "1" },
      { command: "tpm2_quote", le: "+Inf" },
      { command: "tpm2_quote" },
      { command: "tpm2_quote" },
      { command: "tpm2_sign", le: "1" },
      { command: "tpm2_sign", le: "+Inf" },
      { command: "tpm2_sign" },
      { command: "tpm2_sign" },
    ]);
  });
});

/** A scrape at `nowMonoUs` whose latest epoch is `epoch` (the other counts are fixed). */
function snapshot(nowMonoUs: number, epoch: EvidenceState) {
  return {
    nowMonoUs,
    tokens: { requests: 5, issued: 3, redeemed: 2, reports: 1 },
    denials: new Map([["pcr_mismatch", 2] as const]),
    epoch,
    epochs: { total: 6, failed: 1 },
    lineage: { size: 40, checkpointSize: 37, disk: { freeBytes: 2048, sizeBytes: 8192 } },
    connections: { open: 1, accepted: 9, refused: 0, malformed: 1, rateLimited: 0 },
  };
}

describe("DaemonMetrics", () => {
  it("every denial reason appears (zeros included); evidence age counts from the newest verified epoch", () => {
    const m = new DaemonMetrics(1_000_000);
    const verified = {
      epochSeq: 4,
      startedAtMs: 1_000_900,
      startedMonoUs: 5_000_000,
      verifiedAtMs: 1_001_000,
      integrity: { ok: true },
    };
    m.onEpoch(verified as unknown as EvidenceState);
    const failed = {
      epochSeq: 5,
      startedAtMs: 1_002_000,
      startedMonoUs: 6_100_000,
      verifiedAtMs: 1_002_050,
      integrity: { ok: false, reason: "pcr_mismatch", detail: "" },
    };
    m.onEpoch(failed as unknown as EvidenceState);
    const text = renderExposition(m.families(snapshot(7_000_000, failed as unknown as EvidenceState)));
    const lines = text.split("\n");
    expect(lines).toContain("execgate_lineage_fs_free_bytes 2048");
    expect(lines).toContain("execgate_lineage_fs_size_bytes 8192");
    for (const r of DENIAL_REASONS)
      expect(lines.some((l) => l.startsWith(`execgate_denials_total{reason="${r}"} `))).toBe(true);
    expect(lines).toContain('execgate_denials_total{reason="pcr_mismatch"} 2');
    expect(lines).toContain("execgate_tokens_issued_total 3");
    expect(lines).toContain("execgate_epoch_verified 0");
    expect(lines).toContain("execgate_epoch_seq 5");
    expect(lines).toContain("execgate_epoch_age_seconds 2");
    expect(lines).toContain("execgate_lineage_checkpoint_lag 3");
    expect(lines).toContain('execgate_epoch_duration_seconds_bucket{le="+Inf"} 2');
    const sum = lines.find((l) => l.startsWith("execgate_epoch_duration_seconds_sum "));
    expect(Number(sum?.split(" ")[1])).toBeCloseTo(0.15, 9);
    expect(lines).toContain("execgate_start_time_seconds 1000");
  });

  it("evidence age follows the monotonic clock from the epoch's start, whatever the wall clock read then", () => {
    const m = new DaemonMetrics(1_000_000);
    // Verified when the wall clock read an hour ahead; it was then stepped back.
    const verified = {
      epochSeq: 1,
      startedAtMs: 4_600_000,
      startedMonoUs: 10_000_000,
      verifiedAtMs: 4_600_020,
      integrity: { ok: true },
    } as unknown as EvidenceState;
    m.onEpoch(verified);
    const age = (nowMonoUs: number) =>
      renderExposition(m.families(snapshot(nowMonoUs, verified)))
        .split("\n")
        .find((l) => l.startsWith("execgate_epoch_age_seconds "));
    expect(age(11_500_000)).toBe("execgate_epoch_age_seconds 1.5");
    expect(age(12_000_000)).toBe("execgate_epoch_age_seconds 2");
  });
});
