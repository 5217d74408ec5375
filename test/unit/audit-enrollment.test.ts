import { generateKeyPairSync, type KeyObject, sign, X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { auditEkBinding, hostUeid, originFailure } from "../../src/audit/ek-binding.js";
import { auditEnrollment, type EnrollmentAuditInput } from "../../src/audit/enrollment.js";
import { auditHsmKey } from "../../src/audit/hsm-key.js";
import { digest } from "../../src/core/digest.js";
import type { Entry } from "../../src/lineage/entry.js";
import { signNote } from "../../src/lineage/note.js";
import type { NoteSigner } from "../../src/lineage/signer.js";
import { lineageOrigin, ueidOfEk, ueidOfKey } from "../../src/token/ueid.js";
import { parseTpm2bPublic, tpmName, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { fixture, fixtureText } from "../fixtures/tpm/load.js";

// swtpm_localca certificates are valid from the capture time until 9999-12-31.
const TRUST = `${fixtureText("ca-root.pem")}\n${fixtureText("ca-intermediate.pem")}\n`;
const NOW = new Date(Date.parse(new X509Certificate(fixtureText("ca-root.pem")).validFrom) + 86_400_000);
const RSA_CERT = { name: "ek-cert-0x01c00002.der", der: fixture("ek-rsa-cert.der") };
const ECC_CERT = { name: "ek-cert-0x01c00016.der", der: fixture("ek-ecc384-cert.der") };
const keyOf = (pub: Uint8Array) => tpmPublicKey(parseTpm2bPublic(pub));
const pem = (k: KeyObject) => new TextEncoder().encode(String(k.export({ type: "spki", format: "pem" })));
const checks = (fs: readonly { check: string }[]) => fs.map((f) => f.check);

describe("auditEkBinding: every EK certificate certifies ek.pub and chains", () => {
  const ok = { ekPublic: fixture("ek-rsa.pub"), trustPem: TRUST, now: NOW };
  it("the EK's own certificate under the trusted CA: no failure", () => {
    expect(auditEkBinding({ ...ok, ekCertificates: [RSA_CERT] })).toEqual([]);
  });
  it("a certificate of another EK beside it fails ek_cert_key, though it chains", () => {
    const f = auditEkBinding({ ...ok, ekCertificates: [RSA_CERT, ECC_CERT] });
    expect(f).toEqual([
      { check: "ek_cert_key", reason: `${ECC_CERT.name} certifies another key than ek.pub` },
    ]);
  });
  it("ek.pub of another EK: its certificate fails ek_cert_key", () => {
    const f = auditEkBinding({ ...ok, ekPublic: fixture("ek-ecc384.pub"), ekCertificates: [RSA_CERT] });
    expect(checks(f)).toEqual(["ek_cert_key"]);
  });
  it("anchors the certificate does not chain to: ek_chain, for every certificate", () => {
    const f = auditEkBinding({
      ...ok,
      trustPem: fixtureText("chain-root.pem"),
      ekCertificates: [RSA_CERT, { ...RSA_CERT, name: "ek-cert-0x01c00012.der" }],
    });
    expect(checks(f)).toEqual(["ek_chain", "ek_chain"]);
  });
  it("no ek.pub, no certificate, no anchors, a certificate that is not DER: each named", () => {
    expect(checks(auditEkBinding({ ekCertificates: [RSA_CERT], trustPem: TRUST, now: NOW }))).toEqual(["ek"]);
    expect(checks(auditEkBinding({ ...ok, ekCertificates: [] }))).toEqual(["ek_chain"]);
    expect(checks(auditEkBinding({ ekPublic: ok.ekPublic, ekCertificates: [RSA_CERT], now: NOW }))).toEqual([
      "ek_chain",
    ]);
    const junk = { name: "ek-cert-x.der", der: Uint8Array.of(0x30, 0x03, 1, 2, 3) };
    expect(checks(auditEkBinding({ ...ok, ekCertificates: [junk] }))).toEqual(["ek_chain"]);
    expect(
      checks(auditEkBinding({ ...ok, ekPublic: Uint8Array.of(0, 1), ekCertificates: [RSA_CERT] })),
    ).toEqual(["ek"]);
  });
});

describe("the host identity: ueid and origin", () => {
  it("ueid is 0x01 ‖ SHA-256(EK Name); an HSM-only host's is 0x01 ‖ SHA-256(SPKI)", () => {
    const ek = parseTpm2bPublic(fixture("ek-rsa.pub"));
    expect(ueidOfEk(ek)).toEqual(Uint8Array.of(1, ...digest("sha256", tpmName(ek))));
    expect(hostUeid(fixture("ek-rsa.pub"), undefined)).toEqual(ueidOfEk(ek));
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const spki = publicKey.export({ type: "spki", format: "der" });
    expect(hostUeid(undefined, publicKey)).toEqual(Uint8Array.of(1, ...digest("sha256", spki)));
    // the TPM's EK names a TPM+HSM host, as the daemon does
    expect(hostUeid(fixture("ek-rsa.pub"), publicKey)).toEqual(ueidOfEk(ek));
    expect(hostUeid(undefined, undefined)).toBeUndefined();
  });
  it("the origin must be the one the host's ueid names", () => {
    const ueid = hostUeid(fixture("ek-rsa.pub"), undefined)!;
    expect(originFailure(ueid, lineageOrigin(ueid))).toBeUndefined();
    const other = hostUeid(fixture("ek-ecc384.pub"), undefined)!;
    expect(originFailure(ueid, lineageOrigin(other))?.check).toBe("host_origin");
  });
});

describe("auditEnrollment: the PEM copies are the keys of ak.pub and signing-key.pub", () => {
  const base: EnrollmentAuditInput = {
    ekPublic: fixture("ek-rsa.pub"),
    ekCertificates: [RSA_CERT],
    trustPem: TRUST,
    akPublic: fixture("ak-ecc.pub"),
    akPem: fixture("ak-ecc.pem"),
    signingKeyPublic: fixture("sk-ecc.pub"),
    signingKeyPem: pem(keyOf(fixture("sk-ecc.pub"))),
    certify: {
      attest: fixture("certify-ecc.attest"),
      signature: fixture("certify-ecc.sig"),
      qualifyingData: Uint8Array.of(0x00, 0xff, 0x55, 0xaa),
    },
    logKey: keyOf(fixture("sk-ecc.pub")),
    now: NOW,
  };
  it("an honest enrollment: no failure", () => {
    expect(auditEnrollment(base).failures).toEqual([]);
  });
  it("ak.pem of another key, missing, or not a key: ak_pem", () => {
    expect(checks(auditEnrollment({ ...base, akPem: fixture("ak-rsa.pem") }).failures)).toEqual(["ak_pem"]);
    const { akPem: _, ...noPem } = base;
    expect(checks(auditEnrollment(noPem).failures)).toEqual(["ak_pem"]);
    expect(checks(auditEnrollment({ ...base, akPem: Uint8Array.of(1, 2) }).failures)).toEqual(["ak_pem"]);
  });
  it("signing-key.pem of another key: signing_key_pem", () => {
    const f = auditEnrollment({ ...base, signingKeyPem: fixture("ak-rsa.pem") }).failures;
    expect(checks(f)).toEqual(["signing_key_pem"]);
  });
  it("a second certificate of another EK: ek_cert_key", () => {
    expect(checks(auditEnrollment({ ...base, ekCertificates: [RSA_CERT, ECC_CERT] }).failures)).toEqual([
      "ek_cert_key",
    ]);
  });
});

/** A software stand-in for the HSM key, signing notes as the daemon's HSM co-signer does (DER ECDSA). */
function coSigner(name: string) {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const signer: NoteSigner = {
    name,
    algorithm: "ecdsa-p256",
    publicKey,
    sign: async (m) => new Uint8Array(sign("sha256", m, privateKey)),
  };
  return { publicKey, signer };
}

const epoch = (hsmSignature?: Uint8Array) =>
  ({ type: "epoch", body: { ...(hsmSignature ? { hsmSignature } : {}) } }) as unknown as Entry;

describe("auditHsmKey: the pin wins, else the bundle's own key, which must be there if the log is HSM-signed", () => {
  const log = "execgate-0011223344556677";
  const hsm = coSigner(`${log}-hsm`);
  const other = coSigner(`${log}-hsm`);
  const text = `${lineageOrigin(Uint8Array.of(1, ...new Uint8Array(32)))}\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n`;
  const none = { entries: [], checkpointNotes: [], logKeyName: log };
  it("no HSM signature anywhere and no hsm-key.pem: nothing to check", () => {
    expect(auditHsmKey({ ...none, entries: [epoch()] })).toEqual({ epochsSigned: false, failures: [] });
  });
  it("the bundle's key, unpinned, is used and reported as the bundle's", () => {
    const a = auditHsmKey({ ...none, inBundle: pem(hsm.publicKey), entries: [epoch(new Uint8Array(64))] });
    expect(a.failures).toEqual([]);
    expect(a.source).toBe("bundle");
    expect(a.epochsSigned).toBe(true);
    expect(a.key?.equals(hsm.publicKey)).toBe(true);
  });
  it("a pin and the bundle's key agree; a bundle key that is not the pin fails hsm_key", () => {
    const pin = String(hsm.publicKey.export({ type: "spki", format: "pem" }));
    expect(auditHsmKey({ ...none, pinPem: pin, inBundle: pem(hsm.publicKey) })).toMatchObject({
      source: "argument",
      failures: [],
    });
    const a = auditHsmKey({ ...none, pinPem: pin, inBundle: pem(other.publicKey) });
    expect(checks(a.failures)).toEqual(["hsm_key"]);
    expect(a.key?.equals(hsm.publicKey)).toBe(true);
  });
  it("HSM-signed epochs or co-signed checkpoints without hsm-key.pem: hsm_key each", async () => {
    const note = await signNote(text, [hsm.signer]);
    const a = auditHsmKey({ ...none, entries: [epoch(new Uint8Array(64))], checkpointNotes: [note] });
    expect(checks(a.failures)).toEqual(["hsm_key", "hsm_key"]);
    expect(a.key).toBeUndefined();
  });
  it("a malformed hsm-key.pem or --hsm-key fails hsm_key", () => {
    expect(checks(auditHsmKey({ ...none, inBundle: Uint8Array.of(1) }).failures)).toEqual(["hsm_key"]);
    expect(checks(auditHsmKey({ ...none, pinPem: "nope" }).failures)).toEqual(["hsm_key"]);
  });
  it("every co-signature verifies with the key; another HSM's fails checkpoint_hsm, by checkpoint", async () => {
    const good = await signNote(text, [hsm.signer]);
    const forged = await signNote(text, [other.signer]);
    expect(auditHsmKey({ ...none, inBundle: pem(hsm.publicKey), checkpointNotes: [good] }).failures).toEqual(
      [],
    );
    const a = auditHsmKey({ ...none, inBundle: pem(hsm.publicKey), checkpointNotes: [good, forged] });
    expect(a.failures).toEqual([
      {
        check: "checkpoint_hsm",
        reason: "the HSM co-signature does not verify with the HSM key",
        checkpoint: 1,
      },
    ]);
  });
  it("ueidOfKey is the HSM-only host's ueid", () => {
    const spki = hsm.publicKey.export({ type: "spki", format: "der" });
    expect(ueidOfKey(hsm.publicKey)).toEqual(Uint8Array.of(1, ...digest("sha256", spki)));
  });
});
