import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ExecgateClient, ExecgateDenied } from "../../src/client/index.js";
import { type DatagramListener, listenDatagram } from "../fixtures/peer/unix-peer.js";
import { execgate } from "../helpers/cli.js";
import {
  eventually,
  lineageEntries,
  startTestDaemon,
  type TestDaemon,
  tokenOutcome,
} from "../helpers/daemon.js";
import { describeTpm, startSoftHsm } from "../helpers/hardware.js";
import { syscallFilterOfUnit, UNIT_DIR } from "../helpers/systemd.js";

/*
 * The daemon as systemd runs it, without systemd as PID 1: systemd-socket-activate owns the
 * socket and execs the daemon on the first connection (LISTEN_FDS=1, LISTEN_PID = the daemon),
 * and a Python AF_UNIX datagram listener stands in for systemd's NOTIFY_SOCKET.
 */

const ACTIVATE = "/usr/bin/systemd-socket-activate";
const STRACE = "/usr/bin/strace";
const executable = (p: string) => {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};
const hasActivate = executable(ACTIVATE);
const hasStrace = executable(STRACE);
if (process.env.CI === "true" && (!hasActivate || !hasStrace))
  throw new Error(
    `CI=true but ${ACTIVATE} or ${STRACE} is missing (apt packages systemd, strace; run scripts/setup.sh as root)`,
  );

/** Datagrams received so far, and a way to wait for the next one matching a predicate. */
class NotifyLog {
  readonly messages: string[] = [];
  constructor(private readonly l: DatagramListener) {}
  async until(what: string, f: (m: string) => boolean, max = 500): Promise<string> {
    for (let i = 0; i < max; i++) {
      const m = (await this.l.next()).toString("utf8");
      this.messages.push(m);
      if (f(m)) return m;
    }
    throw new Error(`no sd_notify message ${what} in ${max}: ${this.messages.slice(-5).join(" | ")}`);
  }
}

let dir: string;
const daemons: TestDaemon[] = [];
const listeners: DatagramListener[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "systemd-"));
});

afterAll(async () => {
  for (const d of daemons) await d.dispose().catch(() => undefined);
  for (const l of listeners) await l.stop().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describeTpm("the daemon under systemd's protocols", () => {
  it.runIf(hasActivate || process.env.CI === "true")(
    "socket activation: the queued first request is served; READY after a verified epoch; STATUS; WATCHDOG stops while the TPM hangs and resumes after; STOPPING",
    async () => {
      const listener = await listenDatagram(join(dir, "notify.sock"));
      listeners.push(listener);
      const notes = new NotifyLog(listener);
      let first: unknown;
      const d = await startTestDaemon({
        config: { tpm: ["timeout_ms = 1500"] },
        wrap: (argv, t) => [
          ACTIVATE,
          "--listen",
          t.socket,
          "--setenv",
          `NOTIFY_SOCKET=${listener.address}`,
          // 3 s: pings at most every 1.5 s, from healthy epochs only
          "--setenv",
          "WATCHDOG_USEC=3000000",
          ...argv,
        ],
        // The daemon does not exist until someone connects: this request starts it and is
        // answered by it from the socket's backlog.
        onSpawn: async (t) => {
          await eventually("the activation socket", async () => existsSync(t.socket));
          const c = await ExecgateClient.connect(t.socket, { timeoutMs: 30_000 });
          try {
            first = await c.status();
          } finally {
            await c.close();
          }
        },
      });
      daemons.push(d);
      expect(first).toBeInstanceOf(Map);
      const started = d
        .stderr()
        .split("\n")
        .find((l) => l.includes('"daemon_started"'));
      expect(JSON.parse(started ?? "{}")).toMatchObject({ activated: true, watchdogMs: 3000 });

      const ready = await notes.until("READY=1", (m) => m.split("\n").includes("READY=1"));
      expect(ready).toMatch(/^STATUS=epoch \d+ verified; evidence \d+ ms old$/m);
      // Nothing before READY claimed readiness or a failed epoch.
      expect(notes.messages.filter((m) => m.includes("READY=1"))).toHaveLength(1);
      await notes.until("WATCHDOG=1", (m) => m.split("\n").includes("WATCHDOG=1"));

      const c = await d.client();
      try {
        expect((await c.requestToken({ scope: "dev", argv: ["/bin/true"] })).token.length).toBeGreaterThan(0);
        // A TPM that stops answering: epochs fail hardware_unavailable, and those never ping.
        d.tpm.freeze();
        const failed = await notes.until("a hardware_unavailable epoch", (m) =>
          m.includes("failed: hardware_unavailable"),
        );
        expect(failed).not.toContain("WATCHDOG=1");
        expect(failed).toMatch(/evidence \d+ ms old/);
        const second = await notes.until("a second hardware_unavailable epoch", (m) =>
          m.includes("failed: hardware_unavailable"),
        );
        expect(second).not.toContain("WATCHDOG=1");
        d.tpm.resume();
        await notes.until("WATCHDOG=1 after the TPM is back", (m) => m.split("\n").includes("WATCHDOG=1"));
        await eventually("tokens again", async () => {
          try {
            await c.requestToken({ scope: "dev", argv: ["/bin/true"] });
            return true;
          } catch (e) {
            if (e instanceof ExecgateDenied) return false;
            throw e;
          }
        });
      } finally {
        d.tpm.resume();
        await c.close();
      }
      // Never a second READY, and every hardware_unavailable epoch went without a ping.
      expect(notes.messages.filter((m) => m.includes("READY=1"))).toHaveLength(1);
      expect(
        notes.messages.filter((m) => m.includes("hardware_unavailable") && m.includes("WATCHDOG=1")),
      ).toEqual([]);
      expect(await d.stop()).toBe(0);
      await notes.until("STOPPING=1", (m) => m.split("\n").includes("STOPPING=1"));
    },
  );

  it("SIGHUP reloads the policy (policy_loaded in the lineage); a broken policy keeps the old one", async () => {
    const d = await startTestDaemon();
    daemons.push(d);
    const c = await d.client();
    const outcome = (scope: string) => tokenOutcome(c, scope);
    const original = await readFile(d.policy, "utf8");
    let statusDigest = "";
    try {
      expect(await outcome("dev")).toBe("allow");
      expect(await outcome("gpu")).toBe("scope_not_allowed");
      // The tester executor gets a second scope.
      await writeFile(
        d.policy,
        `${original.replace('scopes = ["dev"]', 'scopes = ["dev", "gpu"]')}\n[scopes.gpu]\nttl_s = 30\n`,
      );
      d.child()!.kill("SIGHUP");
      await eventually("policy_reloaded", async () => d.stderr().includes('"policy_reloaded"'));
      expect(await outcome("gpu")).toBe("allow");

      await writeFile(d.policy, "[[executors]]\nname = 42\n");
      d.child()!.kill("SIGHUP");
      await eventually("policy_reload_failed_keeping_old", async () =>
        d.stderr().includes('"policy_reload_failed_keeping_old"'),
      );
      expect(await outcome("gpu")).toBe("allow");
      expect(await outcome("dev")).toBe("allow");
      // status names the digest in force and the refused reload, in JSON and in the summary.
      const st = await execgate(["status", "--json", "--socket", d.socket]);
      const policy = (JSON.parse(st.stdout) as { policy: Record<string, unknown> }).policy;
      expect(policy.digest).toMatch(/^[0-9a-f]{64}$/);
      expect(policy.last_reload).toMatchObject({ ok: false, error: expect.stringContaining("name") });
      const text = await execgate(["status", "--socket", d.socket]);
      expect(text.stdout).toContain(`policy: ${String(policy.digest)}`);
      expect(text.stdout).toContain("LAST RELOAD REFUSED");
      statusDigest = String(policy.digest);
    } finally {
      await c.close();
    }
    expect(await d.stop()).toBe(0);
    const loaded = (await lineageEntries(d.lineageDir)).filter((e) => e.type === "policy_loaded");
    // At start, and once for the good reload; the broken file left no entry.
    expect(loaded).toHaveLength(2);
    const digests = loaded.map((e) => Buffer.from(e.body.policyDigest as Uint8Array).toString("hex"));
    expect(new Set(digests).size).toBe(2);
    // The digest status showed is the one the good reload put in force.
    expect(statusDigest).toBe(digests[1]);
  });

  it.runIf(hasStrace || process.env.CI === "true").each(["tpm", "tpm+hsm"] as const)(
    "roots %s: every system call of the daemon (and its tpm2-tools children, the PKCS#11 module) passes the unit's SystemCallFilter",
    async (roots) => {
      const trace = join(dir, `strace-${roots === "tpm" ? "tpm" : "hsm"}.out`);
      let hsmConfig: { lines: string[]; env: Record<string, string> } | undefined;
      if (roots === "tpm+hsm") {
        const hsm = await startSoftHsm();
        await hsm.generateKey("execgate-root", "ec");
        hsmConfig = {
          lines: [
            'require = "tpm+hsm"',
            `module = ${JSON.stringify(hsm.module)}`,
            `token_label = ${JSON.stringify(hsm.label)}`,
            'key_label = "execgate-root"',
            `pin_file = ${JSON.stringify(hsm.pinFile)}`,
          ],
          env: hsm.env,
        };
      }
      const d = await startTestDaemon({
        wrap: (argv) => [STRACE, "-f", "-qq", "-o", trace, "--", ...argv],
        config: {
          metrics: ['socket = "$DIR/metrics.sock"'],
          ...(hsmConfig ? { hsm: hsmConfig.lines } : {}),
        },
        ...(hsmConfig ? { daemonEnv: hsmConfig.env } : {}),
      });
      daemons.push(d);
      expect(d.stderr()).toContain(`"roots":"${roots}"`);
      const stracePid = d.child()!.pid!;
      const children = readFileSync(`/proc/${stracePid}/task/${stracePid}/children`, "utf8")
        .trim()
        .split(" ");
      expect(children).toHaveLength(1);
      const daemonPid = Number(children[0]);
      const c = await d.client();
      try {
        const t = await c.requestToken({ scope: "dev", argv: ["/bin/true"] });
        await c.redeem(t.token);
        await c.report({ tokenId: t.tokenId, exitStatus: 0, durationMs: 1 });
        await c.status();
      } finally {
        await c.close();
      }
      // A metrics scrape and a policy reload go through the filter too.
      const scraped = await new Promise<string>((resolve, reject) => {
        const req = request({ socketPath: join(d.dir, "metrics.sock"), path: "/metrics" }, (res) => {
          let body = "";
          res.on("data", (b: Buffer) => {
            body += b.toString();
          });
          res.on("end", () => resolve(body));
        });
        req.on("error", reject);
        req.end();
      });
      expect(scraped).toContain("execgate_up 1");
      process.kill(daemonPid, "SIGHUP");
      await eventually("policy_reloaded", async () => d.stderr().includes('"policy_reloaded"'));
      // SIGTERM to the daemon itself (strace's child), so the shutdown path is traced too.
      process.kill(daemonPid, "SIGTERM");
      expect(await d.stop()).toBe(0);

      const used = new Set<string>();
      const families = new Set<string>();
      for (const line of (await readFile(trace, "utf8")).split("\n")) {
        const m = /^\d+\s+([a-z0-9_]+)\(/.exec(line);
        if (m) used.add(m[1]!);
        const f = /^\d+\s+socket\((AF_[A-Z0-9]+)/.exec(line);
        if (f) families.add(f[1]!);
      }
      // RestrictAddressFamilies=AF_UNIX (with a TCTI over a Unix socket, as in production's device TCTI).
      expect([...families]).toEqual(["AF_UNIX"]);
      // The trace saw the daemon's own work and the tpm2-tools children it execs.
      expect(used).toContain("execve");
      expect(used).toContain("fsync");
      const filter = await syscallFilterOfUnit(join(UNIT_DIR, "execgate.service"));
      const refused = [...used].filter((name) => !filter.allows(name)).sort();
      expect(refused).toEqual([]);
    },
  );
});
