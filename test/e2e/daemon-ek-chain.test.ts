import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

/*
 * tpm.ek_ca_bundle at start: the daemon starts when the swtpm's EK certificate chains to the
 * bundle, and refuses (exit 2, not restarted by systemd) when it does not.
 */
const FOREIGN_CA = join(import.meta.dirname, "../fixtures/tpm/chain-root.pem");

describeTpm("tpm.ek_ca_bundle", () => {
  let d: TestDaemon;
  let bundle: string;
  beforeAll(async () => {
    d = await startTestDaemon({
      config: { tpm: ['ek_ca_bundle = "$DIR/ek-ca.pem"'] },
      // The swtpm_localca root and the intermediate that signs the EK certificate.
      prepare: async (tpm, dir) => {
        bundle = join(dir, "ek-ca.pem");
        const pems = await Promise.all([
          readFile(tpm.paths.rootCa, "utf8"),
          readFile(tpm.paths.issuerCa, "utf8"),
        ]);
        await writeFile(bundle, pems.join("\n"));
      },
    });
  });
  afterAll(async () => {
    await d?.dispose();
  });

  it("a bundle the EK certificate chains to: the daemon starts and serves", async () => {
    const c = await d.client();
    c.close();
    expect(d.stderr()).not.toContain("refusing to start");
  });

  it("a bundle the EK certificate does not chain to: refuses to start, exit 2, and says why", async () => {
    expect(await d.stop()).toBe(0);
    const good = await readFile(bundle, "utf8");
    await copyFile(FOREIGN_CA, bundle);
    try {
      await expect(d.start()).rejects.toThrow(/did not start/);
      expect(d.child()?.exitCode).toBe(2);
      expect(d.stderr()).toMatch(
        /refusing to start: TPM .*no EK certificate of the EK chains to tpm\.ek_ca_bundle/,
      );
    } finally {
      await writeFile(bundle, good);
    }
    await d.start();
  });
});
