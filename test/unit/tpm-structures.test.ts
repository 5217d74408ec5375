import { createHash, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import { describe, expect, it } from "vitest";
import { isExecgateError } from "../../src/core/errors.js";
import { fromHex, toHex } from "../../src/core/hex.js";
import {
  HASH_ALGS,
  hasTpmaObject,
  TPM_ALG,
  TPM_ECC_CURVE,
  TPM_GENERATED_VALUE,
  TPM_ST,
  tpmaObjectFlags,
} from "../../src/tpm/constants.js";
import { parseAttest, serializeAttest } from "../../src/tpm/structures/attest.js";
import {
  bankSelection,
  parsePcrSelectionText,
  pcrIndices,
  pcrSelectionEquals,
  pcrSelectionToText,
} from "../../src/tpm/structures/pcr-selection.js";
import { computePcrDigest, pcrValuesFromHex } from "../../src/tpm/structures/pcr-values.js";
import { parsePcrsFile, serializePcrsFile } from "../../src/tpm/structures/pcrs-file.js";
import {
  parseTpm2bPublic,
  serializeTpm2bPublic,
  type TpmtPublic,
  tpmName,
  tpmPublicKey,
} from "../../src/tpm/structures/public.js";
import {
  ecdsaSignatureToDer,
  ecdsaSignatureToP1363,
  parseSignature,
  serializeSignature,
} from "../../src/tpm/structures/signature.js";
import { fixture, fixtureText, parsePcrreadText } from "../fixtures/tpm/load.js";

const spki = (k: KeyObject) => toHex(new Uint8Array(k.export({ format: "der", type: "spki" })));

function printed(name: string, field: string): string {
  const m = new RegExp(`^\\s*${field}: (\\S+)`, "m").exec(fixtureText(`${name}.print.txt`));
  if (m?.[1] === undefined) throw new Error(`${field} not in ${name}.print.txt`);
  return m[1];
}

describe("constants", () => {
  it("has the spec values", () => {
    expect(TPM_GENERATED_VALUE).toBe(0xff544347);
    expect(TPM_ST.ATTEST_QUOTE).toBe(0x8018);
    expect(TPM_ST.ATTEST_CERTIFY).toBe(0x8017);
    expect([TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512]).toEqual([4, 0xb, 0xc, 0xd]);
    expect([TPM_ALG.RSA, TPM_ALG.ECC, TPM_ALG.ECDSA, TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.NULL]).toEqual([
      1, 0x23, 0x18, 0x14, 0x16, 0x10,
    ]);
    expect([TPM_ECC_CURVE.NIST_P256, TPM_ECC_CURVE.NIST_P384]).toEqual([3, 4]);
    for (const h of HASH_ALGS.values()) {
      expect(h.digestSize).toBe(createHash(h.name).digest().length);
    }
  });

  it("decodes TPMA_OBJECT as tpm2_print does (0x40072)", () => {
    expect(tpmaObjectFlags(0x40072)).toEqual([
      "fixedTPM",
      "fixedParent",
      "sensitiveDataOrigin",
      "userWithAuth",
      "sign",
    ]);
  });
});

describe("TPMS_ATTEST from tpm2_quote -m", () => {
  for (const name of ["quote-ecc", "quote-rsa", "quote-ecc-2banks"]) {
    it(`${name}: fields agree with tpm2_print; serialize(parse(x)) = x`, () => {
      const bytes = fixture(`${name}.msg`);
      const a = parseAttest(bytes);
      expect(a.magic).toBe(TPM_GENERATED_VALUE);
      expect(a.type).toBe(TPM_ST.ATTEST_QUOTE);
      expect(toHex(a.qualifiedSigner)).toBe(printed(name, "qualifiedSigner"));
      expect(toHex(a.extraData)).toBe(printed(name, "extraData"));
      expect(toHex(a.extraData)).toBe(fixtureText(`${name}.nonce.hex`));
      expect(a.clockInfo.clock).toBe(BigInt(printed(name, "clock")));
      expect(a.clockInfo.resetCount).toBe(Number(printed(name, "resetCount")));
      expect(a.clockInfo.restartCount).toBe(Number(printed(name, "restartCount")));
      expect(a.clockInfo.safe).toBe(printed(name, "safe") === "1");
      if (a.attested.type !== TPM_ST.ATTEST_QUOTE) throw new Error("not a quote");
      expect(toHex(a.attested.pcrDigest)).toBe(printed(name, "pcrDigest"));
      expect(pcrSelectionToText(a.attested.pcrSelect)).toBe(fixtureText(`${name}.selection.txt`));
      expect(toHex(a.raw)).toBe(toHex(bytes));
      expect(toHex(serializeAttest(a))).toBe(toHex(bytes));
    });
  }

  it("certify-ecc: TPMS_CERTIFY_INFO name is the signing key's Name; extraData is tpm2_certify's fixed 00ff55aa", () => {
    const a = parseAttest(fixture("certify-ecc.attest"));
    expect(a.type).toBe(TPM_ST.ATTEST_CERTIFY);
    expect(toHex(a.extraData)).toBe("00ff55aa");
    if (a.attested.type !== TPM_ST.ATTEST_CERTIFY) throw new Error("not certify");
    expect(toHex(a.attested.name)).toBe(toHex(fixture("sk-ecc.name")));
    expect(toHex(serializeAttest(a))).toBe(toHex(fixture("certify-ecc.attest")));
  });

  it("unsupported attested types, bad safe, trailing bytes are typed errors", () => {
    const a = fixture("quote-ecc.msg");
    const time = a.slice();
    time[5] = 0x19; // TPM_ST_ATTEST_TIME
    expect(() => parseAttest(time)).toThrowError(expect.objectContaining({ code: "unsupported" }));
    const extraLen = ((a[42] ?? 0) << 8) | (a[43] ?? 0);
    const safeAt = 44 + extraLen + 16; // magic, type, TPM2B_NAME(34), TPM2B_DATA, clock, resetCount, restartCount
    const badSafe = a.slice();
    badSafe[safeAt] = 2;
    expect(() => parseAttest(badSafe)).toThrowError(expect.objectContaining({ code: "malformed" }));
    expect(() => parseAttest(Uint8Array.of(...a, 0))).toThrowError(
      expect.objectContaining({ code: "trailing_bytes" }),
    );
    expect(() => parseAttest(a.subarray(0, a.length - 1))).toThrowError(
      expect.objectContaining({ code: "truncated" }),
    );
  });
});

describe("TPMT_SIGNATURE", () => {
  it("ECDSA from tpm2_quote -s: r/s of 32 bytes; DER and P1363 forms verify with node:crypto", () => {
    const s = parseSignature(fixture("quote-ecc.sig"));
    if (s.sigAlg !== TPM_ALG.ECDSA) throw new Error("not ECDSA");
    expect(s.hashAlg).toBe(TPM_ALG.SHA256);
    const key = createPublicKey(fixtureText("ak-ecc.pem"));
    const msg = fixture("quote-ecc.msg");
    expect(verify("sha256", msg, key, ecdsaSignatureToDer(s.signatureR, s.signatureS))).toBe(true);
    const p1363 = ecdsaSignatureToP1363(s.signatureR, s.signatureS, 32);
    expect(verify("sha256", msg, { key, dsaEncoding: "ieee-p1363" }, p1363)).toBe(true);
    expect(toHex(serializeSignature(s))).toBe(toHex(fixture("quote-ecc.sig")));
  });

  it("RSASSA from tpm2_quote -s round-trips", () => {
    const s = parseSignature(fixture("quote-rsa.sig"));
    expect(s).toMatchObject({ sigAlg: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 });
    expect(toHex(serializeSignature(s))).toBe(toHex(fixture("quote-rsa.sig")));
  });

  it("DER encoding handles short r/s and high bits (checked against node's own DER signatures)", () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    for (let i = 0; i < 64; i++) {
      const msg = Uint8Array.of(i);
      const p = new Uint8Array(sign("sha384", msg, { key: privateKey, dsaEncoding: "ieee-p1363" }));
      const r = p.subarray(0, 48);
      const s = p.subarray(48);
      const der = new Uint8Array(sign("sha384", msg, privateKey));
      // node's DER of the same (r, s) is unique: compare after re-signing is impossible (random k), so verify
      expect(verify("sha384", msg, publicKey, ecdsaSignatureToDer(r, s))).toBe(true);
      expect(der[0]).toBe(0x30);
    }
    expect(toHex(ecdsaSignatureToDer(Uint8Array.of(0, 0, 1), Uint8Array.of(0x80)))).toBe(
      "300702010102020080",
    );
  });

  it("unknown sigAlg → unsupported; NULL parses", () => {
    expect(() => parseSignature(fromHex("00050000"))).toThrowError(
      expect.objectContaining({ code: "unsupported" }),
    );
    expect(parseSignature(fromHex("0010"))).toEqual({ sigAlg: TPM_ALG.NULL });
  });
});

describe("TPM2B_PUBLIC", () => {
  const cases: [string, string | undefined, string | undefined][] = [
    ["ak-ecc.pub", "ak-ecc.pem", "ak-ecc.name"],
    ["ak-rsa.pub", "ak-rsa.pem", "ak-rsa.name"],
    ["sk-ecc.pub", undefined, "sk-ecc.name"],
    ["sk-rsa.pub", undefined, undefined],
    ["ek-rsa.pub", undefined, undefined],
    ["ek-ecc384.pub", undefined, undefined],
    ["srk-ecc384.pub", undefined, undefined],
  ];
  for (const [file, pem, name] of cases) {
    it(`${file}: parses, key builds, serialize(parse(x)) = x${pem ? ", key = PEM" : ""}${name ? ", Name = .name" : ""}`, () => {
      const bytes = fixture(file);
      const p: TpmtPublic = parseTpm2bPublic(bytes);
      const key = tpmPublicKey(p);
      expect(toHex(serializeTpm2bPublic(p))).toBe(toHex(bytes));
      expect(toHex(p.publicArea)).toBe(toHex(bytes.subarray(2)));
      if (pem !== undefined) expect(spki(key)).toBe(spki(createPublicKey(fixtureText(pem))));
      if (name !== undefined) expect(toHex(tpmName(p))).toBe(toHex(fixture(name)));
    });
  }

  it("AKs are restricted signing keys; the certified key is unrestricted", () => {
    const ak = parseTpm2bPublic(fixture("ak-ecc.pub"));
    expect(hasTpmaObject(ak.objectAttributes, "restricted")).toBe(true);
    expect(hasTpmaObject(ak.objectAttributes, "sign")).toBe(true);
    expect(hasTpmaObject(ak.objectAttributes, "fixedTPM")).toBe(true);
    const sk = parseTpm2bPublic(fixture("sk-ecc.pub"));
    expect(sk.objectAttributes).toBe(0x40072);
    expect(sk.key).toMatchObject({
      type: TPM_ALG.ECC,
      curveID: TPM_ECC_CURVE.NIST_P256,
      scheme: { scheme: TPM_ALG.ECDSA },
    });
  });

  it("EK public keys equal the EK certificates' keys", async () => {
    const { X509Certificate } = await import("node:crypto");
    const rsa = new X509Certificate(fixture("ek-rsa-cert.der"));
    expect(spki(tpmPublicKey(parseTpm2bPublic(fixture("ek-rsa.pub"))))).toBe(spki(rsa.publicKey));
    const ecc = new X509Certificate(fixture("ek-ecc384-cert.der"));
    expect(spki(tpmPublicKey(parseTpm2bPublic(fixture("ek-ecc384.pub"))))).toBe(spki(ecc.publicKey));
  });

  it("a point off the curve and an unsupported curve are typed errors", () => {
    const p = parseTpm2bPublic(fixture("ak-ecc.pub"));
    if (p.key.type !== TPM_ALG.ECC) throw new Error("not ECC");
    const offCurve = { ...p, key: { ...p.key, y: p.key.x } };
    expect(() => tpmPublicKey(offCurve)).toThrowError(expect.objectContaining({ code: "malformed" }));
    const p521 = { ...p, key: { ...p.key, curveID: TPM_ECC_CURVE.NIST_P521 } };
    expect(() => tpmPublicKey(p521)).toThrowError(expect.objectContaining({ code: "unsupported" }));
    const keyed = fixture("ak-ecc.pub").slice();
    keyed[3] = 0x08; // type KEYEDHASH
    try {
      parseTpm2bPublic(keyed);
      expect.unreachable();
    } catch (e) {
      expect(isExecgateError(e, "unsupported")).toBe(true);
    }
  });
});

describe("TPML_PCR_SELECTION text form", () => {
  it("parses the tpm2-tools forms", () => {
    const s = parsePcrSelectionText("sha256:0,1,2,3,4,5,6,7,10");
    expect(s).toHaveLength(1);
    expect(toHex(s[0]?.pcrSelect ?? new Uint8Array())).toBe("ff0400");
    const two = parsePcrSelectionText("sha1:0,1+sha256:0,1");
    expect(two.map((b) => b.hashAlg)).toEqual([TPM_ALG.SHA1, TPM_ALG.SHA256]);
    expect(two.map((b) => pcrIndices(b))).toEqual([
      [0, 1],
      [0, 1],
    ]);
    expect(toHex(bankSelection(TPM_ALG.SHA256, [31]).pcrSelect)).toBe("00000080");
    expect(pcrSelectionToText(parsePcrSelectionText("sha384:23+sha512:5"))).toBe("sha384:23+sha512:5");
  });

  it("rejects malformed text", () => {
    for (const bad of [
      "",
      "sha256",
      "sha256:",
      "sha256:1,,2",
      "md5:1",
      "sha256:32",
      "sha256:1,1",
      "sha1:0+sha1:1",
      "sha256:-1",
      "sha256:0 ",
    ]) {
      expect(() => parsePcrSelectionText(bad), bad).toThrowError(
        expect.objectContaining({ name: "ExecgateError" }),
      );
    }
  });

  it("equality is exact: order, banks, sizeofSelect, bits", () => {
    const a = parsePcrSelectionText("sha1:0+sha256:1");
    expect(pcrSelectionEquals(a, parsePcrSelectionText("sha1:0+sha256:1"))).toBe(true);
    expect(pcrSelectionEquals(a, parsePcrSelectionText("sha256:1+sha1:0"))).toBe(false);
    expect(pcrSelectionEquals(a, [...a, bankSelection(TPM_ALG.SHA384, [])])).toBe(false);
    expect(
      pcrSelectionEquals(a, [a[0]!, { hashAlg: TPM_ALG.SHA256, pcrSelect: Uint8Array.of(2, 0, 0, 0) }]),
    ).toBe(false);
  });
});

describe("PCR values and digest", () => {
  it("pcrValuesFromHex checks bank names, indices and sizes", () => {
    const code = (f: () => unknown) => {
      try {
        f();
        return "none";
      } catch (e) {
        return isExecgateError(e) ? e.code : "foreign";
      }
    };
    expect(code(() => pcrValuesFromHex({ md5: { "0": "00" } }))).toBe("unsupported");
    expect(code(() => pcrValuesFromHex({ sha256: { "24x": "00".repeat(32) } }))).toBe("malformed");
    expect(code(() => pcrValuesFromHex({ sha256: { "0": "00".repeat(20) } }))).toBe("malformed");
    expect(code(() => pcrValuesFromHex({ sha256: { "0": "zz" } }))).toBe("malformed");
  });

  it("computePcrDigest = H(values in selection order); missing values and unknown hashes are typed errors", () => {
    const v = pcrValuesFromHex({
      sha1: { "3": "01".repeat(20) },
      sha256: { "1": "02".repeat(32), "0": "03".repeat(32) },
    });
    const sel = parsePcrSelectionText("sha256:0,1+sha1:3");
    const expected = createHash("sha384")
      .update(fromHex("03".repeat(32)))
      .update(fromHex("02".repeat(32)))
      .update(fromHex("01".repeat(20)))
      .digest("hex");
    expect(toHex(computePcrDigest(sel, v, TPM_ALG.SHA384))).toBe(expected);
    expect(() => computePcrDigest(parsePcrSelectionText("sha256:2"), v, TPM_ALG.SHA256)).toThrowError(
      expect.objectContaining({ code: "malformed" }),
    );
    expect(() => computePcrDigest(sel, v, TPM_ALG.SM3_256)).toThrowError(
      expect.objectContaining({ code: "unsupported" }),
    );
  });
});

describe("tpm2-tools PCR file (tpm2_quote -o)", () => {
  const pcrread = pcrValuesFromHex(parsePcrreadText(fixtureText("pcrread.txt")));
  for (const name of ["quote-ecc", "quote-rsa", "quote-ecc-2banks", "quote-rsa-2banks"]) {
    it(`${name}.pcrs: selection and values as tpm2_pcrread; serialize is byte-identical`, () => {
      const bytes = fixture(`${name}.pcrs`);
      const f = parsePcrsFile(bytes);
      expect(pcrSelectionToText(f.selection)).toBe(fixtureText(`${name}.selection.txt`));
      for (const [bank, m] of f.values) {
        for (const [i, v] of m)
          expect(toHex(v), `${bank}:${i}`).toBe(toHex(pcrread.get(bank)?.get(i) ?? new Uint8Array()));
      }
      expect(toHex(serializePcrsFile(f.selection, f.values))).toBe(toHex(bytes));
      expect(toHex(serializePcrsFile(f.selection, pcrread))).toBe(toHex(bytes));
      const a = parseAttest(fixture(`${name}.msg`));
      if (a.attested.type !== TPM_ST.ATTEST_QUOTE) throw new Error("not a quote");
      expect(toHex(computePcrDigest(f.selection, f.values, TPM_ALG.SHA256))).toBe(
        toHex(a.attested.pcrDigest),
      );
    });
  }

  it("digest lists with other fill counts parse the same (a real TPM may return fewer than 8 per PCR_Read)", () => {
    const f = parsePcrsFile(fixture("quote-ecc.pcrs"));
    const std = serializePcrsFile(f.selection, f.values);
    // rebuild as lists of 5 + 4 digests
    const out = new Uint8Array(132 + 4 + 2 * 532);
    out.set(std.subarray(0, 132));
    const dv = new DataView(out.buffer);
    dv.setUint32(132, 2, true);
    const digestAt = (k: number) =>
      std.subarray(136 + (k >> 3) * 532 + 4 + (k & 7) * 66, 136 + (k >> 3) * 532 + 4 + (k & 7) * 66 + 66);
    dv.setUint32(136, 5, true);
    for (let k = 0; k < 5; k++) out.set(digestAt(k), 136 + 4 + k * 66);
    dv.setUint32(136 + 532, 4, true);
    for (let k = 5; k < 9; k++) out.set(digestAt(k), 136 + 532 + 4 + (k - 5) * 66);
    const g = parsePcrsFile(out);
    expect(toHex(serializePcrsFile(g.selection, g.values))).toBe(toHex(std));
  });

  it("rejects count overflows, wrong digest sizes, too few / too many digests", () => {
    const base = fixture("quote-ecc.pcrs");
    const mutate = (at: number, v: number, le32 = true) => {
      const b = base.slice();
      if (le32) new DataView(b.buffer).setUint32(at, v, true);
      else b[at] = v;
      return b;
    };
    const expectCode = (b: Uint8Array, code: string) =>
      expect(() => parsePcrsFile(b)).toThrowError(expect.objectContaining({ code }));
    expectCode(mutate(0, 17), "limit_exceeded"); // banks
    expectCode(mutate(132, 33), "limit_exceeded"); // lists
    expectCode(mutate(132, 3), "truncated");
    expectCode(mutate(136, 9), "limit_exceeded"); // digests in a list
    expectCode(mutate(136, 7), "malformed"); // one digest short
    expectCode(mutate(6, 5, false), "limit_exceeded"); // sizeofSelect 5
    expectCode(mutate(140, 20, false), "malformed"); // digest size 20 in a sha256 bank
    expectCode(Uint8Array.of(...base, 0), "trailing_bytes");
  });
});
