/**
 * One benchmark module per component: scripts/bench/<name>.ts exporting
 * `export const suite: BenchSuite`. scripts/bench/run.ts runs every suite it lists and
 * writes bench/results/<timestamp>.json and .md (numbers and their baselines from the
 * same run, with the machine and versions).
 */
export interface BenchRow {
  /** What was measured, e.g. "quote via tpm2-tools (ECC P-256, 9 PCRs)". */
  readonly name: string;
  /** The measured numbers, named with their unit: { median_ms, p99_ms, ops_per_s, ... }. */
  readonly values: Readonly<Record<string, number>>;
  /** Which row of the same run this one is compared with (the baseline), if any. */
  readonly baseline?: string;
  /** A target from the issue, written as text ("≥ 200k entries/s"), and whether it was met. */
  readonly target?: string;
  readonly met?: boolean;
  readonly note?: string;
}

export interface BenchContext {
  /** Scratch directory for this suite, removed afterwards. */
  readonly dir: string;
  /** Smaller sizes for a quick run (BENCH_QUICK=1). */
  readonly quick: boolean;
  log(msg: string): void;
}

export interface BenchSuite {
  readonly name: string;
  run(ctx: BenchContext): Promise<BenchRow[]>;
}

/** Percentile of an ascending-sorted sample (nearest-rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Runs fn n times (after `warmup` unmeasured runs) and returns sorted durations in ms. */
export async function timeRuns(
  n: number,
  warmup: number,
  fn: () => Promise<unknown> | unknown,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out.sort((a, b) => a - b);
}
