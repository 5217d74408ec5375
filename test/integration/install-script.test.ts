import { execFile } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { startTestDaemon } from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

/*
 * scripts/install.sh into a scratch root (DESTDIR), then the installed tree on its own: its
 * CLI runs, a daemon started from it serves a token on swtpm (so the copied dependencies and
 * the native addon are complete), and scripts/uninstall.sh removes everything but the state.
 */

const run = promisify(execFile);
const INSTALL = resolve("scripts/install.sh");
const UNINSTALL = resolve("scripts/uninstall.sh");

let tmp: string;
let root: string;
let installOut: string;

beforeAll(async () => {
  // Outside the repository, so Node cannot resolve anything from the checkout's node_modules.
  tmp = await mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "install-"));
  root = join(tmp, "root");
  installOut = (await run("bash", [INSTALL, "--destdir", root], { timeout: 120_000 })).stdout;
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const lib = () => join(root, "usr/lib/execgate");

describe("scripts/install.sh into a DESTDIR", () => {
  it("installs the application, wrapper, units, sysusers/tmpfiles entries and /etc/execgate without starting anything", async () => {
    for (const f of [
      "usr/lib/execgate/dist/daemon/cli.js",
      "usr/lib/execgate/dist/src/native/index.js",
      "usr/lib/execgate/native/build/Release/execgate_native.node",
      "usr/lib/execgate/package.json",
      "usr/lib/execgate/node_modules/pino/package.json",
      "usr/lib/execgate/node_modules/smol-toml/package.json",
      "usr/lib/execgate/node_modules/pkcs11js/package.json",
      "usr/lib/execgate/docs/operations.md",
      "usr/lib/execgate/dist/src/client/index.d.ts",
      "usr/lib/execgate/examples/policy.toml",
      "usr/lib/systemd/system/execgate.service",
      "usr/lib/systemd/system/execgate.socket",
      "usr/lib/sysusers.d/execgate.conf",
      "usr/lib/tmpfiles.d/execgate.conf",
      "etc/execgate/execgate.toml",
      "etc/execgate/policy.toml",
      "etc/execgate/credentials/hsm-pin",
    ])
      expect(existsSync(join(root, f)), f).toBe(true);
    // No dev dependencies, tests or benchmarks.
    expect(existsSync(join(lib(), "node_modules/vitest"))).toBe(false);
    expect(existsSync(join(lib(), "node_modules/typescript"))).toBe(false);
    expect(existsSync(join(lib(), "dist/test"))).toBe(false);
    expect(existsSync(join(lib(), "dist/scripts"))).toBe(false);
    expect((await stat(join(root, "etc/execgate/credentials"))).mode & 0o777).toBe(0o700);
    expect((await stat(join(root, "etc/execgate/credentials/hsm-pin"))).mode & 0o777).toBe(0o600);
    // The wrapper runs a private copy of the pinned Node, the one this suite runs on.
    const wrapper = await readFile(join(root, "usr/bin/execgate"), "utf8");
    expect(wrapper).toContain(
      `exec /usr/lib/execgate/node/bin/node /usr/lib/execgate/dist/daemon/cli.js "$@"`,
    );
    expect((await stat(join(root, "usr/bin/execgate"))).mode & 0o111).toBe(0o111);
    expect((await run(join(lib(), "node/bin/node"), ["--version"])).stdout).toBe(`${process.version}\n`);
    // The installed example config is valid as written.
    const cfg = parseConfig(
      await readFile(join(root, "etc/execgate/execgate.toml"), "utf8"),
      "/etc/execgate",
    );
    expect(cfg.daemon.socket).toBe("/run/execgate/execgate.sock");
    // No file install.sh does not put there (a missing EK CA bundle would stop every start).
    expect(cfg.tpm.ekCaBundle).toBeUndefined();
    expect(installOut).toContain("nothing started");
    // What ran is the repository's units, byte for byte.
    expect(await readFile(join(root, "usr/lib/systemd/system/execgate.service"), "utf8")).toBe(
      await readFile("systemd/execgate.service", "utf8"),
    );
  });

  it("the installed CLI runs on its own", async () => {
    const r = await run(process.execPath, [join(lib(), "dist/daemon/cli.js"), "--help"], { cwd: tmp });
    expect(r.stdout).toContain("execgate daemon");
    expect(r.stdout).toContain("execgate status");
  });

  it("a second install keeps the operator's config and policy", async () => {
    await writeFile(join(root, "etc/execgate/policy.toml"), "# the operator's policy\n");
    const out = (await run("bash", [INSTALL, "--destdir", root], { timeout: 120_000 })).stdout;
    expect(out).toContain("keeping the existing /etc/execgate/policy.toml");
    expect(await readFile(join(root, "etc/execgate/policy.toml"), "utf8")).toBe("# the operator's policy\n");
    expect(existsSync(join(root, "usr/lib/execgate.new"))).toBe(false);
    expect(existsSync(join(root, "usr/lib/execgate.old"))).toBe(false);
  });

  it("--node runs the wrapper on another Node of the pinned major, no older than the pinned one", async () => {
    const other = join(tmp, "other-node");
    await run("bash", [INSTALL, "--destdir", other, "--node", process.execPath], { timeout: 120_000 });
    const wrapper = await readFile(join(other, "usr/bin/execgate"), "utf8");
    expect(wrapper).toContain(`exec ${process.execPath} /usr/lib/execgate/dist/daemon/cli.js "$@"`);
    await rm(other, { recursive: true, force: true });
    // /usr/bin/node is the machine's bootstrap Node (another major): refused.
    if (existsSync("/usr/bin/node") && realpathSync("/usr/bin/node") !== realpathSync(process.execPath)) {
      const e = await run("bash", [INSTALL, "--destdir", join(tmp, "y"), "--node", "/usr/bin/node"]).catch(
        (err: { code: number; stderr: string }) => err,
      );
      expect("code" in e && e.code).toBe(2);
      expect("stderr" in e && e.stderr).toContain(`--node must be Node ${process.version.split(".")[0]}.x`);
    }
  });

  it("refuses a Node the unit cannot see (ProtectHome=yes) and unknown arguments", async () => {
    const e = await run("bash", [INSTALL, "--destdir", join(tmp, "x"), "--node", "/root/.nvm/node"]).catch(
      (err: { code: number; stderr: string }) => err,
    );
    expect("code" in e && e.code).toBe(2);
    const u = await run("bash", [INSTALL, "--bogus"]).catch((err: { code: number }) => err);
    expect("code" in u && u.code).toBe(2);
  });

  it("--help prints the scripts' header comments and no code", async () => {
    for (const script of [INSTALL, UNINSTALL]) {
      const { stdout } = await run("bash", [script, "--help"]);
      expect(stdout, script).toContain("Usage: scripts/");
      expect(stdout, script).not.toMatch(/set -euo|^#|DESTDIR=|\$\(/m);
    }
  });
});

describeTpm("the installed tree serves tokens", () => {
  it("a daemon started from /usr/lib/execgate (in the DESTDIR) issues a token on swtpm", async () => {
    const d = await startTestDaemon({
      wrap: (argv) => [join(lib(), "node/bin/node"), join(lib(), "dist/daemon/cli.js"), ...argv.slice(2)],
    });
    try {
      const c = await d.client();
      try {
        expect((await c.requestToken({ scope: "dev", argv: ["/bin/true"] })).token.length).toBeGreaterThan(0);
      } finally {
        await c.close();
      }
    } finally {
      await d.dispose();
    }
  });
});

describe("scripts/uninstall.sh", () => {
  it("removes everything but the lineage state", async () => {
    const state = join(root, "var/lib/execgate/lineage");
    await mkdir(state, { recursive: true });
    await writeFile(join(state, "00000000.seg"), "lineage");
    const out = (await run("bash", [UNINSTALL, "--destdir", root])).stdout;
    expect(out).toContain("kept");
    for (const f of [
      "usr/lib/execgate",
      "usr/bin/execgate",
      "usr/lib/systemd/system/execgate.service",
      "usr/lib/systemd/system/execgate.socket",
      "usr/lib/sysusers.d/execgate.conf",
      "usr/lib/tmpfiles.d/execgate.conf",
      "etc/execgate",
    ])
      expect(existsSync(join(root, f)), f).toBe(false);
    expect(await readFile(join(state, "00000000.seg"), "utf8")).toBe("lineage");
  });

  it("leaves a /usr/bin/execgate it did not write", async () => {
    const other = join(tmp, "other");
    await mkdir(join(other, "usr/bin"), { recursive: true });
    await writeFile(join(other, "usr/bin/execgate"), "#!/bin/sh\necho distro\n");
    await run("bash", [UNINSTALL, "--destdir", other]);
    expect(existsSync(join(other, "usr/bin/execgate"))).toBe(true);
  });
});
