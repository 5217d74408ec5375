import { describe, expect, it } from "vitest";
import { auditAttestation } from "../../src/audit/attestation.js";
import { toHex } from "../../src/core/hex.js";
import { makeEntry } from "../../src/lineage/entry.js";
import { tokenIdFor } from "../../src/token/claims.js";
import { type IssuedInLog, type TokenIds, TokenLog } from "../helpers/token-log.js";

const audit = (log: TokenLog) =>
  auditAttestation({ entries: log.entries, checkpoints: new Map(), akPublic: undefined, requireTpm: false });

/** Three runs (the second ends in a crash: no daemon_stop), each issuing and redeeming `perRun` tokens. */
function threeRuns(ids: TokenIds, perRun = 4): { log: TokenLog; runs: IssuedInLog[][] } {
  const log = new TokenLog(ids);
  const runs: IssuedInLog[][] = [];
  for (let r = 0; r < 3; r++) {
    log.startRun();
    const tokens = Array.from({ length: perRun }, () => log.issue());
    for (const t of tokens) log.redeem(t);
    runs.push(tokens);
    if (r !== 1) log.stopRun();
  }
  return { log, runs };
}

describe("token ids", () => {
  it("are the allow decision's index (u64 BE) ‖ the first 8 bytes of its leaf hash", () => {
    const leaf = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
    expect(toHex(tokenIdFor(0x0102_0304_0506, leaf))).toBe("0000010203040506" + "0102030405060708");
    expect(toHex(tokenIdFor(7, leaf))).not.toBe(toHex(tokenIdFor(8, leaf)));
    expect(() => tokenIdFor(-1, leaf)).toThrow();
    expect(() => tokenIdFor(1, leaf.subarray(0, 31))).toThrow();
  });

  it("are unique across the runs of one log", () => {
    const { runs } = threeRuns("decision");
    const ids = runs.flat().map((t) => toHex(t.claims.cti));
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe("the auditor's single-use check", () => {
  it("passes an honest multi-run log, with new token ids and with old ones that collide across runs", () => {
    for (const ids of ["decision", "per-run-counter"] as const) {
      const { log, runs } = threeRuns(ids);
      const s = audit(log);
      expect(s.failures, ids).toEqual([]);
      expect(s.tokensRedeemed).toBe(12);
      expect(s.allows).toBe(12);
      if (ids === "per-run-counter") {
        // The old ids repeat in every run (the collision the auditor used to call a replay).
        expect(toHex(runs[0]![0]!.claims.cti)).toBe(toHex(runs[2]![0]!.claims.cti));
      }
    }
  });

  it("finds the same token redeemed twice, within a run and across runs, whatever its id format", () => {
    for (const ids of ["decision", "per-run-counter"] as const) {
      // Twice in the run that issued it.
      const inRun = new TokenLog(ids);
      inRun.startRun();
      const a = inRun.issue();
      inRun.issue();
      inRun.redeem(a);
      inRun.redeem(a);
      const f1 = audit(inRun).failures;
      expect(
        f1.map((f) => f.check),
        ids,
      ).toEqual(["token_replayed"]);
      expect(f1[0]!.index).toBe(inRun.entries.length - 1);

      // A token of the first run redeemed again after a restart.
      const { log, runs } = threeRuns(ids);
      log.startRun();
      log.issue();
      log.redeem(runs[0]![1]!);
      const f2 = audit(log).failures;
      expect(
        f2.map((f) => f.check),
        ids,
      ).toEqual(["token_replayed"]);
      expect(f2[0]!.reason).toContain(`allow ${runs[0]![1]!.decision.index}`);
    }
  });

  it("finds two different tokens sharing one id within a run", () => {
    // Run two's daemon_start made into a policy_loaded: its old-format ids now repeat inside one
    // run, which the daemon (spending by id) could never have redeemed.
    const { log } = threeRuns("per-run-counter");
    const starts = log.entries.flatMap((e, i) => (e.type === "daemon_start" ? [i] : []));
    const at = starts[1]!;
    log.entries[at] = makeEntry("policy_loaded", log.entries[at]!.time, {
      policyDigest: new Uint8Array(32).fill(0x50),
      source: "reload",
    });
    const checks = audit(log).failures.map((f) => f.check);
    expect(checks.filter((c) => c === "token_replayed")).toHaveLength(4);
    expect(checks.filter((c) => c !== "token_replayed")).toEqual(["epoch_chain"]);
  });
});
