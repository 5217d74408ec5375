import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type ExecgateClient, ExecgateDenied } from "../../src/client/index.js";
import type { IssuedToken } from "../../src/client/replies.js";
import { toHex } from "../../src/core/hex.js";
import { execgate } from "../helpers/cli.js";
import { lineageEntries, startTestDaemon, type TestDaemon } from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

/** The denial reason of a call that must be denied. */
async function denied(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ExecgateDenied) return e.reason;
    throw e;
  }
  throw new Error("allowed where a denial was expected");
}

describeTpm("tokens requested and redeemed across restarts (SIGTERM and kill -9) under load", () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon();
  });
  afterAll(async () => {
    await d?.dispose();
  });

  it("every run's tokens have their own ids, a pre-restart token is refused, and the export verifies", async () => {
    const issued: IssuedToken[] = [];
    const redeemed: Uint8Array[] = [];
    /** Per run: a token redeemed in it and one never redeemed, to try after the restart. */
    const leftOver: { spent: IssuedToken; unspent: IssuedToken }[] = [];
    const ways = ["SIGTERM", "SIGKILL", "SIGTERM", "SIGKILL"] as const;
    const cycle = async (c: ExecgateClient, round: number) => {
      const t = await c.requestToken({ scope: "dev", argv: ["/bin/true", String(round)] });
      issued.push(t);
      const r = await c.redeem(t.token);
      expect(toHex(r.tokenId)).toBe(toHex(t.tokenId));
      redeemed.push(t.token);
      await c.report({ tokenId: t.tokenId, exitStatus: 0, durationMs: 1 });
      return t;
    };
    for (const [round, way] of ways.entries()) {
      const c = await d.client();
      // Each run's first requests, one at a time: under the old ids (epoch seq ‖ per-run
      // counter) they took the same ids in every run.
      const spent = await cycle(c, round);
      await cycle(c, round);
      const unspent = await c.requestToken({ scope: "dev", argv: ["/bin/true", "unspent"] });
      issued.push(unspent);
      leftOver.push({ spent, unspent });
      const load = Promise.all(
        Array.from({ length: 8 }, async () => {
          for (;;) {
            try {
              await cycle(c, round);
            } catch {
              return; // the daemon stopped or died mid-cycle: only what it answered counts
            }
          }
        }),
      );
      await new Promise((r) => setTimeout(r, 400 + round * 100));
      if (way === "SIGTERM") expect(await d.stop()).toBe(0);
      else await d.crash();
      await load;
      await c.close().catch(() => undefined);
      await d.start();

      // The run before's tokens, redeemed or not, are not this run's: refused, recorded.
      const next = await d.client();
      const before = leftOver[round]!;
      expect(await denied(next.redeem(before.spent.token))).toBe("token_signature_invalid");
      expect(await denied(next.redeem(before.unspent.token))).toBe("token_signature_invalid");
      expect(await denied(next.report({ tokenId: before.spent.tokenId, exitStatus: 0, durationMs: 1 }))).toBe(
        "no_token",
      );
      // This run's own tokens still redeem once.
      const fresh = await cycle(next, round);
      expect(await denied(next.redeem(fresh.token))).toBe("token_replayed");
      await next.close();
    }
    expect(await d.stop()).toBe(0);

    const entries = await lineageEntries(d.lineageDir);
    expect(entries.filter((e) => e.type === "daemon_start")).toHaveLength(5);
    // Every acknowledged redeem is in the log.
    const inLog = new Set(entries.flatMap((e) => (e.type === "token_redeemed" ? [toHex(e.body.token)] : [])));
    for (const t of redeemed) expect(inLog.has(toHex(t))).toBe(true);
    expect(redeemed.length).toBeGreaterThan(ways.length * 3);

    await d.start();
    const bundle = join(d.dir, "bundle");
    const ex = await execgate(["audit", "export", "--out", bundle], d.env);
    expect(ex.code, `${ex.stderr}\n${d.stderr().slice(-3000)}`).toBe(0);
    const trust = join(d.dir, "ek-ca.pem");
    await writeFile(
      trust,
      `${await readFile(d.tpm.paths.rootCa, "utf8")}${await readFile(d.tpm.paths.issuerCa, "utf8")}`,
    );
    const v = await execgate(["audit", "verify", bundle, "--trust", trust, "--json"]);
    expect(JSON.parse(v.stdout).failures, v.stderr).toEqual([]);
    expect(v.code, v.stdout).toBe(0);
    // Token ids are unique over the whole log, across the five runs.
    const ids = issued.map((t) => toHex(t.tokenId));
    expect(new Set(ids).size).toBe(ids.length);
  });
});
