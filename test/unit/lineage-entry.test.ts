import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decode, encode } from "../../src/cbor/index.js";
import { ExecgateError } from "../../src/core/errors.js";
import { toHex } from "../../src/core/hex.js";
import {
  decodeEntry,
  type Entry,
  encodeEntry,
  MAX_ENTRY_BYTES,
  MAX_ENTRY_READ_BYTES,
  makeEntry,
} from "../../src/lineage/entry.js";

const d32 = (b: number): Uint8Array => new Uint8Array(32).fill(b);
const time = { wallMs: 1_764_000_000_000, monoUs: 123_456 };

const SAMPLES: Entry[] = [
  makeEntry("daemon_start", time, { reason: "boot", configDigest: d32(1), policyDigest: d32(2) }),
  makeEntry(
    "epoch",
    { ...time, tpm: { clock: 99_000, resetCount: 3, restartCount: 0 } },
    {
      quote: Uint8Array.of(1, 2, 3),
      issuerKey: d32(9),
      verified: false,
      reason: "pcr_mismatch",
      evidence: [d32(4)],
    },
    [{ index: 0, leafHash: d32(5) }],
  ),
  makeEntry("request", time, {
    requestId: "r-1",
    scope: "inference",
    actionDigest: d32(6),
    peer: { uid: 1000, gid: 1000, pid: 4242, exeDigest: d32(7) },
  }),
  makeEntry("decision", time, { allow: false, reason: "attestation_stale" }, [
    { index: 2, leafHash: d32(8) },
  ]),
  makeEntry("decision", time, { allow: true }),
  makeEntry("token_issued", time, { digest: d32(10) }),
  makeEntry("token_redeemed", time, { token: Uint8Array.of(0xaa) }),
  makeEntry("execution_report", time, {
    token: Uint8Array.of(0xaa),
    exitCode: -1,
    signal: "SIGKILL",
    durationMs: 5,
  }),
  makeEntry("policy_loaded", time, { policyDigest: d32(11), source: "/etc/execgate/policy.toml" }),
  makeEntry("recovery", time, { reason: "torn tail", truncatedBytes: 17, recoveredSize: 100 }),
  makeEntry("daemon_stop", time, { reason: "SIGTERM" }),
  makeEntry("decision", time, { allow: false, reason: "request_malformed", code: "frame_too_large" }),
  makeEntry(
    "denial_repeats",
    time,
    {
      reason: "request_malformed",
      code: "frame_too_large",
      uid: 65534,
      count: 599,
      firstMs: 1_764_000_000_001,
      lastMs: 1_764_000_000_413,
      windowMs: 10_000,
    },
    [{ index: 12, leafHash: d32(12) }],
  ),
  makeEntry("denial_repeats", time, {
    reason: "peer_unknown",
    count: 1,
    firstMs: 5,
    lastMs: 5,
    windowMs: 100,
  }),
];

describe("lineage entries", () => {
  for (const e of SAMPLES) {
    it(`${e.type} round-trips canonically`, () => {
      const b = encodeEntry(e);
      const back = decodeEntry(b);
      expect(encodeEntry(back)).toEqual(b);
      expect(back.type).toBe(e.type);
      expect(back.body).toEqual(e.body);
    });
  }

  it("has a stable, documented encoding (golden bytes for daemon_stop)", () => {
    const b = encodeEntry(makeEntry("daemon_stop", { wallMs: 1, monoUs: 2 }, { reason: "x" }, []));
    expect(toHex(b)).toBe(
      [
        "a5", // map(5), keys in bytewise order of their encodings
        "6176",
        "01", // "v": 1
        "64626f6479",
        "a1",
        "66726561736f6e",
        "6178", // "body": {"reason": "x"}
        "6472656673",
        "80", // "refs": []
        "6474696d65",
        "a2",
        "666d6f6e6f5573",
        "02",
        "6677616c6c4d73",
        "01", // "time": {"monoUs": 2, "wallMs": 1}
        "6474797065",
        "6b6461656d6f6e5f73746f70", // "type": "daemon_stop"
      ].join(""),
    );
  });

  it("rejects unknown fields, types, bad digests and bad reasons", () => {
    const good = decode(encodeEntry(SAMPLES[0]!)) as Map<string, unknown>;
    const variants: Map<string, unknown>[] = [
      new Map([...good, ["extra", 1]]),
      new Map([...good, ["type", "nope"]]),
      new Map([...good, ["v", 2]]),
      new Map([...good, ["body", new Map([["reason", "x"]])]]),
    ];
    for (const v of variants) {
      expect(() => decodeEntry(encode(v as never))).toThrow(expect.objectContaining({ code: "malformed" }));
    }
    expect(() =>
      encodeEntry(makeEntry("decision", time, { allow: false, reason: "not_a_reason" as "rate_limited" })),
    ).toThrow(expect.objectContaining({ code: "malformed" }));
    expect(() => encodeEntry(makeEntry("token_issued", time, { digest: new Uint8Array(31) }))).toThrow(
      expect.objectContaining({ code: "malformed" }),
    ); // Denial codes are a closed set too.
    expect(() =>
      encodeEntry(
        makeEntry("decision", time, { allow: false, reason: "request_malformed", code: "too_big" as never }),
      ),
    ).toThrow(expect.objectContaining({ code: "malformed" }));
    const repeats = decode(encodeEntry(SAMPLES[SAMPLES.length - 1]!)) as Map<string, unknown>;
    const body = repeats.get("body") as Map<string, unknown>;
    for (const bad of [
      new Map([...body, ["code", "too_big"]]),
      new Map([...body, ["count", -1]]),
      new Map([...body].filter(([k]) => k !== "windowMs")),
      new Map([...body, ["uid", "nobody"]]),
    ])
      expect(() => decodeEntry(encode(new Map([...repeats, ["body", bad]]) as never))).toThrow(
        expect.objectContaining({ code: "malformed" }),
      );
  });

  it("rejects fields a plain object inherits (constructor, toString, __proto__…), decoding and encoding", () => {
    const decision = decode(encodeEntry(makeEntry("decision", time, { allow: true }))) as Map<
      string,
      unknown
    >;
    for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"]) {
      const body = new Map<string, unknown>([
        ["allow", true],
        [name, "x"],
      ]);
      expect(() => decodeEntry(encode(new Map([...decision, ["body", body]]) as never)), name).toThrow(
        expect.objectContaining({ code: "malformed" }),
      );
      const peer = new Map<string, unknown>([
        ["uid", 1],
        ["gid", 1],
        ["pid", 1],
        ["exeDigest", d32(7)],
        [name, 1],
      ]);
      const request = decode(encodeEntry(SAMPLES[2]!)) as Map<string, unknown>;
      const reqBody = new Map([...(request.get("body") as Map<string, unknown>), ["peer", peer]]);
      expect(() => decodeEntry(encode(new Map([...request, ["body", reqBody]]) as never)), name).toThrow(
        expect.objectContaining({ code: "malformed" }),
      );
    }
    const extra = JSON.parse('{"allow": true, "constructor": 1, "toString": 2}');
    expect(() => encodeEntry(makeEntry("decision", time, extra))).toThrow(
      expect.objectContaining({ code: "malformed" }),
    );
  });

  it("enforces the limits: 65,535 bytes for new entries, 64 KiB when reading", () => {
    const big = makeEntry("token_redeemed", time, { token: new Uint8Array(MAX_ENTRY_BYTES) });
    expect(() => encodeEntry(big)).toThrow(expect.objectContaining({ code: "limit_exceeded" }));
    expect(() => decodeEntry(new Uint8Array(MAX_ENTRY_READ_BYTES + 1))).toThrow(
      expect.objectContaining({ code: "limit_exceeded" }),
    );
  });

  it("decodeEntry throws only ExecgateError on mutated entries", () => {
    const encoded = SAMPLES.map(encodeEntry);
    fc.assert(
      fc.property(
        fc.nat(SAMPLES.length - 1),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        (which, pos, byte) => {
          const b = encoded[which]!.slice();
          b[pos % b.length] = byte;
          try {
            const e = decodeEntry(b);
            expect(encodeEntry(e)).toEqual(b);
          } catch (err) {
            if (!(err instanceof ExecgateError)) throw err;
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});
