import { sign as cryptoSign, generateKeyPairSync } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type CborKey, CborTag, type CborValue, decode, encode } from "../../src/cbor/index.js";
import type { TokenClaims } from "../../src/token/claims.js";
import { COSE_ALG, decodeSign1, isLowS, signSign1 } from "../../src/token/cose.js";
import { signTokenWith } from "../../src/token/signer.js";
import { issueToken, verifyToken } from "../../src/token/token.js";

const issuer = generateKeyPairSync("ed25519");
const other = generateKeyPairSync("ed25519");
const NOW = 1_800_000_000;

const claims: TokenClaims = {
  iss: "execgate:host-a",
  sub: "uid:1000",
  aud: "execgate",
  exp: NOW + 30,
  nbf: NOW,
  iat: NOW,
  cti: new Uint8Array(16).fill(1),
  nonce: new Uint8Array(16).fill(2),
  ueid: new Uint8Array(33).fill(3),
  scope: "dev",
  action: new Uint8Array(32).fill(4),
  peer: { uid: 1000, gid: 1000, pid: 4242, exe: new Uint8Array(32).fill(5), unit: "job.service" },
  epoch: new Uint8Array(32).fill(6),
  pcrDigest: new Uint8Array(32).fill(7),
  policyDigest: new Uint8Array(32).fill(8),
  bootId: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
  lineage: [17, new Uint8Array(32).fill(9)],
};

const opts = { issuerPublicKey: issuer.publicKey, audience: "execgate", now: NOW + 1 };

/** The same COSE_Sign1 with `edit` applied to its four fields (the signature still verifies). */
function reshape(token: Uint8Array, edit: (fields: CborValue[]) => void): Uint8Array {
  const top = decode(token) as CborTag;
  const fields = [...(top.value as CborValue[])];
  edit(fields);
  return encode(new CborTag(top.tag, fields));
}

const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/** An ES256 r‖s signature's twin r‖(n − s), which verifies as well. */
function twin(sig: Uint8Array): Uint8Array {
  const s = P256_N - BigInt(`0x${Buffer.from(sig.subarray(32)).toString("hex")}`);
  return Uint8Array.from([...sig.subarray(0, 32), ...Buffer.from(s.toString(16).padStart(64, "0"), "hex")]);
}

const highS = (token: Uint8Array) =>
  reshape(token, (f) => {
    const sig = f[3] as Uint8Array;
    if (isLowS(COSE_ALG.ES256, sig)) f[3] = twin(sig);
  });

describe("execution tokens (COSE_Sign1 + CWT/EAT claims)", () => {
  it("round-trips every claim", () => {
    const v = verifyToken(issueToken(claims, issuer.privateKey), opts);
    expect(v.ok).toBe(true);
    if (v.ok) expect(v.claims).toEqual(claims);
  });

  it("is a tagged COSE_Sign1 with EdDSA in the protected header", () => {
    const msg = decodeSign1(issueToken(claims, issuer.privateKey));
    expect(msg.tagged).toBe(true);
    expect(msg.alg).toBe(COSE_ALG.EdDSA);
  });

  it("maps every failure to its denial reason", () => {
    const t = issueToken(claims, issuer.privateKey);
    expect(verifyToken(new Uint8Array(), opts)).toMatchObject({ ok: false, reason: "no_token" });
    expect(verifyToken(Uint8Array.of(1, 2, 3), opts)).toMatchObject({ ok: false, reason: "token_malformed" });
    expect(verifyToken(t, { ...opts, issuerPublicKey: other.publicKey })).toMatchObject({
      reason: "token_signature_invalid",
    });
    const flipped = t.slice();
    flipped[40]! ^= 1;
    expect(verifyToken(flipped, opts).ok).toBe(false);
    expect(verifyToken(t, { ...opts, audience: "elsewhere" })).toMatchObject({
      reason: "token_wrong_audience",
    });
    expect(verifyToken(t, { ...opts, now: NOW - 1 })).toMatchObject({ reason: "token_not_yet_valid" });
    expect(verifyToken(t, { ...opts, now: NOW + 30 })).toMatchObject({ reason: "token_expired" });
    expect(verifyToken(t, { ...opts, now: NOW + 29 }).ok).toBe(true);
  });

  it("rejects a token signed with another algorithm, even by a key that verifies it", () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const t = signSign1(new Uint8Array([0xa0]), ec.privateKey, COSE_ALG.ES256);
    expect(verifyToken(t, { ...opts, issuerPublicKey: ec.publicKey })).toMatchObject({
      reason: "token_malformed",
    });
  });

  it("refuses any unprotected header content: a holder could change the bytes without the key", () => {
    const t = issueToken(claims, issuer.privateKey);
    expect(decodeSign1(t).unprotectedHeader.size).toBe(0);
    for (const header of [
      new Map<CborKey, CborValue>([[4, new Uint8Array(4)]]), // kid
      new Map<CborKey, CborValue>([[2, [99]]]), // crit
      new Map<CborKey, CborValue>([["note", "x"]]),
    ]) {
      const changed = reshape(t, (f) => {
        f[1] = header;
      });
      expect(decodeSign1(changed).unprotectedHeader.size).toBe(1); // well-formed COSE_Sign1
      expect(verifyToken(changed, opts)).toMatchObject({ ok: false, reason: "token_malformed" });
    }
  });

  it("ES256 tokens: only the low-S signature verifies, and our signers produce it", async () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const es = { ...opts, issuerPublicKey: ec.publicKey, alg: COSE_ALG.ES256 };
    // A signer that returns the high-S twin whenever it can, as CKM_ECDSA may.
    const signer = {
      alg: COSE_ALG.ES256,
      publicKey: ec.publicKey,
      async sign(tbs: Uint8Array) {
        const sig = new Uint8Array(
          cryptoSign("sha256", tbs, { key: ec.privateKey, dsaEncoding: "ieee-p1363" }),
        );
        return isLowS(COSE_ALG.ES256, sig) ? twin(sig) : sig;
      },
    };
    for (let i = 0; i < 4; i++) {
      const t = await signTokenWith(claims, signer);
      expect(isLowS(COSE_ALG.ES256, decodeSign1(t).signature)).toBe(true);
      expect(verifyToken(t, es).ok).toBe(true);
      const flipped = highS(t);
      expect(isLowS(COSE_ALG.ES256, decodeSign1(flipped).signature)).toBe(false);
      expect(verifyToken(flipped, es)).toMatchObject({ ok: false, reason: "token_malformed" });
      const own = signSign1(new Uint8Array([0xa0]), ec.privateKey, COSE_ALG.ES256);
      expect(isLowS(COSE_ALG.ES256, decodeSign1(own).signature)).toBe(true);
    }
  });

  it("rejects unknown claims and missing claims even when properly signed", async () => {
    const { encode } = await import("../../src/cbor/index.js");
    const { claimsToCbor } = await import("../../src/token/claims.js");
    const extra = claimsToCbor(claims);
    extra.set(99, 1);
    expect(verifyToken(signSign1(encode(extra), issuer.privateKey, COSE_ALG.EdDSA), opts)).toMatchObject({
      reason: "token_malformed",
    });
    const missing = claimsToCbor(claims);
    missing.delete("scope");
    expect(verifyToken(signSign1(encode(missing), issuer.privateKey, COSE_ALG.EdDSA), opts)).toMatchObject({
      reason: "token_malformed",
    });
  });

  it("never throws, and never accepts, on arbitrary or mutated bytes", () => {
    const t = issueToken(claims, issuer.privateKey);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
        expect(verifyToken(b, opts).ok).toBe(false);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.nat(t.length - 1), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const m = t.slice();
        m[i]! ^= x;
        expect(verifyToken(m, opts).ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });
});
