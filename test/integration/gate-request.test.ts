import { generateKeyPairSync, type KeyObject } from "node:crypto";
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { EvidenceState } from "../../src/attest/evidence.js";
import type { AttestationLoop } from "../../src/attest/loop.js";
import { Gate } from "../../src/gate/gate.js";
import type { Entry } from "../../src/lineage/entry.js";
import type { LoadedPolicy } from "../../src/policy/load.js";
import { COSE_ALG } from "../../src/token/cose.js";
import { memoryTokenSigner } from "../../src/token/sign-thread.js";
import type { TokenSigner } from "../../src/token/signer.js";
import { DEV_REQUEST, lineageEntries, openTestLineage, policyGranting, TEST_PEER } from "../helpers/gate.js";
import { scratchDirs } from "../helpers/scratch.js";

// The gate's request path on a real lineage with a stand-in attestation loop and injected
// clocks: every way a request fails ends in a recorded denial with the right reason, decided
// under the policy in force and on evidence aged by the monotonic clock.

const scratch = scratchDirs("execgate-gate-request-");

const WALL0 = 1_700_000_000_000;
const MONO0 = 5_000_000_000;
const MAX_AGE_MS = 5_000;

interface Setup {
  readonly tokenSigner?: TokenSigner;
  readonly issuerPrivateKey?: KeyObject;
  readonly signatureTimeoutMs?: number;
  readonly skewS?: number;
}

async function setup(o: Setup = {}) {
  const dir = await scratch();
  const lineage = await openTestLineage(dir);
  const clock = { wallMs: WALL0, monoUs: MONO0 };
  const policies = {
    grantsDev: policyGranting(dir, ["dev"], 0xaa),
    grantsOther: policyGranting(dir, ["other"], 0xbb),
  };
  let inForce: LoadedPolicy = policies.grantsDev;
  /** A verified epoch started now (both clocks), judged under `judgedUnder`. */
  const epochNow = (judgedUnder: LoadedPolicy, seq = 1): EvidenceState => ({
    epochSeq: seq,
    epochHash: new Uint8Array(32).fill(seq),
    startedAtMs: clock.wallMs,
    startedMonoUs: clock.monoUs,
    verifiedAtMs: clock.wallMs,
    bootId: "b0",
    resetCount: 0,
    restartCount: 0,
    pcrDigest: new Uint8Array(32).fill(9),
    policyDigest: judgedUnder.digest,
    integrity: { ok: true },
  });
  const loop = {
    evidence: epochNow(inForce),
    /** What a request that waits for a fresh epoch gets (default: none comes in time). */
    onWait: async (): Promise<EvidenceState | undefined> => undefined,
  };
  const fakeLoop = {
    current: () => loop.evidence,
    touch: () => undefined,
    waitForEpochAfter: () => loop.onWait(),
    stats: { epochs: 1, failed: 0, lastDurationMs: 0 },
  } as unknown as AttestationLoop;
  const issuer = generateKeyPairSync("ed25519");
  const gate = new Gate({
    lineage,
    loop: fakeLoop,
    policy: () => inForce,
    tokenSigner:
      o.tokenSigner ?? memoryTokenSigner(o.issuerPrivateKey ?? issuer.privateKey, issuer.publicKey),
    ...(o.signatureTimeoutMs !== undefined ? { signatureTimeoutMs: o.signatureTimeoutMs } : {}),
    audience: "execgate",
    issuer: "execgate-test",
    skewS: o.skewS ?? 0,
    maxEvidenceAgeMs: MAX_AGE_MS,
    freshWaitMs: 100,
    bootId: "b0",
    ueid: new Uint8Array(33),
    now: () => clock.wallMs,
    monoUs: () => clock.monoUs,
    log: pino({ level: "silent" }),
  });
  const swapPolicy = (p: LoadedPolicy) => {
    inForce = p;
  };
  return { lineage, gate, clock, loop, policies, epochNow, swapPolicy };
}

function decisions(entries: readonly Entry[]) {
  return entries.filter((e) => e.type === "decision");
}

describe("the gate's request path", () => {
  it("an HSM token signature that never comes: hardware_unavailable at the deadline, recorded naming the allow; close() returns", async () => {
    const hsm = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const wedged: TokenSigner = {
      alg: COSE_ALG.ES256,
      publicKey: hsm.publicKey,
      sign: () => new Promise<Uint8Array>(() => undefined), // a PKCS#11 module that never returns
    };
    const { lineage, gate } = await setup({ tokenSigner: wedged, signatureTimeoutMs: 50 });
    // Two requests: a later signer does not queue behind the first one forever either.
    const rs = await Promise.all([
      gate.requestToken(TEST_PEER, DEV_REQUEST),
      gate.requestToken(TEST_PEER, DEV_REQUEST),
    ]);
    expect(rs).toEqual([
      { ok: false, reason: "hardware_unavailable" },
      { ok: false, reason: "hardware_unavailable" },
    ]);
    const entries = await lineageEntries(lineage);
    expect(entries.some((e) => e.type === "token_issued")).toBe(false);
    const denials = entries.filter((e) => e.type === "decision" && e.body.allow === false);
    expect(denials).toHaveLength(2);
    for (const d of denials) {
      expect(d.body).toMatchObject({ reason: "hardware_unavailable" });
      // Each names the durable allow it withdraws.
      expect(entries[d.refs[0]!.index]).toMatchObject({ type: "decision", body: { allow: true } });
    }
    await gate.close();
    await lineage.close();
  });

  it("one shape whatever signs: a signature that fails leaves request, allow, then the signer's denial naming the allow", async () => {
    const key = generateKeyPairSync("ed25519");
    for (const failure of ["internal_error", "hardware_unavailable"] as const) {
      const failing: TokenSigner = {
        alg: COSE_ALG.EdDSA,
        publicKey: key.publicKey,
        failure,
        sign: () => Promise.reject(new Error("no signature")),
      };
      const { lineage, gate } = await setup({ tokenSigner: failing });
      expect(await gate.requestToken(TEST_PEER, DEV_REQUEST)).toEqual({ ok: false, reason: failure });
      const entries = await lineageEntries(lineage);
      expect(entries.map((e) => e.type)).toEqual(["request", "decision", "decision"]);
      expect(entries[1]).toMatchObject({ body: { allow: true }, refs: [{ index: 0 }] });
      expect(entries[2]).toMatchObject({ body: { allow: false, reason: failure }, refs: [{ index: 1 }] });
      expect(entries[2]!.refs).toHaveLength(1);
      expect(lineage.failure).toBeUndefined();
      await gate.close();
      await lineage.close();
    }
  });

  it("an issuer key that cannot sign: internal_error, the request and its denial recorded (the lineage is fine)", async () => {
    const wrongType = generateKeyPairSync("x25519").privateKey;
    const { lineage, gate } = await setup({ issuerPrivateKey: wrongType });
    expect(await gate.requestToken(TEST_PEER, DEV_REQUEST)).toEqual({ ok: false, reason: "internal_error" });
    const entries = await lineageEntries(lineage);
    expect(entries.map((e) => e.type)).toEqual(["request", "decision"]);
    expect(entries[1]).toMatchObject({
      body: { allow: false, reason: "internal_error" },
      refs: [{ index: 0 }],
    });
    expect(gate.counters.denials.get("internal_error")).toBe(1);
    expect(gate.counters.denials.has("lineage_unavailable")).toBe(false);
    // The journal goes on.
    expect(lineage.failure).toBeUndefined();
    await gate.close();
    await lineage.close();
  });

  describe("a request that waited for an epoch is decided under the policy in force after the wait", () => {
    it("a reload to a policy without the scope meanwhile: scope_not_allowed", async () => {
      const { lineage, gate, clock, loop, policies, epochNow, swapPolicy } = await setup();
      loop.evidence = { ...epochNow(policies.grantsDev), startedMonoUs: MONO0 - 10_000_000 }; // stale
      loop.onWait = async () => {
        // SIGHUP: the new policy is in force, and the epoch it started judges the state under it.
        clock.monoUs += 1_000;
        swapPolicy(policies.grantsOther);
        return epochNow(policies.grantsOther, 2);
      };
      expect(await gate.requestToken(TEST_PEER, DEV_REQUEST)).toEqual({
        ok: false,
        reason: "scope_not_allowed",
      });
      expect(decisions(await lineageEntries(lineage))).toMatchObject([
        { body: { allow: false, reason: "scope_not_allowed" } },
      ]);
      await lineage.close();
    });

    it("a reload after the epoch was judged under the old policy: that evidence is not used (attestation_stale)", async () => {
      const { lineage, gate, clock, loop, policies, epochNow, swapPolicy } = await setup();
      loop.evidence = { ...epochNow(policies.grantsDev), startedMonoUs: MONO0 - 10_000_000 }; // stale
      loop.onWait = async () => {
        clock.monoUs += 1_000;
        const judgedUnderOld = epochNow(policies.grantsDev, 2);
        swapPolicy(policies.grantsOther);
        return judgedUnderOld;
      };
      expect(await gate.requestToken(TEST_PEER, DEV_REQUEST)).toEqual({
        ok: false,
        reason: "attestation_stale",
      });
      expect(decisions(await lineageEntries(lineage))).toMatchObject([
        { body: { allow: false, reason: "attestation_stale" } },
      ]);
      await lineage.close();
    });
  });

  describe("evidence ages on the monotonic clock, whatever the wall clock does", () => {
    // 10 s of monotonic time since the epoch started, but the wall clock says otherwise.
    const walls: [string, number][] = [
      ["says 2 s (it was stepped back)", WALL0 + 2_000],
      ["is before the epoch started (stepped back further)", WALL0 - 1_000],
    ];

    it.each(walls)("token request: the wall clock %s → attestation_stale", async (_n, wallMs) => {
      const { lineage, gate, clock } = await setup();
      clock.monoUs = MONO0 + 10_000_000;
      clock.wallMs = wallMs;
      expect(await gate.requestToken(TEST_PEER, DEV_REQUEST)).toEqual({
        ok: false,
        reason: "attestation_stale",
      });
      expect(decisions(await lineageEntries(lineage))).toMatchObject([
        { body: { allow: false, reason: "attestation_stale" } },
      ]);
      await lineage.close();
    });

    it.each(walls)("redeem: the wall clock %s → attestation_stale, recorded", async (_n, wallMs) => {
      // Skew lets the token itself verify with the wall clock behind its iat.
      const { lineage, gate, clock } = await setup({ skewS: 5 });
      const issued = await gate.requestToken(TEST_PEER, DEV_REQUEST);
      expect(issued.ok).toBe(true);
      if (!issued.ok) return;
      clock.monoUs = MONO0 + 10_000_000;
      clock.wallMs = wallMs;
      expect(await gate.redeem(TEST_PEER, issued.value.token)).toEqual({
        ok: false,
        reason: "attestation_stale",
      });
      const entries = await lineageEntries(lineage);
      expect(entries.some((e) => e.type === "token_redeemed")).toBe(false);
      expect(decisions(entries).at(-1)).toMatchObject({
        body: { allow: false, reason: "attestation_stale" },
      });
      await lineage.close();
    });

    it.each(walls)(
      "status: the wall clock %s → the epoch's age and the evidence age are still 10 s",
      async (_n, wallMs) => {
        const { lineage, gate, clock } = await setup();
        clock.monoUs = MONO0 + 10_000_000;
        clock.wallMs = wallMs;
        const st = gate.status();
        expect(st.evidence_age_ms).toBe(10_000);
        expect(st.epoch).toMatchObject({ age_ms: 10_000 });
        await lineage.close();
      },
    );

    it("redeem within the maximum age on the monotonic clock succeeds", async () => {
      const { lineage, gate, clock } = await setup();
      const issued = await gate.requestToken(TEST_PEER, DEV_REQUEST);
      if (!issued.ok) throw new Error(`not issued: ${issued.reason}`);
      clock.monoUs = MONO0 + MAX_AGE_MS * 1000;
      expect(await gate.redeem(TEST_PEER, issued.value.token)).toMatchObject({ ok: true });
      await lineage.close();
    });
  });
});
