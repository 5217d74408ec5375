import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { processEnded } from "../../src/dev/pid.js";
import { execgate } from "../helpers/cli.js";
import { parseEnv, scratch, spawnDevUp, until } from "../helpers/dev.js";
import { describeTpm } from "../helpers/hardware.js";

/** Live (not zombie) swtpm processes whose command line holds `marker`. */
async function swtpmsServing(marker: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline.startsWith("/usr/bin/swtpm\0") && cmdline.includes(marker) && !(await processEnded(pid)))
      out.push(pid);
  }
  return out;
}

describeTpm("execgate dev up (the embedded default)", () => {
  it("--check provisions a swtpm, enrolls, quotes and verifies; a second run resumes the same TPM", async () => {
    const dir = await scratch("dev-");
    const first = await execgate(["dev", "up", "--check", "--dir", dir, "--json"]);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    const r1 = JSON.parse(first.stdout);
    expect(r1).toMatchObject({ ok: true, ak: { handle: "0x81000010", created: true } });
    expect(r1.quote).toMatchObject({ valid: true, selection: "sha256:0,1,2,3,4,5,6,7,10" });
    expect(r1.ekCertificates).toHaveLength(2);
    for (const c of r1.ekCertificates) expect(c.chain).toBe("verified");
    expect(r1.signingKey.certifiedByAk).toBe("verified");
    expect(r1.hsmEpoch).toEqual({ valid: true }); // the default embeds a SoftHSM2 key too
    const second = JSON.parse((await execgate(["dev", "up", "--check", "--dir", dir, "--json"])).stdout);
    expect(second).toMatchObject({ ok: true, ak: { created: false } });
    expect(second.quote.resetCount).toBeGreaterThan(r1.quote.resetCount);
  });

  it("serves tokens on its socket, writes DIR/env for other shells, and stops cleanly on SIGINT", async () => {
    const dir = await scratch("dev-");
    const dev = spawnDevUp(["--dir", dir]);
    try {
      await until("the daemon", () => dev.stderr().includes("daemon on"));
      const env = parseEnv(await readFile(join(dir, "env"), "utf8"));
      expect(Object.keys(env)).toEqual(
        expect.arrayContaining(["EXECGATE_CONFIG", "EXECGATE_SOCKET", "TPM2TOOLS_TCTI", "SOFTHSM2_CONF"]),
      );
      const marker = join(dir, "ran");
      const ok = await execgate(["run", "--scope", "dev", "--", "/usr/bin/touch", marker], env);
      expect(ok.code).toBe(0);
      expect(existsSync(marker)).toBe(true);
      const status = await execgate(["status", "--json"], env);
      expect(status.code).toBe(0);
      expect(JSON.parse(status.stdout).epoch.verified).toBe(true);
    } finally {
      dev.child.kill("SIGINT");
    }
    expect(await dev.exited).toBe(0);
    expect(dev.stderr()).toMatch(/daemon_stopping/);
    expect(dev.stderr()).not.toMatch(/stop_step_failed/);
  });

  it("a second dev up on a running DIR refuses (exit 3) and leaves the first daemon's swtpm alone; dev-fresh is granted; DIR/ek-ca.pem verifies an export", async () => {
    const dir = await scratch("dev-");
    const dev = spawnDevUp(["--dir", dir]);
    try {
      await dev.ready();
      expect(dev.stderr()).toContain(`--trust ${join(dir, "ek-ca.pem")}`);
      const env = parseEnv(await readFile(join(dir, "env"), "utf8"));
      const fresh = await execgate(["run", "--scope", "dev-fresh", "--", "/bin/true"], env);
      expect(fresh.stderr).toBe("");
      expect(fresh.code).toBe(0);

      for (const extra of [[], ["--check"]]) {
        const second = await execgate(["dev", "up", "--dir", dir, ...extra]);
        expect(second.code, second.stderr).toBe(3);
        expect(second.stderr).toContain(
          `execgate dev up: ${dir} is in use by another execgate dev up (pid ${dev.child.pid})`,
        );
      }
      // A fresh scope needs a new epoch, so a quote from the first daemon's swtpm after the refusals.
      for (const scope of ["dev-fresh", "dev"]) {
        const r = await execgate(["run", "--scope", scope, "--", "/bin/true"], env);
        expect(r.code, `${scope}: ${r.stderr}\n${dev.stderr().slice(-2000)}`).toBe(0);
      }
      expect(dev.stderr()).not.toMatch(/hardware_unavailable/);

      const bundle = join(dir, "bundle");
      const ex = await execgate(["audit", "export", "--out", bundle], env);
      expect(ex.code, ex.stderr).toBe(0);
      const v = await execgate(["audit", "verify", bundle, "--trust", join(dir, "ek-ca.pem"), "--json"]);
      expect(JSON.parse(v.stdout).failures, v.stderr).toEqual([]);
      expect(v.code).toBe(0);
      // The pins dev up wrote (DIR/enrollment) and the audit line it printed work as printed.
      const akPub = join(dir, "enrollment", "ak.pub");
      expect(dev.stderr()).toContain(
        `execgate audit verify BUNDLE --trust ${join(dir, "ek-ca.pem")} --ak-pub ${akPub}`,
      );
      for (const f of ["ek.pub", "ak.pem", "signing-key.pub", "signing-key.pem"])
        expect((await readFile(join(dir, "enrollment", f))).length).toBeGreaterThan(0);
      const pinned = await execgate([
        "audit",
        "verify",
        bundle,
        "--trust",
        join(dir, "ek-ca.pem"),
        "--ak-pub",
        akPub,
      ]);
      expect(pinned.code, pinned.stderr + pinned.stdout).toBe(0);
      const pem = await execgate([
        "audit",
        "verify",
        bundle,
        "--trust",
        join(dir, "ek-ca.pem"),
        "--ak-pub",
        join(dir, "enrollment", "ak.pem"),
      ]);
      expect(pem.code, pem.stderr + pem.stdout).toBe(0);
      // The help names what --trust needs: the root and the intermediate, as DIR/ek-ca.pem has them.
      const help = await execgate(["audit", "verify", "--help"]);
      expect(help.stdout).toMatch(/--trust: .*root AND intermediate/);
      expect(help.stdout).toContain("DIR/ek-ca.pem");
    } finally {
      dev.child.kill("SIGINT");
    }
    expect(await dev.exited).toBe(0);
  });

  it("under sudo, the user the dev policy grants can read DIR/env and ask the daemon for a token", async () => {
    // The run's scratch directory is 0700 root; the developer must be able to reach DIR.
    const base = await mkdtemp(join(tmpdir(), "execgate-dev-sudo-"));
    await chmod(base, 0o755);
    const dir = join(base, "dev");
    const nobody = { uid: 65534, gid: 65534 };
    const dev = spawnDevUp(["--root", "tpm", "--dir", dir], {
      ...process.env,
      SUDO_UID: String(nobody.uid),
      SUDO_GID: String(nobody.gid),
    });
    const asNobody = promisify(execFile);
    try {
      await dev.ready();
      expect(dev.stderr()).toContain("daemon on");
      for (const f of [dir, join(dir, "env")]) expect((await stat(f)).uid, f).toBe(nobody.uid);
      const envText = (await asNobody("/bin/cat", [join(dir, "env")], nobody)).stdout;
      const env = { PATH: process.env.PATH, ...parseEnv(envText) };
      const r = await asNobody(
        process.execPath,
        [resolve("dist/daemon/cli.js"), "run", "--scope", "dev", "--", "/bin/true"],
        { ...nobody, env },
      );
      expect(r.stderr).toBe("");
    } finally {
      dev.child.kill("SIGINT");
      expect(await dev.exited).toBe(0);
      await rm(base, { recursive: true, force: true });
    }
  });

  it("kill -9 of a running dev up leaves no swtpm serving DIR; a second dev up on DIR starts cleanly", async () => {
    const dir = await scratch("dev-");
    const state = `\0dir=${join(dir, "tpm", "state")}\0`;
    const first = spawnDevUp(["--dir", dir]);
    let swtpm = 0;
    try {
      await first.ready();
      expect(first.stderr()).toContain("daemon on");
      swtpm = Number((await readFile(join(dir, "tpm", "swtpm.pid"), "utf8")).trim());
      expect(await swtpmsServing(state)).toEqual([swtpm]);
    } finally {
      first.child.kill("SIGKILL");
    }
    expect(await first.exited).toBe(null);
    // Dead, though maybe a zombie its new parent never reaps (it then holds nothing).
    await until("no swtpm left serving DIR", async () => (await swtpmsServing(state)).length === 0);
    expect(await processEnded(swtpm)).toBe(true);

    const second = spawnDevUp(["--dir", dir]);
    try {
      await second.ready();
      expect(second.stderr()).toContain("daemon on");
      const env = parseEnv(await readFile(join(dir, "env"), "utf8"));
      const r = await execgate(["run", "--scope", "dev", "--", "/bin/true"], env);
      expect(r.code, r.stderr).toBe(0);
      expect(await swtpmsServing(state)).toHaveLength(1);
    } finally {
      second.child.kill("SIGINT");
    }
    expect(await second.exited).toBe(0);
    expect(second.stderr()).not.toMatch(/internal|ESRCH/);
  });

  it("a startup refusal (a policy with an unknown key, on resume) is exit 2 with the daemon's message, not internal", async () => {
    const dir = await scratch("dev-");
    // A second run keeps DIR/policy.toml as it finds it.
    await writeFile(join(dir, "policy.toml"), 'bogus_key = 1\n[[executors]]\nname = "x"\nuids = [0]\n');
    const r = await execgate(["dev", "up", "--root", "tpm", "--dir", dir]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^execgate dev up: refusing to start: policy .*bogus_key/m);
    expect(r.stderr).not.toMatch(/internal/);
  });
});
