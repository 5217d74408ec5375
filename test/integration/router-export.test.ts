import { generateKeyPairSync } from "node:crypto";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { gateHandler } from "../../daemon/handler.js";
import type { AttestationLoop } from "../../src/attest/loop.js";
import { parseReply } from "../../src/client/replies.js";
import { Gate } from "../../src/gate/gate.js";
import type { PeerIdentity } from "../../src/peer/index.js";
import type { Request } from "../../src/server/protocol.js";
import { lineageEntries, openTestLineage, policyGranting, TEST_PEER } from "../helpers/gate.js";
import { scratchDirs } from "../helpers/scratch.js";

// The router's lineage.export authorization on a real gate and lineage (stand-in attestation
// loop): root or the daemon's own user only; any other caller is denied peer_unknown and
// recorded; an export that fails is denied lineage_unavailable.

const scratch = scratchDirs("execgate-router-export-");
const EXPORT: Request = { id: 7, op: "lineage.export", args: {} };
const OPERATOR: PeerIdentity = { ...TEST_PEER, uid: process.getuid?.() ?? 0 };
/** A caller that is neither root nor the daemon's user. */
const STRANGER: PeerIdentity = { ...TEST_PEER, uid: (process.getuid?.() ?? 0) + 4242 };

async function setup(exportBundle?: () => Promise<{ path: string; size: number }>) {
  const dir = await scratch();
  const lineage = await openTestLineage(dir);
  const loop = {
    current: () => undefined,
    touch: () => undefined,
    waitForEpochAfter: async () => undefined,
    stats: { epochs: 0, failed: 0, lastDurationMs: 0 },
  } as unknown as AttestationLoop;
  const issuer = generateKeyPairSync("ed25519");
  const inForce = policyGranting(dir, ["dev"]);
  const gate = new Gate({
    lineage,
    loop,
    policy: () => inForce,
    issuerPrivateKey: issuer.privateKey,
    issuerPublicKey: issuer.publicKey,
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
  let exports = 0;
  const handler = gateHandler(
    gate,
    () => undefined,
    exportBundle &&
      (() => {
        exports++;
        return exportBundle();
      }),
  );
  const close = async () => {
    await gate.close();
    await lineage.close();
  };
  return { lineage, handler, exports: () => exports, close };
}

/** The decisions the lineage recorded, as [allow, reason]. */
async function decisions(lineage: Awaited<ReturnType<typeof openTestLineage>>) {
  return (await lineageEntries(lineage)).flatMap((e) =>
    e.type === "decision" ? [[e.body.allow, e.body.reason] as const] : [],
  );
}

describe("router: lineage.export authorization", () => {
  it("the daemon's own user gets the export's path and size", async () => {
    const t = await setup(async () => ({ path: "/var/lib/execgate/exports/b", size: 42 }));
    const reply = parseReply(await t.handler.handle(OPERATOR, EXPORT));
    expect(reply).toMatchObject({ id: 7, ok: true });
    if (reply.ok) {
      expect(reply.result.get("path")).toBe("/var/lib/execgate/exports/b");
      expect(reply.result.get("size")).toBe(42);
    }
    expect(t.exports()).toBe(1);
    expect(await decisions(t.lineage)).toEqual([]);
    await t.close();
  });

  it("another caller is denied peer_unknown, recorded, and no export runs", async () => {
    const t = await setup(async () => ({ path: "/x", size: 1 }));
    const reply = parseReply(await t.handler.handle(STRANGER, EXPORT));
    expect(reply.ok).toBe(false);
    if (!reply.ok) expect(reply.error).toMatchObject({ reason: "peer_unknown" });
    expect(t.exports()).toBe(0);
    expect(await decisions(t.lineage)).toEqual([[false, "peer_unknown"]]);
    await t.close();
  });

  it("a router without an export denies even the operator peer_unknown", async () => {
    const t = await setup(undefined);
    const reply = parseReply(await t.handler.handle(OPERATOR, EXPORT));
    if (!reply.ok) expect(reply.error).toMatchObject({ reason: "peer_unknown" });
    else expect.unreachable("export without an exporter");
    await t.close();
  });

  it("an export that fails is denied lineage_unavailable and recorded", async () => {
    const t = await setup(async () => {
      throw new Error("no space left on device");
    });
    const reply = parseReply(await t.handler.handle(OPERATOR, EXPORT));
    if (!reply.ok) expect(reply.error).toMatchObject({ reason: "lineage_unavailable" });
    else expect.unreachable("a failed export replied ok");
    expect(await decisions(t.lineage)).toEqual([[false, "lineage_unavailable"]]);
    await t.close();
  });
});

describe("router: evidence", () => {
  it("an epoch this run does not have is denied attestation_missing", async () => {
    const t = await setup(undefined);
    const reply = parseReply(
      await t.handler.handle(TEST_PEER, { id: 8, op: "evidence", args: { epoch: new Uint8Array(32) } }),
    );
    if (!reply.ok) expect(reply.error).toMatchObject({ reason: "attestation_missing" });
    else expect.unreachable("evidence for an unknown epoch");
    await t.close();
  });
});
