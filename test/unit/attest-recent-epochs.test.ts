import { describe, expect, it } from "vitest";
import type { EvidenceState } from "../../src/attest/evidence.js";
import { RecentEpochs } from "../../src/attest/recent-epochs.js";

// The recent-epochs store behind `evidence`: the latest epoch, and recent ones by hash, bounded.

const hash = (n: number) => new Uint8Array(32).fill(n);
const state = (n: number): EvidenceState => ({
  epochSeq: n,
  epochHash: hash(n),
  startedAtMs: 0,
  startedMonoUs: n,
  verifiedAtMs: 0,
  bootId: "b",
  resetCount: 0,
  restartCount: 0,
  pcrDigest: new Uint8Array(32),
  policyDigest: new Uint8Array(32),
  integrity: { ok: true },
});

describe("RecentEpochs", () => {
  it("is empty before the first epoch", () => {
    const r = new RecentEpochs();
    expect(r.current()).toBeUndefined();
    expect(r.currentRecord()).toBeUndefined();
    expect(r.recordOf(hash(1))).toBeUndefined();
    expect(r.hsmSignatureOf(hash(1))).toBeUndefined();
  });

  it("the last epoch added is the current one; earlier ones stay reachable by hash", () => {
    const r = new RecentEpochs();
    r.add(hash(1), state(1), Uint8Array.of(1), Uint8Array.of(0x51));
    r.add(hash(2), state(2), Uint8Array.of(2));
    expect(r.current()?.epochSeq).toBe(2);
    expect(r.currentRecord()).toEqual(Uint8Array.of(2));
    expect(r.recordOf(hash(1))).toEqual(Uint8Array.of(1));
    expect(r.hsmSignatureOf(hash(1))).toEqual(Uint8Array.of(0x51));
    // An epoch without an HSM signature (TPM-only mode, or the HSM did not answer) has none.
    expect(r.hsmSignatureOf(hash(2))).toBeUndefined();
  });

  it("keeps at most `capacity` epochs, the oldest leaving first", () => {
    const r = new RecentEpochs(2);
    for (const n of [1, 2, 3]) r.add(hash(n), state(n), Uint8Array.of(n), Uint8Array.of(0x50 + n));
    expect(r.recordOf(hash(1))).toBeUndefined();
    expect(r.hsmSignatureOf(hash(1))).toBeUndefined();
    expect(r.recordOf(hash(2))).toEqual(Uint8Array.of(2));
    expect(r.recordOf(hash(3))).toEqual(Uint8Array.of(3));
    expect(r.hsmSignatureOf(hash(3))).toEqual(Uint8Array.of(0x53));
  });
});
