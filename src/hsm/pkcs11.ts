import { createRequire } from "node:module";

/**
 * pkcs11js (CommonJS, native) loaded from this ES module. Only the daemon's HSM layer imports
 * it; the auditor's pure code (src/hsm/epoch-verify.ts, keys.ts) never does.
 */
export type Pkcs11Module = typeof import("pkcs11js");
export type PKCS11 = import("pkcs11js").PKCS11;
export type Handle = Buffer;

const require = createRequire(import.meta.url);
let loaded: Pkcs11Module | undefined;

export function pkcs11js(): Pkcs11Module {
  loaded ??= require("pkcs11js") as Pkcs11Module;
  return loaded;
}

/** PKCS#11 v3.0 §6.3.5 / §2.3.14 values the pkcs11js typings lack. */
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;
export const CKK_EC_EDWARDS = 0x40;

/** SoftHSM2's module on Debian (softhsm2 / libsofthsm2). */
export const DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so";
