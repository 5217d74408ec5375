import { describe, expect, it } from "vitest";
import { IssuedTokens } from "../../src/gate/issued.js";

const epochA = new Uint8Array(32).fill(0xa);
const epochB = new Uint8Array(32).fill(0xb);
const counts = { resetCount: 3, restartCount: 1 };
const id = (n: number) => Uint8Array.of(0, n >> 8, n & 0xff);

describe("issued tokens", () => {
  it("counts as live only tokens not yet expired and not redeemed (what status shows)", () => {
    const t = new IssuedTokens();
    for (const exp of [100, 130, 160]) t.issued(epochA, counts, exp);
    expect(t.liveAt(90)).toBe(3);
    t.spend(id(1), 1000, 160); // redeemed: no longer usable
    expect(t.liveAt(90)).toBe(2);
    expect(t.liveAt(100)).toBe(1); // exp 100 has passed; still remembered (size) until the grace ends
    expect(t.size).toBe(3);
    expect(t.liveAt(160)).toBe(0);
  });

  it("knows the epochs it issued on until their last token is past expiry plus grace", () => {
    const t = new IssuedTokens();
    // Scopes with different TTLs: expiries arrive out of order.
    for (const exp of [160, 100, 130]) t.issued(epochA, counts, exp);
    t.issued(new Uint8Array(epochB), { resetCount: 4, restartCount: 0 }, 3700);
    expect(t.size).toBe(4);
    expect(t.epoch(new Uint8Array(epochA))).toMatchObject(counts); // by value, not identity
    expect(t.epoch(epochB)).toMatchObject({ resetCount: 4 });
    expect(t.epoch(new Uint8Array(32))).toBeUndefined();
    t.sweep(161); // exp 100 + 60 < 161
    expect(t.size).toBe(3);
    expect(t.epoch(epochA)).toBeDefined(); // still has tokens to 160
    t.sweep(221);
    expect(t.size).toBe(1);
    expect(t.epoch(epochA)).toBeUndefined();
    t.issued(epochA, counts, 400); // an epoch seen again after its sweep is known again
    expect(t.epoch(epochA)).toBeDefined();
    t.sweep(3761);
    expect(t.size).toBe(0);
    expect(t.epoch(epochB)).toBeUndefined();
  });

  it("spends a token once; keeps the redeemed until expiry plus grace; sweeps once a second", () => {
    const t = new IssuedTokens();
    t.issued(epochA, counts, 100);
    const first = t.spend(id(1), 1000, 100);
    expect(first).toMatchObject({ uid: 1000, exp: 100, reported: false });
    expect(t.spend(id(1), 1000, 100)).toBeUndefined();
    expect(t.get(id(1))).toBe(first);
    expect(t.get(id(2))).toBeUndefined();
    t.sweep(160);
    expect(t.get(id(1))).toBe(first);
    t.sweep(161);
    expect(t.get(id(1))).toBeUndefined();
    t.spend(id(2), 1000, 100); // an expiry second already swept gets a new bucket
    t.sweep(161); // same second: skipped
    expect(t.get(id(2))).toBeDefined();
    t.sweep(162);
    expect(t.get(id(2))).toBeUndefined();
  });

  it("what the sweep may have forgotten stays refused, even if the clock steps back", () => {
    const t = new IssuedTokens();
    t.issued(epochA, counts, 100);
    t.issued(epochA, counts, 700); // keeps epoch A known
    t.spend(id(1), 1000, 100);
    expect(t.forgotten(100)).toBe(false);
    t.sweep(161); // the redeemed record of exp 100 is dropped here
    expect(t.get(id(1))).toBeUndefined();
    expect(t.epoch(epochA)).toBeDefined();
    expect(t.forgotten(100)).toBe(true); // so a second redeem is refused, not taken as the first
    expect(t.forgotten(101)).toBe(false);
    t.sweep(120); // a clock stepped back does not bring it back
    expect(t.forgotten(100)).toBe(true);
  });
});
