import { generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { fromHex, toHex } from "../../src/core/hex.js";
import { hasTpmaObject, TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from "../../src/tpm/constants.js";
import { parseAttest, serializeAttest } from "../../src/tpm/structures/attest.js";
import { parseTpm2bPublic, tpmName, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { serializeSignature } from "../../src/tpm/structures/signature.js";
import { type VerifyCertifyInput, verifyCertify } from "../../src/tpm/verify-quote.js";
import { fixture } from "../fixtures/tpm/load.js";

// tpm2-tools 5.4 tpm2_certify always passes qualifyingData 00ff55aa (it has no -q option).
const CERTIFY_NONCE = fromHex("00ff55aa");

function input(ak: "ecc" | "rsa"): VerifyCertifyInput {
  return {
    attest: fixture(`certify-${ak}.attest`),
    signature: fixture(`certify-${ak}.sig`),
    akPublic: tpmPublicKey(parseTpm2bPublic(fixture(`ak-${ak}.pub`))),
    expectedQualifyingData: CERTIFY_NONCE,
    certifiedPublic: fixture("sk-ecc.pub"),
  };
}

function flip(b: Uint8Array, i: number): Uint8Array {
  const c = b.slice();
  c[i] = (c[i] ?? 0) ^ 1;
  return c;
}

describe("verifyCertify on TPM2_Certify output captured from swtpm", () => {
  for (const ak of ["ecc", "rsa"] as const) {
    it(`${ak} AK vouches for the P-256 signing key`, () => {
      const r = verifyCertify(input(ak));
      expect(r.ok, r.ok ? "" : `${r.check}: ${r.detail}`).toBe(true);
      if (!r.ok) return;
      expect(toHex(r.certify.name)).toBe(toHex(fixture("sk-ecc.name")));
      expect(hasTpmaObject(r.certify.certified.objectAttributes, "restricted")).toBe(false);
      expect(hasTpmaObject(r.certify.certified.objectAttributes, "sign")).toBe(true);
      expect(r.certify.certifiedKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
      expect(r.certify.qualifiedSigner).toEqual(parseAttest(fixture(`certify-${ak}.attest`)).qualifiedSigner);
    });

    it(`${ak}: another public key → name; wrong nonce → extra_data; flipped attest → signature; other AK → signature`, () => {
      const i = input(ak);
      expect(verifyCertify({ ...i, certifiedPublic: fixture("sk-rsa.pub") })).toMatchObject({
        check: "name",
      });
      expect(verifyCertify({ ...i, certifiedPublic: fixture(`ak-${ak}.pub`) })).toMatchObject({
        check: "name",
      });
      expect(verifyCertify({ ...i, expectedQualifyingData: new Uint8Array(0) })).toMatchObject({
        check: "extra_data",
      });
      for (let b = 0; b < i.attest.length; b++) {
        const r = verifyCertify({ ...i, attest: flip(i.attest, b) });
        expect(r.ok ? "ok" : r.check, `byte ${b}`).toBe("signature");
      }
      const other = tpmPublicKey(parseTpm2bPublic(fixture(ak === "ecc" ? "ak-rsa.pub" : "ak-ecc.pub")));
      expect(verifyCertify({ ...i, akPublic: other })).toMatchObject({ check: "signature" });
      expect(verifyCertify({ ...i, certifiedPublic: fixture("sk-ecc.pub").subarray(0, 20) })).toMatchObject({
        check: "malformed",
      });
    });
  }

  it("a quote given to verifyCertify → type", () => {
    const r = verifyCertify({
      ...input("ecc"),
      attest: fixture("quote-ecc.msg"),
      signature: fixture("quote-ecc.sig"),
    });
    expect(r).toMatchObject({ ok: false, check: "type" });
  });

  it("a validly signed certify with bad magic → magic", () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const sk = parseTpm2bPublic(fixture("sk-ecc.pub"));
    const attest = serializeAttest({
      magic: TPM_GENERATED_VALUE ^ 1,
      qualifiedSigner: new Uint8Array(34),
      extraData: CERTIFY_NONCE,
      clockInfo: { clock: 1n, resetCount: 0, restartCount: 0, safe: true },
      firmwareVersion: 0n,
      attested: { type: TPM_ST.ATTEST_CERTIFY, name: tpmName(sk), qualifiedName: new Uint8Array(34) },
    });
    const p = new Uint8Array(sign("sha256", attest, { key: privateKey, dsaEncoding: "ieee-p1363" }));
    const signature = serializeSignature({
      sigAlg: TPM_ALG.ECDSA,
      hashAlg: TPM_ALG.SHA256,
      signatureR: p.subarray(0, 32),
      signatureS: p.subarray(32),
    });
    const base = { ...input("ecc"), attest, signature, akPublic: publicKey };
    expect(verifyCertify(base)).toMatchObject({ ok: false, check: "magic" });
  });
});
