import { afterAll, beforeAll, expect, it } from "vitest";
import { checkKeyRoles, readTpmKeys } from "../../daemon/start/trust-roots.js";
import type { Swtpm } from "../../src/dev/swtpm.js";
import { ueidOfEk } from "../../src/token/ueid.js";
import { type Enrollment, enroll } from "../../src/tpm/enroll.js";
import { HANDLES } from "../../src/tpm/ops/handles.js";
import { parseTpm2bPublic } from "../../src/tpm/structures/public.js";
import { describeTpm, startSwtpm } from "../helpers/hardware.js";

// The daemon's trust-roots stage on swtpm: the TPM keys read at their handles and checked fit
// for their roles (a key that is not a restricted AK could sign a forged quote).

const CONFIGURED = { akHandle: HANDLES.ak, signingKeyHandle: HANDLES.signingKey } as const;

describeTpm("daemon start: the TPM keys and their roles", () => {
  let tpm: Swtpm;
  let enrolled: Enrollment;
  beforeAll(async () => {
    tpm = await startSwtpm();
  });
  afterAll(async () => {
    await tpm?.stop();
  });

  it("a TPM that is not enrolled: refused with config_invalid, naming `execgate enroll`", async () => {
    await expect(readTpmKeys(tpm.runner, CONFIGURED)).rejects.toMatchObject({
      code: "config_invalid",
      message: expect.stringMatching(/not enrolled: run `execgate enroll`/),
    });
  });

  it("enrolled: the AK, the signing key and the EK's UEID as enrolled", async () => {
    enrolled = await enroll(tpm.runner);
    const keys = await readTpmKeys(tpm.runner, CONFIGURED);
    expect(keys.akPublicBytes).toEqual(enrolled.akPublic);
    expect(keys.ueid).toEqual(ueidOfEk(parseTpm2bPublic(enrolled.ekPublic)));
    expect(keys.akPublic.asymmetricKeyType).toBeDefined();
    expect(keys.signingPublic.asymmetricKeyType).toBe("ec");
  });

  it("the handles swapped: the signing key at tpm.ak_handle is refused as not a restricted key", async () => {
    const swapped = { akHandle: HANDLES.signingKey, signingKeyHandle: HANDLES.ak };
    await expect(readTpmKeys(tpm.runner, swapped)).rejects.toMatchObject({
      code: "config_invalid",
      message: expect.stringMatching(
        /^the key at tpm\.ak_handle is not a restricted TPM-resident signing key \(missing restricted/,
      ),
    });
  });

  it("checkKeyRoles: a decryption key (the EK) as the signing key is refused as missing sign", () => {
    const ak = parseTpm2bPublic(enrolled.akPublic);
    const ek = parseTpm2bPublic(enrolled.ekPublic);
    expect(() => checkKeyRoles(ak, parseTpm2bPublic(enrolled.signingKeyPublic))).not.toThrow();
    expect(() => checkKeyRoles(ak, ek)).toThrow(/^the key at tpm\.signing_key_handle is missing sign$/);
    expect(() => checkKeyRoles(ek, ak)).toThrow(/^the key at tpm\.ak_handle is not a restricted/);
  });
});
