import type { EpochView, ExploredEntry } from "./entry-view.js";

/**
 * Whole-log views for browsing (pure, fed entries in log order): daemon runs with their epochs,
 * executions joined by token id, denials grouped by reason. Memory grows with runs, epochs and
 * executions (not with every entry); `audit query` does not use it and stays constant-memory.
 */
export interface RunView {
  readonly startIndex: number;
  readonly startMs: number;
  readonly startReason: string;
  stopIndex?: number;
  stopMs?: number;
  stopReason?: string;
  /** Indices of this run's epoch entries. */
  readonly epochs: number[];
  /** recovery entries (a crash before this run: torn tail truncated). */
  readonly recoveries: number[];
}

export interface EpochSummary {
  readonly index: number;
  readonly wallMs: number;
  readonly epoch: EpochView;
  /** Allow and deny decisions made on this epoch. */
  allows: number;
  denials: number;
}

export interface ExecutionView {
  readonly tokenId: string;
  readonly decision: number;
  readonly decidedMs: number;
  request?: number;
  epochId?: string;
  scope?: string;
  uid?: number;
  exeDigest?: string;
  unit?: string;
  issued?: number;
  redeemed?: number;
  report?: number;
  exitCode?: number;
  signal?: string;
  durationMs?: number;
}

export interface DenialGroup {
  readonly reason: string;
  /** Denials, counting each denial_repeats entry's count. */
  count: number;
  /** Entries (decisions, denial_repeats, failed epochs), in log order. */
  readonly entries: number[];
}

export class LineageSummary {
  readonly runs: RunView[] = [];
  readonly epochs: EpochSummary[] = [];
  readonly executions = new Map<string, ExecutionView>();
  readonly denials = new Map<string, DenialGroup>();
  private readonly epochById = new Map<string, EpochSummary>();
  entries = 0;

  observe(e: ExploredEntry): void {
    this.entries += 1;
    const run = this.runs[this.runs.length - 1];
    switch (e.type) {
      case "daemon_start":
        this.runs.push({
          startIndex: e.index,
          startMs: e.time.wallMs,
          startReason: String((e.body as { reason?: unknown }).reason ?? ""),
          epochs: [],
          recoveries: [],
        });
        break;
      case "daemon_stop":
        if (run && run.stopIndex === undefined) {
          run.stopIndex = e.index;
          run.stopMs = e.time.wallMs;
          run.stopReason = String((e.body as { reason?: unknown }).reason ?? "");
        }
        break;
      case "recovery":
        run?.recoveries.push(e.index);
        break;
      case "epoch":
        if (e.epoch) {
          const s = { index: e.index, wallMs: e.time.wallMs, epoch: e.epoch, allows: 0, denials: 0 };
          this.epochs.push(s);
          this.epochById.set(e.epoch.id, s);
          run?.epochs.push(e.index);
        }
        break;
      default:
        break;
    }
    if (e.type === "decision" && e.epochId !== undefined) {
      const ep = this.epochById.get(e.epochId);
      if (ep) {
        if (e.allow) ep.allows += 1;
        else ep.denials += 1;
      }
    }
    if (e.denial !== undefined) {
      const g = this.denials.get(e.denial.reason) ?? { reason: e.denial.reason, count: 0, entries: [] };
      g.count += e.denial.count ?? 1;
      g.entries.push(e.index);
      this.denials.set(e.denial.reason, g);
    }
    this.joinExecution(e);
  }

  private joinExecution(e: ExploredEntry): void {
    if (e.tokenId === undefined) return;
    if (e.type === "decision" && e.allow === true) {
      const request = e.refs.find((r) => r.type === "request")?.index;
      this.executions.set(e.tokenId, {
        tokenId: e.tokenId,
        decision: e.index,
        decidedMs: e.time.wallMs,
        ...(request !== undefined ? { request } : {}),
        ...(e.epochId !== undefined ? { epochId: e.epochId } : {}),
        ...(e.scope !== undefined ? { scope: e.scope } : {}),
        ...(e.caller?.uid !== undefined ? { uid: e.caller.uid } : {}),
        ...(e.caller?.exeDigest !== undefined ? { exeDigest: e.caller.exeDigest } : {}),
      });
      return;
    }
    const x = this.executions.get(e.tokenId);
    if (!x) return;
    if (e.type === "token_issued") x.issued ??= e.index;
    else if (e.type === "token_redeemed") {
      x.redeemed ??= e.index;
      if (e.caller?.unit !== undefined) x.unit = e.caller.unit;
    } else if (e.type === "execution_report") {
      x.report ??= e.index;
      const b = e.body as { exitCode?: unknown; signal?: unknown; durationMs?: unknown };
      if (typeof b.exitCode === "number") x.exitCode = b.exitCode;
      if (typeof b.signal === "string") x.signal = b.signal;
      if (typeof b.durationMs === "number") x.durationMs = b.durationMs;
    }
  }
}
