import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { execgate } from "../helpers/cli.js";
import { parseEnv, scratch, spawnDevUp } from "../helpers/dev.js";
import { describeHsm, describeTpm } from "../helpers/hardware.js";

/** Runs `dev up --root ROOT`, runs one command through it, and stops it with SIGINT. */
async function serveOnce(root: string, wantEnv: string[]): Promise<void> {
  const dir = await scratch("dev-hsm-");
  const dev = spawnDevUp(["--root", root, "--dir", dir]);
  try {
    await dev.ready();
    expect(dev.stderr()).toContain("daemon on");
    const env = parseEnv(await readFile(join(dir, "env"), "utf8"));
    expect(Object.keys(env).sort()).toEqual(wantEnv);
    const marker = join(dir, "ran");
    const ok = await execgate(["run", "--scope", "dev", "--", "/usr/bin/touch", marker], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(existsSync(marker)).toBe(true);
  } finally {
    dev.child.kill("SIGINT");
  }
  expect(await dev.exited).toBe(0);
  expect(dev.stderr()).not.toMatch(/stop_step_failed/);
}

describeHsm("execgate dev up --root hsm (SoftHSM2 only, no swtpm)", () => {
  it("--check makes the token and key, signs an epoch and verifies it; a second run resumes", async () => {
    const dir = await scratch("dev-hsm-");
    const first = await execgate(["dev", "up", "--root", "hsm", "--check", "--dir", dir, "--json"]);
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({
      ok: true,
      root: "hsm",
      hsm: { created: true },
      epoch: { valid: true },
    });
    expect(existsSync(join(dir, "tpm"))).toBe(false);
    const second = JSON.parse(
      (await execgate(["dev", "up", "--root", "hsm", "--check", "--dir", dir, "--json"])).stdout,
    );
    expect(second).toMatchObject({ ok: true, hsm: { created: false } });
  });

  it("serves tokens with the HSM as the only root", async () => {
    await serveOnce("hsm", ["EXECGATE_CONFIG", "EXECGATE_SOCKET", "SOFTHSM2_CONF"]);
  });

  it("rejects an unknown root (exit 2)", async () => {
    expect((await execgate(["dev", "up", "--root", "nope", "--dir", await scratch("dev-hsm-")])).code).toBe(
      2,
    );
  });
});

describeHsm("execgate dev up --root tpm+hsm", () => {
  describeTpm("with swtpm", () => {
    it("serves tokens with both roots", async () => {
      await serveOnce("tpm+hsm", ["EXECGATE_CONFIG", "EXECGATE_SOCKET", "SOFTHSM2_CONF", "TPM2TOOLS_TCTI"]);
    });
  });
});
