import pino from "pino";
import { describe, expect, it } from "vitest";
import type { EvidenceState } from "../../src/attest/evidence.js";
import { EpochScheduler } from "../../src/attest/scheduler.js";

// When epochs run: one at a time, waiters answered by the first epoch that started after they
// asked, released at stop; a crashed epoch is its caller's failure, not the next epoch's.

const state = (startedMonoUs: number): EvidenceState => ({
  epochSeq: startedMonoUs,
  epochHash: new Uint8Array(32),
  startedAtMs: 0,
  startedMonoUs,
  verifiedAtMs: 0,
  bootId: "b",
  resetCount: 0,
  restartCount: 0,
  pcrDigest: new Uint8Array(32),
  policyDigest: new Uint8Array(32),
  integrity: { ok: true },
});

/** A scheduler whose epochs start at the injected monotonic clock and end when the test says. */
function scheduler(opts: { periodMs?: number } = {}) {
  const clock = { monoUs: 0 };
  const pending: { resolve: (s: EvidenceState) => void; reject: (e: unknown) => void; started: number }[] =
    [];
  let running = 0;
  let overlapped = false;
  const s = new EpochScheduler({
    run: () =>
      new Promise<EvidenceState>((resolve, reject) => {
        running++;
        if (running > 1) overlapped = true;
        const started = clock.monoUs;
        const done = () => {
          running--;
        };
        pending.push({
          started,
          resolve: (v) => {
            done();
            resolve(v);
          },
          reject: (e) => {
            done();
            reject(e);
          },
        });
      }),
    epochMs: opts.periodMs ?? 3_600_000,
    idleEpochMs: opts.periodMs ?? 3_600_000,
    now: () => clock.monoUs / 1000,
    monoUs: () => clock.monoUs,
    log: pino({ level: "silent" }),
  });
  /** Ends the oldest epoch in progress, once one has started. */
  const endNext = async (): Promise<void> => {
    while (pending.length === 0) await new Promise((r) => setImmediate(r));
    const p = pending.shift()!;
    p.resolve(state(p.started));
  };
  return { s, clock, pending, endNext, overlapped: () => overlapped };
}

describe("EpochScheduler", () => {
  it("runs one epoch at a time: a second runEpoch waits for the first to end", async () => {
    const { s, clock, endNext, overlapped, pending } = scheduler();
    clock.monoUs = 10;
    const a = s.runEpoch();
    const b = s.runEpoch();
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    expect(pending).toHaveLength(1);
    await endNext();
    expect((await a).startedMonoUs).toBe(10);
    await endNext();
    await b;
    expect(overlapped()).toBe(false);
    expect(pending).toHaveLength(0);
  });

  it("a waiter is answered by the first epoch that started at or after it asked", async () => {
    const { s, clock, endNext } = scheduler();
    clock.monoUs = 10;
    const first = s.runEpoch();
    const waiter = s.waitForEpochAfter(15, 3_600_000);
    let answered: EvidenceState | undefined;
    void waiter.then((v) => {
      answered = v;
    });
    await endNext();
    await first;
    expect(answered).toBeUndefined();
    clock.monoUs = 15;
    const second = s.runEpoch();
    await endNext();
    await second;
    expect((await waiter)?.startedMonoUs).toBe(15);
  });

  it("stop waits for the epoch in progress and releases the waiters with undefined", async () => {
    const { s, clock, endNext } = scheduler();
    clock.monoUs = 10;
    const running = s.runEpoch();
    const waiter = s.waitForEpochAfter(100, 3_600_000);
    const stopped = s.stop();
    await endNext();
    await running;
    await stopped;
    expect(await waiter).toBeUndefined();
  });

  it("a crashed epoch rejects its own runEpoch only; the next one runs", async () => {
    const { s, pending, endNext } = scheduler();
    const crashed = s.runEpoch();
    while (pending.length === 0) await new Promise((r) => setImmediate(r));
    pending.shift()!.reject(new Error("bug"));
    await expect(crashed).rejects.toThrow("bug");
    const next = s.runEpoch();
    await endNext();
    expect((await next).startedMonoUs).toBe(0);
  });

  it("started: the first epoch runs at once, and refresh() starts another after it", async () => {
    const { s, clock, endNext } = scheduler();
    s.start();
    await endNext();
    clock.monoUs = 50;
    s.refresh();
    const waiter = s.waitForEpochAfter(50, 3_600_000);
    await endNext();
    expect((await waiter)?.startedMonoUs).toBe(50);
    const stopped = s.stop();
    await stopped;
  });
});
