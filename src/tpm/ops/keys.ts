import type { TpmRunner } from "../runner.js";
import { HANDLES, handleHex, isMissingObject } from "./handles.js";

/**
 * Key provisioning. Every key execgate relies on is persistent (TPM2_EvictControl): saved
 * context files die at a TPM Reset, and the TPM has only three transient slots without a
 * resource manager, so each step flushes what it loaded.
 */

/** TPM2_ReadPublic: the TPM2B_PUBLIC of a loaded or persistent object, or undefined if absent. */
export async function readPublic(runner: TpmRunner, handle: number): Promise<Uint8Array | undefined> {
  try {
    const { files } = await runner.run("tpm2_readpublic", ["-c", handleHex(handle), "-o", "key.pub"], {
      outputs: ["key.pub"],
    });
    return files["key.pub"];
  } catch (e) {
    if (isMissingObject(e)) return undefined;
    throw e;
  }
}

async function persist(runner: TpmRunner, ctx: Uint8Array, handle: number): Promise<void> {
  await runner.run("tpm2_evictcontrol", ["-C", "o", "-c", "obj.ctx", handleHex(handle)], {
    inputs: { "obj.ctx": ctx },
  });
  await runner.run("tpm2_flushcontext", ["-t"]);
}

/** The RSA-2048 EK (TCG default template), created and persisted at `handle` if absent. */
export async function ensureEk(runner: TpmRunner, handle: number = HANDLES.ekRsa): Promise<Uint8Array> {
  const existing = await readPublic(runner, handle);
  if (existing) return existing;
  const { files } = await runner.run(
    "tpm2_createek",
    ["-c", handleHex(handle), "-G", "rsa", "-u", "ek.pub"],
    {
      outputs: ["ek.pub"],
    },
  );
  await runner.run("tpm2_flushcontext", ["-t"]);
  return files["ek.pub"]!;
}

/** An SRK (ECC P-256 primary under the owner hierarchy) at `handle`, if none is there. */
export async function ensureSrk(runner: TpmRunner, handle: number = HANDLES.srk): Promise<Uint8Array> {
  const existing = await readPublic(runner, handle);
  if (existing) return existing;
  const { files } = await runner.run("tpm2_createprimary", ["-C", "o", "-G", "ecc256", "-c", "srk.ctx"], {
    outputs: ["srk.ctx"],
  });
  await persist(runner, files["srk.ctx"]!, handle);
  return (await readPublic(runner, handle))!;
}

export type AkAlgorithm = "ecc" | "rsa";

export interface AkResult {
  readonly handle: number;
  /** TPM2B_PUBLIC of the AK. */
  readonly public: Uint8Array;
  readonly created: boolean;
}

/**
 * A restricted signing AK under the EK (tpm2_createak: ECC P-256/ECDSA or RSA-2048/RSASSA,
 * SHA-256), persisted at `handle`. An AK already there is returned as is.
 */
export async function ensureAk(
  runner: TpmRunner,
  opts: { handle?: number; algorithm?: AkAlgorithm; ekHandle?: number } = {},
): Promise<AkResult> {
  const handle = opts.handle ?? HANDLES.ak;
  const existing = await readPublic(runner, handle);
  if (existing) return { handle, public: existing, created: false };
  const ek = opts.ekHandle ?? HANDLES.ekRsa;
  await ensureEk(runner, ek);
  const alg = opts.algorithm ?? "ecc";
  const scheme = alg === "ecc" ? ["-G", "ecc", "-s", "ecdsa"] : ["-G", "rsa", "-s", "rsassa"];
  const { files } = await runner.run(
    "tpm2_createak",
    ["-C", handleHex(ek), "-c", "ak.ctx", ...scheme, "-g", "sha256", "-u", "ak.pub", "-n", "ak.name"],
    { outputs: ["ak.ctx", "ak.pub"] },
  );
  await runner.run("tpm2_flushcontext", ["-t"]);
  await persist(runner, files["ak.ctx"]!, handle);
  return { handle, public: (await readPublic(runner, handle))!, created: true };
}

/**
 * A non-restricted ECC P-256 / ECDSA-SHA256 signing key under the SRK, persisted at `handle`.
 * fixedTPM + sensitiveDataOrigin: it never leaves this TPM, which TPM2_Certify by the AK attests.
 */
export async function ensureSigningKey(
  runner: TpmRunner,
  opts: { handle?: number; srkHandle?: number } = {},
): Promise<{ handle: number; public: Uint8Array; created: boolean }> {
  const handle = opts.handle ?? HANDLES.signingKey;
  const existing = await readPublic(runner, handle);
  if (existing) return { handle, public: existing, created: false };
  const srk = opts.srkHandle ?? HANDLES.srk;
  await ensureSrk(runner, srk);
  const attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign";
  const created = await runner.run(
    "tpm2_create",
    [
      "-C",
      handleHex(srk),
      "-G",
      "ecc256:ecdsa-sha256",
      "-g",
      "sha256",
      "-a",
      attrs,
      "-u",
      "sk.pub",
      "-r",
      "sk.priv",
    ],
    { outputs: ["sk.pub", "sk.priv"] },
  );
  const loaded = await runner.run(
    "tpm2_load",
    ["-C", handleHex(srk), "-u", "sk.pub", "-r", "sk.priv", "-c", "sk.ctx"],
    {
      inputs: { "sk.pub": created.files["sk.pub"]!, "sk.priv": created.files["sk.priv"]! },
      outputs: ["sk.ctx"],
    },
  );
  await persist(runner, loaded.files["sk.ctx"]!, handle);
  return { handle, public: (await readPublic(runner, handle))!, created: true };
}

/** Removes a persistent object (enroll --force). */
export async function evict(runner: TpmRunner, handle: number): Promise<void> {
  if (!(await readPublic(runner, handle))) return;
  await runner.run("tpm2_evictcontrol", ["-C", "o", "-c", handleHex(handle)]);
}
