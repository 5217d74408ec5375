import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type CborKey, CborTag, type CborValue, decode, encode } from "../../src/cbor/index.js";
import { ExecgateError } from "../../src/core/errors.js";

const key: fc.Arbitrary<CborKey> = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 12 }),
  fc.integer({ min: -1000, max: 100000 }),
  fc.bigInt({ min: -(1n << 64n), max: (1n << 64n) - 1n }),
);

const { value } = fc.letrec<{ value: CborValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.maxSafeInteger(),
    fc.bigInt({ min: -(1n << 64n), max: (1n << 64n) - 1n }),
    fc.string({ unit: "grapheme-composite", maxLength: 40 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.constantFrom(true, false, null),
    fc.array(tie("value"), { maxLength: 5 }),
    fc
      .array(fc.tuple(key, tie("value")), { maxLength: 5 })
      .map((kv) => new Map(kv.map(([k, v]) => [norm(k), v]))),
    fc.tuple(fc.integer({ min: 0, max: 100000 }), tie("value")).map(([t, v]) => new CborTag(t, v)),
  ),
}));

/** Keys: a bigint in the safe range is the same CBOR key as the number (the decoder normalises). */
function norm(k: CborKey): CborKey {
  return typeof k === "bigint" && k >= BigInt(Number.MIN_SAFE_INTEGER) && k <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(k)
    : k;
}

/** The decoder's view of a value: safe bigints become numbers. */
function normalise(v: CborValue): CborValue {
  if (typeof v === "bigint") return norm(v);
  if (Array.isArray(v)) return (v as readonly CborValue[]).map(normalise);
  if (v instanceof Map) {
    return new Map([...(v as ReadonlyMap<CborKey, CborValue>)].map(([k, x]) => [norm(k), normalise(x)]));
  }
  if (v instanceof CborTag) return new CborTag(v.tag, normalise(v.value));
  return v;
}

describe("cbor properties", () => {
  it("decode∘encode is the identity (up to bigint→number normalisation)", () => {
    fc.assert(
      fc.property(value, (v) => {
        expect(decode(encode(v))).toEqual(normalise(v));
      }),
      { numRuns: 2000 },
    );
  });

  it("encoding is canonical: encode(decode(encode(v))) has the same bytes", () => {
    fc.assert(
      fc.property(value, (v) => {
        const b = encode(v);
        expect(encode(decode(b))).toEqual(b);
      }),
      { numRuns: 2000 },
    );
  });

  it("any accepted input re-encodes to itself; mutated inputs throw only ExecgateError", () => {
    fc.assert(
      fc.property(
        value,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: -3, max: 3 }),
        (v, edits, trim) => {
          const b = encode(v).slice();
          for (const [i, x] of edits) b[i % b.length] = x;
          const input = trim < 0 ? b.subarray(0, Math.max(0, b.length + trim)) : b;
          try {
            const back = decode(input);
            // Whatever the strict decoder accepts must be exactly the deterministic encoding.
            expect(encode(back)).toEqual(input);
          } catch (e) {
            if (!(e instanceof ExecgateError)) throw e;
          }
        },
      ),
      { numRuns: 5000 },
    );
  });

  it("random bytes throw only ExecgateError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        try {
          const back = decode(b);
          expect(encode(back)).toEqual(b);
        } catch (e) {
          if (!(e instanceof ExecgateError)) throw e;
        }
      }),
      { numRuns: 10000 },
    );
  });
});
