import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { type EpochBinding, encodeEpochBinding, epochHash } from "../../src/attest/binding.js";
import { evaluateEpoch } from "../../src/attest/epoch.js";
import { decodeEpochRecord } from "../../src/attest/record.js";
import { decode, encode } from "../../src/cbor/index.js";
import { verifyHsmEpoch } from "../../src/hsm/epoch.js";
import type { IntegrityPolicy } from "../../src/policy/integrity.js";

const binding: EpochBinding = {
  seq: 3,
  prev: new Uint8Array(32).fill(1),
  issuer: new Uint8Array(32).fill(2),
  checkpoint: { size: 7, root: new Uint8Array(32).fill(3) },
  bootId: "boot",
  nonce: new Uint8Array(randomBytes(32)),
};
const noRules: IntegrityPolicy = { pcrs: {}, eventlog: undefined, ima: undefined };
// When the epoch ran, and the policy it was judged under.
const times = { startedAtMs: 10, startedMonoUs: 5_000, verifiedAtMs: 11, policyDigest: new Uint8Array(32) };

const keys = {
  "ecdsa-p256": generateKeyPairSync("ec", { namedCurve: "prime256v1" }),
  ed25519: generateKeyPairSync("ed25519"),
};
const hsmSign = (alg: keyof typeof keys, bytes: Uint8Array): Uint8Array =>
  new Uint8Array(
    alg === "ed25519"
      ? sign(null, bytes, keys[alg].privateKey)
      : sign("sha256", bytes, { key: keys[alg].privateKey, dsaEncoding: "ieee-p1363" }),
  );

describe("HSM epochs: evaluateEpoch without a TPM, and verifyHsmEpoch", () => {
  for (const alg of ["ecdsa-p256", "ed25519"] as const) {
    it(`${alg}: a signed binding is a verified epoch whose record the auditor verifies`, () => {
      const signature = hsmSign(alg, encodeEpochBinding(binding));
      const r = evaluateEpoch({
        binding,
        hsm: { signature, publicKey: keys[alg].publicKey },
        policy: noRules,
        ...times,
      });
      expect(r.state.integrity).toEqual({ ok: true });
      expect(r.hash).toEqual(epochHash(binding));
      // What the lineage's epoch entry keeps: the record (TPM format, no quote here) and the signature.
      expect(r.hsmSignature).toEqual(signature);
      expect(decodeEpochRecord(r.record)).toMatchObject({ verified: true });
      const entry = { quote: r.record, hsmSignature: signature };
      const v = verifyHsmEpoch(entry, keys[alg].publicKey);
      expect(v).toMatchObject({ ok: true, verified: true, hasQuote: false });
      if (v.ok) expect(v.hash).toEqual(epochHash(binding));
      // Another key, or a changed binding, does not verify.
      const other = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey;
      expect(verifyHsmEpoch(entry, other)).toMatchObject({ ok: false, check: "hsm_epoch_signature" });
      const m = decode(r.record) as Map<string, unknown>;
      m.set("binding", encodeEpochBinding({ ...binding, seq: 4 }));
      expect(verifyHsmEpoch({ ...entry, quote: encode(m as never) }, keys[alg].publicKey)).toMatchObject({
        ok: false,
        check: "hsm_epoch_signature",
      });
    });
  }

  it("an HSM that did not answer, or signed wrongly, fails the epoch (fail closed)", () => {
    const down = evaluateEpoch({
      binding,
      hsm: { failure: "hardware_unavailable", detail: "token gone" },
      policy: noRules,
      ...times,
    });
    expect(down.state.integrity).toMatchObject({ ok: false, reason: "hardware_unavailable" });
    expect(down.hsmSignature).toBeUndefined();
    expect(verifyHsmEpoch({ quote: down.record }, keys["ecdsa-p256"].publicKey)).toMatchObject({
      ok: false,
      check: "hsm_epoch_signature",
    });
    const wrong = evaluateEpoch({
      binding,
      hsm: { signature: new Uint8Array(64), publicKey: keys["ecdsa-p256"].publicKey },
      policy: noRules,
      ...times,
    });
    expect(wrong.state.integrity).toMatchObject({ ok: false, reason: "quote_invalid" });
  });

  it("golden PCR rules fail closed in HSM-only mode (nothing attests PCRs)", () => {
    const signature = hsmSign("ed25519", encodeEpochBinding(binding));
    const r = evaluateEpoch({
      binding,
      hsm: { signature, publicKey: keys.ed25519.publicKey },
      policy: { ...noRules, pcrs: { sha256: { 0: ["00".repeat(32)] } } },
      ...times,
    });
    expect(r.state.integrity).toMatchObject({ ok: false, reason: "pcr_mismatch" });
  });

  it("no root at all is an internal error, and garbage records are refused without throwing", () => {
    expect(evaluateEpoch({ binding, policy: noRules, ...times }).state.integrity).toMatchObject({
      ok: false,
      reason: "internal_error",
    });
    for (const bad of [
      new Uint8Array([0xff]),
      encode([1, 2]),
      encode({ binding: new Uint8Array(3), verified: true }),
    ]) {
      expect(
        verifyHsmEpoch({ quote: bad, hsmSignature: new Uint8Array(64) }, keys.ed25519.publicKey).ok,
      ).toBe(false);
    }
  });
});
