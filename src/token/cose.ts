import { createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from "node:crypto";
import { CborTag, type CborValue, decode, encode } from "../cbor/index.js";
import { ExecgateError } from "../core/errors.js";
import { toHex } from "../core/hex.js";

/*
 * COSE_Sign1 — RFC 9052 §4.2 and §4.4:
 *   COSE_Sign1 = [ protected: bstr .cbor header_map, unprotected: header_map, payload: bstr, signature: bstr ]
 *   tagged with 18 (COSE_Sign1_Tagged) where the type is not known from context.
 *   Sig_structure = [ "Signature1", body_protected, external_aad, payload ]
 * The signature is always computed over the protected bytes AS RECEIVED, never re-encoded.
 */

export const COSE_SIGN1_TAG = 18;

/** COSE header labels — RFC 9052 §3.1. */
export const HEADER = { alg: 1, crit: 2, contentType: 3, kid: 4 } as const;

/** COSE algorithm identifiers — IANA "COSE Algorithms" (RFC 9053 §2, RFC 8230 §2). */
export const COSE_ALG = { EdDSA: -8, ES256: -7, ES384: -35, ES512: -36, PS256: -37 } as const;

interface AlgParams {
  readonly hash: string | null;
  readonly ecdsaSize?: number;
  readonly pss?: boolean;
}

const ALGS = new Map<number, AlgParams>([
  [COSE_ALG.EdDSA, { hash: null }],
  [COSE_ALG.ES256, { hash: "sha256", ecdsaSize: 32 }],
  [COSE_ALG.ES384, { hash: "sha384", ecdsaSize: 48 }],
  [COSE_ALG.ES512, { hash: "sha512", ecdsaSize: 66 }],
  [COSE_ALG.PS256, { hash: "sha256", pss: true }],
]);

/** Untrusted tokens are small; these bound what the decoder will even look at. */
export const MAX_COSE_BYTES = 16 * 1024;
const DECODE_LIMITS = { maxDepth: 8, maxItems: 512, maxLength: MAX_COSE_BYTES };

export interface CoseSign1 {
  readonly tagged: boolean;
  /** The protected header bytes exactly as received (what was signed). */
  readonly protectedBytes: Uint8Array;
  readonly protectedHeader: ReadonlyMap<unknown, CborValue>;
  readonly unprotectedHeader: ReadonlyMap<unknown, CborValue>;
  readonly payload: Uint8Array;
  readonly signature: Uint8Array;
  /** The `alg` from the protected header (only the protected one counts). */
  readonly alg: number;
}

function malformed(msg: string): ExecgateError {
  return new ExecgateError("malformed", `COSE_Sign1: ${msg}`);
}

function asMap(v: CborValue | undefined, what: string): ReadonlyMap<unknown, CborValue> {
  if (!(v instanceof Map)) throw malformed(`${what} is not a map`);
  return v as ReadonlyMap<unknown, CborValue>;
}

function asBytes(v: CborValue | undefined, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw malformed(`${what} is not a byte string`);
  return v;
}

/**
 * Decodes a COSE_Sign1 (tagged 18, or untagged when `requireTag` is false). Rejects a wrong
 * tag, a missing or unknown protected `alg`, an `alg` in the unprotected header, and `crit`
 * (we understand no critical extensions, so any is fatal — RFC 9052 §3.1).
 */
export function decodeSign1(bytes: Uint8Array, opts: { requireTag?: boolean } = {}): CoseSign1 {
  if (bytes.length > MAX_COSE_BYTES) throw new ExecgateError("limit_exceeded", "COSE_Sign1 too large");
  let top = decode(bytes, DECODE_LIMITS);
  let tagged = false;
  if (top instanceof CborTag) {
    if (top.tag !== COSE_SIGN1_TAG) throw malformed(`tag ${top.tag} is not COSE_Sign1 (18)`);
    top = top.value;
    tagged = true;
  } else if (opts.requireTag ?? true) {
    throw malformed("untagged");
  }
  if (!Array.isArray(top) || top.length !== 4) throw malformed("not an array of 4");
  const arr = top as readonly CborValue[];
  const protectedBytes = asBytes(arr[0], "protected");
  const protectedHeader =
    protectedBytes.length === 0
      ? new Map<unknown, CborValue>()
      : asMap(decode(protectedBytes, DECODE_LIMITS), "protected header");
  const unprotectedHeader = asMap(arr[1], "unprotected header");
  const payload = asBytes(arr[2], "payload");
  const signature = asBytes(arr[3], "signature");
  if (protectedHeader.has(HEADER.crit)) throw malformed("critical header parameters are not supported");
  if (unprotectedHeader.has(HEADER.alg)) throw malformed("alg must be in the protected header only");
  for (const k of unprotectedHeader.keys()) {
    if (protectedHeader.has(k)) throw malformed(`header label ${String(k)} in both buckets`);
  }
  const alg = protectedHeader.get(HEADER.alg);
  if (typeof alg !== "number" || !ALGS.has(alg)) throw malformed(`unsupported alg ${String(alg)}`);
  return { tagged, protectedBytes, protectedHeader, unprotectedHeader, payload, signature, alg };
}

export function sigStructure(
  protectedBytes: Uint8Array,
  payload: Uint8Array,
  externalAad: Uint8Array,
): Uint8Array {
  return encode(["Signature1", protectedBytes, externalAad, payload]);
}

function nodeParams(alg: number): {
  hash: string | null;
  options: { dsaEncoding?: "ieee-p1363"; padding?: number; saltLength?: number };
} {
  const p = ALGS.get(alg);
  if (!p) throw malformed(`unsupported alg ${alg}`);
  if (p.ecdsaSize) return { hash: p.hash, options: { dsaEncoding: "ieee-p1363" } };
  // RSASSA-PSS with salt length = hash length (RFC 8230 §2); 6 = RSA_PKCS1_PSS_PADDING.
  if (p.pss) return { hash: p.hash, options: { padding: 6, saltLength: 32 } };
  return { hash: null, options: {} };
}

/** Order n of the P-256 group (SEC 2 §2.4.2): ES256's s and n − s both verify. */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

function scalar(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt(`0x${toHex(b)}`);
}

/**
 * True unless `signature` is an ES256 r‖s with s > n/2. An ECDSA signature has a twin (r, n − s)
 * that verifies as well, so whoever holds a token could change its bytes; tokens only take the
 * low one (as BIP 62 and libsecp256k1 do). Other algorithms are not malleable this way.
 */
export function isLowS(alg: number, signature: Uint8Array): boolean {
  if (alg !== COSE_ALG.ES256 || signature.length !== 64) return true;
  return scalar(signature.subarray(32)) <= P256_N / 2n;
}

/** An ES256 signature with s replaced by n − s when s > n/2 (it verifies either way); others unchanged. */
export function lowS(alg: number, signature: Uint8Array): Uint8Array {
  if (isLowS(alg, signature)) return signature;
  const s = (P256_N - scalar(signature.subarray(32))).toString(16).padStart(64, "0");
  const out = signature.slice();
  out.set(Buffer.from(s, "hex"), 32);
  return out;
}

/** True iff `signature` verifies over the Sig_structure built from the received bytes. */
export function verifySign1(
  msg: CoseSign1,
  key: KeyObject,
  externalAad: Uint8Array = new Uint8Array(),
): boolean {
  const tbs = sigStructure(msg.protectedBytes, msg.payload, externalAad);
  const { hash, options } = nodeParams(msg.alg);
  try {
    return cryptoVerify(hash, tbs, { key, ...options }, msg.signature);
  } catch {
    return false;
  }
}

export interface Sign1Options {
  readonly kid?: Uint8Array;
  readonly externalAad?: Uint8Array;
}

/**
 * What a COSE_Sign1 signer signs: the protected header (`alg`, optional kid) and the
 * Sig_structure over it and the payload. `sign1` then assembles the message around the signature.
 */
export function toBeSigned1(
  payload: Uint8Array,
  alg: number,
  opts: Sign1Options = {},
): { readonly protectedBytes: Uint8Array; readonly tbs: Uint8Array } {
  const header = new Map<number, CborValue>([[HEADER.alg, alg]]);
  if (opts.kid) header.set(HEADER.kid, opts.kid);
  const protectedBytes = encode(header);
  return { protectedBytes, tbs: sigStructure(protectedBytes, payload, opts.externalAad ?? new Uint8Array()) };
}

/** The tagged COSE_Sign1 of a signature made over toBeSigned1's Sig_structure. */
export function sign1(protectedBytes: Uint8Array, payload: Uint8Array, signature: Uint8Array): Uint8Array {
  return encode(new CborTag(COSE_SIGN1_TAG, [protectedBytes, new Map(), payload, signature]));
}

/** Builds a tagged COSE_Sign1 with `alg` (and optional kid) in the protected header. */
export function signSign1(
  payload: Uint8Array,
  key: KeyObject,
  alg: number,
  opts: Sign1Options = {},
): Uint8Array {
  const { protectedBytes, tbs } = toBeSigned1(payload, alg, opts);
  const { hash, options } = nodeParams(alg);
  return sign1(
    protectedBytes,
    payload,
    lowS(alg, new Uint8Array(cryptoSign(hash, tbs, { key, ...options }))),
  );
}

/** An Ed25519 public key from its 32 raw bytes (as epoch bindings carry the issuer key). */
export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") },
    format: "jwk",
  });
}
