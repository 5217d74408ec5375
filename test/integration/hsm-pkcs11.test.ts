import { createHash, verify } from "node:crypto";
import { basename } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { isExecgateError } from "../../src/core/errors.js";
import type { SoftHsm } from "../../src/dev/softhsm.js";
import { generateHsmKey, HsmKey } from "../../src/hsm/hsm.js";
import { derToRaw, rawToDer } from "../../src/hsm/keys.js";
import type { PKCS11 } from "../../src/hsm/pkcs11.js";
import { describeHsm, startSoftHsm } from "../helpers/hardware.js";

describeHsm("HSM layer on SoftHSM2 (real pkcs11js)", () => {
  let hsm: SoftHsm;
  const keys: HsmKey[] = [];
  const open = async (keyLabel: string, extra: { pin?: string; tokenLabel?: string } = {}) => {
    const k = await HsmKey.open({
      module: hsm.module,
      tokenLabel: extra.tokenLabel ?? hsm.label,
      keyLabel,
      pin: extra.pin ?? hsm.pin,
      retryMs: 0,
    });
    keys.push(k);
    return k;
  };

  beforeAll(async () => {
    hsm = await startSoftHsm();
    // The module reads SOFTHSM2_CONF at C_Initialize, in this process.
    process.env.SOFTHSM2_CONF = hsm.conf;
    await hsm.generateKey("p256", "ec");
    await hsm.generateKey("ed", "ed25519");
  });
  afterAll(async () => {
    for (const k of keys) await k.close();
  });

  // First: PKCS#11 login state is per process and token, so once a session is logged in a
  // second C_Login answers CKR_USER_ALREADY_LOGGED_IN whatever the PIN.
  it("a wrong PIN is config_invalid; a missing token or key is hardware_unavailable", async () => {
    const wrong = await open("p256", { pin: "9999" }).catch((e: unknown) => e);
    expect(isExecgateError(wrong, "config_invalid")).toBe(true);
    expect((wrong as Error).message).toMatch(/CKR_PIN_INCORRECT/);
    expect((wrong as Error).message).not.toContain("9999");
    const noToken = await open("p256", { tokenLabel: "nope" }).catch((e: unknown) => e);
    expect(isExecgateError(noToken, "hardware_unavailable")).toBe(true);
    const noKey = await open("missing").catch((e: unknown) => e);
    expect(isExecgateError(noKey, "hardware_unavailable")).toBe(true);
  });

  it("finds a P-256 key by label and signs (hash first, raw r‖s) so node:crypto verifies", async () => {
    const k = await open("p256");
    expect(k.algorithm).toBe("ecdsa-p256");
    const msg = new TextEncoder().encode("checkpoint text\n");
    const sig = await k.sign(msg);
    expect(sig.length).toBe(64);
    expect(verify("sha256", msg, { key: k.publicKey, dsaEncoding: "ieee-p1363" }, sig)).toBe(true);
    const der = rawToDer(sig);
    expect(verify("sha256", msg, { key: k.publicKey, dsaEncoding: "der" }, der)).toBe(true);
    expect(derToRaw(der, 32)).toEqual(sig);
    expect(verify("sha256", Buffer.from("other"), { key: k.publicKey, dsaEncoding: "ieee-p1363" }, sig)).toBe(
      false,
    );
    expect(k.keyId).toEqual(
      new Uint8Array(
        createHash("sha256")
          .update(k.publicKey.export({ format: "der", type: "spki" }))
          .digest(),
      ),
    );
  });

  it("exports an Ed25519 key and signs with CKM_EDDSA", async () => {
    const k = await open("ed");
    expect(k.algorithm).toBe("ed25519");
    const msg = new Uint8Array(1024).fill(7);
    const sig = await k.sign(msg);
    expect(verify(null, msg, k.publicKey, sig)).toBe(true);
  });

  it("signs concurrently over the session pool", async () => {
    const k = await open("p256");
    const msgs = Array.from({ length: 40 }, (_, i) => new TextEncoder().encode(`m${i}`));
    const sigs = await Promise.all(msgs.map((m) => k.sign(m)));
    for (const [i, s] of sigs.entries()) {
      expect(verify("sha256", msgs[i]!, { key: k.publicKey, dsaEncoding: "ieee-p1363" }, s)).toBe(true);
    }
  });

  it("token removed → hardware_unavailable, never a crash; back → re-opened, same key", async () => {
    const k = await open("p256");
    await k.sign(new Uint8Array([1]));
    const dir = basename(await hsm.tokenDir());
    await hsm.removeToken();
    for (let i = 0; i < 3; i++) {
      const e = await k.sign(new Uint8Array([2])).catch((x: unknown) => x);
      expect(isExecgateError(e, "hardware_unavailable")).toBe(true);
    }
    expect(k.available).toBe(false);
    await hsm.restoreToken(dir);
    const msg = new Uint8Array([3]);
    const sig = await k.sign(msg);
    expect(verify("sha256", msg, { key: k.publicKey, dsaEncoding: "ieee-p1363" }, sig)).toBe(true);
    expect(k.available).toBe(true);
    expect(k.stats.reopens).toBeGreaterThan(0);
  });

  it("concurrent signatures across a token loss: each verifies or is hardware_unavailable; then all verify", async () => {
    const k = await open("p256");
    const name = basename(await hsm.tokenDir());
    const msg = new Uint8Array([7]);
    const outcome = async (): Promise<string> => {
      try {
        const sig = await k.sign(msg);
        return verify("sha256", msg, { key: k.publicKey, dsaEncoding: "ieee-p1363" }, sig) ? "ok" : "bad";
      } catch (e) {
        return isExecgateError(e, "hardware_unavailable") ? "unavailable" : `other: ${String(e)}`;
      }
    };
    const during = Promise.all(Array.from({ length: 200 }, () => outcome()));
    await hsm.removeToken();
    const more = Promise.all(Array.from({ length: 50 }, () => outcome()));
    const results = [...(await during), ...(await more)];
    expect(
      results.every((r) => r === "ok" || r === "unavailable"),
      results.join(","),
    ).toBe(true);
    await hsm.restoreToken(name);
    const after = await Promise.all(Array.from({ length: 50 }, () => outcome()));
    // The first callers after the token is back may still see the failure that was in flight.
    expect(after.every((r) => r === "ok" || r === "unavailable")).toBe(true);
    expect(await outcome()).toBe("ok");
    expect(await Promise.all(Array.from({ length: 20 }, () => outcome()))).toEqual(Array(20).fill("ok"));
  });

  it("a module that never returns a signature: hardware_unavailable at timeoutMs, for queued callers too; re-opened once it answers; close() does not wait for it", async () => {
    // One session, so the callers after the first queue for it; a short deadline keeps this fast.
    const k = await HsmKey.open({
      module: hsm.module,
      tokenLabel: hsm.label,
      keyLabel: "p256",
      pin: hsm.pin,
      sessions: 1,
      retryMs: 0,
      timeoutMs: 100,
    });
    keys.push(k);
    // SoftHSM2 cannot be made to hang: its C_SignAsync is held back until `unwedge` (the real
    // session and C_SignInit underneath, only the answer withheld).
    const p11 = (k as unknown as { m: { p11: PKCS11 } }).m.p11;
    const real = p11.C_SignAsync;
    let unwedge: () => void = () => undefined;
    const wedge = () => {
      const answers = new Promise<void>((r) => {
        unwedge = r;
      });
      p11.C_SignAsync = ((...a: Parameters<PKCS11["C_SignAsync"]>) =>
        answers.then(() => real.apply(p11, a))) as PKCS11["C_SignAsync"];
    };
    const outcome = (m: number) =>
      k.sign(new Uint8Array([m])).then(
        () => "signed",
        (e: unknown) => (isExecgateError(e, "hardware_unavailable") ? "unavailable" : `other: ${String(e)}`),
      );
    try {
      wedge();
      expect(await Promise.all([outcome(1), outcome(2), outcome(3)])).toEqual(Array(3).fill("unavailable"));
      expect(k.available).toBe(false);
      // The re-open waits for the stuck call to return (nothing may run on its session while the
      // module is re-initialised), and this caller's deadline passes first.
      expect(await outcome(4)).toBe("unavailable");
      p11.C_SignAsync = real;
      unwedge();
      const msg = new Uint8Array([5]);
      const sig = await k.sign(msg);
      expect(verify("sha256", msg, { key: k.publicKey, dsaEncoding: "ieee-p1363" }, sig)).toBe(true);
      expect(k.available).toBe(true);
      expect(k.stats.reopens).toBeGreaterThan(0);
      // Wedged again: close() returns though a signature is still in flight.
      wedge();
      const inFlight = outcome(6);
      await k.close();
      expect(await inFlight).toBe("unavailable");
    } finally {
      p11.C_SignAsync = real;
      unwedge();
    }
  });

  it("generates P-256 and Ed25519 keys for enroll, idempotently", async () => {
    for (const algorithm of ["ecdsa-p256", "ed25519"] as const) {
      const label = `gen-${algorithm}`;
      const a = await generateHsmKey({
        module: hsm.module,
        tokenLabel: hsm.label,
        keyLabel: label,
        pin: hsm.pin,
        algorithm,
      });
      expect(a.created).toBe(true);
      const b = await generateHsmKey({
        module: hsm.module,
        tokenLabel: hsm.label,
        keyLabel: label,
        pin: hsm.pin,
        algorithm,
      });
      expect(b.created).toBe(false);
      expect(b.publicKey.equals(a.publicKey)).toBe(true);
      const k = await open(label);
      expect(k.publicKey.equals(a.publicKey)).toBe(true);
      const sig = await k.sign(new Uint8Array([9]));
      const ok =
        algorithm === "ed25519"
          ? verify(null, new Uint8Array([9]), k.publicKey, sig)
          : verify("sha256", new Uint8Array([9]), { key: k.publicKey, dsaEncoding: "ieee-p1363" }, sig);
      expect(ok).toBe(true);
    }
  });
});
