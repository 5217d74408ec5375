import { execFile } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/config/defaults.js";
import { SYSTEMD_ANALYZE, UNIT_DIR } from "../helpers/systemd.js";

/*
 * The units as a reviewer and systemd itself see them: `systemd-analyze verify` without a
 * finding, `systemd-analyze security --offline=true` at an exposure of 2.0 or lower, the
 * sysusers.d and tmpfiles.d entries accepted by their tools, and the socket matching the
 * daemon's defaults. (The syscall filter is checked against a traced daemon in
 * test/e2e/daemon-systemd.test.ts.)
 */

const run = promisify(execFile);
const TOOLS = [SYSTEMD_ANALYZE, "/usr/bin/systemd-sysusers", "/usr/bin/systemd-tmpfiles"];
const missingTools = TOOLS.filter((t) => {
  try {
    accessSync(t, constants.X_OK);
    return false;
  } catch {
    return true;
  }
});
if (missingTools.length > 0 && process.env.CI === "true")
  throw new Error(
    `CI=true but ${missingTools.join(", ")} missing (apt package systemd; run scripts/setup.sh)`,
  );
const describeSystemd = missingTools.length === 0 ? describe : describe.skip;

/** `Key=value` lines of a unit file, in order (repeated keys kept). */
function settings(text: string): [string, string][] {
  return text
    .split("\n")
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]);
}

function one(s: [string, string][], key: string): string | undefined {
  const v = s.filter(([k]) => k === key);
  expect(v.length, key).toBeLessThanOrEqual(1);
  return v[0]?.[1];
}

let tmp: string;
let service: string;
let socket: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "units-"));
  service = await readFile(join(UNIT_DIR, "execgate.service"), "utf8");
  socket = await readFile(join(UNIT_DIR, "execgate.socket"), "utf8");
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describeSystemd("systemd units", () => {
  it("systemd-analyze verify: no findings", async () => {
    // The one change: ExecStart's /usr/bin/execgate (not installed on a test machine) points
    // to an executable stand-in; verify checks the command exists and is executable.
    const bin = join(tmp, "bin", "execgate");
    await mkdir(join(tmp, "bin"), { recursive: true });
    await writeFile(bin, "#!/bin/sh\nexit 0\n");
    await chmod(bin, 0o755);
    const units = join(tmp, "units");
    await mkdir(units, { recursive: true });
    expect(service).toContain("ExecStart=/usr/bin/execgate daemon ");
    await writeFile(
      join(units, "execgate.service"),
      service.replace("ExecStart=/usr/bin/execgate ", `ExecStart=${bin} `),
    );
    await copyFile(join(UNIT_DIR, "execgate.socket"), join(units, "execgate.socket"));
    const r = await run(SYSTEMD_ANALYZE, [
      "verify",
      "--man=no",
      join(units, "execgate.service"),
      join(units, "execgate.socket"),
    ]).catch((e: { stdout: string; stderr: string; code: number }) => e);
    expect(`${r.stdout}${r.stderr}`.trim()).toBe("");
    expect("code" in r ? r.code : 0).toBe(0);
  });

  it("systemd-analyze security --offline=true: exposure 2.0 or lower", async () => {
    const r = await run(SYSTEMD_ANALYZE, [
      "security",
      "--offline=true",
      "--no-pager",
      join(UNIT_DIR, "execgate.service"),
    ]).catch((e: { stdout: string; stderr: string }) => e);
    const m = /Overall exposure level for execgate\.service: (\d+\.\d)/.exec(r.stdout);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(2.0);
    // The one capability the daemon holds is CAP_SYS_PTRACE (reading callers' /proc/<pid>/exe).
    const capsMissed = r.stdout.split("\n").filter((l) => l.startsWith("✗ CapabilityBoundingSet="));
    expect(capsMissed.map((l) => l.split(/\s+/)[1])).toEqual(["CapabilityBoundingSet=~CAP_SYS_PTRACE"]);
  });

  it("the service: Type=notify with a watchdog longer than an idle epoch plus a TPM timeout, hardening in place", () => {
    const s = settings(service);
    expect(one(s, "Type")).toBe("notify");
    expect(one(s, "NotifyAccess")).toBe("main");
    const watchdog = /^(\d+)s$/.exec(one(s, "WatchdogSec") ?? "");
    expect(Number(watchdog?.[1]) * 1000).toBeGreaterThan(
      DEFAULTS.attest.idle_epoch_ms + DEFAULTS.tpm.timeout_ms,
    );
    expect(one(s, "User")).toBe("execgate");
    expect(one(s, "StateDirectory")).toBe("execgate");
    // Start-up has no timeout: a host the policy does not approve stays not-ready, not restarted.
    expect(one(s, "TimeoutStartSec")).toBe("infinity");
    expect(one(s, "LoadCredential")).toMatch(/^hsm-pin:\//);
    expect(one(s, "DeviceAllow")).toBe("/dev/tpmrm0 rw");
    expect(one(s, "RestrictAddressFamilies")).toBe("AF_UNIX");
    for (const [k, v] of [
      ["ProtectSystem", "strict"],
      ["ProtectHome", "yes"],
      ["PrivateTmp", "yes"],
      ["NoNewPrivileges", "yes"],
      ["ProtectKernelTunables", "yes"],
      ["ProtectKernelModules", "yes"],
      ["ProtectKernelLogs", "yes"],
      ["ProtectControlGroups", "yes"],
      ["MemoryDenyWriteExecute", "no"],
    ] as const)
      expect(one(s, k), k).toBe(v);
    // Settings that are off say why, in a comment right above them.
    for (const key of ["MemoryDenyWriteExecute=no", "PrivateUsers=no"]) {
      const lines = service.split("\n");
      const i = lines.indexOf(key);
      expect(lines[i - 1]?.startsWith("#"), key).toBe(true);
    }
    // The daemon's state and socket live where the config defaults say.
    expect(DEFAULTS.daemon.state_dir).toBe("/var/lib/execgate");
    expect(service).toContain("--config /etc/execgate/execgate.toml");
  });

  it("no *Directory= of the service covers the socket's directory (systemd would chown the socket)", () => {
    // On first activation systemd chowns a RuntimeDirectory= (or State…, Cache…) tree that is not
    // owned by the service user — the socket execgate.socket made inside it included.
    const base: Record<string, string> = {
      RuntimeDirectory: "/run",
      StateDirectory: "/var/lib",
      CacheDirectory: "/var/cache",
      LogsDirectory: "/var/log",
      ConfigurationDirectory: "/etc",
    };
    const socketDir = dirname(one(settings(socket), "ListenStream") ?? "");
    expect(socketDir).toBe("/run/execgate");
    const dirs = settings(service)
      .filter(([k]) => k.endsWith("Directory") && k !== "WorkingDirectory")
      .flatMap(([k, v]) => {
        expect(base[k], k).toBeDefined();
        return v.split(/\s+/).map((name) => join(base[k] ?? "", name.split(":")[0] ?? ""));
      });
    expect(dirs.length).toBeGreaterThan(0);
    for (const d of dirs) expect(socketDir === d || socketDir.startsWith(`${d}/`), d).toBe(false);
  });

  it("the socket: the daemon's default path, 0660, group execgate-clients", () => {
    const s = settings(socket);
    expect(one(s, "ListenStream")).toBe(DEFAULTS.daemon.socket);
    expect(one(s, "SocketMode")).toBe(DEFAULTS.daemon.socket_mode);
    expect(one(s, "SocketGroup")).toBe("execgate-clients");
    expect(one(s, "Accept")).toBe("no");
  });

  it("sysusers.d and tmpfiles.d entries are accepted by their tools (into a scratch root), measurement lists readable by the execgate group", async () => {
    const root = join(tmp, "root");
    await mkdir(join(root, "etc"), { recursive: true });
    await writeFile(join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    await writeFile(join(root, "etc", "group"), "root:x:0:\n");
    const dry = await run("/usr/bin/systemd-sysusers", [
      "--dry-run",
      `--root=${root}`,
      join(UNIT_DIR, "sysusers.conf"),
    ]);
    expect(dry.stdout + dry.stderr).toMatch(/Creating user '?execgate'?/);
    expect(dry.stdout + dry.stderr).toMatch(/Creating group '?execgate-clients'?/);
    // For real, into the scratch root: tmpfiles.d needs the execgate group to exist, as at boot.
    const sysusers = await run("/usr/bin/systemd-sysusers", [
      `--root=${root}`,
      join(UNIT_DIR, "sysusers.conf"),
    ]);
    expect(sysusers.stderr).not.toMatch(/fail|invalid|ignoring/i);
    const group = await readFile(join(root, "etc", "group"), "utf8");
    const gid = Number(/^execgate:x:(\d+):/m.exec(group)?.[1]);
    expect(gid).toBeGreaterThan(0);
    expect(group).toMatch(/^tss:x:\d+:execgate$/m);
    // A root-only measurement list, as securityfs makes it; the IMA ascii list is absent (skipped).
    const ima = join(root, "sys/kernel/security/ima/binary_runtime_measurements");
    await mkdir(join(root, "sys/kernel/security/ima"), { recursive: true });
    await writeFile(ima, "", { mode: 0o400 });
    const tmpfiles = await run("/usr/bin/systemd-tmpfiles", [
      "--create",
      `--root=${root}`,
      join(UNIT_DIR, "tmpfiles.conf"),
    ]);
    expect(tmpfiles.stderr).toBe("");
    const { stat } = await import("node:fs/promises");
    expect((await stat(join(root, "etc/execgate/credentials"))).mode & 0o777).toBe(0o700);
    expect((await stat(join(root, "etc/execgate/credentials/hsm-pin"))).mode & 0o777).toBe(0o600);
    const st = await stat(ima);
    expect([st.mode & 0o777, st.uid, st.gid]).toEqual([0o440, 0, gid]);
    // The socket's directory, owned by the daemon's user (not by systemd's RuntimeDirectory=).
    const uid = Number(/^execgate:x:(\d+):/m.exec(await readFile(join(root, "etc", "passwd"), "utf8"))?.[1]);
    const runDir = await stat(join(root, "run/execgate"));
    expect([runDir.mode & 0o777, runDir.uid, runDir.gid]).toEqual([0o755, uid, gid]);
  });
});
