import { generateKeyPairSync, sign, verify } from "node:crypto";
import { describe, expect, it } from "vitest";
import { SigningThread } from "../../src/token/sign-thread.js";

describe("SigningThread (the issuer key's signatures off the event loop)", () => {
  it("gives the signatures crypto.sign gives, for many requests at once, each to its caller", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const t = new SigningThread(privateKey);
    try {
      const msgs = Array.from({ length: 200 }, (_, i) => new TextEncoder().encode(`token ${i}`));
      const sigs = await Promise.all(msgs.map((m) => t.sign(m)));
      for (let i = 0; i < msgs.length; i++) {
        expect(verify(null, msgs[i]!, publicKey, sigs[i]!)).toBe(true);
        // Ed25519 is deterministic: the same bytes as signing on this thread.
        expect(Buffer.from(sigs[i]!).equals(sign(null, msgs[i]!, privateKey))).toBe(true);
      }
    } finally {
      await t.close();
    }
  });

  it("refuses a key that is not Ed25519, and rejects every request once closed", async () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 });
    expect(() => new SigningThread(rsa.privateKey)).toThrow(/Ed25519/);
    const t = new SigningThread(generateKeyPairSync("ed25519").privateKey);
    const inFlight = expect(t.sign(Uint8Array.of(1))).rejects.toMatchObject({ code: "internal" });
    await t.close();
    await inFlight;
    await expect(t.sign(Uint8Array.of(2))).rejects.toMatchObject({ code: "internal" });
  });
});
