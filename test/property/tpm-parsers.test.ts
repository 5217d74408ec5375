import { generateKeyPairSync } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Cursor } from "../../src/core/cursor.js";
import { isExecgateError } from "../../src/core/errors.js";
import { ByteWriter } from "../../src/core/writer.js";
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from "../../src/tpm/constants.js";
import { derSequenceLength, parsePemBundle, verifyEkChain } from "../../src/tpm/ek-chain.js";
import { parseAttest, serializeAttest, type TpmsAttest } from "../../src/tpm/structures/attest.js";
import {
  type PcrBankSelection,
  type PcrSelection,
  parsePcrSelection,
  parsePcrSelectionText,
  pcrIndices,
  readPcrSelection,
  serializePcrSelection,
  writePcrSelection,
} from "../../src/tpm/structures/pcr-selection.js";
import { parsePcrsFile, serializePcrsFile } from "../../src/tpm/structures/pcrs-file.js";
import {
  parseTpm2bPublic,
  parseTpmtPublic,
  serializeTpm2bPublic,
  type TpmtPublic,
  tpmPublicKey,
} from "../../src/tpm/structures/public.js";
import {
  parseSignature,
  serializeSignature,
  type TpmtSignature,
} from "../../src/tpm/structures/signature.js";
import { verifyCertify, verifyQuote } from "../../src/tpm/verify-quote.js";
import { fixture } from "../fixtures/tpm/load.js";

const RUNS = { numRuns: 300 };

/** Runs `f`; anything thrown must be an ExecgateError. */
function onlyExecgateErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!isExecgateError(e)) throw new Error(`non-ExecgateError escaped: ${String(e)}`, { cause: e });
  }
}

const PARSERS: Record<string, (b: Uint8Array) => unknown> = {
  parseAttest,
  parseSignature,
  parseTpm2bPublic,
  parseTpmtPublic,
  parsePcrsFile,
  readPcrSelection: (b) => readPcrSelection(new Cursor(b)),
  parsePcrSelection,
  derSequenceLength,
  tpmPublicKey: (b) => tpmPublicKey(parseTpm2bPublic(b)),
  parsePcrSelectionText: (b) => parsePcrSelectionText(Buffer.from(b).toString("latin1")),
  parsePemBundle: (b) =>
    parsePemBundle(
      `-----BEGIN CERTIFICATE-----\n${Buffer.from(b).toString("base64")}\n-----END CERTIFICATE-----`,
    ),
};

const SEEDS: Record<string, Uint8Array[]> = {
  parseAttest: [fixture("quote-ecc.msg"), fixture("quote-ecc-2banks.msg"), fixture("certify-ecc.attest")],
  parseSignature: [fixture("quote-ecc.sig"), fixture("quote-rsa.sig")],
  parseTpm2bPublic: [fixture("ak-ecc.pub"), fixture("ak-rsa.pub"), fixture("ek-ecc384.pub")],
  parseTpmtPublic: [fixture("ak-ecc.pub").subarray(2), fixture("sk-rsa.pub").subarray(2)],
  parsePcrsFile: [fixture("quote-ecc.pcrs"), fixture("quote-ecc-2banks.pcrs")],
  readPcrSelection: [Uint8Array.of(0, 0, 0, 2, 0, 4, 3, 3, 4, 0, 0, 0xb, 3, 0xff, 7, 0x81)],
  parsePcrSelection: [Uint8Array.of(0, 0, 0, 2, 0, 4, 3, 3, 4, 0, 0, 0xb, 3, 0xff, 7, 0x81)],
  derSequenceLength: [fixture("ek-rsa-cert.der")],
  tpmPublicKey: [fixture("ak-ecc.pub"), fixture("ak-rsa.pub")],
  parsePcrSelectionText: [new Uint8Array(Buffer.from("sha1:0,1+sha256:0,1,2,3,10"))],
  parsePemBundle: [fixture("ek-ecc384-cert.der")],
};

/** A seed with random edits: byte changes, truncation, insertion, big-endian u16/u32 forced huge. */
function mutated(seed: Uint8Array): fc.Arbitrary<Uint8Array> {
  return fc
    .array(
      fc.oneof(
        fc.record({ k: fc.constant("set" as const), at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }),
        fc.record({ k: fc.constant("huge" as const), at: fc.nat(), v: fc.constantFrom(0xff, 0x7f, 0x80) }),
        fc.record({ k: fc.constant("cut" as const), at: fc.nat(), v: fc.constant(0) }),
        fc.record({ k: fc.constant("ins" as const), at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }),
      ),
      { minLength: 1, maxLength: 6 },
    )
    .map((edits) => {
      let b = seed.slice();
      for (const e of edits) {
        const at = b.length === 0 ? 0 : e.at % b.length;
        if (e.k === "set") b[at] = e.v;
        else if (e.k === "huge") b.fill(e.v, at, at + 4);
        else if (e.k === "cut") b = b.slice(0, at);
        else b = Uint8Array.of(...b.subarray(0, at), e.v, ...b.subarray(at));
      }
      return b;
    });
}

describe("TPM parsers throw only ExecgateError", () => {
  for (const [name, parse] of Object.entries(PARSERS)) {
    it(`${name}: arbitrary bytes`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 1500 }), (b) => onlyExecgateErrors(() => parse(b))),
        RUNS,
      );
    });
    it(`${name}: mutated real inputs`, () => {
      const seeds = SEEDS[name] ?? [];
      fc.assert(
        fc.property(fc.constantFrom(...seeds).chain(mutated), (b) => onlyExecgateErrors(() => parse(b))),
        RUNS,
      );
    });
  }
});

describe("verifiers never throw", () => {
  const akEcc = tpmPublicKey(parseTpm2bPublic(fixture("ak-ecc.pub")));
  const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey;
  it("verifyQuote / verifyCertify on mutated attest, signature and pcrs", () => {
    fc.assert(
      fc.property(
        mutated(fixture("quote-ecc.msg")),
        mutated(fixture("quote-ecc.sig")),
        fc.boolean(),
        fc.uint8Array({ maxLength: 80 }),
        (attest, signature, useRsa, nonce) => {
          const akPublic = useRsa ? rsa : akEcc;
          const q = verifyQuote({
            attest,
            signature,
            akPublic,
            expectedQualifyingData: nonce,
            expectedSelection: parsePcrSelectionText("sha256:0,1,2,3,4,5,6,7,10"),
            pcrValues: parsePcrsFile(fixture("quote-ecc.pcrs")).values,
          });
          expect(q.ok).toBe(false);
          const c = verifyCertify({
            attest,
            signature,
            akPublic,
            expectedQualifyingData: nonce,
            certifiedPublic: attest,
          });
          expect(c.ok).toBe(false);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("verifyEkChain on arbitrary bytes and bundles", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.string({ maxLength: 300 }), (ek, bundle) => {
        const r = verifyEkChain({ ekCert: ek, trustBundlePem: bundle, now: new Date(0) });
        expect(r.ok).toBe(false);
      }),
      { numRuns: 200 },
    );
  });
});

// ---- parse ∘ serialize identity ----

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bytes = (max: number) => fc.uint8Array({ maxLength: max });

const bankSel: fc.Arbitrary<PcrBankSelection> = fc.record({ hashAlg: u16, pcrSelect: bytes(4) });
const selection: fc.Arbitrary<PcrSelection> = fc.array(bankSel, { maxLength: 16 });

const attestArb: fc.Arbitrary<Omit<TpmsAttest, "raw">> = fc
  .record({
    magic: fc.oneof(fc.constant(TPM_GENERATED_VALUE), u32),
    qualifiedSigner: bytes(66),
    extraData: bytes(66),
    clockInfo: fc.record({ clock: u64, resetCount: u32, restartCount: u32, safe: fc.boolean() }),
    firmwareVersion: u64,
    attested: fc.oneof(
      fc.record({ type: fc.constant(TPM_ST.ATTEST_QUOTE), pcrSelect: selection, pcrDigest: bytes(64) }),
      fc.record({ type: fc.constant(TPM_ST.ATTEST_CERTIFY), name: bytes(66), qualifiedName: bytes(66) }),
    ),
  })
  .map((a) => ({ ...a, type: a.attested.type }));

const signatureArb: fc.Arbitrary<TpmtSignature> = fc.oneof(
  fc.record({ sigAlg: fc.constantFrom(TPM_ALG.RSASSA, TPM_ALG.RSAPSS), hashAlg: u16, sig: bytes(512) }),
  fc.record({
    sigAlg: fc.constant(TPM_ALG.ECDSA),
    hashAlg: u16,
    signatureR: bytes(66),
    signatureS: bytes(66),
  }),
  fc.record({ sigAlg: fc.constant(TPM_ALG.NULL) }),
);

const symArb = fc.oneof(
  fc.constant({ algorithm: TPM_ALG.NULL }),
  fc.record({ algorithm: fc.constant(TPM_ALG.XOR), keyBits: u16 }),
  fc.record({
    algorithm: fc.constantFrom(TPM_ALG.AES, TPM_ALG.SM4, TPM_ALG.CAMELLIA),
    keyBits: u16,
    mode: u16,
  }),
);
const hashedScheme = (algs: number[]) => fc.record({ scheme: fc.constantFrom(...algs), hashAlg: u16 });
const rsaScheme = fc.oneof(
  fc.constant({ scheme: TPM_ALG.NULL }),
  fc.constant({ scheme: TPM_ALG.RSAES }),
  hashedScheme([TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.OAEP]),
);
const eccScheme = fc.oneof(
  fc.constant({ scheme: TPM_ALG.NULL }),
  hashedScheme([TPM_ALG.ECDSA, TPM_ALG.ECDH, TPM_ALG.SM2, TPM_ALG.ECSCHNORR]),
  fc.record({ scheme: fc.constant(TPM_ALG.ECDAA), hashAlg: u16, count: u16 }),
);
const kdfScheme = fc.oneof(
  fc.constant({ scheme: TPM_ALG.NULL }),
  hashedScheme([TPM_ALG.KDF1_SP800_56A, TPM_ALG.KDF2, TPM_ALG.KDF1_SP800_108]),
);

const publicArb: fc.Arbitrary<Omit<TpmtPublic, "publicArea">> = fc.record({
  nameAlg: u16,
  objectAttributes: u32,
  authPolicy: bytes(64),
  key: fc.oneof(
    fc.record({
      type: fc.constant(TPM_ALG.RSA),
      symmetric: symArb,
      scheme: rsaScheme,
      keyBits: u16,
      exponent: u32,
      modulus: bytes(512),
    }),
    fc.record({
      type: fc.constant(TPM_ALG.ECC),
      symmetric: symArb,
      scheme: eccScheme,
      curveID: u16,
      kdf: kdfScheme,
      x: bytes(66),
      y: bytes(66),
    }),
  ),
});

const HASHES = [
  [TPM_ALG.SHA1, 20],
  [TPM_ALG.SHA256, 32],
  [TPM_ALG.SHA384, 48],
  [TPM_ALG.SHA512, 64],
] as const;

const pcrsFileArb = fc
  .subarray([...HASHES], { minLength: 0, maxLength: 4 })
  .chain((banks) =>
    fc.tuple(...banks.map(([alg]) => fc.record({ hashAlg: fc.constant(alg), pcrSelect: bytes(4) }))),
  )
  .chain((sel) => {
    const wanted = sel.flatMap((b) => pcrIndices(b).map((i) => [b.hashAlg, i] as const));
    return fc
      .tuple(
        ...wanted.map(([alg]) =>
          fc.uint8Array({
            minLength: HASHES.find((h) => h[0] === alg)?.[1] ?? 0,
            maxLength: HASHES.find((h) => h[0] === alg)?.[1] ?? 0,
          }),
        ),
      )
      .map((digests) => {
        const values = new Map<number, Map<number, Uint8Array>>();
        for (const b of sel) values.set(b.hashAlg, new Map());
        for (const [k, [alg, i]] of wanted.entries()) values.get(alg)?.set(i, digests[k] ?? new Uint8Array());
        return { selection: sel as PcrSelection, values };
      });
  });

describe("parse ∘ serialize = identity", () => {
  it("TPMS_ATTEST", () => {
    fc.assert(
      fc.property(attestArb, (a) => {
        const b = serializeAttest(a);
        const p = parseAttest(b);
        expect({ ...p, raw: undefined }).toEqual({ ...a, raw: undefined });
        expect(serializeAttest(p)).toEqual(b);
      }),
      RUNS,
    );
  });

  it("TPMT_SIGNATURE", () => {
    fc.assert(
      fc.property(signatureArb, (s) => {
        const b = serializeSignature(s);
        expect(parseSignature(b)).toEqual(s);
      }),
      RUNS,
    );
  });

  it("TPM2B_PUBLIC / TPMT_PUBLIC", () => {
    fc.assert(
      fc.property(publicArb, (p) => {
        const b = serializeTpm2bPublic(p);
        const q = parseTpm2bPublic(b);
        expect({ ...q, publicArea: undefined }).toEqual({ ...p, publicArea: undefined });
        expect(q.publicArea).toEqual(b.subarray(2));
        expect(serializeTpm2bPublic(q)).toEqual(b);
      }),
      RUNS,
    );
  });

  it("TPML_PCR_SELECTION", () => {
    fc.assert(
      fc.property(selection, (s) => {
        const w = new ByteWriter();
        writePcrSelection(w, s);
        const c = new Cursor(w.finish());
        expect(readPcrSelection(c)).toEqual(s);
        c.end("selection");
        expect(parsePcrSelection(serializePcrSelection(s))).toEqual(s);
      }),
      RUNS,
    );
  });

  it("tpm2-tools PCR file", () => {
    fc.assert(
      fc.property(pcrsFileArb, ({ selection: s, values }) => {
        const b = serializePcrsFile(s, values);
        const f = parsePcrsFile(b);
        expect(f.selection).toEqual(s);
        expect(f.values).toEqual(values);
        expect(serializePcrsFile(f.selection, f.values)).toEqual(b);
      }),
      RUNS,
    );
  });
});
