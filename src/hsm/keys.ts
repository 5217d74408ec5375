import { createPublicKey, type KeyObject } from "node:crypto";
import { ExecgateError } from "../core/errors.js";

/*
 * Pure conversions between what a PKCS#11 token returns and what node:crypto and the formats
 * need: CKA_EC_POINT (a DER OCTET STRING around the point), CKA_EC_PARAMS (the curve OID, or
 * for SoftHSM's Ed25519 keys the PrintableString "edwards25519"), raw r‖s ↔ DER ECDSA-Sig-Value.
 */

export type HsmKeyAlgorithm = "ecdsa-p256" | "ed25519";

/** DER of OID 1.2.840.10045.3.1.7 (prime256v1 / P-256) — RFC 5480 §2.1.1.1. */
export const P256_PARAMS = Uint8Array.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
/** DER of OID 1.3.101.112 (id-Ed25519, RFC 8410) — PKCS#11 v3.0 accepts it as CKA_EC_PARAMS. */
export const ED25519_OID_PARAMS = Uint8Array.from([0x06, 0x03, 0x2b, 0x65, 0x70]);
/** PrintableString "edwards25519": how SoftHSM2 and opensc name the curve. */
export const ED25519_NAME_PARAMS = Uint8Array.from([0x13, 0x0c, ...Buffer.from("edwards25519", "ascii")]);

const P256_SPKI_PREFIX = Buffer.from("3059301306072a8648ce3d020106082a8648ce3d030107034200", "hex");
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

function malformed(what: string): ExecgateError {
  return new ExecgateError("malformed", `HSM key: ${what}`);
}

const eq = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

export function algorithmFromParams(params: Uint8Array): HsmKeyAlgorithm {
  if (eq(params, P256_PARAMS)) return "ecdsa-p256";
  if (eq(params, ED25519_OID_PARAMS) || eq(params, ED25519_NAME_PARAMS)) return "ed25519";
  throw new ExecgateError("unsupported", "HSM key: only EC P-256 and Ed25519 keys are supported");
}

/** CKA_EC_POINT: a DER OCTET STRING (short or one-byte long form) or, from some tokens, the bare point. */
export function unwrapEcPoint(value: Uint8Array, pointLength: number): Uint8Array {
  if (value.length === pointLength) return value;
  if (value[0] !== 0x04) throw malformed("CKA_EC_POINT is not an OCTET STRING");
  let off = 2;
  let len = value[1] ?? -1;
  if (len === 0x81) {
    len = value[2] ?? -1;
    off = 3;
  }
  if (len !== pointLength || value.length !== off + len) throw malformed("CKA_EC_POINT has the wrong length");
  return value.subarray(off);
}

/** The public key as node:crypto sees it, from CKA_EC_PARAMS and CKA_EC_POINT. */
export function publicKeyFromToken(params: Uint8Array, ecPoint: Uint8Array): KeyObject {
  const alg = algorithmFromParams(params);
  if (alg === "ecdsa-p256") {
    const point = unwrapEcPoint(ecPoint, 65);
    if (point[0] !== 0x04) throw malformed("P-256 point is not uncompressed");
    return spki(Buffer.concat([P256_SPKI_PREFIX, point]));
  }
  return spki(Buffer.concat([ED25519_SPKI_PREFIX, unwrapEcPoint(ecPoint, 32)]));
}

function spki(der: Buffer): KeyObject {
  try {
    return createPublicKey({ key: der, format: "der", type: "spki" });
  } catch (e) {
    throw new ExecgateError("malformed", "HSM key: not a valid public key", {}, { cause: e });
  }
}

export function algorithmOf(key: KeyObject): HsmKeyAlgorithm {
  if (key.asymmetricKeyType === "ed25519") return "ed25519";
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1")
    return "ecdsa-p256";
  throw new ExecgateError("unsupported", "only EC P-256 and Ed25519 public keys are supported");
}

/** SHA-256 of the DER SPKI: how logs and records name an HSM key. */
export function spkiDer(key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ format: "der", type: "spki" }));
}

/** Raw r‖s (IEEE P1363, what CKM_ECDSA returns and COSE ES256 carries) → DER ECDSA-Sig-Value. */
export function rawToDer(raw: Uint8Array): Uint8Array {
  if (raw.length === 0 || raw.length % 2 !== 0 || raw.length > 132)
    throw malformed("raw ECDSA signature length");
  const half = raw.length / 2;
  const int = (v: Uint8Array): Uint8Array => {
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    const t = v.subarray(i);
    return (t[0] ?? 0) & 0x80
      ? Uint8Array.of(0x02, t.length + 1, 0, ...t)
      : Uint8Array.of(0x02, t.length, ...t);
  };
  const r = int(raw.subarray(0, half));
  const s = int(raw.subarray(half));
  const len = r.length + s.length;
  const head = len < 0x80 ? [0x30, len] : [0x30, 0x81, len];
  return Uint8Array.from([...head, ...r, ...s]);
}

/** DER ECDSA-Sig-Value → raw r‖s of `size` bytes each (strict: minimal integers, nothing trailing). */
export function derToRaw(der: Uint8Array, size: number): Uint8Array {
  let p = 0;
  const byte = (): number => {
    const b = der[p++];
    if (b === undefined) throw malformed("DER ECDSA signature truncated");
    return b;
  };
  const length = (): number => {
    const l = byte();
    if (l < 0x80) return l;
    if (l !== 0x81) throw malformed("DER length form");
    const v = byte();
    if (v < 0x80) throw malformed("non-minimal DER length");
    return v;
  };
  if (byte() !== 0x30) throw malformed("DER ECDSA signature is not a SEQUENCE");
  if (length() !== der.length - p) throw malformed("DER SEQUENCE length");
  const out = new Uint8Array(2 * size);
  for (const at of [0, size]) {
    if (byte() !== 0x02) throw malformed("DER INTEGER expected");
    const l = length();
    if (l === 0 || p + l > der.length) throw malformed("DER INTEGER length");
    let v = der.subarray(p, p + l);
    p += l;
    if ((v[0] ?? 0) & 0x80) throw malformed("negative DER INTEGER");
    if (v.length > 1 && v[0] === 0 && !((v[1] ?? 0) & 0x80)) throw malformed("non-minimal DER INTEGER");
    if (v[0] === 0 && v.length > 1) v = v.subarray(1);
    if (v.length > size) throw malformed("DER INTEGER longer than the curve");
    out.set(v, at + size - v.length);
  }
  if (p !== der.length) throw malformed("trailing bytes after DER signature");
  return out;
}
