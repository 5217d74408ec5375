import type { DenialCode, DenialReason } from "../core/denial.js";

/*
 * Repeated denials of one caller, counted instead of recorded one by one (docs/lineage.md,
 * "Repeated denials"). Pure: both clocks are passed in. The first denial of a caller, reason and
 * code opens a window of `windowMs` (monotonic) and is recorded in full; the ones after it in
 * that window are only counted; when the window ends (or at stop) its count becomes one
 * denial_repeats entry. Every denial is thus either recorded or counted in exactly one window.
 */

/** Who was denied what: the window's key. `uid` is undefined for a peer that was never identified. */
export interface DenialKey {
  readonly uid: number | undefined;
  readonly reason: DenialReason;
  readonly code?: DenialCode | undefined;
}

/** One window's counted denials, due to be recorded. `first` is what the caller attached to the window. */
export interface DenialRepeats<A> extends DenialKey {
  readonly count: number;
  /** Wall clock of the first counted denial, ms. */
  readonly firstMs: number;
  /** firstMs plus the monotonic time to the last counted one: a wall-clock step cannot bend it. */
  readonly lastMs: number;
  readonly first: A | undefined;
}

/** What to do with one denial: record it in full (it opened `window`, if tracked), or nothing (counted). */
export type DenialVerdict<A> =
  | { readonly record: true; readonly window?: DenialWindow<A> }
  | { readonly record: false };

/** An open window; the caller attaches the reference of the decision that opened it. */
export interface DenialWindow<A> {
  first: A | undefined;
}

interface OpenWindow<A> extends DenialWindow<A> {
  readonly key: DenialKey;
  readonly endsMonoMs: number;
  count: number;
  firstWallMs: number;
  firstMonoMs: number;
  lastMonoMs: number;
}

/**
 * Windows open at once. Past it a new caller's denials are recorded in full (not tracked): a
 * denial is never dropped, and memory stays bounded.
 */
export const MAX_DENIAL_WINDOWS = 4096;

export class DenialWindows<A> {
  private readonly open = new Map<string, OpenWindow<A>>();
  /** Counts of windows that ended when a denial of their key opened the next one. */
  private readonly due: DenialRepeats<A>[] = [];

  constructor(
    readonly windowMs: number,
    private readonly maxWindows = MAX_DENIAL_WINDOWS,
  ) {}

  /** Windows open now (those with counts not yet recorded among them). */
  get size(): number {
    return this.open.size;
  }

  /**
   * A denial at `monoMs` (monotonic) / `wallMs`: the first of its key in a window is to be
   * recorded; later ones in the same window are counted. A denial after its key's window ended
   * opens the next one, and the ended window's count waits for closed().
   */
  note(key: DenialKey, monoMs: number, wallMs: number): DenialVerdict<A> {
    const id = keyId(key);
    const w = this.open.get(id);
    if (w && monoMs < w.endsMonoMs) {
      if (w.count === 0) {
        w.firstWallMs = Math.floor(wallMs);
        w.firstMonoMs = monoMs;
      }
      w.count++;
      // A monotonic clock passed in out of order must not make the span negative.
      w.lastMonoMs = Math.max(w.lastMonoMs, monoMs);
      return { record: false };
    }
    if (w) {
      this.open.delete(id);
      if (w.count > 0) this.due.push(repeatsOf(w));
    }
    if (this.open.size >= this.maxWindows) return { record: true };
    const opened: OpenWindow<A> = {
      key: { uid: key.uid, reason: key.reason, ...(key.code ? { code: key.code } : {}) },
      endsMonoMs: monoMs + this.windowMs,
      count: 0,
      firstWallMs: Math.floor(wallMs),
      firstMonoMs: monoMs,
      lastMonoMs: monoMs,
      first: undefined,
    };
    this.open.set(id, opened);
    return { record: true, window: opened };
  }

  /** Removes the windows ended by `monoMs`; returns those that counted anything. */
  closed(monoMs: number): DenialRepeats<A>[] {
    const out = this.due.splice(0);
    for (const [id, w] of this.open) {
      if (monoMs < w.endsMonoMs) continue;
      this.open.delete(id);
      if (w.count > 0) out.push(repeatsOf(w));
    }
    return out;
  }

  /** Removes every window, ended or not (at stop); returns those that counted anything. */
  drain(): DenialRepeats<A>[] {
    const out = [...this.due.splice(0), ...[...this.open.values()].filter((w) => w.count > 0).map(repeatsOf)];
    this.open.clear();
    return out;
  }

  /** When closed() next has something to do (monotonic ms), or undefined when no window is open. */
  nextEndMs(): number | undefined {
    let next: number | undefined = this.due.length > 0 ? Number.NEGATIVE_INFINITY : undefined;
    for (const w of this.open.values()) if (next === undefined || w.endsMonoMs < next) next = w.endsMonoMs;
    return next;
  }
}

function keyId(k: DenialKey): string {
  return `${k.uid ?? "-"} ${k.reason} ${k.code ?? ""}`;
}

function repeatsOf<A>(w: OpenWindow<A>): DenialRepeats<A> {
  return {
    ...w.key,
    count: w.count,
    firstMs: w.firstWallMs,
    lastMs: w.firstWallMs + Math.max(0, Math.floor(w.lastMonoMs - w.firstMonoMs)),
    first: w.first,
  };
}
