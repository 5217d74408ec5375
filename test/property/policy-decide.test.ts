import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { EvidenceState } from "../../src/attest/evidence.js";
import { DENIAL_REASONS, type DenialReason } from "../../src/core/denial.js";
import { type AccessPeer, evaluateAccess } from "../../src/policy/access.js";
import { type DecideInput, decide } from "../../src/policy/decide.js";
import { parsePolicy } from "../../src/policy/load.js";

const H = (c: string) => c.repeat(64);
const bytes = (c: string) => new Uint8Array(Buffer.from(H(c), "hex"));

const policy = parsePolicy(
  `
[[executors]]
name = "trainer"
uids = [1000]
exe_sha256 = ["${H("a")}"]
scopes = ["train", "dev"]
[[executors]]
name = "ops"
gids = [50]
units = ["ops.service"]
scopes = ["dev", "admin"]
[scopes.train]
ttl_s = 30
fresh = true
[scopes.dev]
ttl_s = 300
actions = ["${H("b")}"]
[scopes.admin]
ttl_s = 5
audiences = ["execgate", "gw"]
`,
  "/etc/execgate",
);

const EXPECTED = { bootId: "b0" };
const POLICY_DIGEST = bytes("f");

// Times near each other so that every branch is reached often, plus the odd non-finite value.
const time = fc.oneof(
  { weight: 20, arbitrary: fc.integer({ min: 0, max: 20_000 }) },
  { weight: 1, arbitrary: fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, -1e18, 1e18) },
);

// The monotonic clock's µs on the same scale as `time`'s ms (evidence ages cross the maximum).
const monoTime = time.map((t) => t * 1000);

const integrity = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ ok: true } as const) },
  {
    weight: 1,
    arbitrary: fc.record({
      ok: fc.constant(false as const),
      reason: fc.constantFrom(...DENIAL_REASONS),
      detail: fc.string(),
    }),
  },
);

const evidence: fc.Arbitrary<EvidenceState | undefined> = fc.option(
  fc.record({
    epochSeq: fc.nat(),
    epochHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    startedAtMs: time,
    startedMonoUs: monoTime,
    verifiedAtMs: time,
    bootId: fc.constantFrom("b0", "b0", "b0", "b1"),
    resetCount: fc.constantFrom(3, 3, 3, 4),
    restartCount: fc.constantFrom(1, 1, 1, 0),
    pcrDigest: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    policyDigest: fc.oneof(
      { weight: 15, arbitrary: fc.constant(POLICY_DIGEST) },
      { weight: 1, arbitrary: fc.constant(bytes("0")) },
    ),
    integrity,
  }),
  { nil: undefined, freq: 8 },
);

const peer: fc.Arbitrary<AccessPeer> = fc.record(
  {
    uid: fc.constantFrom(1000, 0, 50, 4242),
    gid: fc.constantFrom(1000, 50, 0),
    exe: fc.constantFrom("/usr/bin/python3.12", "/bin/sh"),
    exePathVerified: fc.boolean(),
    exeSha256: fc.oneof(fc.constantFrom(H("a"), H("A"), H("c")), fc.string()),
    unit: fc.constantFrom("ops.service", "other.service"),
  },
  { requiredKeys: ["uid", "gid", "exe", "exePathVerified", "exeSha256"] },
);

const request = fc.record(
  {
    scope: fc.oneof(
      fc.constantFrom("train", "dev", "admin", "nope", "constructor", "__proto__"),
      fc.string(),
    ),
    action: fc.oneof(fc.constant(bytes("b")), fc.uint8Array({ maxLength: 40 })),
    audience: fc.constantFrom("execgate", "gw", "x"),
  },
  { requiredKeys: ["scope", "action"] },
);

const input: fc.Arbitrary<DecideInput> = fc.record({
  policy: fc.constant(policy),
  evidence,
  policyDigest: fc.constant(POLICY_DIGEST),
  peer,
  request,
  nowMonoUs: monoTime,
  requestLoggedMonoUs: monoTime,
  maxEvidenceAgeMs: fc.oneof(fc.integer({ min: -10, max: 10_000 }), fc.constant(Number.NaN)),
  expected: fc.constant(EXPECTED),
});

describe("decide: properties", () => {
  it("never throws and always returns a well-formed decision", () => {
    fc.assert(
      fc.property(input, (i) => {
        const d = decide(i);
        if (d.allow) {
          expect(d.grant.ttlS).toBeGreaterThan(0);
          expect(typeof d.grant.executor).toBe("string");
        } else {
          expect(DENIAL_REASONS).toContain(d.reason);
          expect(typeof d.detail).toBe("string");
        }
      }),
      { numRuns: 5000 },
    );
  });

  it("never allows on missing, failed, mismatched or stale evidence, or when access denies", () => {
    fc.assert(
      fc.property(input, (i) => {
        const d = decide(i);
        const e = i.evidence;
        if (e === undefined) {
          expect(d).toMatchObject({ allow: false, reason: "attestation_missing" });
          return;
        }
        if (!Buffer.from(e.policyDigest).equals(POLICY_DIGEST)) {
          expect(d).toMatchObject({ allow: false, reason: "attestation_stale" });
          return;
        }
        if (!e.integrity.ok) {
          expect(d).toMatchObject({ allow: false, reason: e.integrity.reason });
          return;
        }
        if (!d.allow) return;
        // Everything below must hold whenever decide allowed.
        expect(e.bootId).toBe(EXPECTED.bootId);
        // Aged on the monotonic clock (µs), whatever the wall-clock times say.
        const ageUs = i.nowMonoUs - e.startedMonoUs;
        expect(Number.isFinite(ageUs)).toBe(true);
        expect(ageUs).toBeGreaterThanOrEqual(0);
        expect(ageUs).toBeLessThanOrEqual(i.maxEvidenceAgeMs * 1000);
        const a = evaluateAccess(i.policy.access, i.peer, i.request);
        expect(a.ok).toBe(true);
        if (a.ok && a.scope.fresh) expect(e.startedMonoUs).toBeGreaterThanOrEqual(i.requestLoggedMonoUs);
        if (a.ok)
          expect(d.grant).toEqual({
            executor: a.executor,
            scope: a.scope.name,
            ttlS: a.scope.ttlS,
            audience: a.scope.audience,
          });
      }),
      { numRuns: 5000 },
    );
  });

  it("reaches every reason it can produce (the generators are not vacuous)", () => {
    const seen = new Set<DenialReason | "allow">();
    fc.assert(
      fc.property(input, (i) => {
        const d = decide(i);
        seen.add(d.allow ? "allow" : d.reason);
      }),
      // An allow needs every generated dimension to line up: enough runs to meet one.
      { numRuns: 20_000, seed: 1 },
    );
    for (const r of [
      "allow",
      "attestation_missing",
      "environment_mismatch",
      "attestation_stale",
      "peer_unknown",
      "scope_not_allowed",
      "policy_mismatch",
      "internal_error",
    ] as const) {
      expect(seen, r).toContain(r);
    }
  });
});
