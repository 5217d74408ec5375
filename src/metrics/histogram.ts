import type { Sample } from "./exposition.js";

/** Upper bounds in seconds for hardware latencies: swtpm answers in ~15 ms, real TPMs in 0.1–0.6 s. */
export const LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** Upper bounds in seconds for a request's time in the daemon: a durable write is ~0.3–3 ms. */
export const REQUEST_BUCKETS_S = [
  0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
] as const;

/** A cumulative histogram (Prometheus semantics: bucket `le` counts every observation ≤ le). */
export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BUCKETS_S) {
    for (let i = 1; i < bounds.length; i++) {
      if (!(bounds[i]! > bounds[i - 1]!)) throw new Error("histogram bounds must increase");
    }
    this.counts = bounds.map(() => 0);
  }

  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) {
      if (v <= this.bounds[i]!) this.counts[i]!++;
    }
  }

  /** `_bucket` samples (with `le`), `_sum` and `_count`; `labels` are added to each. */
  samples(labels: Readonly<Record<string, string>> = {}): Sample[] {
    return [
      ...this.bounds.map((b, i) => ({
        suffix: "_bucket",
        labels: { ...labels, le: String(b) },
        value: this.counts[i]!,
      })),
      { suffix: "_bucket", labels: { ...labels, le: "+Inf" }, value: this.count },
      { suffix: "_sum", labels, value: this.sum },
      { suffix: "_count", labels, value: this.count },
    ];
  }
}

/** Histograms keyed by one label value (e.g. the tpm2-tools command), created on first use. */
export class LabelledHistogram {
  private readonly byLabel = new Map<string, Histogram>();

  constructor(
    private readonly label: string,
    private readonly bounds: readonly number[] = LATENCY_BUCKETS_S,
  ) {}

  observe(value: string, v: number): void {
    let h = this.byLabel.get(value);
    if (!h) {
      h = new Histogram(this.bounds);
      this.byLabel.set(value, h);
    }
    h.observe(v);
  }

  samples(): Sample[] {
    return [...this.byLabel.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .flatMap(([value, h]) => h.samples({ [this.label]: value }));
  }
}
