import { createHash, createPublicKey } from "node:crypto";
import { readdir, readFile, rename, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decode } from "../../src/cbor/index.js";
import type { SoftHsm } from "../../src/dev/softhsm.js";
import { verifyHsmEpoch } from "../../src/hsm/epoch.js";
import { verifyTokenBoundHsm } from "../../src/hsm/verify-bound.js";
import { parseCheckpointLog } from "../../src/lineage/bundle-files.js";
import { openCheckpoint } from "../../src/lineage/checkpoint.js";
import { parseNote, parseVerifierKey, verifierKeyString } from "../../src/lineage/note.js";
import { claimsFromCbor, type TokenClaims } from "../../src/token/claims.js";
import { COSE_ALG, decodeSign1, verifySign1 } from "../../src/token/cose.js";
import { execgate } from "../helpers/cli.js";
import {
  eventually,
  lineageEntries,
  tokenOutcome as outcome,
  recordedDenials,
  startTestDaemon,
  type TestDaemon,
} from "../helpers/daemon.js";
import { describeHsm, describeTpm, startSoftHsm } from "../helpers/hardware.js";

const KEY = "execgate-root";

/** A SoftHSM2 token with the root key, and the daemon config lines that use it. */
async function hsmRoot(type: "ec" | "ed25519" = "ec") {
  const hsm = await startSoftHsm();
  await hsm.generateKey(KEY, type);
  // Exported by pkcs11-tool: this process never loads the module (the daemon has its own).
  const publicKey = await hsm.exportPublicKey(KEY);
  const spki = publicKey.export({ format: "der", type: "spki" });
  const hostId = createHash("sha256").update(spki).digest().subarray(0, 8).toString("hex");
  const lines = (require: string, extra: string[] = []) => [
    `require = ${JSON.stringify(require)}`,
    `module = ${JSON.stringify(hsm.module)}`,
    `token_label = ${JSON.stringify(hsm.label)}`,
    `key_label = ${JSON.stringify(KEY)}`,
    `pin_file = ${JSON.stringify(hsm.pinFile)}`,
    ...extra,
  ];
  return { hsm, publicKey, hostId, lines };
}

/** Every epoch entry body (record and HSM signature) of a stopped daemon's lineage. */
async function epochRecords(dir: string) {
  return (await lineageEntries(dir)).flatMap((e) => (e.type === "epoch" ? [e.body] : []));
}

async function checkpointNotes(dir: string): Promise<string[]> {
  const log = parseCheckpointLog(new Uint8Array(await readFile(join(dir, "checkpoints.log"))));
  return log.records.flatMap((r) => (r.kind === "checkpoint" ? [r.note] : []));
}

/** The two object files of the root key pair (token.object is the token itself). */
async function keyObjectFiles(hsm: SoftHsm): Promise<string[]> {
  const dir = await hsm.tokenDir();
  return (await readdir(dir))
    .filter((n) => n.endsWith(".object") && n !== "token.object")
    .map((n) => join(dir, n));
}

/** `audit export` from the running daemon, then `audit verify` with the auditor's anchors. */
async function exportAndVerify(
  d: TestDaemon,
  root: { publicKey: import("node:crypto").KeyObject },
  withTpmTrust: boolean,
): Promise<{ code: number; report: { failures: { check: string }[]; attestation: Record<string, number> } }> {
  const bundle = join(d.dir, `bundle-${Date.now()}`);
  const ex = await execgate(["audit", "export", "--out", bundle], d.env);
  expect(ex.stderr).toBe("");
  const pem = join(d.dir, "hsm-root.pem");
  await writeFile(pem, root.publicKey.export({ type: "spki", format: "pem" }));
  const args = ["audit", "verify", bundle, "--json", "--hsm-key", pem];
  if (withTpmTrust) {
    const trust = join(d.dir, "ek-ca.pem");
    await writeFile(
      trust,
      `${await readFile(d.tpm.paths.rootCa, "utf8")}${await readFile(d.tpm.paths.issuerCa, "utf8")}`,
    );
    args.push("--trust", trust);
  }
  const v = await execgate(args);
  return { code: v.code, report: JSON.parse(v.stdout) };
}

// startTestDaemon manufactures a swtpm even for HSM-only runs (it is simply not used then).
describeHsm("the daemon with an HSM root (SoftHSM2)", () => {
  describeTpm("(swtpm for the test helper)", () => {
    describe("HSM-only mode: no TPM on the host", () => {
      let d: TestDaemon;
      let root: Awaited<ReturnType<typeof hsmRoot>>;
      beforeAll(async () => {
        root = await hsmRoot();
        d = await startTestDaemon({
          golden: false, // nothing attests PCRs without a TPM: golden PCR rules would fail closed
          config: {
            hsm: root.lines("hsm"),
            // Nothing answers here: the daemon must not need the TPM at all.
            tpm: [`tcti = "swtpm:path=${join(root.hsm.dir, "no-such-tpm.sock")}"`],
          },
          daemonEnv: root.hsm.env,
        });
      });
      afterAll(async () => {
        await d?.dispose();
      });

      it("issues tokens; epochs are HSM signatures over the binding and checkpoints are HSM-signed notes", async () => {
        const c = await d.client();
        let token: Uint8Array;
        try {
          token = (await c.requestToken({ scope: "dev", argv: ["/bin/true"] })).token;
          // A verifier asks the daemon for the token's epoch: record, HSM signature, HSM key.
          const epochId = (claimsFromCbor(decode(decodeSign1(token).payload)) as TokenClaims).epoch;
          const ev = await c.evidence(epochId);
          const hsmPublic = createPublicKey({
            key: Buffer.from(ev.get("hsm_public") as Uint8Array),
            format: "der",
            type: "spki",
          });
          expect(hsmPublic.equals(root.publicKey)).toBe(true);
          const fromDaemon = verifyTokenBoundHsm({
            token,
            epoch: {
              quote: ev.get("record") as Uint8Array,
              hsmSignature: ev.get("hsm_signature") as Uint8Array,
            },
            hsmPublicKey: root.publicKey,
            audience: "execgate",
            now: Math.floor(Date.now() / 1000),
          });
          expect(fromDaemon).toMatchObject({ ok: true, signer: "issuer" });
          await c.redeem(token);
        } finally {
          c.close();
        }
        expect(d.stderr()).toMatch(/"roots":"hsm"/);
        expect(await d.stop()).toBe(0);
        const records = await epochRecords(d.lineageDir);
        expect(records.length).toBeGreaterThan(0);
        for (const r of records) {
          const v = verifyHsmEpoch(r, root.publicKey);
          expect(v).toMatchObject({ ok: true, verified: true, hasQuote: false });
        }
        // The token chains offline to the HSM: token → issuer key → epoch binding → HSM signature.
        const now = Math.floor(Date.now() / 1000);
        const bound = records
          .map((epoch) =>
            verifyTokenBoundHsm({ token, epoch, hsmPublicKey: root.publicKey, audience: "execgate", now }),
          )
          .filter((v) => v.ok);
        expect(bound).toHaveLength(1);
        expect(bound[0]).toMatchObject({ signer: "issuer" });
        const vkey = verifierKeyString(`execgate-${root.hostId}`, "ecdsa-p256", root.publicKey);
        const notes = await checkpointNotes(d.lineageDir);
        expect(notes.length).toBeGreaterThan(0);
        for (const n of notes) openCheckpoint(n, `execgate/${root.hostId}`, parseVerifierKey(vkey));
        await d.start();
      });

      it("an exported bundle audits clean with the pinned HSM key (HSM epochs, HSM-signed checkpoints)", async () => {
        const { code, report } = await exportAndVerify(d, root, false);
        expect(report.failures).toEqual([]);
        expect(code).toBe(0);
        expect(report.attestation.verifiedEpochs).toBeGreaterThan(0);
        expect(report.attestation.tokensRedeemed).toBeGreaterThan(0);
      });

      it("a token verifies offline to the HSM-signed epoch (evidence → token verify --hsm-pub)", async () => {
        const c = await d.client();
        let token: Uint8Array;
        try {
          token = (await c.requestToken({ scope: "dev", argv: ["/bin/true"] })).token;
        } finally {
          await c.close();
        }
        const epoch = Buffer.from(claimsFromCbor(decode(decodeSign1(token).payload)).epoch).toString("hex");
        const f = (n: string) => join(d.dir, n);
        await writeFile(f("hsm-t.bin"), token);
        const ev = await execgate(
          [
            "evidence",
            "--epoch",
            epoch,
            "--record-out",
            f("hsm-epoch.cbor"),
            "--hsm-signature-out",
            f("hsm-epoch.sig"),
            "--hsm-pub-out",
            f("hsm-pub.pem"),
          ],
          d.env,
        );
        expect(ev.code).toBe(0);
        const v = await execgate([
          "token",
          "verify",
          "--in",
          f("hsm-t.bin"),
          "--epoch-record",
          f("hsm-epoch.cbor"),
          "--hsm-pub",
          f("hsm-pub.pem"),
          "--hsm-signature",
          f("hsm-epoch.sig"),
          "--audience",
          "execgate",
          "--json",
        ]);
        expect(v.code, v.stdout + v.stderr).toBe(0);
        expect(JSON.parse(v.stdout)).toMatchObject({
          valid: true,
          boundToQuote: false,
          boundTo: "hsm-signature",
        });
      });

      it("the token's key files removed → hardware_unavailable, recorded; back → tokens again", async () => {
        const c = await d.client();
        try {
          expect(await outcome(c)).toBe("allow");
          const files = await keyObjectFiles(root.hsm);
          for (const f of files) await rename(f, `${f}.away`);
          await eventually("hardware_unavailable", async () => (await outcome(c)) === "hardware_unavailable");
          for (const f of files) await rename(`${f}.away`, f);
          await eventually("recovery", async () => (await outcome(c)) === "allow");
        } finally {
          c.close();
        }
      });

      it("the whole token gone (the module fails: CKR_GENERAL_ERROR) → hardware_unavailable; back → tokens again, never a crash", async () => {
        const c = await d.client();
        try {
          const name = basename(await root.hsm.tokenDir());
          await root.hsm.removeToken();
          await eventually("hardware_unavailable", async () => (await outcome(c)) === "hardware_unavailable");
          await root.hsm.restoreToken(name);
          await eventually("recovery", async () => (await outcome(c)) === "allow");
        } finally {
          c.close();
        }
        expect(await d.stop()).toBe(0);
        expect(await recordedDenials(d.lineageDir)).toContain("hardware_unavailable");
        // Epochs while the token was gone are recorded as failed, without an HSM signature.
        const failed = (await lineageEntries(d.lineageDir)).filter(
          (e) => e.type === "epoch" && !e.body.verified && e.body.reason === "hardware_unavailable",
        );
        expect(failed.length).toBeGreaterThan(0);
        await d.start();
      });

      it("a wrong PIN → the daemon refuses to start (exit 2) and says why, without the PIN", async () => {
        await d.stop();
        const good = await readFile(root.hsm.pinFile, "utf8");
        await writeFile(root.hsm.pinFile, "97531\n");
        try {
          await expect(d.start()).rejects.toThrow(/did not start/);
          expect(d.child()?.exitCode).toBe(2);
          expect(d.stderr()).toMatch(/refusing to start: HSM .*CKR_PIN_INCORRECT/);
          expect(d.stderr()).not.toContain("97531");
        } finally {
          await writeFile(root.hsm.pinFile, good);
        }
        await d.start();
      });
    });

    describe("TPM+HSM mode", () => {
      let d: TestDaemon;
      let root: Awaited<ReturnType<typeof hsmRoot>>;
      beforeAll(async () => {
        root = await hsmRoot("ed25519");
        d = await startTestDaemon({
          config: { hsm: root.lines("tpm+hsm", ['checkpoints = "hsm"']) },
          daemonEnv: root.hsm.env,
        });
      });
      afterAll(async () => {
        await d?.dispose();
      });

      it("issues tokens on epochs that carry both the quote and the HSM signature; either root missing denies", async () => {
        const c = await d.client();
        try {
          expect(await outcome(c)).toBe("allow");
          const name = basename(await root.hsm.tokenDir());
          await root.hsm.removeToken();
          await eventually(
            "hardware_unavailable (HSM)",
            async () => (await outcome(c)) === "hardware_unavailable",
          );
          await root.hsm.restoreToken(name);
          await eventually("recovery", async () => (await outcome(c)) === "allow");
          await d.tpm.kill();
          await eventually(
            "hardware_unavailable (TPM)",
            async () => (await outcome(c)) === "hardware_unavailable",
          );
          await d.tpm.launch();
          // A TPM reset: the earlier counters no longer match, a new run of the daemon starts clean.
        } finally {
          c.close();
        }
        expect(await d.stop()).toBe(0);
        const records = await epochRecords(d.lineageDir);
        const both = records.map((r) => verifyHsmEpoch(r, root.publicKey)).filter((v) => v.ok && v.hasQuote);
        expect(both.length).toBeGreaterThan(0);
        // Checkpoints signed by the HSM's Ed25519 key (note type 0x01) under the host's key name.
        const notes = await checkpointNotes(d.lineageDir);
        expect(notes.length).toBeGreaterThan(0);
        for (const n of notes) {
          const name = parseNote(n).signatures[0]!.name;
          const vkey = verifierKeyString(name, "ed25519", root.publicKey);
          openCheckpoint(n, `execgate/${name.slice("execgate-".length)}`, parseVerifierKey(vkey));
        }
      });
    });

    describe("TPM+HSM: the exported bundle needs both anchors", () => {
      let d: TestDaemon;
      let root: Awaited<ReturnType<typeof hsmRoot>>;
      beforeAll(async () => {
        root = await hsmRoot("ec");
        d = await startTestDaemon({ config: { hsm: root.lines("tpm+hsm") }, daemonEnv: root.hsm.env });
        const c = await d.client();
        try {
          const t = await c.requestToken({ scope: "dev", argv: ["/bin/true"] });
          await c.redeem(t.token);
        } finally {
          await c.close();
        }
      });
      afterAll(async () => {
        await d?.dispose();
      });

      it("audits clean with the EK trust anchors and the pinned HSM key; a wrong HSM key fails", async () => {
        const ok = await exportAndVerify(d, root, true);
        expect(ok.report.failures).toEqual([]);
        expect(ok.code).toBe(0);
        const other = await hsmRoot("ec");
        const bad = await exportAndVerify(d, { publicKey: other.publicKey }, true);
        expect(bad.code).toBe(1);
        expect(bad.report.failures.map((f) => f.check)).toEqual(
          expect.arrayContaining(["hsm_key", "epoch_hsm"]),
        );
      });
    });

    describe('checkpoints = "both": the TPM key signs, the HSM key co-signs every checkpoint', () => {
      let d: TestDaemon;
      let root: Awaited<ReturnType<typeof hsmRoot>>;
      beforeAll(async () => {
        root = await hsmRoot("ed25519");
        d = await startTestDaemon({
          config: { hsm: root.lines("tpm+hsm", ['checkpoints = "both"']) },
          daemonEnv: root.hsm.env,
        });
      });
      afterAll(async () => {
        await d?.dispose();
      });

      it("every checkpoint verifies with the HSM key as well as the TPM log key, and the log audits", async () => {
        const c = await d.client();
        try {
          await c.requestToken({ scope: "dev", argv: ["/bin/true"] });
        } finally {
          await c.close();
        }
        const ok = await exportAndVerify(d, root, true);
        expect(ok.report.failures).toEqual([]);
        expect(ok.code).toBe(0);
        await d.stop();
        const notes = await checkpointNotes(d.lineageDir);
        expect(notes.length).toBeGreaterThan(0);
        for (const n of notes) {
          const sigs = parseNote(n).signatures;
          expect(sigs.length).toBe(2);
          const name = sigs.map((x) => x.name).find((x) => x.endsWith("-hsm"))!;
          const hsmVerifier = parseVerifierKey(verifierKeyString(name, "ed25519", root.publicKey));
          const { openNote } = await import("../../src/lineage/note.js");
          expect(openNote(n, [hsmVerifier]).verified.length).toBe(1);
        }
      });
    });

    describe('tokens signed by the HSM key directly (token_signer = "hsm")', () => {
      let d: TestDaemon;
      let root: Awaited<ReturnType<typeof hsmRoot>>;
      beforeAll(async () => {
        root = await hsmRoot("ec");
        d = await startTestDaemon({
          golden: false,
          config: { hsm: root.lines("hsm", ['token_signer = "hsm"']) },
          daemonEnv: root.hsm.env,
        });
      });
      afterAll(async () => {
        await d?.dispose();
      });

      it("tokens are ES256 COSE_Sign1 by the HSM key, redeem once, are recorded by digest, and die with the run", async () => {
        const c = await d.client();
        let token: Uint8Array;
        let unused: Uint8Array;
        try {
          token = (await c.requestToken({ scope: "dev", argv: ["/bin/true"] })).token;
          unused = (await c.requestToken({ scope: "dev", argv: ["/bin/true"] })).token;
          const msg = decodeSign1(token);
          expect(msg.alg).toBe(COSE_ALG.ES256);
          expect(verifySign1(msg, root.publicKey)).toBe(true);
          await c.redeem(token);
          await expect(c.redeem(token)).rejects.toMatchObject({ reason: "token_replayed" });
        } finally {
          c.close();
        }
        expect(await d.stop()).toBe(0);
        const digest = createHash("sha256").update(token).digest();
        const issued = (await lineageEntries(d.lineageDir)).filter(
          (e) => e.type === "token_issued" && Buffer.from(e.body.digest).equals(digest),
        );
        expect(issued).toHaveLength(1);
        const now = Math.floor(Date.now() / 1000);
        const bound = (await epochRecords(d.lineageDir))
          .map((epoch) =>
            verifyTokenBoundHsm({ token, epoch, hsmPublicKey: root.publicKey, audience: "execgate", now }),
          )
          .filter((v) => v.ok);
        expect(bound).toHaveLength(1);
        expect(bound[0]).toMatchObject({ signer: "hsm" });
        await d.start();
        // The HSM key outlives the process, its tokens do not: a new run refuses them.
        const again = await d.client();
        try {
          await expect(again.redeem(unused)).rejects.toMatchObject({ reason: "token_signature_invalid" });
          await expect(again.redeem(token)).rejects.toMatchObject({ reason: "token_signature_invalid" });
        } finally {
          again.close();
        }
      });

      it("HSM-signed tokens audit clean: each verified with the HSM key, redeemed once", async () => {
        const { code, report } = await exportAndVerify(d, root, false);
        expect(report.failures).toEqual([]);
        expect(code).toBe(0);
        expect(report.attestation.tokensRedeemed).toBeGreaterThan(0);
      });
    });
  });
});
