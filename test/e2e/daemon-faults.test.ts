import { execFile } from "node:child_process";
import { mkdir, open, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";
import { ExecgateDenied } from "../../src/client/index.js";
import type { DenialReason } from "../../src/core/denial.js";
import { HANDLES } from "../../src/tpm/ops/handles.js";
import { ensureAk, evict } from "../../src/tpm/ops/keys.js";
import { pcrExtend } from "../../src/tpm/ops/pcr.js";
import { execgate } from "../helpers/cli.js";
import {
  eventually,
  lineageEntries,
  tokenOutcome as outcome,
  recordedDenials,
  startTestDaemon,
  type TestDaemon,
} from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

const run = promisify(execFile);

async function reason(p: Promise<unknown>): Promise<"allow" | DenialReason> {
  try {
    await p;
    return "allow";
  } catch (e) {
    if (e instanceof ExecgateDenied) return e.reason;
    throw e;
  }
}

const daemons: TestDaemon[] = [];
async function daemon(opts: Parameters<typeof startTestDaemon>[0] = {}): Promise<TestDaemon> {
  const d = await startTestDaemon(opts);
  daemons.push(d);
  return d;
}

describeTpm("the daemon fails closed on hardware and environment faults", () => {
  afterAll(async () => {
    for (const d of daemons) await d.dispose().catch(() => undefined);
  });

  it("a PCR extended outside the policy → pcr_mismatch within an epoch, recorded", async () => {
    const d = await daemon();
    const c = await d.client();
    try {
      expect(await outcome(c)).toBe("allow");
      await pcrExtend(d.tpm.runner, 7, "sha256", new Uint8Array(32).fill(0xee));
      await eventually("pcr_mismatch", async () => (await outcome(c)) === "pcr_mismatch");
      expect(await outcome(c)).toBe("pcr_mismatch");
    } finally {
      await c.close();
    }
    await d.stop();
    expect(await recordedDenials(d.lineageDir)).toContain("pcr_mismatch");
  });

  it("swtpm killed → hardware_unavailable; back → tokens again; a token from before the TPM reset → environment_mismatch", async () => {
    const d = await daemon();
    const c = await d.client();
    try {
      const before = await c.requestToken({ scope: "dev", argv: ["/bin/true"] });
      await d.tpm.kill();
      await eventually("hardware_unavailable", async () => (await outcome(c)) === "hardware_unavailable");
      const st = JSON.parse((await execgate(["status", "--json"], d.env)).stdout);
      expect(st.epoch).toMatchObject({ verified: false, reason: "hardware_unavailable" });
      // No quote, so no TPM counts to show (they were printed as -1).
      const human = (await execgate(["status"], d.env)).stdout;
      expect(human).toMatch(/^ {2}epoch: #\d+ of this run \(seq \d+\), FAILED: hardware_unavailable$/m);
      await d.tpm.launch();
      await eventually("recovery", async () => (await outcome(c)) === "allow");
      expect(await reason(c.redeem(before.token))).toBe("environment_mismatch");
    } finally {
      await c.close();
    }
    await d.stop();
    const recorded = await recordedDenials(d.lineageDir);
    expect(recorded).toContain("hardware_unavailable");
    expect(recorded).toContain("environment_mismatch");
  });

  it("a TPM that stops answering → attestation_stale once the evidence is older than allowed; resumes → tokens again", async () => {
    const d = await daemon({
      config: {
        tpm: ["timeout_ms = 8000"],
        attest: [
          "epoch_ms = 200",
          "idle_epoch_ms = 1000",
          "max_evidence_age_ms = 1000",
          "fresh_wait_ms = 300",
        ],
      },
    });
    const c = await d.client();
    try {
      expect(await outcome(c)).toBe("allow");
      d.tpm.freeze();
      await eventually("attestation_stale", async () => (await outcome(c)) === "attestation_stale");
      d.tpm.resume();
      await eventually("recovery", async () => (await outcome(c)) === "allow");
    } finally {
      d.tpm.resume();
      await c.close();
    }
    await d.stop();
    expect(await recordedDenials(d.lineageDir)).toContain("attestation_stale");
  });

  it("the AK replaced under the daemon (quotes no longer verify with the enrolled key) → quote_invalid", async () => {
    const d = await daemon();
    const c = await d.client();
    try {
      expect(await outcome(c)).toBe("allow");
      await evict(d.tpm.runner, HANDLES.ak);
      await ensureAk(d.tpm.runner); // a new key at the same handle
      await eventually("quote_invalid", async () => (await outcome(c)) === "quote_invalid");
    } finally {
      await c.close();
    }
    await d.stop();
    expect(await recordedDenials(d.lineageDir)).toContain("quote_invalid");
  });

  it("a changed boot id → environment_mismatch", async () => {
    const d = await daemon();
    const c = await d.client();
    try {
      expect(await outcome(c)).toBe("allow");
      await writeFile(d.bootIdFile, "00000000-0000-4000-8000-000000000000\n");
      await eventually("environment_mismatch", async () => (await outcome(c)) === "environment_mismatch");
    } finally {
      await c.close();
    }
    await d.stop();
    expect(await recordedDenials(d.lineageDir)).toContain("environment_mismatch");
  });

  it("an unreadable boot id fails the epoch (environment_mismatch); without one the daemon refuses to start (exit 3)", async () => {
    const d = await daemon();
    const c = await d.client();
    try {
      expect(await outcome(c)).toBe("allow");
      await rm(d.bootIdFile);
      await eventually("environment_mismatch", async () => (await outcome(c)) === "environment_mismatch");
      const st = JSON.parse((await execgate(["status", "--json"], d.env)).stdout);
      expect(st.epoch).toMatchObject({ verified: false, reason: "environment_mismatch" });
    } finally {
      await c.close();
    }
    expect(await d.stop()).toBe(0);
    await expect(d.start()).rejects.toThrow(/did not start/);
    expect(d.child()?.exitCode).toBe(3);
    expect(d.stderr()).toMatch(/refusing to start: daemon.boot_id_path: boot id .*ENOENT/);
    // Each log line names its component once (a strict JSON pipeline drops or rejects duplicates).
    const lines = d
      .stderr()
      .split("\n")
      .filter((l) => l.startsWith("{"));
    expect(lines.some((l) => l.includes('"component":"gate"'))).toBe(true);
    for (const l of lines) expect(l.match(/"component":/g)?.length ?? 0).toBeLessThanOrEqual(1);
  });

  it("requests over the per-uid rate → rate_limited (the first recorded, its repeats counted)", async () => {
    const d = await daemon({ config: { limits: ["requests_per_second_per_uid = 1", "burst_per_uid = 2"] } });
    const c = await d.client();
    let limited = 0;
    try {
      const results = await Promise.all(Array.from({ length: 6 }, () => outcome(c)));
      expect(results.filter((r) => r === "allow").length).toBeLessThanOrEqual(3);
      expect(results).toContain("rate_limited");
      limited = results.filter((r) => r === "rate_limited").length;
    } finally {
      await c.close();
    }
    await d.stop();
    expect(await recordedDenials(d.lineageDir)).toContain("rate_limited");
    // Every refusal is a decision entry or counted in a denial_repeats entry.
    const entries = await lineageEntries(d.lineageDir);
    const recorded = entries.filter((e) => e.type === "decision" && e.body.reason === "rate_limited").length;
    const counted = entries.reduce(
      (n, e) => n + (e.type === "denial_repeats" && e.body.reason === "rate_limited" ? e.body.count : 0),
      0,
    );
    expect(recorded + counted).toBe(limited);
  });

  // Mounting a tmpfs needs root: skipped on a laptop, a failure (not a skip) under CI=true.
  it.runIf(process.getuid?.() === 0 || process.env.CI === "true")(
    "a full lineage disk → lineage_unavailable and no token; the daemon stays up",
    async () => {
      const probe = await daemon();
      const mnt = join(probe.dir, "small");
      await probe.dispose();
      await mkdir(mnt, { recursive: true });
      await run("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt]);
      try {
        const d = await daemon({ lineageDir: join(mnt, "lineage") });
        const c = await d.client();
        try {
          expect(await outcome(c)).toBe("allow");
          const filler = await open(join(mnt, "filler"), "w");
          try {
            for (;;) await filler.write(Buffer.alloc(64 * 1024));
          } catch {
            // ENOSPC: the disk is full now
          } finally {
            await filler.close();
          }
          await eventually("lineage_unavailable", async () => (await outcome(c)) === "lineage_unavailable");
          expect(await outcome(c)).toBe("lineage_unavailable");
          const st = await execgate(["status", "--json"], d.env);
          expect(st.code).toBe(0);
        } finally {
          await c.close();
          await d.stop();
        }
      } finally {
        await run("umount", ["-l", mnt]);
      }
    },
  );
});
