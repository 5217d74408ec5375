import { generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { type EpochBinding, encodeEpochBinding, epochHash } from "../../src/attest/binding.js";
import { evaluateEpoch } from "../../src/attest/epoch.js";
import { verifyTokenBoundHsm } from "../../src/hsm/verify-bound.js";
import type { TokenClaims } from "../../src/token/claims.js";
import { COSE_ALG } from "../../src/token/cose.js";
import { signTokenWith } from "../../src/token/signer.js";
import { issueToken } from "../../src/token/token.js";

const hsm = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
const issuer = generateKeyPairSync("ed25519");
const issuerRaw = new Uint8Array(Buffer.from(issuer.publicKey.export({ format: "jwk" }).x!, "base64url"));
const binding: EpochBinding = {
  seq: 1,
  prev: new Uint8Array(32),
  issuer: issuerRaw,
  checkpoint: { size: 0, root: new Uint8Array(32) },
  bootId: "b",
  nonce: new Uint8Array(32).fill(9),
};
const hsmSig = new Uint8Array(
  sign("sha256", encodeEpochBinding(binding), { key: hsm.privateKey, dsaEncoding: "ieee-p1363" }),
);
const r = evaluateEpoch({
  binding,
  hsm: { signature: hsmSig, publicKey: hsm.publicKey },
  policy: { pcrs: {}, eventlog: undefined, ima: undefined },
  policyDigest: new Uint8Array(32),
  startedAtMs: 0,
  startedMonoUs: 0,
  verifiedAtMs: 0,
});
const epoch = { quote: r.record, hsmSignature: hsmSig };
const claims = (epochId: Uint8Array): TokenClaims => ({
  iss: "execgate",
  sub: "uid:0",
  aud: "execgate",
  exp: 200,
  nbf: 100,
  iat: 100,
  cti: new Uint8Array(16),
  ueid: new Uint8Array(33),
  scope: "dev",
  action: new Uint8Array(32),
  peer: { uid: 0, gid: 0, pid: 1, exe: new Uint8Array(32) },
  epoch: epochId,
  pcrDigest: new Uint8Array(32),
  policyDigest: new Uint8Array(32),
  bootId: "b",
  lineage: [3, new Uint8Array(32)],
});
const base = { epoch, hsmPublicKey: hsm.publicKey, audience: "execgate", now: 150 };

describe("verifyTokenBoundHsm (offline, pure)", () => {
  it("accepts an issuer-key token and an HSM-signed token on their epoch", async () => {
    const a = verifyTokenBoundHsm({
      ...base,
      token: issueToken(claims(epochHash(binding)), issuer.privateKey),
    });
    expect(a).toMatchObject({ ok: true, signer: "issuer" });
    const hsmSigner = {
      alg: COSE_ALG.ES256,
      publicKey: hsm.publicKey,
      sign: async (tbs: Uint8Array) =>
        new Uint8Array(sign("sha256", tbs, { key: hsm.privateKey, dsaEncoding: "ieee-p1363" })),
    };
    const b = verifyTokenBoundHsm({
      ...base,
      token: await signTokenWith(claims(epochHash(binding)), hsmSigner),
    });
    expect(b).toMatchObject({ ok: true, signer: "hsm" });
  });

  it("refuses another epoch, another HSM key, a foreign signer, an expired token", () => {
    const good = issueToken(claims(epochHash(binding)), issuer.privateKey);
    expect(
      verifyTokenBoundHsm({ ...base, token: issueToken(claims(new Uint8Array(32)), issuer.privateKey) }),
    ).toMatchObject({
      ok: false,
      reason: "token_signature_invalid",
      // Which epoch the token names, so the verifier can fetch that one's evidence.
      detail: expect.stringContaining(`token names epoch ${"00".repeat(32)}, this record is epoch`),
    });
    const other = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey;
    expect(verifyTokenBoundHsm({ ...base, token: good, hsmPublicKey: other })).toMatchObject({
      ok: false,
      reason: "quote_invalid",
    });
    const stranger = generateKeyPairSync("ed25519").privateKey;
    expect(
      verifyTokenBoundHsm({ ...base, token: issueToken(claims(epochHash(binding)), stranger) }),
    ).toMatchObject({
      ok: false,
      reason: "token_signature_invalid",
    });
    expect(verifyTokenBoundHsm({ ...base, token: good, now: 500 })).toMatchObject({
      ok: false,
      reason: "token_expired",
    });
    expect(verifyTokenBoundHsm({ ...base, epoch: { quote: r.record }, token: good })).toMatchObject({
      ok: false,
      reason: "quote_invalid",
    });
  });
});
