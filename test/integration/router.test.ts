import { generateKeyPairSync } from "node:crypto";
import pino from "pino";
import { describe, expect, it, vi } from "vitest";
import type { EvidenceState } from "../../src/attest/evidence.js";
import type { AttestationLoop } from "../../src/attest/loop.js";
import { type CborValue, decode } from "../../src/cbor/index.js";
import { Gate } from "../../src/gate/gate.js";
import type { Entry } from "../../src/lineage/entry.js";
import type { PeerIdentity } from "../../src/peer/index.js";
import { gateHandler, mayExport } from "../../src/router/handler.js";
import { memoryTokenSigner } from "../../src/token/sign-thread.js";
import type { Request } from "../../src/wire/request.js";
import { DEV_REQUEST, lineageEntries, openTestLineage, policyGranting, TEST_PEER } from "../helpers/gate.js";
import { scratchDirs } from "../helpers/scratch.js";

// The router on a real gate and lineage, without a socket: each op reaches the gate and comes
// back as the reply the client reads, and lineage.export is for root or the daemon's user only,
// anyone else denied peer_unknown and recorded.

const scratch = scratchDirs("execgate-router-");

const WALL0 = 1_700_000_000_000;
const MONO0 = 5_000_000_000;
/** Neither root nor the user running the tests (the daemon's user here). */
const OTHER_UID = process.getuid?.() === 1000 ? 1001 : 1000;

interface Setup {
  readonly exportBundle?: () => Promise<{ path: string; size: number }>;
  readonly evidence?: (epoch: Uint8Array | undefined) => Record<string, CborValue> | undefined;
}

async function setup(o: Setup = {}) {
  const dir = await scratch();
  const lineage = await openTestLineage(dir);
  const policy = policyGranting(dir, ["dev"], 0xaa);
  const evidence: EvidenceState = {
    epochSeq: 1,
    epochHash: new Uint8Array(32).fill(1),
    startedAtMs: WALL0,
    startedMonoUs: MONO0,
    verifiedAtMs: WALL0,
    bootId: "b0",
    resetCount: 0,
    restartCount: 0,
    pcrDigest: new Uint8Array(32).fill(9),
    policyDigest: policy.digest,
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
    policy: () => policy,
    tokenSigner: memoryTokenSigner(issuer.privateKey, issuer.publicKey),
    audience: "execgate",
    issuer: "execgate-test",
    skewS: 0,
    maxEvidenceAgeMs: 5_000,
    freshWaitMs: 100,
    bootId: "b0",
    ueid: new Uint8Array(33),
    now: () => WALL0,
    monoUs: () => MONO0,
    log: pino({ level: "silent" }),
  });
  const router = gateHandler(gate, o.evidence ?? (() => undefined), o.exportBundle);
  /** The reply to `req` from `peer`, decoded as a client reads it. */
  const ask = async (peer: PeerIdentity, req: Request) =>
    decode(await router.handle(peer, req)) as ReadonlyMap<string, CborValue>;
  const close = async () => {
    await gate.close();
    await lineage.close();
  };
  return { lineage, gate, router, ask, close };
}

const denials = (entries: readonly Entry[]) =>
  entries.flatMap((e) => (e.type === "decision" && e.body.allow === false ? [e.body] : []));

const result = (reply: ReadonlyMap<string, CborValue>) =>
  reply.get("result") as ReadonlyMap<string, CborValue>;

describe("the router", () => {
  it("token.request, token.redeem and execution.report reach the gate; each reply carries the gate's answer", async () => {
    const { lineage, ask, close } = await setup();
    const issued = await ask(TEST_PEER, { id: 1, op: "token.request", args: DEV_REQUEST });
    expect(issued.get("id")).toBe(1);
    expect(issued.get("ok")).toBe(true);
    const token = result(issued).get("token") as Uint8Array;
    const tokenId = result(issued).get("token_id") as Uint8Array;
    expect(tokenId).toHaveLength(16);
    expect(typeof result(issued).get("expires")).toBe("number");

    const redeemed = await ask(TEST_PEER, { id: 2, op: "token.redeem", args: { token } });
    expect(redeemed.get("ok")).toBe(true);
    expect(result(redeemed).get("token_id")).toEqual(tokenId);
    expect(result(redeemed).get("scope")).toBe("dev");
    expect(result(redeemed).get("action")).toEqual(DEV_REQUEST.action);

    const reported = await ask(TEST_PEER, {
      id: 3,
      op: "execution.report",
      args: { tokenId, exitStatus: 0, durationMs: 5 },
    });
    expect(reported.get("ok")).toBe(true);
    const types = (await lineageEntries(lineage)).map((e) => e.type);
    expect(types.slice(-5)).toEqual([
      "request",
      "decision",
      "token_issued",
      "token_redeemed",
      "execution_report",
    ]);
    await close();
  });

  it("a denial from the gate is a denied reply with the reason the lineage recorded", async () => {
    const { lineage, ask, close } = await setup();
    const stranger = { ...TEST_PEER, uid: OTHER_UID + 1 };
    const reply = await ask(stranger, { id: 7, op: "token.request", args: DEV_REQUEST });
    const recorded = denials(await lineageEntries(lineage));
    expect(recorded).toHaveLength(1);
    expect(reply).toEqual(
      new Map<string, CborValue>([
        ["v", 1],
        ["id", 7],
        ["ok", false],
        ["error", "denied"],
        ["reason", String(recorded[0]!.reason)],
      ]),
    );
    await close();
  });

  it("status answers from the gate", async () => {
    const { ask, close } = await setup();
    const reply = await ask(TEST_PEER, { id: 4, op: "status", args: {} });
    expect(reply.get("ok")).toBe(true);
    expect(result(reply).get("up")).toBe(true);
    await close();
  });

  it("lineage.export from a user that is neither root nor the daemon's: denied peer_unknown, recorded, nothing exported", async () => {
    const exportBundle = vi.fn(async () => ({ path: "/x", size: 1 }));
    const { lineage, ask, close } = await setup({ exportBundle });
    const reply = await ask({ ...TEST_PEER, uid: OTHER_UID }, { id: 5, op: "lineage.export", args: {} });
    expect(reply.get("ok")).toBe(false);
    expect(reply.get("error")).toBe("denied");
    expect(reply.get("reason")).toBe("peer_unknown");
    expect(exportBundle).not.toHaveBeenCalled();
    expect(denials(await lineageEntries(lineage))).toEqual([{ allow: false, reason: "peer_unknown" }]);
    await close();
  });

  it("lineage.export from root: the bundle's path and size", async () => {
    const exportBundle = vi.fn(async () => ({ path: "/var/lib/execgate/exports/1", size: 42 }));
    const { lineage, ask, close } = await setup({ exportBundle });
    const reply = await ask({ ...TEST_PEER, uid: 0 }, { id: 6, op: "lineage.export", args: {} });
    expect(reply.get("ok")).toBe(true);
    expect(result(reply)).toEqual(
      new Map<string, CborValue>([
        ["path", "/var/lib/execgate/exports/1"],
        ["size", 42],
      ]),
    );
    expect(exportBundle).toHaveBeenCalledTimes(1);
    expect(denials(await lineageEntries(lineage))).toEqual([]);
    await close();
  });

  it("lineage.export when the daemon exports nothing: denied peer_unknown even for root", async () => {
    const { lineage, ask, close } = await setup();
    const reply = await ask({ ...TEST_PEER, uid: 0 }, { id: 8, op: "lineage.export", args: {} });
    expect(reply.get("reason")).toBe("peer_unknown");
    expect(denials(await lineageEntries(lineage))).toEqual([{ allow: false, reason: "peer_unknown" }]);
    await close();
  });

  it("lineage.export that fails: denied lineage_unavailable, recorded", async () => {
    const { lineage, ask, close } = await setup({
      exportBundle: async () => {
        throw new Error("disk full");
      },
    });
    const reply = await ask({ ...TEST_PEER, uid: 0 }, { id: 9, op: "lineage.export", args: {} });
    expect(reply.get("reason")).toBe("lineage_unavailable");
    expect(denials(await lineageEntries(lineage))).toEqual([{ allow: false, reason: "lineage_unavailable" }]);
    await close();
  });

  it("the export check: root or the daemon's own user, nobody else", () => {
    expect(mayExport(0, 999)).toBe(true);
    expect(mayExport(999, 999)).toBe(true);
    expect(mayExport(1000, 999)).toBe(false);
    expect(mayExport(1000, undefined)).toBe(false);
  });

  it("evidence: the record when this run has the epoch, else denied attestation_missing and recorded", async () => {
    const epoch = new Uint8Array(32).fill(1);
    const { lineage, ask, close } = await setup({
      evidence: (e) => (e === undefined || e[0] === 1 ? { seq: 1 } : undefined),
    });
    const found = await ask(TEST_PEER, { id: 10, op: "evidence", args: { epoch } });
    expect(result(found)).toEqual(new Map<string, CborValue>([["seq", 1]]));
    const missing = await ask(TEST_PEER, { id: 11, op: "evidence", args: { epoch: new Uint8Array(32) } });
    expect(missing.get("reason")).toBe("attestation_missing");
    expect(denials(await lineageEntries(lineage))).toEqual([{ allow: false, reason: "attestation_missing" }]);
    await close();
  });

  it("a connection the server refused before any request is recorded as the gate's denial", async () => {
    const { lineage, router, close } = await setup();
    router.rejected(undefined, "request_malformed", "frame of 70000 bytes", "frame_too_large");
    await vi.waitFor(async () => expect(denials(await lineageEntries(lineage))).toHaveLength(1));
    expect(denials(await lineageEntries(lineage))).toEqual([
      { allow: false, reason: "request_malformed", code: "frame_too_large" },
    ]);
    await close();
  });
});
