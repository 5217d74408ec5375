import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { execgate } from "../helpers/cli.js";
import { describeTpm } from "../helpers/hardware.js";

describeTpm("execgate dev up (the embedded default)", () => {
  it("provisions a swtpm, enrolls, quotes and verifies; a second run resumes the same TPM", async () => {
    const dir = await mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "dev-"));
    const first = await execgate(["dev", "up", "--check", "--dir", dir, "--json"]);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    const r1 = JSON.parse(first.stdout);
    expect(r1).toMatchObject({ ok: true, ak: { handle: "0x81000010", created: true } });
    expect(r1.quote).toMatchObject({ valid: true, selection: "sha256:0,1,2,3,4,5,6,7,10" });
    expect(r1.ekCertificates).toHaveLength(2);
    for (const c of r1.ekCertificates) expect(c.chain).toBe("verified");
    expect(r1.signingKey.certifiedByAk).toBe("verified");
    expect(await readFile(join(dir, "env"), "utf8")).toMatch(/^TPM2TOOLS_TCTI=swtpm:path=.*swtpm\.sock$/m);

    const second = JSON.parse((await execgate(["dev", "up", "--check", "--dir", dir, "--json"])).stdout);
    expect(second).toMatchObject({ ok: true, ak: { created: false } });
    expect(second.quote.resetCount).toBeGreaterThan(r1.quote.resetCount);
  });
});
