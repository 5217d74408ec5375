import { generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { isExecgateError } from "../../src/core/errors.js";
import {
  derToRaw,
  ED25519_NAME_PARAMS,
  ED25519_OID_PARAMS,
  P256_PARAMS,
  publicKeyFromToken,
  rawToDer,
  unwrapEcPoint,
} from "../../src/hsm/keys.js";

describe("HSM key and signature conversions (pure)", () => {
  it("raw r‖s ↔ DER agree with node:crypto for many signatures", () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    for (let i = 0; i < 200; i++) {
      const msg = Buffer.from(`m${i}`);
      const raw = new Uint8Array(sign("sha256", msg, { key: privateKey, dsaEncoding: "ieee-p1363" }));
      const der = rawToDer(raw);
      expect(derToRaw(der, 32)).toEqual(raw);
    }
  });

  it("rejects non-minimal, trailing and truncated DER", () => {
    const bad = [
      Uint8Array.of(0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00),
      Uint8Array.of(0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01),
      Uint8Array.of(0x30, 0x06, 0x02, 0x01, 0x01),
      Uint8Array.of(0x31, 0x00),
    ];
    for (const b of bad)
      expect(() => derToRaw(b, 32)).toThrow(expect.objectContaining({ code: "malformed" }));
  });

  it("turns CKA_EC_PARAMS + CKA_EC_POINT into the node:crypto public key (P-256, Ed25519 both spellings)", () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey;
    const point = ec.export({ format: "der", type: "spki" }).subarray(-65);
    const wrapped = Uint8Array.from([0x04, 0x41, ...point]);
    expect(publicKeyFromToken(P256_PARAMS, wrapped).equals(ec)).toBe(true);
    const ed = generateKeyPairSync("ed25519").publicKey;
    const raw = ed.export({ format: "der", type: "spki" }).subarray(-32);
    for (const params of [ED25519_OID_PARAMS, ED25519_NAME_PARAMS]) {
      expect(publicKeyFromToken(params, Uint8Array.from([0x04, 0x20, ...raw])).equals(ed)).toBe(true);
    }
    expect(unwrapEcPoint(new Uint8Array(raw), 32)).toEqual(new Uint8Array(raw));
    let e: unknown;
    try {
      publicKeyFromToken(Uint8Array.of(0x06, 0x01, 0x00), wrapped);
    } catch (x) {
      e = x;
    }
    expect(isExecgateError(e, "unsupported")).toBe(true);
  });
});
