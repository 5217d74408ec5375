import { generateKeyPairSync } from "node:crypto";
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { EvidenceState } from "../../src/attest/evidence.js";
import type { AttestationLoop } from "../../src/attest/loop.js";
import { Gate } from "../../src/gate/gate.js";
import { decodeEntry } from "../../src/lineage/entry.js";
import { memoryTokenSigner, SigningThread } from "../../src/token/sign-thread.js";
import { verifyToken } from "../../src/token/token.js";
import { DEV_REQUEST, lineageEntries, openTestLineage, policyGranting, TEST_PEER } from "../helpers/gate.js";
import { scratchDirs } from "../helpers/scratch.js";

// The gate with the daemon's signing thread, used when many requests are in flight (few sign on
// the event loop): one group commit for request, decision and token_issued either way, the token
// released only when they are durable — and, when no signature comes back, every reserved slot
// still filled (with denials), nothing stalled.

const scratch = scratchDirs("execgate-gate-");
const peer = TEST_PEER;

async function setup() {
  const dir = await scratch();
  const lineage = await openTestLineage(dir);
  const loaded = policyGranting(dir, ["dev"]);
  const evidence: EvidenceState = {
    epochSeq: 1,
    epochHash: new Uint8Array(32).fill(7),
    startedAtMs: Date.now(),
    startedMonoUs: 0,
    verifiedAtMs: Date.now(),
    bootId: "b0",
    resetCount: 0,
    restartCount: 0,
    pcrDigest: new Uint8Array(32).fill(9),
    policyDigest: new Uint8Array(32),
    integrity: { ok: true },
  };
  // The attestation loop's part the gate reads: a verified epoch that stays fresh, on a TPM whose
  // resetCount the test may change (a TPM reset: the next epochs have another hash).
  const tpm = { resetCount: 0 };
  const loop = {
    current: () => ({
      ...evidence,
      epochHash: new Uint8Array(32).fill(7 + tpm.resetCount),
      resetCount: tpm.resetCount,
      startedAtMs: Date.now(),
      startedMonoUs: Math.floor(performance.now() * 1000),
      verifiedAtMs: Date.now(),
    }),
    touch: () => undefined,
    waitForEpochAfter: async () => undefined,
  } as unknown as AttestationLoop;
  const issuer = generateKeyPairSync("ed25519");
  const thread = new SigningThread(issuer.privateKey);
  const gate = new Gate({
    lineage,
    loop,
    policy: () => loaded,
    tokenSigner: memoryTokenSigner(issuer.privateKey, issuer.publicKey, thread),
    audience: "execgate",
    issuer: "execgate-test",
    skewS: 0,
    maxEvidenceAgeMs: 60_000,
    freshWaitMs: 100,
    bootId: "b0",
    ueid: new Uint8Array(33),
    now: Date.now,
    monoUs: () => Math.floor(performance.now() * 1000),
    log: pino({ level: "silent" }),
  });
  return { lineage, gate, thread, issuer, tpm };
}

const args = DEV_REQUEST;

describe("gate with the signing thread", () => {
  it("issues verifiable tokens, each after request, decision and token_issued are durable", async () => {
    const { lineage, gate, issuer } = await setup();
    const results = await Promise.all(Array.from({ length: 40 }, () => gate.requestToken(peer, args)));
    for (const r of results) {
      expect(r.ok).toBe(true);
      if (!r.ok) continue;
      const v = verifyToken(r.value.token, {
        issuerPublicKey: issuer.publicKey,
        audience: "execgate",
        now: Math.floor(Date.now() / 1000),
      });
      expect(v.ok).toBe(true);
      if (!v.ok) continue;
      // The token names its decision: an allow at that index, followed by its token_issued.
      const [index] = v.claims.lineage;
      const [decision, issued] = (await lineage.read(index, index + 2)).map(decodeEntry);
      expect(decision).toMatchObject({ type: "decision", body: { allow: true } });
      expect(issued).toMatchObject({ type: "token_issued", refs: [{ index }] });
    }
    expect(lineage.size).toBe(120);
    await gate.close();
    await lineage.close();
  });

  it("without a signature: internal_error, the reserved slots filled with denials, the log goes on", async () => {
    const { lineage, gate, thread } = await setup();
    await thread.close(); // every signature made on the thread now fails
    // Enough at once that requests above the threshold go to the thread (the first few sign inline).
    const rs = await Promise.all(Array.from({ length: 40 }, () => gate.requestToken(peer, args)));
    const failed = rs.filter((r) => !r.ok);
    expect(failed.length).toBeGreaterThan(0);
    expect(new Set(failed.map((r) => (r.ok ? "" : r.reason)))).toEqual(new Set(["internal_error"]));
    const entries = await lineageEntries(lineage);
    expect(entries.length).toBe(3 * 40);
    const withdrawn = entries.filter((e) => e.type === "decision" && e.body.allow === false);
    expect(withdrawn.length).toBe(failed.length);
    for (const d of withdrawn) {
      // Each names the allow it withdraws, which is the entry just before it.
      expect(d.body).toMatchObject({ reason: "internal_error" });
      const allow = entries[d.refs[0]!.index]!;
      expect(allow).toMatchObject({ type: "decision", body: { allow: true } });
      expect(entries[d.refs[0]!.index + 1]).toBe(d);
    }
    // Nothing stalled behind the slots.
    expect((await lineage.add([entries[0]!]))[0]!.index).toBe(120);
    await lineage.close();
  });

  it("a TPM reset: tokens issued before it die at redeem, new ones are issued on the reset TPM's epochs", async () => {
    const { lineage, gate, tpm } = await setup();
    const before = await gate.requestToken(peer, args);
    expect(before.ok).toBe(true);
    tpm.resetCount = 1;
    const after = await gate.requestToken(peer, args);
    expect(after).toMatchObject({ ok: true });
    if (!before.ok || !after.ok) return;
    expect(await gate.redeem(peer, before.value.token)).toEqual({
      ok: false,
      reason: "environment_mismatch",
    });
    expect(await gate.redeem(peer, after.value.token)).toMatchObject({ ok: true });
    await gate.close();
    await lineage.close();
  });
});
