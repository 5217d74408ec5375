import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { expect, it } from "vitest";
import { execgate } from "../helpers/cli.js";
import { describeHsm, describeTpm } from "../helpers/hardware.js";

async function scratch(): Promise<string> {
  return mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "dev-hsm-"));
}

async function until(what: string, f: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function parseEnv(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .trim()
      .split("\n")
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/** Runs `dev up --root ROOT`, runs one command through it, and stops it with SIGINT. */
async function serveOnce(root: string, wantEnv: string[]): Promise<void> {
  const dir = await scratch();
  const child = spawn(
    process.execPath,
    [resolve("dist/daemon/cli.js"), "dev", "up", "--root", root, "--dir", dir],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  try {
    await until("the daemon", () => stderr.includes("daemon on") || child.exitCode !== null);
    expect(stderr).toContain("daemon on");
    const env = parseEnv(await readFile(join(dir, "env"), "utf8"));
    expect(Object.keys(env).sort()).toEqual(wantEnv);
    const marker = join(dir, "ran");
    const ok = await execgate(["run", "--scope", "dev", "--", "/usr/bin/touch", marker], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(existsSync(marker)).toBe(true);
  } finally {
    child.kill("SIGINT");
  }
  expect(await exited).toBe(0);
  expect(stderr).not.toMatch(/lineage_close_failed/);
}

describeHsm("execgate dev up --root hsm (SoftHSM2 only, no swtpm)", () => {
  it("--check makes the token and key, signs an epoch and verifies it; a second run resumes", async () => {
    const dir = await scratch();
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
    expect((await execgate(["dev", "up", "--root", "nope", "--dir", await scratch()])).code).toBe(2);
  });
});

describeHsm("execgate dev up --root tpm+hsm", () => {
  describeTpm("with swtpm", () => {
    it("serves tokens with both roots", async () => {
      await serveOnce("tpm+hsm", ["EXECGATE_CONFIG", "EXECGATE_SOCKET", "SOFTHSM2_CONF", "TPM2TOOLS_TCTI"]);
    });
  });
});
