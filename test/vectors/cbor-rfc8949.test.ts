import { describe, expect, it } from "vitest";
import { CborTag, type CborValue, decode, encode } from "../../src/cbor/index.js";
import { isExecgateError } from "../../src/core/errors.js";
import { fromHex, toHex } from "../../src/core/hex.js";

/**
 * RFC 8949 Appendix A examples that lie in the deterministic subset we support (integers,
 * strings, arrays, maps, simple false/true/null, tags). Floats, undefined, other simple
 * values and indefinite-length examples are listed separately: the decoder must reject them.
 */
const m = (...kv: [string | number, CborValue][]): Map<string | number, CborValue> => new Map(kv);

const ACCEPTED: [string, CborValue][] = [
  ["00", 0],
  ["01", 1],
  ["0a", 10],
  ["17", 23],
  ["1818", 24],
  ["1819", 25],
  ["1864", 100],
  ["1903e8", 1000],
  ["1a000f4240", 1000000],
  ["1b000000e8d4a51000", 1000000000000],
  ["1bffffffffffffffff", 18446744073709551615n],
  ["3bffffffffffffffff", -18446744073709551616n],
  ["20", -1],
  ["29", -10],
  ["3863", -100],
  ["3903e7", -1000],
  ["f4", false],
  ["f5", true],
  ["f6", null],
  ["c074323031332d30332d32315432303a30343a30305a", new CborTag(0, "2013-03-21T20:04:00Z")],
  ["c11a514b67b0", new CborTag(1, 1363896240)],
  ["d74401020304", new CborTag(23, fromHex("01020304"))],
  ["d818456449455446", new CborTag(24, fromHex("6449455446"))],
  ["d82076687474703a2f2f7777772e6578616d706c652e636f6d", new CborTag(32, "http://www.example.com")],
  ["40", new Uint8Array(0)],
  ["4401020304", fromHex("01020304")],
  ["60", ""],
  ["6161", "a"],
  ["6449455446", "IETF"],
  ["62225c", '"\\'],
  ["62c3bc", "\u00fc"],
  ["63e6b0b4", "\u6c34"],
  ["64f0908591", "\u{10151}"],
  ["80", []],
  ["83010203", [1, 2, 3]],
  ["8301820203820405", [1, [2, 3], [4, 5]]],
  ["98190102030405060708090a0b0c0d0e0f101112131415161718181819", Array.from({ length: 25 }, (_, i) => i + 1)],
  ["a0", m()],
  ["a201020304", m([1, 2], [3, 4])],
  ["a26161016162820203", m(["a", 1], ["b", [2, 3]])],
  ["826161a161626163", ["a", m(["b", "c"])]],
  [
    "a56161614161626142616361436164614461656145",
    m(["a", "A"], ["b", "B"], ["c", "C"], ["d", "D"], ["e", "E"]),
  ],
];

/** In Appendix A but outside the deterministic subset we accept. */
const REJECTED: [string, string][] = [
  ["c249010000000000000000", "bignum tag 2 — accepted as a tag, see below"],
  ["f90000", "half float 0.0"],
  ["f93c00", "half float 1.0"],
  ["fb3ff199999999999a", "double 1.1"],
  ["fa47c35000", "single 100000.0"],
  ["f97c00", "Infinity"],
  ["f97e00", "NaN"],
  ["f7", "undefined"],
  ["f0", "simple(16)"],
  ["f8ff", "simple(255)"],
  ["5f42010243030405ff", "indefinite byte string"],
  ["7f657374726561646d696e67ff", "indefinite text string"],
  ["9fff", "indefinite array"],
  ["9f018202039f0405ffff", "indefinite nested array"],
  ["bf61610161629f0203ffff", "indefinite map"],
];

describe("cbor RFC 8949 Appendix A (deterministic subset)", () => {
  for (const [hex, value] of ACCEPTED) {
    it(`decodes and re-encodes ${hex}`, () => {
      expect(decode(fromHex(hex))).toEqual(value);
      expect(toHex(encode(value))).toBe(hex);
    });
  }

  for (const [hex, what] of REJECTED.slice(1)) {
    it(`rejects ${what} (${hex})`, () => {
      let err: unknown;
      try {
        decode(fromHex(hex));
      } catch (e) {
        err = e;
      }
      expect(isExecgateError(err)).toBe(true);
    });
  }

  it("keeps bignum tags as tags (tag 2 over a byte string)", () => {
    const [hex] = REJECTED[0]!;
    expect(decode(fromHex(hex))).toEqual(new CborTag(2, fromHex("010000000000000000")));
  });

  it("the RFC 8949 §4.2.1 key order example sorts by encoded bytes", () => {
    // 10, 100, -1, "z", "aa", [100], [-1], false — only integer/text keys are supported here.
    const map = new Map<string | number, CborValue>([
      ["aa", 0],
      [-1, 0],
      ["z", 0],
      [100, 0],
      [10, 0],
    ]);
    expect(toHex(encode(map))).toBe("a50a001864002000617a00626161" + "00");
  });
});

describe("cbor rejects non-deterministic encodings", () => {
  const bad: [string, string, string][] = [
    ["1805", "non-shortest uint (1 byte arg < 24)", "malformed"],
    ["190005", "non-shortest uint (2 bytes)", "malformed"],
    ["1a00000005", "non-shortest uint (4 bytes)", "malformed"],
    ["1b0000000000000005", "non-shortest uint (8 bytes)", "malformed"],
    ["3800", "non-shortest nint", "malformed"],
    ["5801ff", "non-shortest byte string length", "malformed"],
    ["780161", "non-shortest text length", "malformed"],
    ["9800", "non-shortest array count", "malformed"],
    ["b800", "non-shortest map count", "malformed"],
    ["d80100", "non-shortest tag", "malformed"],
    ["a2616201616101", "unsorted keys", "malformed"],
    ["a2616101616101", "duplicate keys", "malformed"],
    ["a2186401 0a01".replace(" ", ""), "integer keys out of order", "malformed"],
    ["a1413001", "byte-string key", "unsupported"],
    ["62c328", "invalid UTF-8", "malformed"],
    ["63eda080", "UTF-8 surrogate", "malformed"],
    ["0000", "trailing bytes", "trailing_bytes"],
    ["", "empty input", "truncated"],
    ["83 01 02".replaceAll(" ", ""), "short array", "truncated"],
    ["5b ffffffffffffffff".replace(" ", ""), "huge byte string length", "truncated"],
    ["9b ffffffffffffffff".replace(" ", ""), "huge array count", "truncated"],
    ["ff", "lone break", "malformed"],
    ["1c", "reserved additional info 28", "malformed"],
  ];
  for (const [hex, what, code] of bad) {
    it(`rejects ${what}`, () => {
      expect(() => decode(fromHex(hex))).toThrow(expect.objectContaining({ code }));
    });
  }

  it("enforces depth, item and length limits", () => {
    const deep = fromHex(`${"81".repeat(40)}00`);
    expect(() => decode(deep)).toThrow(expect.objectContaining({ code: "limit_exceeded" }));
    expect(decode(deep, { maxDepth: 41 })).toBeDefined();
    expect(() => decode(fromHex("83010203"), { maxItems: 3 })).toThrow(
      expect.objectContaining({ code: "limit_exceeded" }),
    );
    expect(() => decode(fromHex("4401020304"), { maxLength: 3 })).toThrow(
      expect.objectContaining({ code: "limit_exceeded" }),
    );
  });
});

describe("cbor encoder", () => {
  it("encodes plain objects like maps, skipping undefined properties", () => {
    const fromObject = encode({ b: [2, 3], a: 1, c: undefined });
    expect(toHex(fromObject)).toBe("a26161016162820203");
  });

  it("rejects floats, unsafe numbers, duplicate keys and lone surrogates", () => {
    for (const v of [
      1.5,
      Number.NaN,
      2 ** 60,
      new Map<number | bigint, CborValue>([
        [1, 0],
        [1n, 0],
      ]),
      "\ud800",
    ]) {
      expect(() => encode(v as CborValue)).toThrow(expect.objectContaining({ code: "malformed" }));
    }
    expect(() => encode(1n << 64n)).toThrow(expect.objectContaining({ code: "malformed" }));
    expect(toHex(encode(-(1n << 64n)))).toBe("3bffffffffffffffff");
  });

  it("normalises bigint in the safe range to the same bytes as number", () => {
    expect(encode(1000n)).toEqual(encode(1000));
    expect(decode(encode(2n ** 53n))).toBe(2n ** 53n);
    expect(decode(encode(2 ** 53 - 1))).toBe(2 ** 53 - 1);
    expect(decode(encode(-(2n ** 53n)))).toBe(-(2n ** 53n));
  });
});
