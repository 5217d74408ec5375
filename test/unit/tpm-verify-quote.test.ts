import { createPublicKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { fromHex } from "../../src/core/hex.js";
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from "../../src/tpm/constants.js";
import { parseAttest, serializeAttest } from "../../src/tpm/structures/attest.js";
import {
  bankSelection,
  type PcrSelection,
  parsePcrSelectionText,
} from "../../src/tpm/structures/pcr-selection.js";
import { computePcrDigest, type PcrValues, pcrValuesFromHex } from "../../src/tpm/structures/pcr-values.js";
import { parsePcrsFile } from "../../src/tpm/structures/pcrs-file.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { serializeSignature } from "../../src/tpm/structures/signature.js";
import { type VerifyQuoteInput, verifyQuote } from "../../src/tpm/verify-quote.js";
import { fixture, fixtureText, parsePcrreadText } from "../fixtures/tpm/load.js";

interface Captured {
  readonly name: string;
  readonly ak: "ecc" | "rsa";
}

const CAPTURED: readonly Captured[] = [
  { name: "quote-ecc", ak: "ecc" },
  { name: "quote-rsa", ak: "rsa" },
  { name: "quote-ecc-2banks", ak: "ecc" },
  { name: "quote-rsa-2banks", ak: "rsa" },
];

function akKey(ak: "ecc" | "rsa"): KeyObject {
  return tpmPublicKey(parseTpm2bPublic(fixture(`ak-${ak}.pub`)));
}

function capturedInput(c: Captured): VerifyQuoteInput {
  return {
    attest: fixture(`${c.name}.msg`),
    signature: fixture(`${c.name}.sig`),
    akPublic: akKey(c.ak),
    expectedQualifyingData: fromHex(fixtureText(`${c.name}.nonce.hex`)),
    expectedSelection: parsePcrSelectionText(fixtureText(`${c.name}.selection.txt`)),
    pcrValues: parsePcrsFile(fixture(`${c.name}.pcrs`)).values,
  };
}

function flip(b: Uint8Array, i: number): Uint8Array {
  const c = b.slice();
  c[i] = (c[i] ?? 0) ^ 0x01;
  return c;
}

describe("verifyQuote on quotes captured from swtpm", () => {
  for (const c of CAPTURED) {
    it(`${c.name} verifies and carries the TPMS_ATTEST fields`, () => {
      const r = verifyQuote(capturedInput(c));
      expect(r.ok, r.ok ? "" : `${r.check}: ${r.detail}`).toBe(true);
      if (!r.ok) return;
      const a = parseAttest(fixture(`${c.name}.msg`));
      expect(r.quote.clock).toBe(a.clockInfo.clock);
      expect(r.quote.resetCount).toBe(a.clockInfo.resetCount);
      expect(r.quote.safe).toBe(true);
      expect(r.quote.signatureHashAlg).toBe(TPM_ALG.SHA256);
      expect(r.quote.extraData).toEqual(fromHex(fixtureText(`${c.name}.nonce.hex`)));
    });

    it(`${c.name}: PCR values from tpm2_pcrread give the same result`, () => {
      const values = pcrValuesFromHex(parsePcrreadText(fixtureText("pcrread.txt")));
      expect(verifyQuote({ ...capturedInput(c), pcrValues: values }).ok).toBe(true);
    });

    it(`${c.name}: wrong nonce → extra_data`, () => {
      const input = capturedInput(c);
      const r = verifyQuote({ ...input, expectedQualifyingData: flip(input.expectedQualifyingData, 0) });
      expect(r).toMatchObject({ ok: false, check: "extra_data" });
      expect(verifyQuote({ ...input, expectedQualifyingData: new Uint8Array(0) })).toMatchObject({
        check: "extra_data",
      });
    });

    it(`${c.name}: a flipped byte anywhere in the attest → signature`, () => {
      const input = capturedInput(c);
      for (let i = 0; i < input.attest.length; i++) {
        const r = verifyQuote({ ...input, attest: flip(input.attest, i) });
        expect(r.ok ? "ok" : r.check, `byte ${i}`).toBe("signature");
      }
    });

    it(`${c.name}: a flipped byte in the signature value → signature (or malformed header)`, () => {
      const input = capturedInput(c);
      for (let i = 0; i < input.signature.length; i++) {
        const r = verifyQuote({ ...input, signature: flip(input.signature, i) });
        expect(r.ok).toBe(false);
        if (!r.ok) expect(["signature", "malformed"], `byte ${i}: ${r.check}`).toContain(r.check);
      }
      // the last byte is inside the signature value itself
      const r = verifyQuote({ ...input, signature: flip(input.signature, input.signature.length - 1) });
      expect(r).toMatchObject({ ok: false, check: "signature" });
    });

    it(`${c.name}: signed by another AK → signature`, () => {
      const other = c.ak === "ecc" ? akKey("rsa") : akKey("ecc");
      expect(verifyQuote({ ...capturedInput(c), akPublic: other })).toMatchObject({
        ok: false,
        check: "signature",
      });
      const sameType =
        c.ak === "ecc"
          ? generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey
          : generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
      expect(verifyQuote({ ...capturedInput(c), akPublic: sameType })).toMatchObject({
        ok: false,
        check: "signature",
      });
    });

    it(`${c.name}: expected selection differs → pcr_selection`, () => {
      const input = capturedInput(c);
      const sel = input.expectedSelection;
      const first = sel[0];
      if (first === undefined) throw new Error("empty selection");
      const cases: PcrSelection[] = [
        [...sel, bankSelection(TPM_ALG.SHA384, [0])], // extra bank
        [{ ...first, pcrSelect: first.pcrSelect.map((v, i) => (i === 0 ? v & 0xfe : v)) }, ...sel.slice(1)], // missing PCR 0
        [{ ...first, pcrSelect: first.pcrSelect.map((v, i) => (i === 2 ? v | 0x80 : v)) }, ...sel.slice(1)], // extra PCR 23
        [{ ...first, pcrSelect: Uint8Array.of(...first.pcrSelect, 0) }, ...sel.slice(1)], // sizeofSelect 4
        sel.slice(1).length > 0 ? [...sel].reverse() : [{ ...first, hashAlg: TPM_ALG.SHA1 }], // order / bank
        [], // empty
      ];
      for (const [i, s] of cases.entries()) {
        expect(verifyQuote({ ...input, expectedSelection: s }), `case ${i}`).toMatchObject({
          ok: false,
          check: "pcr_selection",
        });
      }
    });

    it(`${c.name}: a changed PCR value → pcr_digest; a missing one → pcr_digest`, () => {
      const input = capturedInput(c);
      const bank = input.expectedSelection[input.expectedSelection.length - 1];
      if (bank === undefined) throw new Error("empty");
      const m = new Map(input.pcrValues.get(bank.hashAlg));
      const v0 = m.get(0);
      if (v0 === undefined) throw new Error("PCR 0 missing");
      m.set(0, flip(v0, 5));
      const changed: PcrValues = new Map([...input.pcrValues, [bank.hashAlg, m]]);
      expect(verifyQuote({ ...input, pcrValues: changed })).toMatchObject({ ok: false, check: "pcr_digest" });
      const m2 = new Map(input.pcrValues.get(bank.hashAlg));
      m2.delete(10);
      const missing: PcrValues = new Map([...input.pcrValues, [bank.hashAlg, m2]]);
      expect(verifyQuote({ ...input, pcrValues: missing })).toMatchObject({ ok: false, check: "pcr_digest" });
    });

    it(`${c.name}: garbage signature or attest → malformed / signature, never a throw`, () => {
      const input = capturedInput(c);
      expect(verifyQuote({ ...input, signature: new Uint8Array(0) })).toMatchObject({ check: "malformed" });
      expect(verifyQuote({ ...input, signature: input.signature.subarray(0, 10) })).toMatchObject({
        check: "malformed",
      });
      expect(verifyQuote({ ...input, attest: new Uint8Array(0) })).toMatchObject({ check: "signature" });
    });
  }
});

/**
 * Quotes built here and signed by a node:crypto key: they reach the checks after the signature,
 * which a real TPM would never let us forge (bad magic, wrong type, selection shapes).
 */
describe("verifyQuote on synthetic signed TPMS_ATTEST", () => {
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const values = pcrValuesFromHex({
    sha1: { "0": "11".repeat(20), "1": "22".repeat(20) },
    sha256: { "0": "33".repeat(32), "7": "44".repeat(32), "10": "55".repeat(32) },
  });
  const nonce = fromHex("0011223344556677");

  function build(opts: {
    magic?: number;
    type?: number;
    selection: PcrSelection;
    digestSelection?: PcrSelection;
    extraData?: Uint8Array;
  }): Uint8Array {
    return serializeAttest({
      magic: opts.magic ?? TPM_GENERATED_VALUE,
      type: opts.type ?? TPM_ST.ATTEST_QUOTE,
      qualifiedSigner: fromHex(`000b${"ab".repeat(32)}`),
      extraData: opts.extraData ?? nonce,
      clockInfo: { clock: 123456n, resetCount: 2, restartCount: 1, safe: true },
      firmwareVersion: 0x2019102300163636n,
      attested: {
        type: TPM_ST.ATTEST_QUOTE,
        pcrSelect: opts.selection,
        pcrDigest: computePcrDigest(opts.digestSelection ?? opts.selection, values, TPM_ALG.SHA256),
      },
    });
  }

  function signEcdsa(attest: Uint8Array): Uint8Array {
    const p1363 = sign("sha256", attest, { key: ec.privateKey, dsaEncoding: "ieee-p1363" });
    return serializeSignature({
      sigAlg: TPM_ALG.ECDSA,
      hashAlg: TPM_ALG.SHA256,
      signatureR: new Uint8Array(p1363.subarray(0, 32)),
      signatureS: new Uint8Array(p1363.subarray(32)),
    });
  }

  function signRsa(attest: Uint8Array, sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS): Uint8Array {
    const opts =
      sigAlg === TPM_ALG.RSAPSS
        ? { key: rsa.privateKey, padding: 6, saltLength: 32 }
        : { key: rsa.privateKey };
    return serializeSignature({
      sigAlg,
      hashAlg: TPM_ALG.SHA256,
      sig: new Uint8Array(sign("sha256", attest, opts)),
    });
  }

  const sel = parsePcrSelectionText("sha1:0,1+sha256:0,7,10");

  function run(
    attest: Uint8Array,
    expectedSelection: PcrSelection = sel,
    signer: "ec" | "rsassa" | "rsapss" = "ec",
  ) {
    const signature =
      signer === "ec"
        ? signEcdsa(attest)
        : signRsa(attest, signer === "rsassa" ? TPM_ALG.RSASSA : TPM_ALG.RSAPSS);
    const akPublic = createPublicKey(signer === "ec" ? ec.privateKey : rsa.privateKey);
    return verifyQuote({
      attest,
      signature,
      akPublic,
      expectedQualifyingData: nonce,
      expectedSelection,
      pcrValues: values,
    });
  }

  it("verifies with ECDSA, RSASSA and RSAPSS", () => {
    for (const s of ["ec", "rsassa", "rsapss"] as const) {
      const r = run(build({ selection: sel }), sel, s);
      expect(r.ok, s).toBe(true);
      if (r.ok) {
        expect(r.quote.clock).toBe(123456n);
        expect(r.quote.restartCount).toBe(1);
        expect(r.quote.firmwareVersion).toBe(0x2019102300163636n);
      }
    }
  });

  it("bad magic → magic; wrong type → type (both after a valid signature)", () => {
    expect(run(build({ magic: 0xff544348, selection: sel }))).toMatchObject({ ok: false, check: "magic" });
    const certifyTyped = build({ selection: sel, type: TPM_ST.ATTEST_CERTIFY });
    expect(run(certifyTyped)).toMatchObject({ ok: false, check: "type" });
    expect(run(build({ selection: sel, type: TPM_ST.ATTEST_TIME }))).toMatchObject({
      ok: false,
      check: "type",
    });
  });

  it("signed selection with an extra bank, missing PCR, other order, bigger sizeofSelect → pcr_selection", () => {
    const signedCases = [
      parsePcrSelectionText("sha1:0,1+sha256:0,7,10+sha384:0"),
      parsePcrSelectionText("sha1:0,1+sha256:0,7"),
      parsePcrSelectionText("sha256:0,7,10+sha1:0,1"),
      parsePcrSelectionText("sha256:0,7,10"),
      [
        { hashAlg: TPM_ALG.SHA1, pcrSelect: Uint8Array.of(3, 0, 0, 0) },
        { hashAlg: TPM_ALG.SHA256, pcrSelect: Uint8Array.of(0x81, 0x04, 0, 0) },
      ],
      [...sel, { hashAlg: TPM_ALG.SHA384, pcrSelect: new Uint8Array(3) }], // an empty extra bank
    ];
    for (const [i, signed] of signedCases.entries()) {
      const digestSel = signed.filter((b) => b.hashAlg !== TPM_ALG.SHA384);
      expect(run(build({ selection: signed, digestSelection: digestSel })), `case ${i}`).toMatchObject({
        ok: false,
        check: "pcr_selection",
      });
    }
  });

  it("pcrDigest over other values → pcr_digest", () => {
    const other = parsePcrSelectionText("sha1:0,1+sha256:0,7");
    expect(run(build({ selection: sel, digestSelection: other }))).toMatchObject({
      ok: false,
      check: "pcr_digest",
    });
  });

  it("SHA-1 signatures are refused unless allowed", () => {
    const attest = build({ selection: sel });
    const signature = serializeSignature({
      sigAlg: TPM_ALG.RSASSA,
      hashAlg: TPM_ALG.SHA1,
      sig: new Uint8Array(sign("sha1", attest, rsa.privateKey)),
    });
    const base = {
      attest,
      signature,
      akPublic: rsa.publicKey,
      expectedQualifyingData: nonce,
      pcrValues: values,
    };
    // the PCR digest of a SHA-1-signed quote is SHA-1: this one (SHA-256) must then fail on pcr_digest
    expect(verifyQuote({ ...base, expectedSelection: sel })).toMatchObject({ ok: false, check: "signature" });
    expect(verifyQuote({ ...base, expectedSelection: sel, allowSha1: true })).toMatchObject({
      ok: false,
      check: "pcr_digest",
    });
  });

  it("trailing bytes after a validly signed TPMS_ATTEST → malformed", () => {
    const attest = Uint8Array.of(...build({ selection: sel }), 0);
    expect(run(attest)).toMatchObject({ ok: false, check: "malformed" });
  });
});
