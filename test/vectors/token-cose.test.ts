import { createPublicKey, type KeyObject } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeSign1, verifySign1 } from "../../src/token/cose.js";
import { corpusPath } from "../helpers/corpus.js";

// cose-wg/Examples (Unlicense) and veraison/services (Apache-2.0); provenance and expected results
// in test/corpus/cose/MANIFEST.md.
const ROOT = corpusPath("cose");

interface JwkLike {
  kty: string;
  crv: string;
  x?: string;
  y?: string;
  x_hex?: string;
  y_hex?: string;
  n_hex?: string;
  e_hex?: string;
}

const b64u = (hex: string) => Buffer.from(hex, "hex").toString("base64url");

function keyOf(k: JwkLike): KeyObject {
  if (k.kty === "RSA")
    return createPublicKey({ key: { kty: "RSA", n: b64u(k.n_hex!), e: b64u(k.e_hex!) }, format: "jwk" });
  const x = k.x ?? b64u(k.x_hex!);
  const jwk =
    k.kty === "OKP" ? { kty: "OKP", crv: k.crv, x } : { kty: "EC", crv: k.crv, x, y: k.y ?? b64u(k.y_hex!) };
  return createPublicKey({ key: jwk, format: "jwk" });
}

interface Example {
  file: string;
  fail: boolean;
  cbor: Uint8Array;
  key: KeyObject;
  external: Uint8Array;
}

function examples(): Example[] {
  const out: Example[] = [];
  for (const dir of [
    "sign1-tests",
    "eddsa-examples",
    "ecdsa-examples",
    "rsa-pss-examples",
    "CWT",
    "RFC8152",
  ]) {
    for (const f of readdirSync(join(ROOT, "cose-wg-examples", dir)).filter((n) => n.endsWith(".json"))) {
      const j = JSON.parse(readFileSync(join(ROOT, "cose-wg-examples", dir, f), "utf8"));
      if (!j.input?.sign0) continue; // multi-signer COSE_Sign examples are not COSE_Sign1
      out.push({
        file: `${dir}/${f}`,
        fail: j.fail === true,
        cbor: new Uint8Array(Buffer.from(j.output.cbor, "hex")),
        key: keyOf(j.input.sign0.key),
        external: new Uint8Array(Buffer.from(j.input.sign0.external ?? "", "hex")),
      });
    }
  }
  return out;
}

/** Accept = decodes as COSE_Sign1 (tagged 18 or untagged) with a known alg and the signature verifies. */
function accepts(e: Example): boolean {
  try {
    return verifySign1(decodeSign1(e.cbor, { requireTag: false }), e.key, e.external);
  } catch {
    return false;
  }
}

// sign-pass-01 carries protected = h'A0' but was signed over an empty protected bstr; RFC 9052
// §4.4 says to sign the protected bytes as received, so we reject it deliberately (MANIFEST note).
const DELIBERATE_REJECTS = new Set(["sign1-tests/sign-pass-01.json"]);

describe("COSE_Sign1 against cose-wg/Examples", () => {
  const all = examples();
  it("found the vectors", () => {
    expect(all.length).toBeGreaterThanOrEqual(15);
  });
  for (const e of all) {
    const expected = !e.fail && !DELIBERATE_REJECTS.has(e.file);
    it(`${e.file} ${expected ? "verifies" : "is rejected"}`, () => {
      expect(accepts(e)).toBe(expected);
    });
  }
});

describe("COSE_Sign1 against real PSA / CCA attestation tokens (veraison)", () => {
  const jwk = (f: string) =>
    createPublicKey({ key: JSON.parse(readFileSync(join(ROOT, "veraison", f), "utf8")), format: "jwk" });
  it("PSA token verifies with its key", () => {
    const msg = decodeSign1(new Uint8Array(readFileSync(join(ROOT, "veraison/psa.good.cbor"))), {
      requireTag: false,
    });
    expect(verifySign1(msg, jwk("ec-p256.jwk"))).toBe(true);
  });
  it("a flipped payload byte fails", () => {
    const bytes = new Uint8Array(readFileSync(join(ROOT, "veraison/psa.good.cbor")));
    const msg = decodeSign1(bytes, { requireTag: false });
    const payload = msg.payload.slice();
    payload[10]! ^= 1;
    expect(verifySign1({ ...msg, payload }, jwk("ec-p256.jwk"))).toBe(false);
  });
});
