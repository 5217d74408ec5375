import { generateKeyPairSync } from "node:crypto";
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { EvidenceState } from "../../src/attest/evidence.js";
import type { AttestationLoop } from "../../src/attest/loop.js";
import { auditAttestation } from "../../src/audit/attestation.js";
import { Gate } from "../../src/gate/gate.js";
import type { Entry } from "../../src/lineage/entry.js";
import type { Lineage } from "../../src/lineage/lineage.js";
import type { PeerIdentity } from "../../src/peer/index.js";
import { memoryTokenSigner } from "../../src/token/sign-thread.js";
import { DEV_REQUEST, lineageEntries, openTestLineage, policyGranting, TEST_PEER } from "../helpers/gate.js";
import { scratchDirs } from "../helpers/scratch.js";

// Repeated denials on a real lineage (stand-in attestation loop, injected clocks): the first of
// a caller and reason is recorded, the rest counted into one denial_repeats entry when the window
// ends or at stop; allows and denials that name an allow are never counted; the auditor accepts it.

const scratch = scratchDirs("execgate-gate-denials-");

const WALL0 = 1_700_000_000_000;
const MONO0 = 5_000_000_000;
const WINDOW_MS = 50;
const STRANGER: PeerIdentity = { ...TEST_PEER, uid: 2000, gid: 2000, pid: 777 };

/** `denialWindowMs` null: windows off. */
async function setup(denialWindowMs: number | null = WINDOW_MS) {
  const dir = await scratch();
  const lineage = await openTestLineage(dir);
  const clock = { wallMs: WALL0, monoUs: MONO0 };
  const inForce = policyGranting(dir, ["dev"], 0xaa);
  const evidence: EvidenceState = {
    epochSeq: 1,
    epochHash: new Uint8Array(32).fill(1),
    startedAtMs: clock.wallMs,
    startedMonoUs: clock.monoUs,
    verifiedAtMs: clock.wallMs,
    bootId: "b0",
    resetCount: 0,
    restartCount: 0,
    pcrDigest: new Uint8Array(32).fill(9),
    policyDigest: inForce.digest,
    integrity: { ok: true },
  };
  const loop = {
    current: () => evidence,
    touch: () => undefined,
    waitForEpochAfter: async () => undefined,
    stats: { epochs: 1, failed: 0, lastDurationMs: 0 },
  } as unknown as AttestationLoop;
  const issuer = generateKeyPairSync("ed25519");
  const gate = new Gate({
    lineage,
    loop,
    policy: () => inForce,
    tokenSigner: memoryTokenSigner(issuer.privateKey, issuer.publicKey),
    audience: "execgate",
    issuer: "execgate-test",
    skewS: 0,
    maxEvidenceAgeMs: 60_000,
    freshWaitMs: 100,
    bootId: "b0",
    ueid: new Uint8Array(33),
    now: () => clock.wallMs,
    monoUs: () => clock.monoUs,
    log: pino({ level: "silent" }),
    ...(denialWindowMs !== null ? { denialWindowMs } : {}),
  });
  /** Both clocks forward by `ms`. */
  const advance = (ms: number) => {
    clock.wallMs += ms;
    clock.monoUs += ms * 1000;
  };
  return { lineage, gate, advance };
}

/** Polls the lineage until `f` holds (the window's timer runs on its own). */
async function lineageWhere(lineage: Lineage, f: (e: Entry[]) => boolean): Promise<Entry[]> {
  for (let i = 0; i < 400; i++) {
    const entries = await lineageEntries(lineage);
    if (f(entries)) return entries;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("the lineage never got there");
}

const repeatsOf = (entries: readonly Entry[]) => entries.filter((e) => e.type === "denial_repeats");
/** Denials of `uid`: recorded decisions (found through their request) plus counted ones. */
function deniedCount(entries: readonly Entry[], uid: number): number {
  const recorded = entries.filter(
    (e) =>
      e.type === "decision" &&
      !e.body.allow &&
      e.refs.some((r) => {
        const q = entries[r.index];
        return q?.type === "request" && q.body.peer.uid === uid;
      }),
  ).length;
  const counted = repeatsOf(entries).reduce(
    (n, e) => n + (e.type === "denial_repeats" && e.body.uid === uid ? e.body.count : 0),
    0,
  );
  return recorded + counted;
}

/** The auditor's findings on denials (the stand-in loop's epochs are not in the lineage). */
function audit(entries: Entry[]) {
  return auditAttestation({
    entries,
    checkpoints: new Map(),
    akPublic: undefined,
    requireTpm: false,
  }).failures.filter((f) => f.check !== "decision_epoch");
}

describe("repeated denials are counted, not recorded one by one", () => {
  it("a stranger's 200 requests: one request and decision, then one denial_repeats counting the other 199 when the window ends", async () => {
    const { lineage, gate, advance } = await setup();
    const replies = await Promise.all(
      Array.from({ length: 200 }, () => gate.requestToken(STRANGER, DEV_REQUEST)),
    );
    expect(new Set(replies.map((r) => JSON.stringify(r)))).toEqual(
      new Set([JSON.stringify({ ok: false, reason: "peer_unknown" })]),
    );
    expect((await lineageEntries(lineage)).map((e) => e.type)).toEqual(["request", "decision"]);
    expect(gate.counters.denials.get("peer_unknown")).toBe(200);
    advance(WINDOW_MS);
    const entries = await lineageWhere(lineage, (es) => repeatsOf(es).length > 0);
    expect(entries.map((e) => e.type)).toEqual(["request", "decision", "denial_repeats"]);
    expect(entries[2]).toMatchObject({
      body: {
        reason: "peer_unknown",
        uid: 2000,
        count: 199,
        firstMs: WALL0,
        lastMs: WALL0,
        windowMs: WINDOW_MS,
      },
      refs: [{ index: 1, leafHash: lineage.leafHash(1) }],
    });
    expect(deniedCount(entries, 2000)).toBe(200);
    expect(audit(entries)).toEqual([]);
    // The next window starts with a recorded denial again.
    expect(await gate.requestToken(STRANGER, DEV_REQUEST)).toEqual({ ok: false, reason: "peer_unknown" });
    expect((await lineageEntries(lineage)).map((e) => e.type).slice(3)).toEqual(["request", "decision"]);
    await gate.flushDenials();
    await gate.close();
    await lineage.close();
  });

  it("allows are never counted; a granted caller's denials of another reason have their own window", async () => {
    const { lineage, gate } = await setup();
    const outcomes = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        i % 3 === 0
          ? gate.requestToken(TEST_PEER, { ...DEV_REQUEST, scope: "other" })
          : gate.requestToken(TEST_PEER, DEV_REQUEST),
      ),
    );
    expect(outcomes.filter((o) => o.ok)).toHaveLength(20);
    await gate.flushDenials();
    const entries = await lineageEntries(lineage);
    expect(entries.filter((e) => e.type === "token_issued")).toHaveLength(20);
    expect(entries.filter((e) => e.type === "decision" && e.body.allow)).toHaveLength(20);
    expect(entries.filter((e) => e.type === "decision" && !e.body.allow)).toHaveLength(1);
    expect(repeatsOf(entries).map((e) => e.body)).toEqual([
      expect.objectContaining({ reason: "scope_not_allowed", uid: 1000, count: 9 }),
    ]);
    expect(audit(entries)).toEqual([]);
    await gate.close();
    await lineage.close();
  });

  it("a denial that names an allow (a replayed token) is recorded every time", async () => {
    const { lineage, gate } = await setup();
    const t = await gate.requestToken(TEST_PEER, DEV_REQUEST);
    if (!t.ok) throw new Error("expected a token");
    expect((await gate.redeem(TEST_PEER, t.value.token)).ok).toBe(true);
    for (let i = 0; i < 5; i++)
      expect(await gate.redeem(TEST_PEER, t.value.token)).toEqual({ ok: false, reason: "token_replayed" });
    await gate.flushDenials();
    const entries = await lineageEntries(lineage);
    expect(entries.filter((e) => e.type === "decision" && e.body.reason === "token_replayed")).toHaveLength(
      5,
    );
    expect(repeatsOf(entries)).toEqual([]);
    await gate.close();
    await lineage.close();
  });

  it("refusals at accept: codes have their own windows, unidentified peers share one; stop records open windows, later denials in full", async () => {
    const { lineage, gate } = await setup(60_000);
    const refusals: Promise<void>[] = [];
    for (let i = 0; i < 10; i++) {
      refusals.push(
        gate.recordDenial(STRANGER, "request_malformed", "frame of 99999 bytes", [], "frame_too_large"),
      );
      refusals.push(gate.recordDenial(STRANGER, "request_malformed", "not CBOR"));
      refusals.push(gate.recordDenial(undefined, "peer_unknown", "peer exited"));
    }
    await Promise.all(refusals);
    let entries = await lineageEntries(lineage);
    expect(entries.map((e) => e.body)).toEqual([
      { allow: false, reason: "request_malformed", code: "frame_too_large" },
      { allow: false, reason: "request_malformed" },
      { allow: false, reason: "peer_unknown" },
    ]);
    await gate.flushDenials();
    await gate.recordDenial(undefined, "peer_unknown", "peer exited");
    entries = await lineageEntries(lineage);
    const repeats = repeatsOf(entries).map((e) => e.body);
    expect(repeats).toHaveLength(3);
    expect(repeats).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          reason: "request_malformed",
          code: "frame_too_large",
          uid: 2000,
          count: 9,
        }),
        expect.objectContaining({ reason: "request_malformed", uid: 2000, count: 9 }),
        { reason: "peer_unknown", count: 9, firstMs: WALL0, lastMs: WALL0, windowMs: 60_000 },
      ]),
    );
    expect(repeats.find((b) => b.reason === "request_malformed" && !("code" in b))).toBeDefined();
    expect(entries.at(-1)!.body).toEqual({ allow: false, reason: "peer_unknown" });
    expect(audit(entries)).toEqual([]);
    await gate.close();
    await lineage.close();
  });

  it("without a window every denial is recorded in full", async () => {
    const { lineage, gate } = await setup(null);
    for (let i = 0; i < 3; i++) await gate.requestToken(STRANGER, DEV_REQUEST);
    await gate.flushDenials();
    expect((await lineageEntries(lineage)).map((e) => e.type)).toEqual([
      "request",
      "decision",
      "request",
      "decision",
      "request",
      "decision",
    ]);
    await gate.close();
    await lineage.close();
  });
});
