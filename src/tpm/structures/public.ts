import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { Cursor } from "../../core/cursor.js";
import { asExecgateError, ExecgateError } from "../../core/errors.js";
import { concatBytes } from "../../core/hex.js";
import { ByteWriter } from "../../core/writer.js";
import {
  ECC_CURVES,
  hashAlgInfo,
  MAX_DIGEST_BUFFER,
  MAX_ECC_KEY_BYTES,
  MAX_PUBLIC_AREA,
  MAX_RSA_KEY_BYTES,
  TPM_ALG,
} from "../constants.js";

// TPMT_SYM_DEF_OBJECT — TPM 2.0 Part 2 §11.1.7. keyBits/mode absent for TPM_ALG_NULL; XOR has no mode.
export interface TpmtSymDefObject {
  readonly algorithm: number;
  readonly keyBits?: number;
  readonly mode?: number;
}

// TPMT_RSA_SCHEME / TPMT_ECC_SCHEME / TPMT_KDF_SCHEME — Part 2 §11.2.4.2, §11.2.5.6, §11.2.3.3.
// `hashAlg` is absent for TPM_ALG_NULL and RSAES; `count` only for ECDAA.
export interface TpmtScheme {
  readonly scheme: number;
  readonly hashAlg?: number;
  readonly count?: number;
}

// TPMS_RSA_PARMS + TPM2B_PUBLIC_KEY_RSA — Part 2 §12.2.3.5, §11.2.4.5
export interface RsaPublicParms {
  readonly type: typeof TPM_ALG.RSA;
  readonly symmetric: TpmtSymDefObject;
  readonly scheme: TpmtScheme;
  readonly keyBits: number;
  /** 0 means the default exponent 2^16 + 1. */
  readonly exponent: number;
  readonly modulus: Uint8Array;
}

// TPMS_ECC_PARMS + TPMS_ECC_POINT — Part 2 §12.2.3.6, §11.2.5.2
export interface EccPublicParms {
  readonly type: typeof TPM_ALG.ECC;
  readonly symmetric: TpmtSymDefObject;
  readonly scheme: TpmtScheme;
  readonly curveID: number;
  readonly kdf: TpmtScheme;
  readonly x: Uint8Array;
  readonly y: Uint8Array;
}

// TPMT_PUBLIC — Part 2 §12.2.4 (RSA and ECC objects)
export interface TpmtPublic {
  readonly nameAlg: number;
  /** TPMA_OBJECT bits (see TPMA_OBJECT in constants.ts). */
  readonly objectAttributes: number;
  readonly authPolicy: Uint8Array;
  readonly key: RsaPublicParms | EccPublicParms;
  /** The marshalled TPMT_PUBLIC this was parsed from: what the Name hashes. */
  readonly publicArea: Uint8Array;
}

function readSymDefObject(c: Cursor): TpmtSymDefObject {
  const algorithm = c.u16("TPMT_SYM_DEF_OBJECT.algorithm");
  if (algorithm === TPM_ALG.NULL) return { algorithm };
  if (algorithm === TPM_ALG.XOR) return { algorithm, keyBits: c.u16("TPMT_SYM_DEF_OBJECT.keyBits") };
  if (algorithm === TPM_ALG.AES || algorithm === TPM_ALG.SM4 || algorithm === TPM_ALG.CAMELLIA) {
    return {
      algorithm,
      keyBits: c.u16("TPMT_SYM_DEF_OBJECT.keyBits"),
      mode: c.u16("TPMT_SYM_DEF_OBJECT.mode"),
    };
  }
  throw new ExecgateError("unsupported", `TPMT_SYM_DEF_OBJECT.algorithm 0x${algorithm.toString(16)}`);
}

function writeSymDefObject(w: ByteWriter, s: TpmtSymDefObject): void {
  w.u16(s.algorithm);
  if (s.keyBits !== undefined) w.u16(s.keyBits);
  if (s.mode !== undefined) w.u16(s.mode);
}

const SCHEMES_WITH_HASH: ReadonlySet<number> = new Set([
  TPM_ALG.RSASSA,
  TPM_ALG.RSAPSS,
  TPM_ALG.OAEP,
  TPM_ALG.ECDSA,
  TPM_ALG.ECDH,
  TPM_ALG.SM2,
  TPM_ALG.ECSCHNORR,
  TPM_ALG.KDF1_SP800_56A,
  TPM_ALG.KDF2,
  TPM_ALG.KDF1_SP800_108,
]);

function readScheme(c: Cursor, what: string): TpmtScheme {
  const scheme = c.u16(`${what}.scheme`);
  if (scheme === TPM_ALG.NULL || scheme === TPM_ALG.RSAES) return { scheme };
  if (scheme === TPM_ALG.ECDAA)
    return { scheme, hashAlg: c.u16(`${what}.hashAlg`), count: c.u16(`${what}.count`) };
  if (SCHEMES_WITH_HASH.has(scheme)) return { scheme, hashAlg: c.u16(`${what}.hashAlg`) };
  throw new ExecgateError("unsupported", `${what}.scheme 0x${scheme.toString(16)}`);
}

function writeScheme(w: ByteWriter, s: TpmtScheme): void {
  w.u16(s.scheme);
  if (s.hashAlg !== undefined) w.u16(s.hashAlg);
  if (s.count !== undefined) w.u16(s.count);
}

/** Reads a TPMT_PUBLIC that fills `c` exactly (the caller gives a sub-cursor of the TPM2B size). */
function readPublicArea(c: Cursor): TpmtPublic {
  const start = c.offset;
  const type = c.u16("TPMT_PUBLIC.type");
  const nameAlg = c.u16("TPMT_PUBLIC.nameAlg");
  const objectAttributes = c.u32("TPMT_PUBLIC.objectAttributes");
  const authPolicy = c.tpm2b("TPMT_PUBLIC.authPolicy", MAX_DIGEST_BUFFER);
  let key: RsaPublicParms | EccPublicParms;
  if (type === TPM_ALG.RSA) {
    const symmetric = readSymDefObject(c);
    const scheme = readScheme(c, "TPMT_RSA_SCHEME");
    const keyBits = c.u16("TPMS_RSA_PARMS.keyBits");
    const exponent = c.u32("TPMS_RSA_PARMS.exponent");
    const modulus = c.tpm2b("TPMU_PUBLIC_ID.rsa", MAX_RSA_KEY_BYTES);
    key = { type, symmetric, scheme, keyBits, exponent, modulus };
  } else if (type === TPM_ALG.ECC) {
    const symmetric = readSymDefObject(c);
    const scheme = readScheme(c, "TPMT_ECC_SCHEME");
    const curveID = c.u16("TPMS_ECC_PARMS.curveID");
    const kdf = readScheme(c, "TPMT_KDF_SCHEME");
    const x = c.tpm2b("TPMS_ECC_POINT.x", MAX_ECC_KEY_BYTES);
    const y = c.tpm2b("TPMS_ECC_POINT.y", MAX_ECC_KEY_BYTES);
    key = { type, symmetric, scheme, curveID, kdf, x, y };
  } else {
    throw new ExecgateError("unsupported", `TPMT_PUBLIC.type 0x${type.toString(16)} (only RSA and ECC)`);
  }
  c.end("TPMT_PUBLIC");
  return { nameAlg, objectAttributes, authPolicy, key, publicArea: c.bytes.slice(start) };
}

/** Parses a bare TPMT_PUBLIC (e.g. go-tpm-tools' ak_pub), exactly. */
export function parseTpmtPublic(bytes: Uint8Array): TpmtPublic {
  if (bytes.length > MAX_PUBLIC_AREA) throw new ExecgateError("limit_exceeded", "TPMT_PUBLIC too large");
  return readPublicArea(new Cursor(bytes));
}

// TPM2B_PUBLIC — Part 2 §12.2.5: what tpm2_readpublic -o / tpm2_create -u write.
export function readTpm2bPublic(c: Cursor): TpmtPublic {
  const size = c.u16("TPM2B_PUBLIC.size");
  if (size > MAX_PUBLIC_AREA) throw new ExecgateError("limit_exceeded", `TPM2B_PUBLIC.size ${size}`);
  return readPublicArea(c.sub(size, "TPM2B_PUBLIC.publicArea"));
}

export function parseTpm2bPublic(bytes: Uint8Array): TpmtPublic {
  const c = new Cursor(bytes);
  const p = readTpm2bPublic(c);
  c.end("TPM2B_PUBLIC");
  return p;
}

/** Marshals the TPMT_PUBLIC from its fields (ignores `publicArea`). */
export function serializeTpmtPublic(p: Omit<TpmtPublic, "publicArea">): Uint8Array {
  const w = new ByteWriter();
  w.u16(p.key.type).u16(p.nameAlg).u32(p.objectAttributes).tpm2b(p.authPolicy);
  writeSymDefObject(w, p.key.symmetric);
  writeScheme(w, p.key.scheme);
  if (p.key.type === TPM_ALG.RSA) {
    w.u16(p.key.keyBits).u32(p.key.exponent).tpm2b(p.key.modulus);
  } else {
    w.u16(p.key.curveID);
    writeScheme(w, p.key.kdf);
    w.tpm2b(p.key.x).tpm2b(p.key.y);
  }
  return w.finish();
}

export function serializeTpm2bPublic(p: Omit<TpmtPublic, "publicArea">): Uint8Array {
  return new ByteWriter().tpm2b(serializeTpmtPublic(p)).finish();
}

/** TPM Name of an object — Part 1 §16: nameAlg ‖ H_nameAlg(TPMT_PUBLIC). */
export function tpmName(p: TpmtPublic): Uint8Array {
  const info = hashAlgInfo(p.nameAlg);
  if (info === undefined) throw new ExecgateError("unsupported", `nameAlg 0x${p.nameAlg.toString(16)}`);
  const alg = new Uint8Array(2);
  new DataView(alg.buffer).setUint16(0, p.nameAlg, false);
  return concatBytes(alg, new Uint8Array(createHash(info.name).update(p.publicArea).digest()));
}

function b64url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
}

function leftPad(v: Uint8Array, size: number, what: string): Uint8Array {
  let i = 0;
  while (i < v.length - size && v[i] === 0) i++;
  const body = v.subarray(i);
  if (body.length > size) throw new ExecgateError("malformed", `${what} longer than the curve size`);
  const out = new Uint8Array(size);
  out.set(body, size - body.length);
  return out;
}

/** The public key as a node:crypto KeyObject, built from a JWK (RSA; ECC P-256 / P-384). */
export function tpmPublicKey(p: TpmtPublic): KeyObject {
  const k = p.key;
  let jwk: Record<string, string>;
  if (k.type === TPM_ALG.RSA) {
    if (k.modulus.length === 0 || k.modulus.length * 8 !== k.keyBits) {
      throw new ExecgateError(
        "malformed",
        `RSA modulus is ${k.modulus.length} bytes for keyBits ${k.keyBits}`,
      );
    }
    const e = k.exponent === 0 ? 65537 : k.exponent;
    const eb = new Uint8Array(4);
    new DataView(eb.buffer).setUint32(0, e, false);
    let i = 0;
    while (i < 3 && eb[i] === 0) i++;
    jwk = { kty: "RSA", n: b64url(k.modulus), e: b64url(eb.subarray(i)) };
  } else {
    const curve = ECC_CURVES.get(k.curveID);
    if (curve === undefined) throw new ExecgateError("unsupported", `ECC curve 0x${k.curveID.toString(16)}`);
    jwk = {
      kty: "EC",
      crv: curve.jwkCrv,
      x: b64url(leftPad(k.x, curve.size, "ECC x")),
      y: b64url(leftPad(k.y, curve.size, "ECC y")),
    };
  }
  try {
    return createPublicKey({ key: jwk, format: "jwk" });
  } catch (e) {
    // e.g. a point not on the curve
    throw new ExecgateError(
      "malformed",
      `TPMT_PUBLIC key rejected: ${asExecgateError(e).message}`,
      {},
      { cause: e },
    );
  }
}
