import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { expect, it } from "vitest";
import type { ChaosReport } from "../../scripts/chaos/chaos.js";
import { scratch } from "../helpers/dev.js";
import { describeTpm } from "../helpers/hardware.js";

describeTpm("scripts/chaos.sh: kill -9 of the daemon under load, 10 cycles", () => {
  it("no acknowledged token or redeem is lost, the daemon restarts each time, and the final export verifies", async () => {
    const dir = join(await scratch("chaos-"), "run");
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((done) =>
      execFile(
        resolve("scripts/chaos.sh"),
        ["--no-setup", "--cycles", "10", "--max-load-ms", "400", "--dir", dir, "--json"],
        { encoding: "utf8", timeout: 170_000, env: { PATH: process.env.PATH } },
        (e, stdout, stderr) =>
          done({ code: e ? (typeof e.code === "number" ? e.code : 99) : 0, stdout, stderr }),
      ),
    );
    const report = JSON.parse(r.stdout || "{}") as Partial<ChaosReport>;
    expect(report.verify?.failures, r.stderr.slice(-3000)).toEqual([]);
    expect(report).toMatchObject({
      ok: true,
      cycles: 10,
      tokensLost: 0,
      redeemsLost: 0,
      starts: 11,
      unexpected: [],
    });
    expect(report.verify?.exitCode).toBe(0);
    expect(report.tokensAcknowledged).toBeGreaterThan(0);
    expect(report.redeemsAcknowledged).toBeGreaterThan(0);
    expect(r.stderr.match(/^chaos: cycle \d+\/10: kill -9/gm)).toHaveLength(10);
    expect(r.code).toBe(0);
  }, 180_000);
});
