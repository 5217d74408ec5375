import { describe, expect, it } from "vitest";
import type { EvidenceState } from "../../src/attest/evidence.js";
import type { AccessPeer } from "../../src/policy/access.js";
import { type DecideInput, decide, WAITING_FOR_FRESH_EPOCH } from "../../src/policy/decide.js";
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

[scopes.train]
ttl_s = 30
fresh = true

[scopes.dev]
ttl_s = 300
actions = ["${H("b")}"]
`,
  "/etc/execgate",
);

const peer: AccessPeer = {
  uid: 1000,
  gid: 1000,
  exe: "/usr/bin/python3.12",
  exePathVerified: true,
  exeSha256: H("a"),
};

const evidence: EvidenceState = {
  epochSeq: 42,
  epochHash: bytes("e"),
  startedAtMs: 10_000,
  // The same moment on the monotonic clock, which has another origin.
  startedMonoUs: 7_000_000,
  verifiedAtMs: 10_020,
  bootId: "b0",
  resetCount: 3,
  restartCount: 1,
  pcrDigest: bytes("d"),
  policyDigest: bytes("f"),
  integrity: { ok: true },
};

const base: DecideInput = {
  policy,
  evidence,
  policyDigest: bytes("f"),
  peer,
  request: { scope: "dev", action: bytes("b") },
  // 1000 ms after the epoch started, on the monotonic clock.
  nowMonoUs: 8_000_000,
  requestLoggedMonoUs: 7_900_000,
  maxEvidenceAgeMs: 5000,
  expected: { bootId: "b0" },
};

type Patch = {
  evidence?: Partial<EvidenceState> | "missing";
  peer?: Partial<AccessPeer>;
  request?: Partial<DecideInput["request"]>;
  top?: Partial<Omit<DecideInput, "evidence" | "peer" | "request">>;
};

function input(p: Patch): DecideInput {
  return {
    ...base,
    ...p.top,
    evidence: p.evidence === "missing" ? undefined : { ...evidence, ...p.evidence },
    peer: { ...peer, ...p.peer },
    request: { ...base.request, ...p.request },
  };
}

const failed = (
  reason: "pcr_mismatch" | "quote_invalid" | "ima_violation" | "eventlog_mismatch" | "hardware_unavailable",
) => ({ integrity: { ok: false, reason, detail: `rule says ${reason}` } }) as const;

describe("decide: every branch", () => {
  const rows: [string, Patch, string, RegExp?][] = [
    ["all checks pass", {}, "allow"],
    ["1 no evidence", { evidence: "missing" }, "attestation_missing"],
    [
      "2 judged under another policy (before a reload)",
      { evidence: { policyDigest: bytes("0") } },
      "attestation_stale",
      /^epoch judged under another policy$/,
    ],
    [
      "2 judged under no recorded policy",
      { evidence: { policyDigest: new Uint8Array() }, top: { policyDigest: new Uint8Array() } },
      "attestation_stale",
    ],
    [
      "2 integrity: pcr_mismatch",
      { evidence: failed("pcr_mismatch") },
      "pcr_mismatch",
      /epoch 42: rule says/,
    ],
    ["2 integrity: quote_invalid", { evidence: failed("quote_invalid") }, "quote_invalid"],
    ["2 integrity: eventlog_mismatch", { evidence: failed("eventlog_mismatch") }, "eventlog_mismatch"],
    ["2 integrity: ima_violation", { evidence: failed("ima_violation") }, "ima_violation"],
    [
      "2 integrity: hardware_unavailable",
      { evidence: failed("hardware_unavailable") },
      "hardware_unavailable",
    ],
    ["3 boot id differs", { evidence: { bootId: "b1" } }, "environment_mismatch", /boot id/],
    [
      "3 empty expected boot id",
      { evidence: { bootId: "" }, top: { expected: { bootId: "" } } },
      "environment_mismatch",
    ],
    // A TPM reset is survived: tokens issued before it die at redeem (Gate.redeem), new ones
    // are issued on the reset TPM's verified epochs.
    ["3 TPM reset alone", { evidence: { resetCount: 4 } }, "allow"],
    ["3 TPM restart alone", { evidence: { restartCount: 2 } }, "allow"],
    [
      "4 evidence too old",
      { top: { nowMonoUs: 12_001_000 } },
      "attestation_stale",
      /started 5001 ms ago > 5000/,
    ],
    ["4 evidence exactly at the limit", { top: { nowMonoUs: 12_000_000 } }, "allow"],
    [
      "4 age counts from the epoch's start (its nonce), not from its verification",
      { top: { nowMonoUs: 12_010_000 } },
      "attestation_stale",
    ],
    ["4 evidence from the future", { top: { nowMonoUs: 6_999_000 } }, "attestation_stale", /future/],
    [
      "4 age is measured on the monotonic clock: a wall clock stepped back does not make old evidence young",
      { evidence: { startedAtMs: 10_000_000, verifiedAtMs: 10_000_020 }, top: { nowMonoUs: 12_001_000 } },
      "attestation_stale",
      /started 5001 ms ago/,
    ],
    [
      "4 age is measured on the monotonic clock: a wall clock stepped forward does not age young evidence",
      { evidence: { startedAtMs: 0, verifiedAtMs: 20 } },
      "allow",
    ],
    ["5 unknown caller", { peer: { uid: 1 } }, "peer_unknown"],
    ["5 unknown executable", { peer: { exeSha256: H("c") } }, "peer_unknown"],
    ["5 scope not granted", { request: { scope: "admin" } }, "scope_not_allowed"],
    ["5 action not allowed", { request: { action: bytes("c") } }, "policy_mismatch"],
    ["5 audience not allowed", { request: { audience: "elsewhere" } }, "policy_mismatch"],
    [
      "6 fresh scope, epoch started before the request",
      { request: { scope: "train" } },
      "attestation_stale",
      /^waiting for a fresh epoch$/,
    ],
    [
      "6 fresh scope, epoch started at the request",
      { request: { scope: "train" }, top: { requestLoggedMonoUs: 7_000_000 } },
      "allow",
    ],
    [
      "6 fresh scope, epoch started after the request",
      { request: { scope: "train" }, top: { requestLoggedMonoUs: 6_000_000 } },
      "allow",
    ],
    [
      "6 fresh scope: only the monotonic clock orders the epoch and the request (the wall clock may step)",
      {
        request: { scope: "train" },
        evidence: { startedAtMs: 10_950 },
        top: { requestLoggedMonoUs: 7_000_001 },
      },
      "attestation_stale",
      /^waiting for a fresh epoch$/,
    ],
    ["6 not fresh: an older epoch is fine", { top: { requestLoggedMonoUs: 7_999_000 } }, "allow"],
    ["non-finite now", { top: { nowMonoUs: Number.NaN } }, "internal_error"],
    ["non-finite max age", { top: { maxEvidenceAgeMs: Number.POSITIVE_INFINITY } }, "internal_error"],
    ["negative max age", { top: { maxEvidenceAgeMs: -1 } }, "internal_error"],
    ["non-finite epoch start", { evidence: { startedMonoUs: Number.NaN } }, "internal_error"],
    [
      "non-finite monotonic epoch start, fresh scope",
      { evidence: { startedMonoUs: Number.NaN }, request: { scope: "train" } },
      "internal_error",
    ],
    [
      "non-finite times do not hide a missing epoch",
      { evidence: "missing", top: { nowMonoUs: Number.NaN } },
      "attestation_missing",
    ],
    [
      "non-finite request time",
      { request: { scope: "train" }, top: { requestLoggedMonoUs: Number.NaN } },
      "internal_error",
    ],
  ];
  it.each(rows)("%s", (_n, patch, want, detail) => {
    const d = decide(input(patch));
    if (want === "allow") {
      expect(d.allow).toBe(true);
    } else {
      expect(d).toMatchObject({ allow: false, reason: want });
      if (!d.allow) {
        expect(d.detail.length).toBeGreaterThan(0);
        if (detail) expect(d.detail).toMatch(detail);
      }
    }
  });

  it("an allow carries the grant", () => {
    expect(decide(base)).toEqual({
      allow: true,
      grant: { executor: "trainer", scope: "dev", ttlS: 300, audience: "execgate" },
    });
    expect(decide({ ...base, defaultAudience: "gpu-7" })).toMatchObject({
      allow: true,
      grant: { audience: "gpu-7" },
    });
    expect(decide(input({ request: { scope: "train" }, top: { requestLoggedMonoUs: 7_000_000 } }))).toEqual({
      allow: true,
      grant: { executor: "trainer", scope: "train", ttlS: 30, audience: "execgate" },
    });
  });
});

describe("decide: the first failure wins", () => {
  // Each row breaks the named check and every later one; the named check's reason must win.
  const later = {
    environment: { bootId: "other" },
    stale: { startedMonoUs: 0 },
  };
  const rows: [string, Patch, string][] = [
    [
      "missing before everything",
      {
        evidence: "missing",
        peer: { uid: 1 },
        request: { scope: "train" },
        top: { nowMonoUs: Number.MAX_SAFE_INTEGER },
      },
      "attestation_missing",
    ],
    [
      "the judging policy before integrity and everything else",
      {
        evidence: { ...failed("pcr_mismatch"), policyDigest: bytes("0"), ...later.environment },
        peer: { uid: 1 },
      },
      "attestation_stale",
    ],
    [
      "integrity before environment, staleness, access, freshness",
      {
        evidence: { ...failed("pcr_mismatch"), ...later.environment, ...later.stale },
        peer: { uid: 1 },
        request: { scope: "train" },
      },
      "pcr_mismatch",
    ],
    [
      "environment before staleness, access, freshness",
      { evidence: { ...later.environment, ...later.stale }, peer: { uid: 1 }, request: { scope: "train" } },
      "environment_mismatch",
    ],
    [
      "staleness before access and freshness",
      { evidence: later.stale, peer: { uid: 1 }, request: { scope: "train" } },
      "attestation_stale",
    ],
    ["peer before scope", { peer: { uid: 1 }, request: { scope: "nope" } }, "peer_unknown"],
    ["scope before action", { request: { scope: "nope", action: bytes("c") } }, "scope_not_allowed"],
    ["access before freshness", { request: { scope: "train", audience: "elsewhere" } }, "policy_mismatch"],
  ];
  it.each(rows)("%s", (_n, patch, want) => {
    expect(decide(input(patch))).toMatchObject({ allow: false, reason: want });
  });

  it("a stale-evidence denial is not the fresh-epoch wait", () => {
    const d = decide(input({ evidence: { startedMonoUs: 0 }, request: { scope: "train" } }));
    expect(d).toMatchObject({ allow: false, reason: "attestation_stale" });
    if (!d.allow) expect(d.detail).not.toBe(WAITING_FOR_FRESH_EPOCH);
  });
});

describe("decide: never throws", () => {
  it("an exception inside becomes internal_error", () => {
    const exploding = {
      access: {
        get executors(): never {
          throw new Error("boom");
        },
        scopes: new Map(),
      },
    } as unknown as DecideInput["policy"];
    expect(decide({ ...base, policy: exploding })).toEqual({
      allow: false,
      reason: "internal_error",
      detail: "decide: boom",
    });
  });

  it("inputs that are not what the types say fail closed", () => {
    const junk = [
      { ...base, evidence: null as unknown as undefined },
      { ...base, evidence: { ...evidence, integrity: { ok: "yes" } } as unknown as EvidenceState },
      {
        ...base,
        evidence: {
          ...evidence,
          integrity: { ok: false, reason: "fine", detail: "" },
        } as unknown as EvidenceState,
      },
      { ...base, evidence: { ...evidence, integrity: undefined } as unknown as EvidenceState },
      { ...base, peer: undefined as unknown as AccessPeer },
      { ...base, request: { scope: "dev", action: undefined } as unknown as DecideInput["request"] },
      undefined as unknown as DecideInput,
    ];
    for (const j of junk) {
      const d = decide(j);
      expect(d.allow).toBe(false);
    }
    expect(decide(junk[1]!)).toMatchObject({ reason: "internal_error" });
    expect(decide(junk[2]!)).toMatchObject({ reason: "internal_error" });
  });
});
