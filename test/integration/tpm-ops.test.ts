import { createHash, createPublicKey, verify } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Swtpm } from "../../src/dev/swtpm.js";
import { TPM_ALG } from "../../src/tpm/constants.js";
import { certify, quote, signDigest } from "../../src/tpm/ops/attest.js";
import { readEkCertificates } from "../../src/tpm/ops/ek-certs.js";
import { HANDLES } from "../../src/tpm/ops/handles.js";
import { ensureAk, ensureSigningKey, readPublic } from "../../src/tpm/ops/keys.js";
import { DEFAULT_PCR_SELECTION, pcrExtend, pcrRead } from "../../src/tpm/ops/pcr.js";
import { getRandom } from "../../src/tpm/ops/random.js";
import { parsePcrSelectionText } from "../../src/tpm/structures/pcr-selection.js";
import { describeTpm, startSwtpm } from "../helpers/hardware.js";

describeTpm("TPM operations through tpm2-tools on swtpm", () => {
  let tpm: Swtpm;
  beforeAll(async () => {
    tpm = await startSwtpm();
  });
  afterAll(async () => {
    await tpm?.stop();
  });

  it("returns random bytes of the asked length", async () => {
    const a = await getRandom(tpm.runner, 32);
    const b = await getRandom(tpm.runner, 32);
    expect(a.length).toBe(32);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });

  it("reads the RSA and ECC EK certificates from NV", async () => {
    const certs = await readEkCertificates(tpm.runner);
    expect(certs.map((c) => c.key).sort()).toEqual(["ecc-p384", "rsa2048"]);
    for (const c of certs) expect(c.der[0]).toBe(0x30);
  });

  it("creates the AK once and finds it again", async () => {
    const first = await ensureAk(tpm.runner);
    expect(first.created).toBe(true);
    const again = await ensureAk(tpm.runner);
    expect(again.created).toBe(false);
    expect(Buffer.from(again.public).equals(Buffer.from(first.public))).toBe(true);
    expect(await readPublic(tpm.runner, 0x81000099)).toBeUndefined();
  });

  it("extends and reads PCRs across more than 8 indices", async () => {
    const d = createHash("sha256").update("boot").digest();
    await pcrExtend(tpm.runner, 10, "sha256", d);
    const v = await pcrRead(tpm.runner, DEFAULT_PCR_SELECTION);
    const expected = createHash("sha256").update(Buffer.alloc(32)).update(d).digest();
    expect(Buffer.from(v.get(TPM_ALG.SHA256)!.get(10)!).equals(expected)).toBe(true);
    expect(v.get(TPM_ALG.SHA256)!.size).toBe(9);
  });

  it("quotes with the AK and writes all three outputs", async () => {
    const nonce = await getRandom(tpm.runner, 32);
    const q = await quote(tpm.runner, {
      akHandle: HANDLES.ak,
      selection: parsePcrSelectionText("sha256:0,10"),
      qualifyingData: nonce,
    });
    expect(Buffer.from(q.attest.subarray(0, 4)).toString("hex")).toBe("ff544347");
    expect(Buffer.from(q.attest).includes(Buffer.from(nonce))).toBe(true);
    expect(q.signature.length).toBeGreaterThan(64);
    expect(q.pcrsFile.length).toBeGreaterThan(64);
  });

  it("creates a signing key, certifies it with the AK and signs a digest", async () => {
    const sk = await ensureSigningKey(tpm.runner);
    expect(sk.created).toBe(true);
    const c = await certify(tpm.runner, { objectHandle: sk.handle, akHandle: HANDLES.ak });
    expect(Buffer.from(c.attest.subarray(4, 6)).toString("hex")).toBe("8017");
    const digest = createHash("sha256").update("checkpoint").digest();
    const sig = await signDigest(tpm.runner, sk.handle, digest);
    // TPMT_SIGNATURE: sigAlg ECDSA (0x0018), hash SHA256 (0x000b), r, s as TPM2B.
    expect(Buffer.from(sig.subarray(0, 4)).toString("hex")).toBe("0018000b");
    const pem = await tpm.runner.run("tpm2_readpublic", ["-c", "0x81000020", "-f", "pem", "-o", "k.pem"], {
      outputs: ["k.pem"],
    });
    const key = createPublicKey(Buffer.from(pem.files["k.pem"]!));
    const rLen = (sig[4]! << 8) | sig[5]!;
    const r = sig.subarray(6, 6 + rLen);
    const sLen = (sig[6 + rLen]! << 8) | sig[7 + rLen]!;
    const s = sig.subarray(8 + rLen, 8 + rLen + sLen);
    const p1363 = Buffer.concat([Buffer.alloc(32 - r.length), r, Buffer.alloc(32 - s.length), s]);
    expect(verify("sha256", Buffer.from("checkpoint"), { key, dsaEncoding: "ieee-p1363" }, p1363)).toBe(true);
  });
});

describeTpm("checkpoints signed by the TPM-resident key verify as C2SP signed notes", () => {
  let tpm: Swtpm;
  beforeAll(async () => {
    tpm = await startSwtpm();
  });
  afterAll(async () => {
    await tpm?.stop();
  });

  it("a TPM-signed note verifies with the certified key, and a changed note does not", async () => {
    const { tpmNoteSigner } = await import("../../src/tpm/note-signer.js");
    const { parseTpm2bPublic, tpmPublicKey } = await import("../../src/tpm/structures/public.js");
    const { signCheckpoint, openCheckpoint } = await import("../../src/lineage/checkpoint.js");
    const { verifierFromSigner } = await import("../../src/lineage/note.js");
    const sk = await ensureSigningKey(tpm.runner);
    const signer = tpmNoteSigner(
      tpm.runner,
      sk.handle,
      tpmPublicKey(parseTpm2bPublic(sk.public)),
      "execgate.test/tpm",
    );
    const origin = "execgate.test/log";
    const note = await signCheckpoint(
      { origin, size: 3, rootHash: new Uint8Array(32).fill(1), extensions: [] },
      [signer],
    );
    const verifier = verifierFromSigner(signer);
    expect(openCheckpoint(note, origin, verifier).checkpoint.size).toBe(3);
    expect(() => openCheckpoint(note.replace("\n3\n", "\n4\n"), origin, verifier)).toThrow();
  });
});
