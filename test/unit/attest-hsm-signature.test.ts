import { generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { verifyHsmBindingSignature } from "../../src/attest/hsm-signature.js";

// The HSM's signature over an epoch binding (docs/hsm.md "Epoch entries"): EdDSA over the bytes,
// or ECDSA P-256 over their SHA-256 as raw r‖s; any other key or shape is refused, never thrown.

const binding = new TextEncoder().encode("an epoch binding");

describe("verifyHsmBindingSignature", () => {
  it("Ed25519 over the binding bytes", () => {
    const k = generateKeyPairSync("ed25519");
    const sig = sign(null, binding, k.privateKey);
    expect(verifyHsmBindingSignature(binding, sig, k.publicKey)).toBe(true);
    expect(verifyHsmBindingSignature(binding.subarray(1), sig, k.publicKey)).toBe(false);
    const other = generateKeyPairSync("ed25519").publicKey;
    expect(verifyHsmBindingSignature(binding, sig, other)).toBe(false);
  });

  it("P-256 as raw r‖s; a DER signature or the wrong length is refused", () => {
    const k = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const raw = sign("sha256", binding, { key: k.privateKey, dsaEncoding: "ieee-p1363" });
    expect(verifyHsmBindingSignature(binding, raw, k.publicKey)).toBe(true);
    const der = sign("sha256", binding, k.privateKey);
    expect(verifyHsmBindingSignature(binding, der, k.publicKey)).toBe(false);
    expect(verifyHsmBindingSignature(binding, raw.subarray(0, 63), k.publicKey)).toBe(false);
  });

  it("a key of another curve or type is refused", () => {
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const sig = sign("sha256", binding, { key: p384.privateKey, dsaEncoding: "ieee-p1363" }).subarray(0, 64);
    expect(verifyHsmBindingSignature(binding, sig, p384.publicKey)).toBe(false);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
    expect(verifyHsmBindingSignature(binding, new Uint8Array(64), rsa)).toBe(false);
  });
});
