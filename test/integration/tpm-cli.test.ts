import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Swtpm } from "../../src/dev/swtpm.js";
import { HANDLES } from "../../src/tpm/ops/handles.js";
import { ensureAk } from "../../src/tpm/ops/keys.js";
import { pcrExtend } from "../../src/tpm/ops/pcr.js";
import { parsePcrsFile, serializePcrsFile } from "../../src/tpm/structures/pcrs-file.js";
import { execgate, run } from "../helpers/cli.js";
import { describeTpm, startSwtpm } from "../helpers/hardware.js";

const NONCE = "5a1d0e7c9b3f4a2e8d6c1b0a99887766";
const SEL = "sha256:0,1,2,3,4,5,6,7,10";

describeTpm("execgate tpm CLI against swtpm, and interop with tpm2_quote / tpm2_checkquote", () => {
  let tpm: Swtpm;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const RSA_AK = 0x81000011;

  beforeAll(async () => {
    tpm = await startSwtpm();
    dir = tpm.paths.state.replace(/state$/, "");
    env = { TPM2TOOLS_TCTI: tpm.tcti };
    await ensureAk(tpm.runner);
    await ensureAk(tpm.runner, { handle: RSA_AK, algorithm: "rsa" });
    await pcrExtend(tpm.runner, 10, "sha256", new Uint8Array(32).fill(7));
    await quoteWith("ecc", HANDLES.ak);
    await quoteWith("rsa", RSA_AK);
  });
  afterAll(async () => {
    await tpm?.stop();
  });

  const f = (name: string) => join(dir, name);

  async function quoteWith(prefix: string, akHandle: number): Promise<void> {
    const r = await execgate(
      [
        "tpm",
        "quote",
        "--nonce",
        NONCE,
        "--pcrs",
        SEL,
        "--message",
        f(`${prefix}.msg`),
        "--signature",
        f(`${prefix}.sig`),
        "--pcrs-out",
        f(`${prefix}.pcrs`),
        "--ak-pub-out",
        f(`${prefix}.pem`),
        "--ak-handle",
        `0x${akHandle.toString(16)}`,
      ],
      env,
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  }

  function verifyArgs(prefix: string, over: Partial<Record<string, string>> = {}): string[] {
    const a = {
      "ak-pub": f(`${prefix}.pem`),
      message: f(`${prefix}.msg`),
      signature: f(`${prefix}.sig`),
      pcrs: f(`${prefix}.pcrs`),
      nonce: NONCE,
      ...over,
    };
    return ["tpm", "verify-quote", "--json", ...Object.entries(a).flatMap(([k, v]) => [`--${k}`, v!])];
  }

  async function checkFails(args: string[], check: string): Promise<void> {
    const r = await execgate(args);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ valid: false, check });
  }

  it("tpm info reports the manufacturer, EK, AK and EK certificates", async () => {
    // The root and the intermediate that signs the EK certificates: the root alone does not chain.
    const bundle = f("ek-ca-bundle.pem");
    await writeFile(
      bundle,
      (await readFile(tpm.paths.rootCa, "utf8")) + (await readFile(tpm.paths.issuerCa, "utf8")),
    );
    const r = await execgate(["tpm", "info", "--json", "--trust", bundle], env);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.manufacturer).toBe("IBM");
    expect(info.ek.present).toBe(true);
    expect(info.ak).toMatchObject({ handle: "0x81000010", present: true });
    expect(info.ak.publicKeyPem).toMatch(/BEGIN PUBLIC KEY/);
    expect(info.ekCertificates.map((c: { key: string }) => c.key).sort()).toEqual(["ecc-p384", "rsa2048"]);
    expect(info.ekCertificates.some((c: { chain?: string }) => c.chain === "verified")).toBe(true);
    // A bundle no EK certificate chains to is a failed check (exit 1), as at daemon start.
    const other = join(import.meta.dirname, "../fixtures/tpm/ca-root.pem");
    const bad = await execgate(["tpm", "info", "--trust", other], env);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/chain INVALID/);
    expect(bad.stdout).toMatch(/no EK certificate chains to/);
  });

  for (const label of ["ECC", "RSA"] as const) {
    it(`${label} AK: execgate quotes, tpm2_checkquote and execgate verify-quote accept`, async () => {
      const p = label.toLowerCase();
      const c = await run(
        "/usr/bin/tpm2_checkquote",
        [
          "-u",
          f(`${p}.pem`),
          "-m",
          f(`${p}.msg`),
          "-s",
          f(`${p}.sig`),
          "-f",
          f(`${p}.pcrs`),
          "-g",
          "sha256",
          "-q",
          NONCE,
        ],
        {},
        dir,
      );
      expect(c.code).toBe(0);
      const v = await execgate(verifyArgs(p, { "pcr-selection": SEL }));
      expect(v.code).toBe(0);
      expect(JSON.parse(v.stdout)).toMatchObject({ valid: true, selection: SEL, qualifyingData: NONCE });
    });

    it(`${label} AK: each tamper case is rejected naming the failed check`, async () => {
      const p = label.toLowerCase();
      await checkFails(verifyArgs(p, { nonce: `00${NONCE.slice(2)}` }), "extra_data");
      const msg = await readFile(f(`${p}.msg`));
      msg[msg.length - 5]! ^= 0x01;
      await writeFile(f(`${p}-bad.msg`), msg);
      await checkFails(verifyArgs(p, { message: f(`${p}-bad.msg`) }), "signature");
      const sig = await readFile(f(`${p}.sig`));
      sig[sig.length - 3]! ^= 0x80;
      await writeFile(f(`${p}-bad.sig`), sig);
      await checkFails(verifyArgs(p, { signature: f(`${p}-bad.sig`) }), "signature");
      const other = label === "ECC" ? "rsa" : "ecc";
      await checkFails(verifyArgs(p, { "ak-pub": f(`${other}.pem`) }), "signature");
      await checkFails(verifyArgs(p, { "pcr-selection": "sha256:0,1,2,3,4,5,6,7" }), "pcr_selection");
      await checkFails(
        verifyArgs(p, { "pcr-selection": "sha256:0,1,2,3,4,5,6,7,10+sha1:0" }),
        "pcr_selection",
      );
      const pcrs = parsePcrsFile(await readFile(f(`${p}.pcrs`)));
      const bank = new Map(pcrs.values.get(0x000b)!);
      bank.set(10, new Uint8Array(32).fill(9));
      await writeFile(f(`${p}-bad.pcrs`), serializePcrsFile(pcrs.selection, new Map([[0x000b, bank]])));
      await checkFails(verifyArgs(p, { pcrs: f(`${p}-bad.pcrs`) }), "pcr_digest");
    });
  }

  it("execgate verify-quote accepts a quote made by tpm2_quote directly", async () => {
    const r = await run(
      "/usr/bin/tpm2_quote",
      [
        "-c",
        "0x81000010",
        "-l",
        SEL,
        "-q",
        NONCE,
        "-m",
        "t.msg",
        "-s",
        "t.sig",
        "-o",
        "t.pcrs",
        "-g",
        "sha256",
      ],
      env,
      dir,
    );
    expect(r.code).toBe(0);
    const v = await execgate(verifyArgs("t", { "ak-pub": f("ecc.pem") }));
    expect(v.code).toBe(0);
    expect(JSON.parse(v.stdout).valid).toBe(true);
  });

  it("enroll writes the enrollment record, and a second run reuses the keys", async () => {
    const out = f("enrollment");
    const first = await execgate(["enroll", "--out", out, "--json"], env);
    expect(first.code).toBe(0);
    const rec = JSON.parse(first.stdout);
    expect(rec.ak).toMatchObject({ handle: "0x81000010", algorithm: "ecc", created: false });
    expect(Object.keys(rec.files)).toEqual(
      expect.arrayContaining([
        "ak.pub",
        "ak.pem",
        "signing-key.pub",
        "signing-key.certify.attest",
        "ek-cert-0x01c00002.der",
      ]),
    );
    const onDisk = JSON.parse(await readFile(join(out, "enrollment.json"), "utf8"));
    expect(onDisk.signingKey.name).toBe(rec.signingKey.name);
    const again = JSON.parse((await execgate(["enroll", "--out", out, "--json"], env)).stdout);
    expect(again.signingKey.name).toBe(rec.signingKey.name);
    expect((await execgate(["enroll", "--out", out, "--ak-alg", "dsa"], env)).code).toBe(2);
    const golden = f("golden.toml");
    expect((await execgate(["enroll", "--out", out, "--golden-out", golden], env)).code).toBe(0);
    const text = await readFile(golden, "utf8");
    expect(text).toMatch(/^\[integrity\.pcrs\.sha256\]$/m);
    expect(text).toMatch(/^"7" = \["[0-9a-f]{64}"\]$/m);
    // PCR 10 (IMA) moves with every measurement: not a golden value unless --pcrs names it.
    expect(text).not.toMatch(/"10"/);
    expect(
      (await execgate(["enroll", "--out", out, "--golden-out", golden, "--pcrs", "sha256:7,10"], env)).code,
    ).toBe(0);
    const named = await readFile(golden, "utf8");
    expect(named).toMatch(/^"10" = \["[0-9a-f]{64}"\]$/m);
    expect(named).toMatch(/^"7" = \["[0-9a-f]{64}"\]$/m);
    expect(named).not.toMatch(/^"0" = /m);
    // Without --pcrs: the PCRs the daemon quotes (tpm.pcrs of the config), PCR 10 still left out.
    const quoted = f("quoted.toml");
    await writeFile(quoted, `[tpm]\ntcti = ${JSON.stringify(tpm.tcti)}\npcrs = "sha256:0,7,10"\n`);
    const fromConfig = await execgate(
      ["enroll", "--out", out, "--golden-out", golden, "--config", quoted],
      env,
    );
    expect(fromConfig.code, fromConfig.stderr).toBe(0);
    const configured = await readFile(golden, "utf8");
    expect([...configured.matchAll(/^"(\d+)" = /gm)].map((m) => m[1])).toEqual(["0", "7"]);
    const help = await execgate(["enroll", "--help"]);
    expect(help.stdout).toMatch(/without PCR 10/);
    expect(help.stdout).toContain("PCRs the daemon quotes (tpm.pcrs of the config");
  });

  it("TPM commands take tcti and ak_handle from [tpm] of --config, else $EXECGATE_CONFIG; flags win", async () => {
    const config = f("execgate.toml");
    await writeFile(config, `[tpm]\ntcti = ${JSON.stringify(tpm.tcti)}\nak_handle = "0x81000030"\n`);
    // No $TPM2TOOLS_TCTI: the config names the TPM, and enroll makes the AK where the daemon looks.
    const e = await execgate(["enroll", "--out", f("enroll-config"), "--json", "--config", config]);
    expect(e.code, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).ak).toMatchObject({ handle: "0x81000030", created: true });
    const info = await execgate(["tpm", "info", "--json"], { EXECGATE_CONFIG: config });
    expect(info.code, info.stderr).toBe(0);
    const akPem = JSON.parse(info.stdout).ak.publicKeyPem;
    expect(JSON.parse(info.stdout)).toMatchObject({
      tcti: tpm.tcti,
      ak: { handle: "0x81000030", present: true },
    });
    const flagged = await execgate(["tpm", "info", "--json", "--ak-handle", "0x81000010"], {
      EXECGATE_CONFIG: config,
    });
    expect(JSON.parse(flagged.stdout).ak.handle).toBe("0x81000010");
    const q = await execgate(
      [
        ...["tpm", "quote", "--nonce", NONCE, "--config", config],
        ...["--message", f("cfg.msg"), "--signature", f("cfg.sig"), "--pcrs-out", f("cfg.pcrs")],
        ...["--ak-pub-out", f("cfg.pem")],
      ],
      { EXECGATE_CONFIG: f("missing.toml") },
    );
    expect(q.code, q.stderr).toBe(0);
    expect(await readFile(f("cfg.pem"), "utf8")).toBe(akPem);
    expect((await execgate(verifyArgs("cfg"))).code).toBe(0);

    // A config that is named but unreadable or invalid is a configuration error naming it.
    const missing = await execgate(["tpm", "info"], { ...env, EXECGATE_CONFIG: f("missing.toml") });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`cannot read config ${f("missing.toml")}`);
    expect(missing.stderr).toContain("$EXECGATE_CONFIG");
    await writeFile(f("bad.toml"), '[tpm]\nak_handle = "0x01000000"\n');
    const bad = await execgate(["enroll", "--out", f("enroll-bad"), "--config", f("bad.toml")], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`${f("bad.toml")}: tpm.ak_handle`);
    await expect(readFile(join(f("enroll-bad"), "enrollment.json"))).rejects.toThrow();
  });

  it("enroll --signing-key-handle, else tpm.signing_key_handle of the config, places the checkpoint key", async () => {
    const flagged = await execgate(
      ["enroll", "--out", f("enroll-sk"), "--json", "--signing-key-handle", "0x81000031"],
      env,
    );
    expect(flagged.code, flagged.stderr).toBe(0);
    const rec = JSON.parse(flagged.stdout);
    expect(rec.signingKey.handle).toBe("0x81000031");
    const info = JSON.parse(
      (await execgate(["tpm", "info", "--json", "--signing-key-handle", "0x81000031"], env)).stdout,
    );
    expect(info.signingKey).toMatchObject({ handle: "0x81000031", present: true, name: rec.signingKey.name });
    const config = f("execgate-sk.toml");
    await writeFile(config, `[tpm]\ntcti = ${JSON.stringify(tpm.tcti)}\nsigning_key_handle = "0x81000032"\n`);
    const byConfig = await execgate(["enroll", "--out", f("enroll-sk"), "--json"], {
      EXECGATE_CONFIG: config,
    });
    expect(byConfig.code, byConfig.stderr).toBe(0);
    expect(JSON.parse(byConfig.stdout).signingKey.handle).toBe("0x81000032");
    const infoByConfig = await execgate(["tpm", "info", "--json"], { EXECGATE_CONFIG: config });
    expect(JSON.parse(infoByConfig.stdout).signingKey).toMatchObject({ handle: "0x81000032", present: true });
    // One handle cannot hold both keys: refused before anything is made, as the config refuses it.
    for (const args of [
      ["--signing-key-handle", "0x81000010"],
      ["--ak-handle", "0x81000020"],
      ["--config", config, "--ak-handle", "0x81000032"],
    ]) {
      const same = await execgate(["enroll", "--out", f("enroll-same"), ...args], env);
      expect(same.code).toBe(2);
      expect(same.stderr).toMatch(/signing key handle 0x810000\w\w must differ from the AK handle/);
    }
    await expect(readFile(join(f("enroll-same"), "enrollment.json"))).rejects.toThrow();
    expect(
      (await execgate(["enroll", "--out", f("enroll-same"), "--signing-key-handle", "7"], env)).code,
    ).toBe(2);
  });

  it("usage errors exit 2, unreadable files exit 3", async () => {
    expect((await execgate(["tpm", "verify-quote", "--nonce", "zz"])).code).toBe(2);
    expect((await execgate(["tpm", "quote", "--bogus"])).code).toBe(2);
    expect((await execgate(["tpm", "nonsense"])).code).toBe(2);
    expect((await execgate(verifyArgs("ecc", { message: f("absent.msg") }))).code).toBe(3);
    const help = await execgate(["tpm", "verify-quote", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--ak-pub/);
  });

  it("an unreachable TPM exits 3 with hardware_unavailable", async () => {
    const r = await execgate(
      [
        "tpm",
        "quote",
        "--nonce",
        NONCE,
        "--message",
        f("x.msg"),
        "--signature",
        f("x.sig"),
        "--pcrs-out",
        f("x.pcrs"),
        "--timeout-ms",
        "2000",
      ],
      { TPM2TOOLS_TCTI: `swtpm:path=${dir}/absent.sock` },
    );
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/hardware_unavailable/);
  });
});
