import { createPublicKey } from "node:crypto";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { parseVerifierKey } from "../../src/lineage/note.js";
import { execgate } from "../helpers/cli.js";
import { describeHsm, startSoftHsm } from "../helpers/hardware.js";

describeHsm("execgate enroll --hsm --no-tpm (SoftHSM2)", () => {
  it("makes the key once, writes its PEM and vkey and the record; a wrong PIN is exit 2", async () => {
    const hsm = await startSoftHsm();
    const out = await mkdtemp(join(hsm.dir, "enroll-"));
    const config = join(hsm.dir, "execgate.toml");
    await writeFile(
      config,
      [
        "[hsm]",
        'require = "hsm"',
        `module = ${JSON.stringify(hsm.module)}`,
        `token_label = ${JSON.stringify(hsm.label)}`,
        'key_label = "root-key"',
        `pin_file = ${JSON.stringify(hsm.pinFile)}`,
        "",
      ].join("\n"),
    );
    const args = ["enroll", "--hsm", "--no-tpm", "--config", config, "--out", out, "--json"];
    const first = await execgate(args, hsm.env);
    expect(first.code, first.stderr).toBe(0);
    const rec = JSON.parse(first.stdout);
    expect(rec.hsm).toMatchObject({ keyLabel: "root-key", algorithm: "ecdsa-p256", created: true });
    const pem = createPublicKey(await readFile(join(out, "hsm-key.pem")));
    expect(pem.equals(await hsm.exportPublicKey("root-key"))).toBe(true);
    const vkey = parseVerifierKey((await readFile(join(out, "hsm-key.vkey"), "utf8")).trim());
    expect(vkey.publicKey.equals(pem)).toBe(true);
    expect(vkey.name).toBe(`execgate-${rec.hsm.spkiSha256.slice(0, 16)}`);
    const again = JSON.parse((await execgate(args, hsm.env)).stdout);
    expect(again.hsm).toMatchObject({ created: false, spkiSha256: rec.hsm.spkiSha256 });
    // Without --config, $EXECGATE_CONFIG names the file; with it, the flag wins.
    const noFlag = ["enroll", "--hsm", "--no-tpm", "--out", out, "--json"];
    const byEnv = await execgate(noFlag, { ...hsm.env, EXECGATE_CONFIG: config });
    expect(byEnv.code, byEnv.stderr).toBe(0);
    expect(JSON.parse(byEnv.stdout).hsm).toMatchObject({ keyLabel: "root-key", created: false });
    const flagWins = await execgate(args, { ...hsm.env, EXECGATE_CONFIG: join(hsm.dir, "missing.toml") });
    expect(flagWins.code, flagWins.stderr).toBe(0);

    // pin_credential outside systemd: $EXECGATE_HSM_PIN_FILE wins over the configuration.
    const credConfig = join(hsm.dir, "execgate-cred.toml");
    await writeFile(
      credConfig,
      (await readFile(config, "utf8")).replace(/^pin_file = .*$/m, 'pin_credential = "hsm-pin"'),
    );
    const credArgs = ["enroll", "--hsm", "--no-tpm", "--config", credConfig, "--out", out, "--json"];
    const cred = await execgate(credArgs, { ...hsm.env, EXECGATE_HSM_PIN_FILE: hsm.pinFile });
    expect(cred.code, cred.stderr).toBe(0);
    expect(JSON.parse(cred.stdout).hsm).toMatchObject({ created: false, spkiSha256: rec.hsm.spkiSha256 });

    await writeFile(hsm.pinFile, "000000\n");
    const wrong = await execgate(args, hsm.env);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/CKR_PIN_INCORRECT/);
    expect(wrong.stderr).not.toContain("000000");
  });
});
