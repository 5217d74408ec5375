import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type CborValue, encode } from "../../src/cbor/index.js";
import { DENIAL_CODES, DENIAL_REASONS } from "../../src/core/denial.js";
import { decodeEntry, type Entry, type EntryTime, encodeEntry, makeEntry } from "../../src/lineage/entry.js";

// encodeEntry writes straight from the schema with pre-sorted keys; the generic deterministic
// encoder sorts keys itself. For every valid entry the two must give the same bytes, or leaf hashes
// (and every checkpoint root) would depend on which path encoded the entry.

const digest = fc.uint8Array({ minLength: 32, maxLength: 32 });
const uint = fc.oneof(fc.nat(), fc.maxSafeNat(), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));
const text = fc.string({ unit: "grapheme", maxLength: 40 });
const reason = fc.constantFrom(...DENIAL_REASONS);
const code = fc.constantFrom(...(Object.keys(DENIAL_CODES) as (keyof typeof DENIAL_CODES)[]));
const opt = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined });

const time = fc.record({
  wallMs: fc.maxSafeNat(),
  monoUs: fc.maxSafeNat(),
  tpm: opt(fc.record({ clock: uint, resetCount: fc.nat(), restartCount: fc.nat() })),
});
const refs = fc.array(fc.record({ index: fc.maxSafeNat(), leafHash: digest }), { maxLength: 5 });

// Optional fields come out as present or undefined: encodeEntry must skip undefined ones as encode() does.
const bodies: Record<Entry["type"], fc.Arbitrary<unknown>> = {
  daemon_start: fc.record({ reason: text, configDigest: digest, policyDigest: digest }),
  epoch: fc.record({
    quote: fc.uint8Array({ maxLength: 300 }),
    issuerKey: fc.uint8Array({ maxLength: 100 }),
    verified: fc.boolean(),
    reason: opt(reason),
    evidence: opt(fc.array(digest, { maxLength: 3 })),
    hsmSignature: opt(fc.uint8Array({ maxLength: 80 })),
  }),
  request: fc.record({
    requestId: text,
    scope: text,
    actionDigest: digest,
    peer: fc.record({ uid: fc.nat(), gid: fc.nat(), pid: fc.nat(), exeDigest: opt(digest) }),
  }),
  decision: fc.record({ allow: fc.boolean(), reason: opt(reason), code: opt(code) }),
  token_issued: fc.record({ digest }),
  token_redeemed: fc.record({ token: fc.uint8Array({ maxLength: 300 }) }),
  execution_report: fc.record({
    token: fc.uint8Array({ maxLength: 300 }),
    exitCode: opt(fc.integer()),
    signal: opt(text),
    durationMs: fc.nat(),
  }),
  policy_loaded: fc.record({ policyDigest: digest, source: text }),
  recovery: fc.record({ reason: text, truncatedBytes: fc.nat(), recoveredSize: fc.nat() }),
  daemon_stop: fc.record({ reason: text }),
  denial_repeats: fc.record({
    reason,
    code: opt(code),
    uid: opt(fc.nat()),
    count: fc.nat(),
    firstMs: fc.maxSafeNat(),
    lastMs: fc.maxSafeNat(),
    windowMs: fc.nat(),
  }),
};

const entry: fc.Arbitrary<Entry> = fc.oneof(
  ...Object.entries(bodies).map(([type, body]) =>
    fc
      .tuple(time, body, refs)
      .map(([t, b, r]) => makeEntry(type as Entry["type"], t as EntryTime, b as never, r)),
  ),
);

/** The entry as the generic encoder sees it (undefined fields are skipped by encode()). */
function generic(e: Entry): CborValue {
  return {
    v: e.version,
    type: e.type,
    time: e.time as unknown as CborValue,
    refs: e.refs.map((r) => [r.index, r.leafHash]),
    body: e.body as unknown as CborValue,
  };
}

describe("encodeEntry (schema-driven) against the generic deterministic encoder", () => {
  it("gives the same bytes for every valid entry, and decodes back to an entry that re-encodes identically", () => {
    fc.assert(
      fc.property(entry, (e) => {
        const bytes = encodeEntry(e);
        expect(bytes).toEqual(encode(generic(e)));
        expect(encodeEntry(decodeEntry(bytes))).toEqual(bytes);
      }),
      { numRuns: 500 },
    );
  });

  it("leaves the shared writer clean after a rejected entry", () => {
    const good = makeEntry("decision", { wallMs: 1, monoUs: 2 }, { allow: true });
    const before = encodeEntry(good);
    expect(() =>
      encodeEntry(makeEntry("decision", { wallMs: 1, monoUs: 2 }, { allow: true, extra: 1 } as never)),
    ).toThrow(/unknown field extra/);
    expect(encodeEntry(good)).toEqual(before);
  });
});
