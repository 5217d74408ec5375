import { request } from "node:http";
import { createServer } from "node:net";
import { afterAll, expect, it } from "vitest";
import { ExecgateDenied } from "../../src/client/index.js";
import { execgate } from "../helpers/cli.js";
import {
  eventually,
  lineageEntries,
  signedCheckpointRoots,
  startTestDaemon,
  type TestDaemon,
} from "../helpers/daemon.js";
import { describeHsm, describeTpm, startSoftHsm } from "../helpers/hardware.js";
import { monitoredMetricNames } from "../helpers/monitoring.js";

/** One HTTP request to the metrics listener (Unix socket or localhost port). */
function get(
  target: { socketPath: string } | { port: number },
  path = "/metrics",
  method = "GET",
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { ...target, ...("port" in target ? { host: "127.0.0.1" } : {}), path, method },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** `name{labels} value` lines → value, keyed by the text before the value. */
function samples(body: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of body.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** A localhost port nothing listens on (just now). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

const daemons: TestDaemon[] = [];

describeTpm("operations: metrics and status of a real daemon", () => {
  afterAll(async () => {
    for (const d of daemons) await d.dispose().catch(() => undefined);
  });

  it("scraping the metrics socket: tokens, denials by reason, epochs, TPM latency, lineage, connections", async () => {
    const d = await startTestDaemon({ config: { metrics: ['socket = "$DIR/metrics.sock"'] } });
    daemons.push(d);
    const target = { socketPath: `${d.dir}/metrics.sock` };
    const c = await d.client();
    try {
      await c.requestToken({ scope: "dev", argv: ["/bin/true"] });
      await expect(c.requestToken({ scope: "gpu", argv: ["/bin/true"] })).rejects.toBeInstanceOf(
        ExecgateDenied,
      );
    } finally {
      await c.close();
    }
    // Checkpoints are signed by the TPM in the background: wait until one was timed.
    await eventually("a timed tpm2_sign", async () =>
      (await get(target)).body.includes('execgate_tpm_command_seconds_count{command="tpm2_sign"}'),
    );
    const r = await get(target);
    expect(r.status).toBe(200);
    expect(r.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    const m = samples(r.body);
    expect(m.get("execgate_up")).toBe(1);
    expect(m.get("execgate_tokens_issued_total")).toBe(1);
    expect(m.get("execgate_token_requests_total")).toBe(2);
    expect(m.get('execgate_denials_total{reason="scope_not_allowed"}')).toBe(1);
    expect(m.get('execgate_denials_total{reason="pcr_mismatch"}')).toBe(0);
    expect(m.get("execgate_epoch_verified")).toBe(1);
    expect(m.get("execgate_epoch_seq")).toBeGreaterThanOrEqual(0);
    expect(m.get("execgate_epoch_age_seconds")).toBeGreaterThanOrEqual(0);
    expect(m.get("execgate_epochs_total")).toBeGreaterThanOrEqual(1);
    expect(m.get('execgate_tpm_command_seconds_count{command="tpm2_quote"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('execgate_tpm_command_seconds_bucket{command="tpm2_quote",le="+Inf"}')).toBe(
      m.get('execgate_tpm_command_seconds_count{command="tpm2_quote"}'),
    );
    expect(m.get('execgate_epoch_duration_seconds_bucket{le="+Inf"}')).toBeGreaterThanOrEqual(1);
    // Both token requests timed (the denial too); buckets cumulative up to the count.
    expect(m.get('execgate_request_duration_seconds_count{op="token.request"}')).toBe(2);
    expect(m.get('execgate_request_duration_seconds_bucket{op="token.request",le="+Inf"}')).toBe(2);
    expect(m.get('execgate_request_duration_seconds_sum{op="token.request"}')).toBeGreaterThan(0);
    expect(m.get("execgate_lineage_size")).toBeGreaterThan(0);
    expect(m.get("execgate_lineage_checkpoint_lag")).toBeGreaterThanOrEqual(0);
    expect(m.get("execgate_lineage_fs_size_bytes")).toBeGreaterThan(0);
    expect(m.get("execgate_lineage_fs_free_bytes")).toBeGreaterThanOrEqual(0);
    expect(m.get("execgate_connections_accepted_total")).toBeGreaterThanOrEqual(1);
    // Only GET/HEAD /metrics.
    expect((await get(target, "/")).status).toBe(404);
    expect((await get(target, "/metrics", "POST")).status).toBe(405);
    expect((await get(target, "/metrics", "HEAD")).body).toBe("");
    // Every series the shipped dashboard and alerting rules read is one this daemon exports.
    const exported = new Set([...m.keys()].map((k) => k.replace(/\{.*$/, "")));
    for (const name of monitoredMetricNames())
      expect(exported.has(name) || exported.has(`${name}_bucket`), `${name} is not exported`).toBe(true);
  });

  it("execgate status (--json and human): up, evidence age, last denial with counts, lineage lag, hardware health", async () => {
    const d = daemons[0]!;
    const j = await execgate(["status", "--json"], d.env);
    expect(j.code).toBe(0);
    const st = JSON.parse(j.stdout);
    expect(st).toMatchObject({
      up: true,
      epoch: { verified: true },
      last_denial: { reason: "scope_not_allowed" },
      recent_denials: { scope_not_allowed: 1 },
      denials: { scope_not_allowed: 1 },
      tokens: { issued: 1, requests: 2 },
      hardware: { healthy: true },
    });
    expect(st.evidence_age_ms).toBeGreaterThanOrEqual(0);
    expect(st.lineage.checkpoint_lag).toBe(st.lineage.size - st.lineage.checkpoint_size);
    expect(st.lineage.fs_size_bytes).toBeGreaterThan(0);
    expect(st.lineage.fs_free_bytes).toBeLessThanOrEqual(st.lineage.fs_size_bytes);
    expect(st.hardware.epochs).toBeGreaterThanOrEqual(1);

    const h = await execgate(["status"], d.env);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^execgate daemon at .+: up$/m);
    // The epoch line and the hardware line count epochs alike: #N of this run is seq N-1.
    const nth =
      /^ {2}epoch: #(\d+) of this run \(seq (\d+)\), verified \(TPM reset \d+, restart \d+\)$/m.exec(
        h.stdout,
      );
    expect(nth, h.stdout).not.toBeNull();
    expect(Number(nth![1])).toBe(Number(nth![2]) + 1);
    expect(h.stdout).toMatch(/^ {2}evidence: [\d.]+ m?s old$/m);
    expect(h.stdout).toMatch(/^ {2}denials: scope_not_allowed 1$/m);
    expect(h.stdout).toMatch(
      /^ {2}last denial: scope_not_allowed, [\d.]+ m?s ago \(recent: scope_not_allowed 1\)$/m,
    );
    expect(h.stdout).toMatch(
      /^ {2}lineage: \d+ entries, signed checkpoint at \d+ \(lag \d+\), disk [\d.]+ GiB free of [\d.]+ GiB( \(LOW: .*\))?$/m,
    );
    expect(h.stdout).toMatch(
      /^ {2}hardware: healthy; \d+ epochs this run, \d+ failed, the last took \d+ ms$/m,
    );
    expect(h.stdout).toMatch(/^ {2}policy: [0-9a-f]{64} \(.*\), in force .*; not reloaded since start$/m);

    // No daemon at all: --json still prints a parseable answer, and exits 3.
    const gone = await execgate(["status", "--json", "--socket", `${d.dir}/no-daemon.sock`]);
    expect(gone.code).toBe(3);
    expect(JSON.parse(gone.stdout)).toMatchObject({ up: false, error: expect.any(String) });

    // A TPM that is gone: status says so (and the evidence is no longer fresh).
    await d.tpm.kill();
    try {
      await eventually("the TPM reported down", async () => {
        const s = JSON.parse((await execgate(["status", "--json"], d.env)).stdout);
        return s.hardware.healthy === false && s.evidence_age_ms === null;
      });
      const down = await execgate(["status"], d.env);
      expect(down.stdout).toMatch(/^ {2}hardware: NOT ANSWERING;/m);
      expect(down.stdout).toMatch(/^ {2}evidence: none verified: every token request is denied$/m);
    } finally {
      await d.tpm.launch();
    }
  });

  it("the metrics on a localhost port instead", async () => {
    const port = await freePort();
    const d = await startTestDaemon({ config: { metrics: [`port = ${port}`] } });
    daemons.push(d);
    const r = await get({ port });
    expect(r.status).toBe(200);
    expect(samples(r.body).get("execgate_up")).toBe(1);
    expect(d.stderr()).toContain(`"metrics":"127.0.0.1:${port}"`);
  });

  it("a metrics port taken at the next start: refuses (exit 3), and the lineage it opened records why and is closed", async () => {
    const port = await freePort();
    const d = await startTestDaemon({ config: { metrics: [`port = ${port}`] } });
    daemons.push(d);
    expect(await d.stop()).toBe(0);
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(port, "127.0.0.1", resolve));
    try {
      await expect(d.start()).rejects.toThrow(/did not start/);
    } finally {
      await new Promise((r) => taken.close(r));
    }
    expect(d.child()?.exitCode).toBe(3);
    expect(d.stderr()).toMatch(/refusing to start: metrics listener: .*EADDRINUSE/);
    const entries = await lineageEntries(d.lineageDir);
    const last = entries.at(-1)!;
    expect(last.type).toBe("daemon_stop");
    expect(last.body).toMatchObject({
      reason: expect.stringMatching(/^refusing to start: metrics listener: /),
    });
    // Closed: the final checkpoint covers the daemon_stop entry.
    expect((await signedCheckpointRoots(d.lineageDir)).has(entries.length)).toBe(true);
  });
});

describeHsm("operations: HSM latency", () => {
  afterAll(async () => {
    for (const d of daemons.splice(0)) await d.dispose().catch(() => undefined);
  });

  it("with the HSM as a second root, every HSM signature is timed", async () => {
    const hsm = await startSoftHsm();
    await hsm.generateKey("execgate-root", "ec");
    const d = await startTestDaemon({
      config: {
        metrics: ['socket = "$DIR/metrics.sock"'],
        hsm: [
          'require = "tpm+hsm"',
          `module = ${JSON.stringify(hsm.module)}`,
          `token_label = ${JSON.stringify(hsm.label)}`,
          'key_label = "execgate-root"',
          `pin_file = ${JSON.stringify(hsm.pinFile)}`,
        ],
      },
      daemonEnv: hsm.env,
    });
    daemons.push(d);
    await eventually("an HSM signature timed", async () => {
      const m = samples((await get({ socketPath: `${d.dir}/metrics.sock` })).body);
      return (m.get("execgate_hsm_sign_seconds_count") ?? 0) >= 1;
    });
    const m = samples((await get({ socketPath: `${d.dir}/metrics.sock` })).body);
    expect(m.get('execgate_hsm_sign_seconds_bucket{le="+Inf"}')).toBe(
      m.get("execgate_hsm_sign_seconds_count"),
    );
    expect(m.get("execgate_hsm_sign_seconds_sum")).toBeGreaterThan(0);
  });
});
