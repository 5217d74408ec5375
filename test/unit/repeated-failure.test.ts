import { describe, expect, it } from "vitest";
import { REPEATED_FAILURE_LINE_MS, RepeatedFailure } from "../../src/core/repeated-failure.js";

// A failure every second (the epoch period) on a fake clock, ms.
describe("RepeatedFailure: log on the transition, then at most once a minute", () => {
  it("logs the first failure, then one line a minute with the count since the last line", () => {
    const r = new RepeatedFailure();
    const lines = [];
    for (let t = 0; t <= 150_000; t += 1000) {
      const line = r.failed("hardware_unavailable", t);
      if (line) lines.push({ t, ...line });
    }
    expect(REPEATED_FAILURE_LINE_MS).toBe(60_000);
    expect(lines).toEqual([
      { t: 0, failures: 1, inRow: 1 },
      { t: 60_000, failures: 60, inRow: 61 },
      { t: 120_000, failures: 60, inRow: 121 },
    ]);
    expect(r.succeeded()).toBe(151);
  });

  it("a new reason is logged at once, its count taking in the failures not yet logged", () => {
    const r = new RepeatedFailure();
    expect(r.failed("hardware_unavailable", 0)).toEqual({ failures: 1, inRow: 1 });
    expect(r.failed("hardware_unavailable", 1000)).toBeUndefined();
    expect(r.failed("hardware_unavailable", 2000)).toBeUndefined();
    expect(r.failed("pcr_mismatch", 3000)).toEqual({ failures: 3, inRow: 4 });
    expect(r.failed("pcr_mismatch", 4000)).toBeUndefined();
    expect(r.failed("hardware_unavailable", 5000)).toEqual({ failures: 2, inRow: 6 });
  });

  it("a success ends the run: the count in a row once, and the next failure is a first one again", () => {
    const r = new RepeatedFailure();
    expect(r.succeeded()).toBeUndefined();
    r.failed("io_error", 0);
    r.failed("io_error", 1000);
    expect(r.succeeded()).toBe(2);
    expect(r.succeeded()).toBeUndefined();
    expect(r.failed("io_error", 2000)).toEqual({ failures: 1, inRow: 1 });
  });

  it("the interval is the caller's to choose", () => {
    const r = new RepeatedFailure(10);
    expect(r.failed("x", 0)).toBeDefined();
    expect(r.failed("x", 9)).toBeUndefined();
    expect(r.failed("x", 10)).toEqual({ failures: 2, inRow: 3 });
  });
});
