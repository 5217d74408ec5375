import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DENIAL_REASONS } from "../../src/core/denial.js";
import { type DenialKey, type DenialRepeats, DenialWindows } from "../../src/gate/denial-windows.js";

const NOBODY: DenialKey = { uid: 65534, reason: "peer_unknown" };

describe("DenialWindows (pure: both clocks passed in)", () => {
  it("records the first denial of a key, counts its repeats within the window, and reports them when it ends", () => {
    const w = new DenialWindows<string>(1000);
    const first = w.note(NOBODY, 5000, 1_700_000_000_000);
    expect(first.record).toBe(true);
    if (first.record && first.window) first.window.first = "decision@7";
    expect(w.note(NOBODY, 5100, 1_700_000_000_100)).toEqual({ record: false });
    expect(w.note(NOBODY, 5999, 1_700_000_000_999)).toEqual({ record: false });
    // Other uids, reasons and codes have their own windows.
    expect(w.note({ uid: 1000, reason: "peer_unknown" }, 5500, 0).record).toBe(true);
    expect(w.note({ uid: 65534, reason: "rate_limited" }, 5500, 0).record).toBe(true);
    expect(w.note({ uid: 65534, reason: "request_malformed", code: "frame_too_large" }, 5500, 0).record).toBe(
      true,
    );
    expect(w.note({ uid: 65534, reason: "request_malformed" }, 5500, 0).record).toBe(true);
    expect(w.note({ uid: undefined, reason: "peer_unknown" }, 5500, 0).record).toBe(true);
    expect(w.size).toBe(6);
    expect(w.nextEndMs()).toBe(6000);
    expect(w.closed(5999)).toEqual([]);
    expect(w.closed(6000)).toEqual([
      {
        uid: 65534,
        reason: "peer_unknown",
        count: 2,
        firstMs: 1_700_000_000_100,
        lastMs: 1_700_000_000_999,
        first: "decision@7",
      },
    ]);
    // The windows opened at 5500 counted nothing: they end without a report.
    expect(w.closed(6500)).toEqual([]);
    expect(w.size).toBe(0);
    expect(w.nextEndMs()).toBeUndefined();
  });

  it("a denial after its window ended opens the next one; the ended window's count is kept for closed()", () => {
    const w = new DenialWindows<number>(1000);
    w.note(NOBODY, 0, 10_000);
    w.note(NOBODY, 10, 10_010);
    w.note(NOBODY, 20, 10_020);
    // No closed() call in between (a late timer): the next denial still opens a window.
    expect(w.note(NOBODY, 1500, 11_500).record).toBe(true);
    expect(w.nextEndMs()).toBe(Number.NEGATIVE_INFINITY); // something is due at once
    expect(w.note(NOBODY, 1600, 11_600)).toEqual({ record: false });
    expect(w.closed(1600).map((r) => [r.count, r.firstMs, r.lastMs])).toEqual([[2, 10_010, 10_020]]);
    expect(w.drain().map((r) => [r.count, r.firstMs, r.lastMs])).toEqual([[1, 11_600, 11_600]]);
    expect(w.size).toBe(0);
  });

  it("last − first follows the monotonic clock: a wall clock stepped back cannot bend it", () => {
    const w = new DenialWindows<never>(1000);
    w.note(NOBODY, 100, 50_000);
    w.note(NOBODY, 200, 50_100);
    w.note(NOBODY, 900, 1_000); // the wall clock went back 49 s
    const [r] = w.drain();
    expect([r!.firstMs, r!.lastMs]).toEqual([50_100, 50_800]);
  });

  it("past the window cap a new key's denials are recorded in full, never dropped", () => {
    const w = new DenialWindows<never>(1000, 2);
    expect(w.note({ uid: 1, reason: "peer_unknown" }, 0, 0).record).toBe(true);
    expect(w.note({ uid: 2, reason: "peer_unknown" }, 0, 0).record).toBe(true);
    expect(w.note({ uid: 3, reason: "peer_unknown" }, 0, 0)).toEqual({ record: true });
    expect(w.note({ uid: 3, reason: "peer_unknown" }, 1, 1)).toEqual({ record: true });
    expect(w.note({ uid: 1, reason: "peer_unknown" }, 1, 1)).toEqual({ record: false });
    expect(w.size).toBe(2);
  });

  it("every denial is either recorded or counted in exactly one report, each report within one window", () => {
    const key = fc.record({
      uid: fc.option(fc.constantFrom(0, 1000, 65534), { nil: undefined }),
      reason: fc.constantFrom(...DENIAL_REASONS.slice(0, 4)),
    });
    const step = fc.oneof(
      fc.record({ kind: fc.constant("deny" as const), key, dt: fc.nat(700), wall: fc.integer() }),
      fc.record({ kind: fc.constant("close" as const), dt: fc.nat(700) }),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2000 }),
        fc.array(step, { maxLength: 300 }),
        (windowMs, steps) => {
          const w = new DenialWindows<never>(windowMs, 5);
          let mono = 1000;
          let wall = 1_700_000_000_000;
          let denials = 0;
          let recorded = 0;
          const reports: DenialRepeats<never>[] = [];
          for (const s of steps) {
            mono += s.dt;
            if (s.kind === "close") {
              reports.push(...w.closed(mono));
              continue;
            }
            wall = Math.max(0, wall + s.wall); // the wall clock may jump either way
            denials++;
            if (w.note(s.key, mono, wall).record) recorded++;
          }
          reports.push(...w.drain());
          expect(recorded + reports.reduce((n, r) => n + r.count, 0)).toBe(denials);
          for (const r of reports) {
            expect(r.count).toBeGreaterThan(0);
            expect(r.lastMs).toBeGreaterThanOrEqual(r.firstMs);
            expect(r.lastMs - r.firstMs).toBeLessThan(windowMs);
          }
          expect(w.size).toBe(0);
        },
      ),
    );
  });
});
