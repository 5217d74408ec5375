/**
 * Token bucket per uid: `rate` requests per second sustained, `burst` at once. Time is passed in
 * and should be monotonic; a clock that steps back adds no tokens and takes none away.
 */
export class RateLimiter {
  private readonly buckets = new Map<number, { tokens: number; atMs: number }>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {}

  take(uid: number, nowMs: number): boolean {
    let b = this.buckets.get(uid);
    if (!b) {
      b = { tokens: this.burst, atMs: nowMs };
      this.buckets.set(uid, b);
    }
    const elapsedMs = Math.max(0, nowMs - b.atMs);
    b.tokens = Math.min(this.burst, b.tokens + (elapsedMs / 1000) * this.rate);
    b.atMs = nowMs;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/** Keys a throttle remembers before it forgets those of past seconds. */
const MAX_THROTTLE_KEYS = 4096;

/**
 * At most one record per key per second, so refusals that cost a client nothing cannot fill the
 * lineage disk. `admit` answers how many refusals of that key went unrecorded since its last
 * record, or undefined when this one is not to be recorded. Time is passed in.
 */
export class RecordThrottle {
  private readonly keys = new Map<string, { second: number; skipped: number }>();

  admit(key: string, nowMs: number): number | undefined {
    const second = Math.floor(nowMs / 1000);
    const k = this.keys.get(key);
    if (k && k.second === second) {
      k.skipped++;
      return undefined;
    }
    if (!k && this.keys.size >= MAX_THROTTLE_KEYS) this.forgetBefore(second);
    this.keys.set(key, { second, skipped: 0 });
    return k?.skipped ?? 0;
  }

  /** Counts of unrecorded refusals from past seconds are lost here (the server's stats still have them). */
  private forgetBefore(second: number): void {
    for (const [key, k] of this.keys) if (k.second !== second) this.keys.delete(key);
  }
}
