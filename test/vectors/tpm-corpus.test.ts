import { createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { fromHex, toHex } from "../../src/core/hex.js";
import { TPM_ALG, TPM_ST } from "../../src/tpm/constants.js";
import { verifyEkChain } from "../../src/tpm/ek-chain.js";
import { parseAttest } from "../../src/tpm/structures/attest.js";
import { bankSelection, parsePcrSelectionText } from "../../src/tpm/structures/pcr-selection.js";
import { computePcrDigest, type PcrValues, pcrValuesFromHex } from "../../src/tpm/structures/pcr-values.js";
import { parsePcrsFile, serializePcrsFile } from "../../src/tpm/structures/pcrs-file.js";
import { parseTpm2bPublic, parseTpmtPublic, tpmName, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { parseSignature, serializeSignature } from "../../src/tpm/structures/signature.js";
import { verifyQuote } from "../../src/tpm/verify-quote.js";
import { corpusPath } from "../helpers/corpus.js";

// Public quote vectors; provenance and expected results in test/corpus/quote/MANIFEST.md.
const quote = (p: string): Uint8Array => new Uint8Array(readFileSync(corpusPath("quote", p)));
const quoteText = (p: string): string => readFileSync(corpusPath("quote", p), "utf8").trim();

const ALL_24 = Array.from({ length: 24 }, (_, i) => i);

function json<T>(name: string): T {
  return JSON.parse(quoteText(name)) as T;
}

function valuesFromList(bank: "sha1" | "sha256" | "sha384", list: readonly string[]): PcrValues {
  return pcrValuesFromHex({ [bank]: Object.fromEntries(list.map((v, i) => [String(i), v])) });
}

function flipHex(hex: string, byte: number): string {
  const b = fromHex(hex);
  b[byte] = (b[byte] ?? 0) ^ 1;
  return toHex(b);
}

describe("keylime test-data (swtpm + tpm2-tools, RSA-2048 AK, RSASSA-SHA256)", () => {
  const ak = parseTpm2bPublic(quote("keylime/ak.pub"));
  const pcrsFile = quote("keylime/quotepcr.out");
  const input = {
    attest: quote("keylime/quote.out"),
    signature: quote("keylime/quotesig.out"),
    akPublic: tpmPublicKey(ak),
    expectedQualifyingData: fromHex("db1db298db6d60e6385b7231743e9c3056a18003"),
    expectedSelection: parsePcrSelectionText("sha256:15,16,22"),
    pcrValues: parsePcrsFile(pcrsFile).values,
  };

  it("AK Name matches ak.name", () => {
    expect(toHex(tpmName(ak))).toBe(toHex(quote("keylime/ak.name")));
    expect(toHex(tpmName(ak))).toBe("000b2d3fb7830f6cb214fac7d7cb213a21a0609148c4505927db61287e1e80322336");
  });

  it("quote verifies with the values of quotepcr.out", () => {
    const r = verifyQuote(input);
    expect(r.ok, r.ok ? "" : r.detail).toBe(true);
    if (r.ok) {
      expect(r.quote.clock).toBe(5994n);
      expect(toHex(r.quote.pcrDigest)).toBe(
        "ec1636c69c548fd09a165a4f874e5d1610a8fbe36241566017e92b17e144b971",
      );
    }
  });

  it("quotepcr.out re-serializes byte for byte", () => {
    const p = parsePcrsFile(pcrsFile);
    expect(toHex(serializePcrsFile(p.selection, p.values))).toBe(toHex(pcrsFile));
  });

  it("tampering is caught by the right check", () => {
    expect(verifyQuote({ ...input, expectedQualifyingData: fromHex("00") })).toMatchObject({
      check: "extra_data",
    });
    expect(verifyQuote({ ...input, expectedSelection: parsePcrSelectionText("sha256:15,16") })).toMatchObject(
      {
        check: "pcr_selection",
      },
    );
    const v = pcrValuesFromHex({
      sha256: { "15": "00".repeat(32), "16": "00".repeat(32), "22": "ff".repeat(32) },
    });
    expect(verifyQuote({ ...input, pcrValues: v })).toMatchObject({ check: "pcr_digest" });
  });
});

describe("rust-keylime test-quote.txt (parse-only: the AK is not published)", () => {
  const text = quoteText("rust-keylime/test-quote.txt");
  const [attestB64, sigB64, pcrsB64] = text.slice(1).split(":");
  const b64 = (s: string | undefined) => new Uint8Array(Buffer.from(s ?? "", "base64"));

  it("parses TPMS_ATTEST, TPMT_SIGNATURE and the pcrs file; SHA-1 PCR digest matches", () => {
    expect(text[0]).toBe("r");
    const a = parseAttest(b64(attestB64));
    expect(a.type).toBe(TPM_ST.ATTEST_QUOTE);
    expect(Buffer.from(a.extraData).toString()).toBe("TEST");
    expect(a.clockInfo.clock).toBe(3294160n);
    const sig = parseSignature(b64(sigB64));
    expect(sig).toMatchObject({ sigAlg: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA1 });
    const pcrs = parsePcrsFile(b64(pcrsB64));
    expect(toHex(pcrs.values.get(TPM_ALG.SHA1)?.get(16) ?? new Uint8Array())).toBe(
      "1749fe7b66b2acb66838ba3612a72cacf8938b84",
    );
    if (a.attested.type !== TPM_ST.ATTEST_QUOTE) throw new Error("not a quote");
    expect(toHex(computePcrDigest(a.attested.pcrSelect, pcrs.values, TPM_ALG.SHA1))).toBe(
      toHex(a.attested.pcrDigest),
    );
    expect(toHex(serializePcrsFile(pcrs.selection, pcrs.values))).toBe(toHex(b64(pcrsB64)));
  });
});

describe("trustee tpm_evidence.json (RSA AK as SPKI, RSASSA-SHA256, 24 PCRs)", () => {
  const ev = json<{ ak_public: string; tpm_quote: { message: string; signature: string; pcrs: string[] } }>(
    "trustee/tpm_evidence.json",
  );
  const input = {
    attest: new Uint8Array(Buffer.from(ev.tpm_quote.message, "base64")),
    signature: new Uint8Array(Buffer.from(ev.tpm_quote.signature, "base64")),
    akPublic: createPublicKey({ key: Buffer.from(ev.ak_public, "base64"), format: "der", type: "spki" }),
    expectedQualifyingData: fromHex(
      "a04182b506878d4f29b91ee606a71a0d3361ccf1b22db20c98adcaa537bea393ef0e41a18b3569ab678f1497fbc5c12000000000000000000000000000000000",
    ),
    expectedSelection: [bankSelection(TPM_ALG.SHA256, ALL_24)],
    pcrValues: valuesFromList("sha256", ev.tpm_quote.pcrs),
  };

  it("verifies", () => {
    const r = verifyQuote(input);
    expect(r.ok, r.ok ? "" : r.detail).toBe(true);
    if (r.ok) expect(r.quote.resetCount).toBe(2);
  });

  it("PCR 8 changed → pcr_digest", () => {
    const pcrs = ev.tpm_quote.pcrs.map((v, i) => (i === 8 ? flipHex(v, 0) : v));
    expect(verifyQuote({ ...input, pcrValues: valuesFromList("sha256", pcrs) })).toMatchObject({
      check: "pcr_digest",
    });
  });
});

interface AzQuote {
  signature: string;
  message: string;
  pcrs: string[];
}

function hclAkPub(dir: string): KeyObject {
  const rt = json<{ keys: { kid: string; kty: string; n: string; e: string }[] }>(
    `trustee/${dir}/runtime-data.json`,
  );
  const k = rt.keys.find((x) => x.kid === "HCLAkPub");
  if (k === undefined) throw new Error("no HCLAkPub");
  return createPublicKey({ key: { kty: k.kty, n: k.n, e: k.e }, format: "jwk" });
}

/** The Azure vTPM quotes carry a bare RSA signature; wrap it as the TPMT_SIGNATURE the TPM returned. */
function rsassaSha256(rawHex: string): Uint8Array {
  return serializeSignature({ sigAlg: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256, sig: fromHex(rawHex) });
}

for (const dir of ["az-snp-vtpm", "az-tdx-vtpm"]) {
  describe(`trustee ${dir} (Azure CVM vTPM quote, HCLAkPub)`, () => {
    const q = json<AzQuote>(`trustee/${dir}/tpm-quote-v1.json`);
    const input = {
      attest: fromHex(q.message),
      signature: rsassaSha256(q.signature),
      akPublic: hclAkPub(dir),
      expectedQualifyingData: new Uint8Array(Buffer.from("challenge")),
      expectedSelection: [bankSelection(TPM_ALG.SHA256, ALL_24)],
      pcrValues: valuesFromList("sha256", q.pcrs),
    };

    it("verifies", () => {
      const r = verifyQuote(input);
      expect(r.ok, r.ok ? "" : r.detail).toBe(true);
    });

    it("a flipped signature bit → signature; a flipped PCR byte → pcr_digest; other nonce → extra_data", () => {
      expect(verifyQuote({ ...input, signature: rsassaSha256(flipHex(q.signature, 100)) })).toMatchObject({
        check: "signature",
      });
      const pcrs = q.pcrs.map((v, i) => (i === 23 ? flipHex(v, 31) : v));
      expect(verifyQuote({ ...input, pcrValues: valuesFromList("sha256", pcrs) })).toMatchObject({
        check: "pcr_digest",
      });
      expect(verifyQuote({ ...input, expectedQualifyingData: Buffer.from("challengf") })).toMatchObject({
        check: "extra_data",
      });
    });
  });
}

describe("trustee az-snp-vtpm/tpm-quote.msg (a quote from another vTPM)", () => {
  it("does not verify with this HCLAkPub → signature", () => {
    const r = verifyQuote({
      attest: quote("trustee/az-snp-vtpm/tpm-quote.msg"),
      signature: rsassaSha256(toHex(quote("trustee/az-snp-vtpm/tpm-quote.sig"))),
      akPublic: hclAkPub("az-snp-vtpm"),
      expectedQualifyingData: new Uint8Array(Buffer.from("challenge")),
      expectedSelection: [bankSelection(TPM_ALG.SHA256, ALL_24)],
      pcrValues: new Map(),
    });
    expect(r).toMatchObject({ ok: false, check: "signature" });
  });
});

describe("go-attestation windows_gcp_shielded_vm (TPMT_PUBLIC RSASSA-SHA1 AK, SHA-1 bank, empty nonce)", () => {
  const w = json<{
    akPublicTPMT: string;
    createAttestation: string;
    createSignature: string;
    quote: string;
    signature: string;
    pcrsSha1: Record<string, string>;
  }>("go-attestation/windows_gcp_shielded_vm.quote.json");
  const ak = parseTpmtPublic(fromHex(w.akPublicTPMT));
  const input = {
    attest: fromHex(w.quote),
    signature: fromHex(w.signature),
    akPublic: tpmPublicKey(ak),
    expectedQualifyingData: new Uint8Array(0),
    expectedSelection: [bankSelection(TPM_ALG.SHA1, ALL_24)],
    pcrValues: pcrValuesFromHex({ sha1: w.pcrsSha1 }),
  };

  it("AK public parses; Name as recorded", () => {
    expect(toHex(tpmName(ak))).toBe("000b4ce9b151f75089d74c15dabe9d520cffafbcafd5d43be0aad2e2d88d54717e2e");
    expect(ak.key.type).toBe(TPM_ALG.RSA);
  });

  it("verifies when SHA-1 is allowed, is refused (signature) when not", () => {
    const r = verifyQuote({ ...input, allowSha1: true });
    expect(r.ok, r.ok ? "" : r.detail).toBe(true);
    if (r.ok) expect(toHex(r.quote.pcrDigest)).toBe("a610f27bc687ce906243287d832706036e79f6e1");
    expect(verifyQuote(input)).toMatchObject({ ok: false, check: "signature" });
  });

  it("the AK's creation attestation (TPM_ST_ATTEST_CREATION) is validly signed but not a quote → type", () => {
    const r = verifyQuote({
      ...input,
      attest: fromHex(w.createAttestation),
      signature: fromHex(w.createSignature),
      allowSha1: true,
    });
    expect(r).toMatchObject({ ok: false, check: "type" });
  });
});

interface GoTpmTools {
  akPubTPMT: string;
  akName: string;
  akCertDER: string;
  expectedNonceHex: string;
  quotes: {
    pcrBank: "sha1" | "sha256" | "sha384";
    quoteTPMS_ATTEST: string;
    signatureTPMT_SIGNATURE: string;
    pcrs: Record<string, string>;
  }[];
}

for (const name of ["gce-cos-85-nonce9009", "gce-cos-85-no-nonce"]) {
  describe(`go-tpm-tools ${name} (GCE vTPM, RSA AK as TPMT_PUBLIC, three banks)`, () => {
    const g = json<GoTpmTools>(`go-tpm-tools/${name}.decoded.json`);
    const ak = parseTpmtPublic(fromHex(g.akPubTPMT));

    it("TPMT_PUBLIC parses and its Name matches", () => {
      expect(toHex(tpmName(ak))).toBe(g.akName);
    });

    for (const q of g.quotes) {
      it(`${q.pcrBank} bank quote verifies (PCR digest is SHA-256 over ${q.pcrBank} values)`, () => {
        const bankAlg = { sha1: TPM_ALG.SHA1, sha256: TPM_ALG.SHA256, sha384: TPM_ALG.SHA384 }[q.pcrBank];
        const input = {
          attest: fromHex(q.quoteTPMS_ATTEST),
          signature: fromHex(q.signatureTPMT_SIGNATURE),
          akPublic: tpmPublicKey(ak),
          expectedQualifyingData: fromHex(g.expectedNonceHex),
          expectedSelection: [bankSelection(bankAlg, ALL_24)],
          pcrValues: pcrValuesFromHex({ [q.pcrBank]: q.pcrs }),
        };
        const r = verifyQuote(input);
        expect(r.ok, r.ok ? "" : r.detail).toBe(true);
        // asking for another bank than the one signed is a selection mismatch
        const other = bankAlg === TPM_ALG.SHA1 ? TPM_ALG.SHA256 : TPM_ALG.SHA1;
        expect(verifyQuote({ ...input, expectedSelection: [bankSelection(other, ALL_24)] })).toMatchObject({
          check: "pcr_selection",
        });
      });
    }

    it("the AK certificate chains to the GCE EK/AK root via the published intermediate", () => {
      const der = quote("go-tpm-tools/ca-certs/tpm_ek_root_1.cer");
      const rootPem = `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString("base64")}\n-----END CERTIFICATE-----\n`;
      const intermediate = quote("go-tpm-tools/ca-certs/tpm_ek_intermediate_2.crt");
      const now = new Date("2024-01-01T00:00:00Z");
      const r = verifyEkChain({
        ekCert: fromHex(g.akCertDER),
        trustBundlePem: rootPem,
        intermediates: [intermediate],
        now,
      });
      expect(r.ok, r.ok ? "" : r.detail).toBe(true);
      if (r.ok) {
        expect(r.chain).toHaveLength(3);
        const spki = (k: KeyObject) => toHex(new Uint8Array(k.export({ format: "der", type: "spki" })));
        expect(spki(r.ekPublicKey)).toBe(spki(tpmPublicKey(ak)));
      }
      // go-tpm-tools TestValidateAK: no intermediates → fails
      expect(verifyEkChain({ ekCert: fromHex(g.akCertDER), trustBundlePem: rootPem, now })).toMatchObject({
        ok: false,
        check: "chain",
      });
    });
  });
}
