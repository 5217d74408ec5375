import { spawn } from "node:child_process";
import { chmod } from "node:fs/promises";
import { connect } from "node:net";
import { dirname } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { auditAttestation } from "../../src/audit/attestation.js";
import { CborTag, type CborValue, decode, encode } from "../../src/cbor/index.js";
import { ExecgateDenied } from "../../src/client/index.js";
import type { DenialReason } from "../../src/core/denial.js";
import { HANDLES } from "../../src/tpm/ops/handles.js";
import { readPublic } from "../../src/tpm/ops/keys.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { encodeFrame } from "../../src/wire/frame.js";
import { actionDigest } from "../../src/wire/request.js";
import { execgate } from "../helpers/cli.js";
import {
  lineageEntries,
  recordedDenials,
  signedCheckpointRoots,
  startTestDaemon,
  type TestDaemon,
} from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

async function denied(p: Promise<unknown>): Promise<DenialReason> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ExecgateDenied) return e.reason;
    throw e;
  }
  throw new Error("expected a denial");
}

const PINNED = actionDigest(["/usr/bin/true"]);

describeTpm("the daemon end to end: tokens, and every token denial", () => {
  let d: TestDaemon;
  const seen = new Set<string>();
  beforeAll(async () => {
    d = await startTestDaemon({
      scopes: ["dev", "short", "multi", "pinned"],
      policyExtra: [
        "[scopes.short]",
        "ttl_s = 1",
        "[scopes.multi]",
        "ttl_s = 60",
        'audiences = ["execgate", "elsewhere"]',
        "[scopes.pinned]",
        "ttl_s = 60",
        `actions = ["${Buffer.from(PINNED).toString("hex")}"]`,
        "[scopes.other]",
        "ttl_s = 60",
        "",
      ].join("\n"),
    });
  });
  afterAll(async () => {
    await d?.dispose();
  });

  const expectDenied = async (p: Promise<unknown>, reason: DenialReason) => {
    expect(await denied(p)).toBe(reason);
    seen.add(reason);
  };

  it("issues, redeems once and records the report — all in the lineage", async () => {
    const c = await d.client();
    try {
      const t = await c.requestToken({
        scope: "dev",
        argv: ["/usr/bin/echo", "hi"],
        nonce: new Uint8Array(16).fill(7),
      });
      expect(t.token[0]).toBe(0xd2); // COSE_Sign1 tag 18
      const r = await c.redeem(t.token);
      expect(r.scope).toBe("dev");
      expect(Buffer.from(r.action).equals(Buffer.from(actionDigest(["/usr/bin/echo", "hi"])))).toBe(true);
      await c.report({ tokenId: r.tokenId, exitStatus: 0, durationMs: 5 });
      await expectDenied(c.redeem(t.token), "token_replayed");
      await expectDenied(c.report({ tokenId: r.tokenId, exitStatus: 0, durationMs: 5 }), "token_replayed");
    } finally {
      await c.close();
    }
  });

  it("denies malformed, tampered, foreign-audience and expired tokens, unknown reports", async () => {
    const c = await d.client();
    try {
      await expectDenied(c.redeem(Uint8Array.of(0xd2, 0x84, 0x40)), "token_malformed");
      const t = await c.requestToken({ scope: "dev", argv: ["/bin/true"] });
      const bad = t.token.slice();
      bad[bad.length - 1]! ^= 1;
      await expectDenied(c.redeem(bad), "token_signature_invalid");
      // A holder adding an unprotected header keeps a valid signature but changes the bytes: refused,
      // so what token_redeemed records is exactly what was issued (the audit below finds its digest).
      const top = decode(t.token) as CborTag;
      const fields = [...(top.value as CborValue[])];
      fields[1] = new Map([[4, new Uint8Array(4)]]);
      await expectDenied(c.redeem(encode(new CborTag(top.tag, fields))), "token_malformed");
      const r = await c.redeem(t.token);
      expect(r.scope).toBe("dev");
      // −9: killed by SIGKILL (docs/protocol.md); the lineage names the signal (checked below).
      await c.report({ tokenId: r.tokenId, exitStatus: -9, durationMs: 1 });
      const away = await c.requestToken({ scope: "multi", argv: ["/bin/true"], audience: "elsewhere" });
      await expectDenied(c.redeem(away.token), "token_wrong_audience");
      await expectDenied(c.report({ tokenId: new Uint8Array(16), exitStatus: 0, durationMs: 1 }), "no_token");
      const short = await c.requestToken({ scope: "short", argv: ["/bin/true"] });
      await new Promise((r) => setTimeout(r, Math.max(0, short.expiresAt * 1000 - Date.now()) + 1100));
      await expectDenied(c.redeem(short.token), "token_expired");
    } finally {
      await c.close();
    }
  });

  it("denies scopes not granted, actions outside the scope, and unknown callers", async () => {
    const c = await d.client();
    try {
      await expectDenied(c.requestToken({ scope: "other", argv: ["/bin/true"] }), "scope_not_allowed");
      await expectDenied(c.requestToken({ scope: "absent", argv: ["/bin/true"] }), "scope_not_allowed");
      await expectDenied(c.requestToken({ scope: "pinned", argv: ["/bin/false"] }), "policy_mismatch");
      expect(
        (await c.requestToken({ scope: "pinned", argv: ["/usr/bin/true"] })).token.length,
      ).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
    // A real process of another uid (nobody) asks through the CLI; it must be able to reach the socket.
    await chmod(dirname(d.dir), 0o755);
    await chmod(d.dir, 0o755);
    const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
      const p = spawn(
        process.execPath,
        ["dist/daemon/cli.js", "token", "request", "--scope", "dev", "--argv-json", '["/bin/true"]'],
        {
          uid: 65534,
          gid: 65534,
          env: { EXECGATE_SOCKET: d.socket, PATH: process.env.PATH },
          stdio: ["ignore", "ignore", "pipe"],
        },
      );
      let err = "";
      p.stderr.on("data", (b: Buffer) => {
        err += b.toString();
      });
      p.once("exit", (code) => resolve({ code, err }));
    });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/denied: peer_unknown/);
    seen.add("peer_unknown");
  });

  it("a token verifies offline all the way to the TPM quote (evidence → token verify), and not with another AK", async () => {
    const { writeFile } = await import("node:fs/promises");
    const f = (n: string) => `${d.dir}/${n}`;
    // The documented path: token request --json names the token's epoch for evidence --epoch.
    const req = await execgate(
      ["token", "request", "--scope", "dev", "--argv-json", '["/bin/true"]', "--out", f("t.bin"), "--json"],
      d.env,
    );
    expect(req.code).toBe(0);
    const epoch: string = JSON.parse(req.stdout).epoch;
    expect(epoch).toMatch(/^[0-9a-f]{64}$/);
    const ev = await execgate(
      ["evidence", "--epoch", epoch, "--record-out", f("epoch.cbor"), "--ak-pub-out", f("ak.pem"), "--json"],
      d.env,
    );
    expect(ev.code).toBe(0);
    expect(JSON.parse(ev.stdout).epoch).toBe(epoch);
    const ok = await execgate([
      "token",
      "verify",
      "--in",
      f("t.bin"),
      "--epoch-record",
      f("epoch.cbor"),
      "--ak-pub",
      f("ak.pem"),
      "--audience",
      "execgate",
      "--json",
    ]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ valid: true, boundToQuote: true, boundTo: "tpm-quote" });
    const { generateKeyPairSync } = await import("node:crypto");
    await writeFile(
      f("other.pem"),
      generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }),
    );
    const bad = await execgate([
      "token",
      "verify",
      "--in",
      f("t.bin"),
      "--epoch-record",
      f("epoch.cbor"),
      "--ak-pub",
      f("other.pem"),
      "--audience",
      "execgate",
      "--json",
    ]);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).reason).toBe("quote_invalid");
  });

  it("answers a malformed frame with a typed error, closes the connection, and stays up", async () => {
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const s = connect(d.socket);
      const chunks: Buffer[] = [];
      s.on("data", (b) => chunks.push(b));
      s.once("close", () => resolve(Buffer.concat(chunks)));
      s.once("error", reject);
      s.write(encodeFrame(Uint8Array.of(0xa1, 0x61, 0x76, 0x02)));
    });
    const { decode } = await import("../../src/cbor/index.js");
    const m = decode(reply.subarray(4)) as Map<string, unknown>;
    expect(m.get("ok")).toBe(false);
    expect(m.get("error")).toBe("bad_request");
    expect(m.get("reason")).toBe("request_malformed");
    seen.add("request_malformed");
    const st = await execgate(["status", "--json"], d.env);
    expect(st.code).toBe(0);
  });

  it("every denial above is in the lineage, and so are the allow path's entries", async () => {
    expect(await d.stop()).toBe(0);
    const recorded = new Set(await recordedDenials(d.lineageDir));
    for (const r of seen) expect(recorded, r).toContain(r);
    const entries = await lineageEntries(d.lineageDir);
    const types = new Set(entries.map((e) => e.type));
    for (const t of [
      "daemon_start",
      "policy_loaded",
      "epoch",
      "request",
      "decision",
      "token_issued",
      "token_redeemed",
      "execution_report",
      "daemon_stop",
    ]) {
      expect(types, t).toContain(t);
    }
    const reports = entries.flatMap((e) => (e.type === "execution_report" ? [e.body] : []));
    expect(reports).toContainEqual(expect.objectContaining({ exitCode: 0 }));
    expect(reports).toContainEqual(expect.objectContaining({ signal: "SIGKILL" }));
    expect(reports.filter((b) => b.signal !== undefined && b.exitCode !== undefined)).toEqual([]);
  });

  it("the offline attestation audit re-derives every epoch, allow and redeemed token from the log — and catches lies", async () => {
    const entries = await lineageEntries(d.lineageDir);
    const checkpoints = await signedCheckpointRoots(d.lineageDir);
    const akPublic = tpmPublicKey(parseTpm2bPublic((await readPublic(d.tpm.runner, HANDLES.ak))!));
    const clean = auditAttestation({ entries, checkpoints, akPublic });
    expect(clean.failures).toEqual([]);
    expect(clean.verifiedEpochs).toBeGreaterThan(0);
    expect(clean.tokensRedeemed).toBeGreaterThan(0);
    expect(clean.allows).toBeGreaterThan(0);

    // A log that claims an allow on an epoch whose quote was not verified.
    const epochAt = entries.findIndex((e) => e.type === "epoch" && e.body.verified);
    const lied = entries.map((e, i) =>
      i === epochAt && e.type === "epoch" ? { ...e, body: { ...e.body, verified: false } } : e,
    ) as typeof entries;
    const checks = new Set(
      auditAttestation({ entries: lied, checkpoints, akPublic }).failures.map((f) => f.check),
    );
    expect(checks).toContain("epoch_record");
    // Another AK cannot have signed these quotes.
    const { generateKeyPairSync } = await import("node:crypto");
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
    expect(
      auditAttestation({ entries, checkpoints, akPublic: other }).failures.map((f) => f.check),
    ).toContain("epoch_quote");
    // Replaying a redeemed token twice in the log is found.
    const redeemed = entries.find((e) => e.type === "token_redeemed")!;
    expect(
      auditAttestation({ entries: [...entries, redeemed], checkpoints, akPublic }).failures.map(
        (f) => f.check,
      ),
    ).toContain("token_replayed");
    // Every epoch names the policy that judged it, one the run loaded; a token's policy claim
    // must be that policy.
    expect(entries.filter((e) => e.type === "epoch").every((e) => e.body.policyDigest?.length === 32)).toBe(
      true,
    );
    const otherPolicy = new Uint8Array(32).fill(7);
    const rejudged = entries.map((e) =>
      e.type === "epoch" ? { ...e, body: { ...e.body, policyDigest: otherPolicy } } : e,
    ) as typeof entries;
    const found = new Set(
      auditAttestation({ entries: rejudged, checkpoints, akPublic }).failures.map((f) => f.check),
    );
    expect(found).toContain("epoch_policy");
    expect(found).toContain("token_policy");
  });
});
