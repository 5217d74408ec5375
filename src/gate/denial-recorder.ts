import type { Logger } from "pino";
import { asExecgateError } from "../core/errors.js";
import { type BackRef, type EntryTime, makeEntry } from "../lineage/entry.js";
import type { Lineage } from "../lineage/lineage.js";
import { type DenialKey, type DenialRepeats, type DenialVerdict, DenialWindows } from "./denial-windows.js";

/** What a window keeps of the decision that opened it: its reference once durable. */
type FirstRef = Promise<BackRef | undefined>;

/** A denial recorded in full, outside any window (windows off, or after stop's flush). */
export const RECORD_IN_FULL: DenialVerdict<never> = { record: true };

export interface DenialRecorderOptions {
  readonly lineage: Pick<Lineage, "add">;
  /** limits.denial_window_ms; absent: every denial is recorded in full. */
  readonly windowMs: number | undefined;
  readonly now: () => number;
  readonly monoUs: () => number;
  readonly log: Logger;
}

/**
 * The effectful side of repeated denials (the counting is denial-windows.ts): one timer for the
 * window that ends first, and the denial_repeats entries it writes, each naming the decision that
 * opened its window when that one is durable.
 */
export class DenialRecorder {
  private readonly windows: DenialWindows<FirstRef> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** After stop's flush every denial is recorded in full: no window would ever be closed. */
  private flushed = false;
  /** denial_repeats appends under way (the flush waits for them, so they precede daemon_stop). */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly o: DenialRecorderOptions) {
    this.windows = o.windowMs === undefined ? undefined : new DenialWindows(o.windowMs);
  }

  /**
   * Counts a denial in its key's open window ({ record: false }), or says to record it in full;
   * the window it opened, if any, then takes that decision's reference as `first`.
   */
  note(key: DenialKey): DenialVerdict<FirstRef> {
    if (!this.windows || this.flushed) return RECORD_IN_FULL;
    const verdict = this.windows.note(key, this.monoMs(), this.o.now());
    if (verdict.record && verdict.window) this.arm();
    return verdict;
  }

  /**
   * At stop, before daemon_stop: every open window's count is recorded, and denials from now on
   * are recorded in full. A crash instead loses at most one window of counts per key.
   */
  async flush(): Promise<void> {
    this.flushed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.windows) this.record(this.windows.drain());
    await Promise.all([...this.inFlight]);
  }

  private monoMs(): number {
    return this.o.monoUs() / 1000;
  }

  private arm(): void {
    const windows = this.windows;
    if (this.timer || !windows || this.flushed) return;
    const next = windows.nextEndMs();
    if (next === undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        const ended = windows.closed(this.monoMs());
        this.arm();
        this.record(ended);
      },
      Math.max(0, Math.ceil(next - this.monoMs())),
    );
    this.timer.unref();
  }

  private record(ended: readonly DenialRepeats<FirstRef>[]): void {
    for (const r of ended) {
      const p = this.append(r);
      this.inFlight.add(p);
      void p.finally(() => this.inFlight.delete(p));
    }
  }

  private async append(r: DenialRepeats<FirstRef>): Promise<void> {
    this.o.log.info({ reason: r.reason, code: r.code, uid: r.uid, count: r.count }, "denials_repeated");
    const time: EntryTime = { wallMs: this.o.now(), monoUs: this.o.monoUs() };
    // Everything awaited is inside the try: a failure here is logged, never an unhandled rejection.
    try {
      const first = await r.first;
      await this.o.lineage.add([
        makeEntry(
          "denial_repeats",
          time,
          {
            reason: r.reason,
            ...(r.code ? { code: r.code } : {}),
            ...(r.uid !== undefined ? { uid: r.uid } : {}),
            count: r.count,
            firstMs: r.firstMs,
            lastMs: r.lastMs,
            windowMs: this.windows?.windowMs ?? 0,
          },
          first ? [first] : [],
        ),
      ]);
    } catch (e) {
      this.o.log.error(
        { reason: r.reason, uid: r.uid, count: r.count, err: asExecgateError(e).message },
        "denial_repeats_not_recorded",
      );
    }
  }
}
