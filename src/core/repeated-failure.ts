/** While a failure repeats with the same reason, at most one log line this often. */
export const REPEATED_FAILURE_LINE_MS = 60_000;

/** A failure worth a log line: the failures since the previous line (this one included), and in a row. */
export interface FailureLine {
  readonly failures: number;
  readonly inRow: number;
}

/**
 * When to log a failure that repeats every period (an epoch, a checkpoint tick) while hardware is
 * down, so the journal is not flooded with identical lines: at the first failure and whenever the
 * reason changes, then at most once every `lineMs` while it goes on; and once on the success that
 * ends it. Pure: the caller passes the time (monotonic ms, so a wall-clock step changes nothing).
 */
export class RepeatedFailure {
  private run: { reason: string; inRow: number; unlogged: number; lastLineMs: number } | undefined;

  constructor(private readonly lineMs = REPEATED_FAILURE_LINE_MS) {}

  /** A failure at `nowMs`: the line to log, or undefined to stay quiet. */
  failed(reason: string, nowMs: number): FailureLine | undefined {
    const r = this.run ?? { reason, inRow: 0, unlogged: 0, lastLineMs: Number.NEGATIVE_INFINITY };
    this.run = r;
    r.inRow++;
    if (r.reason === reason && r.inRow > 1 && nowMs - r.lastLineMs < this.lineMs) {
      r.unlogged++;
      return undefined;
    }
    r.reason = reason;
    const line = { failures: r.unlogged + 1, inRow: r.inRow };
    r.unlogged = 0;
    r.lastLineMs = nowMs;
    return line;
  }

  /** A success: how many failed in a row before it (log that), or undefined when none did. */
  succeeded(): number | undefined {
    const inRow = this.run?.inRow;
    this.run = undefined;
    return inRow;
  }
}
