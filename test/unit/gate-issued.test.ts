import { describe, expect, it } from "vitest";
import { type IssuedToken, IssuedTokens } from "../../src/gate/issued.js";

const token = (exp: number): IssuedToken => ({
  uid: 1000,
  exp,
  resetCount: 0,
  restartCount: 0,
  spent: false,
  reported: false,
});
const id = (n: number) => Uint8Array.of(0, n >> 8, n & 0xff);

describe("issued tokens", () => {
  it("keeps each token until its expiry plus the grace has passed, whatever the order of expiries", () => {
    const live = new IssuedTokens();
    // Scopes with different TTLs: expiries arrive out of order.
    const exps = [160, 100, 130, 100, 3700, 101, 160];
    for (const [i, exp] of exps.entries()) live.add(id(i), token(exp));
    live.sweep(160); // nothing is 60 s past its expiry yet
    expect(live.size).toBe(7);
    live.sweep(161); // exp 100 + 60 < 161
    expect(live.size).toBe(5);
    expect(live.get(id(1))).toBeUndefined();
    expect(live.get(id(3))).toBeUndefined();
    expect(live.get(id(5))?.exp).toBe(101);
    live.sweep(221);
    expect([...Array(7).keys()].filter((i) => live.get(id(i)) !== undefined)).toEqual([4]);
    live.sweep(3761);
    expect(live.size).toBe(0);
  });

  it("sweeps at most once a second; a token added after a sweep is found by the next", () => {
    const live = new IssuedTokens();
    live.add(id(1), token(10));
    live.sweep(71);
    expect(live.size).toBe(0);
    live.add(id(2), token(10)); // an expiry second already swept gets a new bucket
    live.sweep(71); // same second: skipped
    expect(live.size).toBe(1);
    live.sweep(72);
    expect(live.size).toBe(0);
  });
});
