import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { TokenClaims } from "../../src/token/claims.js";
import { memoryTokenSigner, SigningThread, THREAD_SIGNING_ABOVE } from "../../src/token/sign-thread.js";
import { signTokenWith, verifyTokenWith } from "../../src/token/signer.js";
import { issueToken } from "../../src/token/token.js";

// The in-memory issuer key as a TokenSigner: the same token bytes whether it signs on the event
// loop (at once) or on its worker thread (later), and a key it cannot use known up front.

const NOW = 1_700_000_000;
const claims: TokenClaims = {
  iss: "execgate:host-a",
  sub: "uid:1000",
  aud: "execgate",
  exp: NOW + 30,
  nbf: NOW,
  iat: NOW,
  cti: new Uint8Array(16).fill(1),
  ueid: new Uint8Array(33).fill(3),
  scope: "dev",
  action: new Uint8Array(32).fill(4),
  peer: { uid: 1000, gid: 1000, pid: 4242, exe: new Uint8Array(32).fill(5) },
  epoch: new Uint8Array(32).fill(6),
  pcrDigest: new Uint8Array(32).fill(7),
  policyDigest: new Uint8Array(32).fill(8),
  bootId: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
  lineage: [17, new Uint8Array(32).fill(9)],
};

describe("memoryTokenSigner", () => {
  it("signs at once while few requests wait, on the thread above the threshold: the same token either way", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const thread = new SigningThread(privateKey);
    const signer = memoryTokenSigner(privateKey, publicKey, thread);
    try {
      expect(signer.unusable).toBeUndefined();
      expect(signer.failure).toBe("internal_error");
      const inline = signTokenWith(claims, signer, THREAD_SIGNING_ABOVE);
      expect(inline).toBeInstanceOf(Uint8Array);
      const offloaded = signTokenWith(claims, signer, THREAD_SIGNING_ABOVE + 1);
      expect(offloaded).toBeInstanceOf(Promise);
      expect(await offloaded).toEqual(inline);
      // The same bytes as the token module's own issuer (Ed25519 is deterministic).
      expect(inline).toEqual(issueToken(claims, privateKey));
      const v = verifyTokenWith(await offloaded, signer.alg, {
        issuerPublicKey: publicKey,
        audience: "execgate",
        now: NOW + 1,
      });
      expect(v.ok).toBe(true);
    } finally {
      await signer.close?.();
    }
  });

  it("names a key that is not Ed25519 as unusable before any signature is asked for", () => {
    const { privateKey, publicKey } = generateKeyPairSync("x25519");
    const signer = memoryTokenSigner(privateKey, publicKey);
    expect(signer.unusable).toMatch(/x25519, not Ed25519/);
  });

  it("a closed thread fails the offloaded signatures only (internal): the event loop still signs", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const thread = new SigningThread(privateKey);
    const signer = memoryTokenSigner(privateKey, publicKey, thread);
    await thread.close();
    await expect(signTokenWith(claims, signer, THREAD_SIGNING_ABOVE + 1)).rejects.toMatchObject({
      code: "internal",
    });
    expect(signTokenWith(claims, signer, 0)).toBeInstanceOf(Uint8Array);
  });
});
