import { generateKeyPairSync, sign } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { verifyHsmEpoch } from "../../src/hsm/epoch.js";
import {
  derToRaw,
  ED25519_NAME_PARAMS,
  P256_PARAMS,
  publicKeyFromToken,
  rawToDer,
  unwrapEcPoint,
} from "../../src/hsm/keys.js";

/** STYLE §3: every parser throws only ExecgateError, whatever the input. */
function onlyExecgateErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof ExecgateError)) throw e;
  }
}

const bytes = fc.uint8Array({ maxLength: 200 }).map((b) => new Uint8Array(b));
const key = generateKeyPairSync("ec", { namedCurve: "prime256v1" });

describe("HSM byte parsers on arbitrary input", () => {
  it("derToRaw, unwrapEcPoint and publicKeyFromToken throw only ExecgateError", () => {
    fc.assert(
      fc.property(bytes, bytes, (a, b) => {
        onlyExecgateErrors(() => derToRaw(a, 32));
        onlyExecgateErrors(() => unwrapEcPoint(a, 65));
        onlyExecgateErrors(() => unwrapEcPoint(a, 32));
        onlyExecgateErrors(() => publicKeyFromToken(P256_PARAMS, a));
        onlyExecgateErrors(() => publicKeyFromToken(ED25519_NAME_PARAMS, a));
        onlyExecgateErrors(() => publicKeyFromToken(a, b));
      }),
      { numRuns: 2000 },
    );
  });

  it("rawToDer ∘ derToRaw is the identity on every P-256 signature; DER re-encodes to itself", () => {
    fc.assert(
      fc.property(bytes, (msg) => {
        const der = new Uint8Array(sign("sha256", msg, { key: key.privateKey, dsaEncoding: "der" }));
        const raw = derToRaw(der, 32);
        expect(rawToDer(raw)).toEqual(der);
      }),
      { numRuns: 300 },
    );
  });

  it("verifyHsmEpoch never throws and never accepts arbitrary bytes", () => {
    fc.assert(
      fc.property(bytes, bytes, (b, sig) => {
        expect(verifyHsmEpoch({ quote: b, hsmSignature: sig }, key.publicKey).ok).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});
