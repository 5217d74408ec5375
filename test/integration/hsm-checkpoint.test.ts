import { execFile } from "node:child_process";
import { createPublicKey } from "node:crypto";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { SoftHsm } from "../../src/dev/softhsm.js";
import { HsmKey } from "../../src/hsm/hsm.js";
import { hsmNoteSigner } from "../../src/hsm/note-signer.js";
import { openCheckpoint, signCheckpoint } from "../../src/lineage/checkpoint.js";
import { makeEntry } from "../../src/lineage/entry.js";
import { openLineage } from "../../src/lineage/lineage.js";
import { parseNote, parseVerifierKey, verifierKeyString } from "../../src/lineage/note.js";
import { softwareEcdsaP256Signer } from "../../src/lineage/signer.js";
import { describeHsm, startSoftHsm } from "../helpers/hardware.js";

const execFileP = promisify(execFile);
const ORIGIN = "execgate.test/hsm";
const cp = { origin: ORIGIN, size: 3, rootHash: new Uint8Array(32).fill(5), extensions: [] };

describeHsm("HSM-signed checkpoints verify with standard note verifiers", () => {
  let hsm: SoftHsm;
  let work: string;
  const keys: HsmKey[] = [];
  /** The public key as pkcs11-tool exports it (independent of src/hsm), as PEM. */
  const exported = async (label: string): Promise<string> => {
    const key = await hsm.exportPublicKey(label);
    const pem = join(work, `${label}.pem`);
    await writeFile(pem, key.export({ format: "pem", type: "spki" }));
    return pem;
  };
  const open = async (label: string) => {
    const k = await HsmKey.open({ module: hsm.module, tokenLabel: hsm.label, keyLabel: label, pin: hsm.pin });
    keys.push(k);
    return k;
  };

  beforeAll(async () => {
    hsm = await startSoftHsm();
    process.env.SOFTHSM2_CONF = hsm.conf;
    work = await mkdtemp(join(hsm.dir, "work-"));
    await hsm.generateKey("ckpt-p256", "ec");
    await hsm.generateKey("ckpt-ed", "ed25519");
  });
  afterAll(async () => {
    for (const k of keys) await k.close();
  });

  for (const [label, tool] of [
    ["ckpt-p256", "openssl dgst -sha256 -verify"],
    ["ckpt-ed", "openssl pkeyutl -verify -rawin"],
  ] as const) {
    it(`${label}: the note verifies from the exported key (vkey and ${tool})`, async () => {
      const k = await open(label);
      const signer = hsmNoteSigner(k, "execgate-hsm");
      const note = await signCheckpoint(cp, [signer]);
      const pem = await exported(label);
      const vkey = verifierKeyString("execgate-hsm", k.algorithm, createPublicKey(await readFile(pem)));
      const opened = openCheckpoint(note, ORIGIN, parseVerifierKey(vkey));
      expect(opened.checkpoint.size).toBe(3);
      // The signature line checked by openssl over the note text.
      const parsed = parseNote(note);
      const text = join(work, `${label}.txt`);
      const sig = join(work, `${label}.sig`);
      await writeFile(text, parsed.text);
      await writeFile(sig, parsed.signatures[0]!.signature);
      const args =
        k.algorithm === "ecdsa-p256"
          ? ["dgst", "-sha256", "-verify", pem, "-signature", sig, text]
          : ["pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin", "-in", text, "-sigfile", sig];
      const { stdout } = await execFileP("openssl", args);
      expect(stdout).toMatch(/Verified OK|Signature Verified Successfully/);
    });
  }

  it("in addition to another hardware key: both signature lines verify", async () => {
    const tpmLike = softwareEcdsaP256Signer("execgate-tpm");
    const hsmSigner = hsmNoteSigner(await open("ckpt-p256"), "execgate-hsm");
    const note = await signCheckpoint(cp, [tpmLike, hsmSigner]);
    const vk = (s: typeof tpmLike) => parseVerifierKey(verifierKeyString(s.name, s.algorithm, s.publicKey));
    expect(openCheckpoint(note, ORIGIN, vk(hsmSigner), [vk(tpmLike)]).note.verified).toHaveLength(2);
  });

  it("a lineage whose checkpoints the HSM signs reopens and verifies them", async () => {
    const dir = await mkdtemp(join(hsm.dir, "lineage-"));
    const signer = hsmNoteSigner(await open("ckpt-p256"), "execgate-hsm");
    const lin = await openLineage({ dir, origin: ORIGIN, signer, now: () => 0, checkpointMs: 100 });
    for (let i = 0; i < 5; i++)
      await lin.add([makeEntry("daemon_stop", { wallMs: i, monoUs: i }, { reason: `r${i}` })]);
    const last = await lin.close();
    expect(last?.checkpoint.size).toBe(5);
    const again = await openLineage({ dir, origin: ORIGIN, signer, now: () => 0 });
    expect(again.latestCheckpoint()?.checkpoint.size).toBe(5);
    await again.close();
  });
});
