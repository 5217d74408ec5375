import { generateKeyPairSync } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeEpochBinding, epochHash } from "../../src/attest/binding.js";
import {
  type ExploredEntry,
  explainEntry,
  LineageSummary,
  matches,
  parseTokenId,
  parseWhen,
  TokenChainCollector,
} from "../../src/audit/explore/index.js";
import { encode } from "../../src/cbor/index.js";
import { ExecgateError } from "../../src/core/errors.js";
import { toHex } from "../../src/core/hex.js";
import { type BackRef, type Entry, encodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { leafHash } from "../../src/lineage/hash.js";
import { tokenIdFor } from "../../src/token/claims.js";
import { issueToken } from "../../src/token/token.js";

// The explorer's read model on a hand-made log: who and why pulled up through references, the
// token chain joined by id, the filters, and references that cannot be followed said as such.

const T0 = Date.UTC(2026, 11, 8, 10, 0, 0);
const at = (s: number) => ({ wallMs: T0 + s * 1000, monoUs: s * 1_000_000 });
const exe = new Uint8Array(32).fill(0xe1);
const binding = {
  seq: 0,
  prev: new Uint8Array(32),
  issuer: new Uint8Array(32).fill(7),
  checkpoint: { size: 1, root: new Uint8Array(32).fill(2) },
  bootId: "boot-1",
  nonce: new Uint8Array(32).fill(3),
};
const issuer = generateKeyPairSync("ed25519");

/** The log, built entry by entry so references carry real leaf hashes. */
function buildLog(): { bytes: Uint8Array[]; tokenId: string } {
  const bytes: Uint8Array[] = [];
  const add = (e: Entry): BackRef => {
    const b = encodeEntry(e);
    bytes.push(b);
    return { index: bytes.length - 1, leafHash: leafHash(b) };
  };
  const d32 = new Uint8Array(32).fill(9);
  add(makeEntry("daemon_start", at(0), { reason: "start", configDigest: d32, policyDigest: d32 }));
  const epoch = add(
    makeEntry("epoch", at(1), {
      quote: encode({ binding: encodeEpochBinding(binding), verified: true }),
      issuerKey: binding.issuer,
      verified: true,
      policyDigest: d32,
    }),
  );
  const peer = { uid: 1000, gid: 100, pid: 4242, exeDigest: exe };
  const req = add(makeEntry("request", at(2), { requestId: "r1", scope: "deploy", actionDigest: d32, peer }));
  const allow = add(makeEntry("decision", at(2), { allow: true }, [req, epoch]));
  const cti = tokenIdFor(allow.index, allow.leafHash);
  add(makeEntry("token_issued", at(2), { digest: d32 }, [allow]));
  const token = issueToken(
    {
      iss: "execgate",
      sub: "uid:1000",
      aud: "execgate",
      exp: 2_000_000_000,
      nbf: 1,
      iat: 1,
      cti,
      ueid: new Uint8Array(33).fill(1),
      scope: "deploy",
      action: d32,
      peer: { uid: 1000, gid: 100, pid: 4242, exe, unit: "deploy.service" },
      epoch: epochHash(binding),
      pcrDigest: d32,
      policyDigest: d32,
      bootId: "boot-1",
      lineage: [allow.index, allow.leafHash],
    },
    issuer.privateKey,
  );
  const redeemed = add(makeEntry("token_redeemed", at(3), { token }, [allow]));
  add(makeEntry("execution_report", at(4), { token: cti, exitCode: 0, durationMs: 12 }, [redeemed]));
  const req2 = add(
    makeEntry("request", at(3600), {
      requestId: "r2",
      scope: "prod",
      actionDigest: d32,
      peer: { uid: 1001, gid: 100, pid: 5, exeDigest: d32 },
    }),
  );
  const deny = add(
    makeEntry("decision", at(3600), { allow: false, reason: "scope_not_allowed" }, [req2, epoch]),
  );
  add(
    makeEntry(
      "denial_repeats",
      at(3610),
      {
        reason: "scope_not_allowed",
        uid: 1001,
        count: 4,
        firstMs: T0 + 3601_000,
        lastMs: T0 + 3605_000,
        windowMs: 10_000,
      },
      [deny],
    ),
  );
  add(makeEntry("decision", at(3620), { allow: false, reason: "token_replayed" }, [allow]));
  add(
    makeEntry("decision", at(3630), { allow: false, reason: "request_malformed", code: "frame_too_large" }),
  );
  add(makeEntry("daemon_stop", at(3700), { reason: "SIGTERM" }));
  return { bytes, tokenId: toHex(cti) };
}

const { bytes, tokenId } = buildLog();
const lookup = (i: number) => bytes[i];
const all: ExploredEntry[] = bytes.map((b, i) => explainEntry(i, b, lookup));

describe("explainEntry", () => {
  it("a decision names its request's caller and scope and its epoch's id", () => {
    const deny = all[8]!;
    expect(deny).toMatchObject({
      type: "decision",
      allow: false,
      denial: { reason: "scope_not_allowed" },
      scope: "prod",
      caller: { uid: 1001, gid: 100, pid: 5, from: { index: 7, type: "request" } },
      epochId: toHex(epochHash(binding)),
    });
    expect(deny.refs.map((r) => [r.index, r.type, r.status])).toEqual([
      [7, "request", "ok"],
      [1, "epoch", "ok"],
    ]);
    expect(deny.problems).toBeUndefined();
  });

  it("token entries carry the token id from the allow; the redeem reads the caller and unit from the claims", () => {
    expect(all[3]).toMatchObject({ allow: true, tokenId, decisionIndex: 3 });
    expect(all[4]).toMatchObject({ type: "token_issued", tokenId, decisionIndex: 3, scope: "deploy" });
    expect(all[5]).toMatchObject({
      type: "token_redeemed",
      tokenId,
      caller: { uid: 1000, unit: "deploy.service", exeDigest: toHex(exe), from: { type: "token" } },
      epochId: toHex(epochHash(binding)),
    });
    expect(all[6]).toMatchObject({ type: "execution_report", tokenId, decisionIndex: 3, scope: "deploy" });
  });

  it("denial_repeats: the count and window, the caller from the decision that opened it", () => {
    expect(all[9]).toMatchObject({
      denial: { reason: "scope_not_allowed", count: 4, firstMs: T0 + 3601_000, lastMs: T0 + 3605_000 },
      caller: { uid: 1001, from: { type: "request" } },
    });
  });

  it("a denial naming an allow belongs to that token; one naming nothing has no caller", () => {
    expect(all[10]).toMatchObject({ denial: { reason: "token_replayed" }, tokenId });
    expect(all[10]!.caller).toBeUndefined();
    expect(all[11]).toMatchObject({ denial: { reason: "request_malformed", code: "frame_too_large" } });
  });

  it("the epoch: its id is SHA-256 of the binding; boot, checkpoint, policy digest", () => {
    expect(all[1]!.epoch).toMatchObject({
      id: toHex(epochHash(binding)),
      seq: 0,
      boot: "boot-1",
      checkpoint: { size: 1 },
      verified: true,
      quoted: false,
      pcrs: [],
    });
  });

  it("references that cannot be followed are said, not guessed", () => {
    const missing = explainEntry(8, bytes[8]!, () => undefined);
    expect(missing.refs.map((r) => r.status)).toEqual(["missing", "missing"]);
    expect(missing.caller).toBeUndefined();
    const swapped = explainEntry(8, bytes[8]!, (i) => bytes[i === 7 ? 2 : i]);
    expect(swapped.refs[0]!.status).toBe("leaf_mismatch");
    expect(swapped.problems).toContain("ref 7: leaf mismatch");
  });
});

describe("the token chain and the summary", () => {
  it("TokenChainCollector joins request → decision → issued → redeemed → report, and the denial naming it", () => {
    const c = new TokenChainCollector(tokenId);
    expect(c.decisionIndex).toBe(3);
    for (const e of all) c.observe(e);
    expect(c.result()).toEqual({
      tokenId,
      decision: 3,
      request: 2,
      epoch: 1,
      issued: 4,
      redeemed: 5,
      report: 6,
      denials: [10],
    });
    expect(new TokenChainCollector("00".repeat(16)).result()).toBeUndefined();
    expect(() => parseTokenId("abc")).toThrow(/32 hex digits/);
  });

  it("LineageSummary: runs, epochs with their decisions, executions by token id, denials by reason", () => {
    const s = new LineageSummary();
    for (const e of all) s.observe(e);
    expect(s.runs).toEqual([
      expect.objectContaining({ startIndex: 0, stopIndex: 12, stopReason: "SIGTERM", epochs: [1] }),
    ]);
    expect(s.epochs[0]).toMatchObject({ index: 1, allows: 1, denials: 1 });
    expect(s.executions.get(tokenId)).toMatchObject({
      decision: 3,
      request: 2,
      issued: 4,
      redeemed: 5,
      report: 6,
      uid: 1000,
      unit: "deploy.service",
      exitCode: 0,
      durationMs: 12,
    });
    expect(s.denials.get("scope_not_allowed")).toEqual({
      reason: "scope_not_allowed",
      count: 5,
      entries: [8, 9],
    });
    expect(s.denials.get("token_replayed")?.count).toBe(1);
  });
});

describe("query filters and times", () => {
  const q = (f: Parameters<typeof matches>[1]) => all.filter((e) => matches(e, f)).map((e) => e.index);

  it("every denial in the last hour, and everything one executable did", () => {
    const now = T0 + 3700_000;
    expect(q({ denials: true, sinceMs: parseWhen("-1h", now) })).toEqual([8, 9, 10, 11]);
    expect(q({ denials: true, sinceMs: parseWhen("-85s", now) })).toEqual([10, 11]);
    expect(q({ exeDigest: toHex(exe), sinceMs: parseWhen("today", now) })).toEqual([2, 3, 4, 5, 6]);
    expect(q({ uid: 1001 })).toEqual([7, 8, 9]);
    expect(q({ reasons: ["scope_not_allowed"], types: ["decision"] })).toEqual([8]);
    expect(q({ tokenId })).toEqual([3, 4, 5, 6, 10]);
    expect(q({ scope: "deploy", types: ["execution_report"] })).toEqual([6]);
    expect(q({ epochId: toHex(epochHash(binding)), types: ["decision"] })).toEqual([3, 8]);
    expect(q({ untilMs: T0 + 1000 })).toEqual([0, 1]);
  });

  it("a denial_repeats window matches a range that holds any denial it counted", () => {
    expect(q({ types: ["denial_repeats"], sinceMs: T0 + 3604_000, untilMs: T0 + 3604_500 })).toEqual([9]);
    expect(q({ types: ["denial_repeats"], untilMs: T0 + 3600_500 })).toEqual([]);
  });

  it("parseWhen: ISO 8601 (zone or UTC), relative, today, now, epoch ms; anything else refused", () => {
    const now = Date.UTC(2026, 11, 8, 13, 30);
    expect(parseWhen("2026-12-08T01:00:00Z", now)).toBe(Date.UTC(2026, 11, 8, 1));
    expect(parseWhen("2026-12-08T01:00:00+01:00", now)).toBe(Date.UTC(2026, 11, 8, 0));
    expect(parseWhen("2026-12-08 01:00", now)).toBe(Date.UTC(2026, 11, 8, 1));
    expect(parseWhen("2026-12-08", now)).toBe(Date.UTC(2026, 11, 8));
    expect(parseWhen("-90s", now)).toBe(now - 90_000);
    expect(parseWhen("-2d", now)).toBe(now - 2 * 86_400_000);
    expect(parseWhen("today", now)).toBe(Date.UTC(2026, 11, 8));
    expect(parseWhen("now", now)).toBe(now);
    expect(parseWhen("1765000000000", now)).toBe(1765000000000);
    for (const bad of ["yesterday", "2026-02-30", "-1w", "1h", "2026-13-01", ""])
      expect(() => parseWhen(bad, now), bad).toThrow(/time/);
  });

  it("parseWhen and parseTokenId throw only ExecgateError on any text", () => {
    fc.assert(
      fc.property(fc.string(), (t) => {
        for (const f of [() => parseWhen(t, T0), () => parseTokenId(t)]) {
          try {
            f();
          } catch (e) {
            expect(e).toBeInstanceOf(ExecgateError);
          }
        }
      }),
    );
  });
});
