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
