import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { ExecgateError } from "../core/errors.js";
import { decodeBase64Strict } from "./base64.js";

/**
 * What signs checkpoints. The TPM layer implements this with a TPM-resident P-256 key certified
 * by the AK (TPM2_Certify); an HSM key can implement it too. `sign` receives the exact note text
 * bytes and returns the raw signature as the signed-note line carries it (c2sp.org/signed-note):
 * - "ed25519": the 64-byte RFC 8032 signature over the message (note type 0x01);
 * - "ecdsa-p256": an ASN.1 DER ECDSA-Sig-Value over SHA-256(message) (note type 0x02, as
 *   transparency-dev/witness verifies it). A TPM returns r and s separately; the implementation
 *   must DER-encode them (SEQUENCE { INTEGER r, INTEGER s }, minimal integers).
 * `publicKey` is a node:crypto public KeyObject (Ed25519, or EC on prime256v1).
 */
export interface NoteSigner {
  readonly name: string;
  readonly algorithm: "ed25519" | "ecdsa-p256";
  readonly publicKey: KeyObject;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/** RFC 8410 PKCS#8 prefix for a raw 32-byte Ed25519 seed. */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** A software Ed25519 signer (tests, dev mode). The private key stays inside the closure. */
export function softwareEd25519Signer(name: string, seed?: Uint8Array): NoteSigner {
  let privateKey: KeyObject;
  if (seed === undefined) {
    privateKey = generateKeyPairSync("ed25519").privateKey;
  } else {
    if (seed.length !== 32) throw new ExecgateError("malformed", "ed25519 seed must be 32 bytes");
    privateKey = createPrivateKey({
      key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]),
      format: "der",
      type: "pkcs8",
    });
  }
  const publicKey = createPublicKey(privateKey);
  return {
    name,
    algorithm: "ed25519",
    publicKey,
    sign: (message) => Promise.resolve(new Uint8Array(sign(null, message, privateKey))),
  };
}

/** A software ECDSA P-256 signer producing DER signatures, as the TPM signer must. */
export function softwareEcdsaP256Signer(name: string): NoteSigner {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return {
    name,
    algorithm: "ecdsa-p256",
    publicKey,
    sign: (message) =>
      Promise.resolve(new Uint8Array(sign("sha256", message, { key: privateKey, dsaEncoding: "der" }))),
  };
}

/**
 * Parses a golang.org/x/mod/sumdb/note private key "PRIVATE+KEY+<name>+<hash>+<base64(0x01||seed)>"
 * (used by the published test vectors) into a software signer.
 */
export function signerFromNoteSkey(skey: string): NoteSigner {
  const parts = skey.split("+");
  if (parts.length < 5 || parts[0] !== "PRIVATE" || parts[1] !== "KEY") {
    throw new ExecgateError("malformed", "note private key: expected PRIVATE+KEY+name+hash+key");
  }
  // The base64 key may itself contain "+".
  const key = decodeBase64Strict(parts.slice(4).join("+"), "note private key");
  if (key.length !== 33 || key[0] !== 0x01) {
    throw new ExecgateError("unsupported", "note private key: only Ed25519 (type 0x01, 32-byte seed)");
  }
  return softwareEd25519Signer(parts[2]!, key.subarray(1));
}
