import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { toHex } from "../../src/core/hex.js";
import {
  derSequenceLength,
  MAX_EK_CHAIN_DEPTH,
  parsePemBundle,
  verifyEkChain,
} from "../../src/tpm/ek-chain.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { fixture, fixtureText } from "../fixtures/tpm/load.js";

const spki = (k: import("node:crypto").KeyObject) =>
  toHex(new Uint8Array(k.export({ format: "der", type: "spki" })));

// swtpm_localca certificates are valid from the capture time until 9999-12-31.
const ROOT = fixtureText("ca-root.pem");
const INTERMEDIATE = fixtureText("ca-intermediate.pem");
const NOW = new Date(Date.parse(new X509Certificate(ROOT).validFrom) + 86_400_000);

describe("verifyEkChain with the swtpm_localca chain", () => {
  for (const [cert, pub] of [
    ["ek-rsa-cert.der", "ek-rsa.pub"],
    ["ek-ecc384-cert.der", "ek-ecc384.pub"],
  ] as const) {
    it(`${cert}: chains root ← intermediate ← EK and returns the EK key`, () => {
      const r = verifyEkChain({
        ekCert: fixture(cert),
        trustBundlePem: ROOT,
        intermediates: [INTERMEDIATE],
        now: NOW,
      });
      expect(r.ok, r.ok ? "" : r.detail).toBe(true);
      if (!r.ok) return;
      expect(r.chain.map((c) => c.subject)).toEqual([
        "CN=unknown",
        "CN=swtpm-localca",
        "CN=swtpm-localca-rootca",
      ]);
      expect(spki(r.ekPublicKey)).toBe(spki(tpmPublicKey(parseTpm2bPublic(fixture(pub)))));
    });
  }

  it("intermediate taken from the bundle; PEM input; NV padding after the DER", () => {
    const bundle = `${ROOT}\n${INTERMEDIATE}\n`;
    expect(verifyEkChain({ ekCert: fixture("ek-rsa-cert.der"), trustBundlePem: bundle, now: NOW }).ok).toBe(
      true,
    );
    const pem = new X509Certificate(fixture("ek-rsa-cert.der")).toString();
    expect(verifyEkChain({ ekCert: pem, trustBundlePem: bundle, now: NOW }).ok).toBe(true);
    const padded = Uint8Array.of(...fixture("ek-rsa-cert.der"), 0, 0, 0, 0xff);
    expect(verifyEkChain({ ekCert: padded, trustBundlePem: bundle, now: NOW }).ok).toBe(true);
  });

  it("fails without the intermediate, with another root, before validity, with a garbage cert", () => {
    const ek = fixture("ek-rsa-cert.der");
    expect(verifyEkChain({ ekCert: ek, trustBundlePem: ROOT, now: NOW })).toMatchObject({
      ok: false,
      check: "chain",
    });
    const other = fixtureText("chain-root.pem");
    expect(
      verifyEkChain({ ekCert: ek, trustBundlePem: other, intermediates: [INTERMEDIATE], now: NOW }),
    ).toMatchObject({ ok: false, check: "chain" });
    const before = new Date(Date.parse(new X509Certificate(ROOT).validFrom) - 86_400_000);
    expect(
      verifyEkChain({ ekCert: ek, trustBundlePem: ROOT, intermediates: [INTERMEDIATE], now: before }),
    ).toMatchObject({ ok: false, check: "chain" });
    expect(verifyEkChain({ ekCert: ek.subarray(0, 100), trustBundlePem: ROOT, now: NOW })).toMatchObject({
      ok: false,
      check: "malformed",
    });
    expect(verifyEkChain({ ekCert: ek, trustBundlePem: "", now: NOW })).toMatchObject({
      ok: false,
      check: "chain",
    });
    expect(verifyEkChain({ ekCert: ek, trustBundlePem: ROOT, now: new Date(Number.NaN) })).toMatchObject({
      ok: false,
    });
  });

  it("an intermediate as anchor is accepted (the bundle is what the operator trusts)", () => {
    const r = verifyEkChain({ ekCert: fixture("ek-rsa-cert.der"), trustBundlePem: INTERMEDIATE, now: NOW });
    expect(r.ok).toBe(true);
  });
});

describe("verifyEkChain negative shapes (openssl-made chains, make-chain-fixtures.sh)", () => {
  const root = fixtureText("chain-root.pem");
  const now = new Date(Date.parse(new X509Certificate(root).validFrom) + 86_400_000);

  it("a certificate issued by a CA:FALSE certificate does not chain", () => {
    const r = verifyEkChain({
      ekCert: fixtureText("chain-under-notca.pem"),
      trustBundlePem: root,
      intermediates: [fixtureText("chain-notca.pem")],
      now,
    });
    expect(r).toMatchObject({ ok: false, check: "chain" });
    // but the CA:FALSE certificate itself chains to the root
    expect(verifyEkChain({ ekCert: fixtureText("chain-notca.pem"), trustBundlePem: root, now }).ok).toBe(
      true,
    );
  });

  it("a chain deeper than MAX_EK_CHAIN_DEPTH is refused; a shorter limit too", () => {
    const inter = parsePemBundle(fixtureText("chain-long-intermediates.pem"));
    expect(inter).toHaveLength(9);
    expect(MAX_EK_CHAIN_DEPTH).toBeLessThan(11);
    const leaf = fixtureText("chain-long-leaf.pem");
    const all = fixtureText("chain-long-intermediates.pem");
    expect(verifyEkChain({ ekCert: leaf, trustBundlePem: root, intermediates: [all], now })).toMatchObject({
      ok: false,
      check: "chain",
    });
    // anchored at i5 the chain is leaf ← i9 ← i8 ← i7 ← i6 ← i5: 6 certificates
    const i5 = inter[4]?.toString() ?? "";
    expect(verifyEkChain({ ekCert: leaf, trustBundlePem: i5, intermediates: [all], now }).ok).toBe(true);
    expect(
      verifyEkChain({ ekCert: leaf, trustBundlePem: i5, intermediates: [all], now, maxDepth: 5 }).ok,
    ).toBe(false);
  });

  it("derSequenceLength bounds", () => {
    expect(derSequenceLength(Uint8Array.of(0x30, 0x00))).toBe(2);
    expect(() => derSequenceLength(Uint8Array.of(0x31, 0))).toThrowError(
      expect.objectContaining({ code: "malformed" }),
    );
    expect(() => derSequenceLength(Uint8Array.of(0x30, 0x82, 0x10))).toThrowError(
      expect.objectContaining({ code: "malformed" }),
    );
    expect(() => derSequenceLength(Uint8Array.of(0x30, 0x82, 0x10, 0))).toThrowError(
      expect.objectContaining({ code: "truncated" }),
    );
  });
});
