import { afterAll, beforeAll, expect, it } from "vitest";
import { HANDLES, handleHex } from "../../src/tpm/ops/handles.js";
import { evict, readPublic } from "../../src/tpm/ops/keys.js";
import { startTestDaemon, type TestDaemon } from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

/*
 * The keys at tpm.ak_handle and tpm.signing_key_handle must be fit for their roles: the daemon
 * refuses to start (exit 2) when the AK handle holds a signing key that is not restricted — such
 * a key signs any digest it is given (TPM2_Sign), so it could sign a forged quote.
 */
describeTpm("the daemon checks its TPM keys' attributes at start", () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon({});
  });
  afterAll(async () => {
    await d?.dispose();
  });

  it("an unrestricted signing key at the AK handle: refuses to start, exit 2, and says why", async () => {
    expect(await d.stop()).toBe(0);
    const runner = d.tpm.runner;
    const enrolledAk = await readPublic(runner, HANDLES.ak);
    expect(enrolledAk).toBeDefined();
    await evict(runner, HANDLES.ak);
    // An ECC P-256 signing primary without `restricted`, persisted where the AK was.
    const { files } = await runner.run(
      "tpm2_createprimary",
      [
        "-C",
        "o",
        "-G",
        "ecc256:ecdsa-sha256",
        "-a",
        "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
        "-c",
        "k.ctx",
      ],
      { outputs: ["k.ctx"] },
    );
    await runner.run("tpm2_evictcontrol", ["-C", "o", "-c", "k.ctx", handleHex(HANDLES.ak)], {
      inputs: { "k.ctx": files["k.ctx"]! },
    });
    await runner.run("tpm2_flushcontext", ["-t"]);
    await expect(d.start()).rejects.toThrow(/did not start/);
    expect(d.child()?.exitCode).toBe(2);
    expect(d.stderr()).toMatch(
      /refusing to start: TPM .*the key at tpm\.ak_handle is not a restricted TPM-resident signing key \(missing restricted/,
    );
  });
});
