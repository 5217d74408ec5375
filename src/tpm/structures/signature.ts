import { constants as cryptoConstants, verify as cryptoVerify, type KeyObject } from "node:crypto";
import { Cursor } from "../../core/cursor.js";
import { ExecgateError } from "../../core/errors.js";
import { ByteWriter } from "../../core/writer.js";
import { hashAlgInfo, MAX_ECC_KEY_BYTES, MAX_RSA_KEY_BYTES, TPM_ALG } from "../constants.js";

// TPMS_SIGNATURE_RSA — TPM 2.0 Part 2 §11.3.1 (RSASSA, RSAPSS)
export interface TpmsSignatureRsa {
  readonly sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS;
  readonly hashAlg: number;
  readonly sig: Uint8Array;
}

// TPMS_SIGNATURE_ECC — Part 2 §11.3.2 (ECDSA)
export interface TpmsSignatureEcdsa {
  readonly sigAlg: typeof TPM_ALG.ECDSA;
  readonly hashAlg: number;
  readonly signatureR: Uint8Array;
  readonly signatureS: Uint8Array;
}

export interface TpmsSignatureNull {
  readonly sigAlg: typeof TPM_ALG.NULL;
}

// TPMT_SIGNATURE — Part 2 §11.3.4 (the members execgate verifies, plus NULL)
export type TpmtSignature = TpmsSignatureRsa | TpmsSignatureEcdsa | TpmsSignatureNull;

export function readSignature(c: Cursor): TpmtSignature {
  const sigAlg = c.u16("TPMT_SIGNATURE.sigAlg");
  switch (sigAlg) {
    case TPM_ALG.RSASSA:
    case TPM_ALG.RSAPSS: {
      const hashAlg = c.u16("TPMS_SIGNATURE_RSA.hash");
      const sig = c.tpm2b("TPMS_SIGNATURE_RSA.sig", MAX_RSA_KEY_BYTES);
      return { sigAlg, hashAlg, sig };
    }
    case TPM_ALG.ECDSA: {
      const hashAlg = c.u16("TPMS_SIGNATURE_ECC.hash");
      const signatureR = c.tpm2b("TPMS_SIGNATURE_ECC.signatureR", MAX_ECC_KEY_BYTES);
      const signatureS = c.tpm2b("TPMS_SIGNATURE_ECC.signatureS", MAX_ECC_KEY_BYTES);
      return { sigAlg, hashAlg, signatureR, signatureS };
    }
    case TPM_ALG.NULL:
      return { sigAlg };
    default:
      throw new ExecgateError(
        "unsupported",
        `TPMT_SIGNATURE.sigAlg 0x${sigAlg.toString(16)} is not supported`,
      );
  }
}

/** Parses TPMT_SIGNATURE bytes (as written by tpm2_quote -s / tpm2_certify -s), exactly. */
export function parseSignature(bytes: Uint8Array): TpmtSignature {
  const c = new Cursor(bytes);
  const s = readSignature(c);
  c.end("TPMT_SIGNATURE");
  return s;
}

export function writeSignature(w: ByteWriter, s: TpmtSignature): void {
  w.u16(s.sigAlg);
  if (s.sigAlg === TPM_ALG.NULL) return;
  if (s.sigAlg === TPM_ALG.ECDSA) {
    w.u16(s.hashAlg).tpm2b(s.signatureR).tpm2b(s.signatureS);
  } else {
    w.u16(s.hashAlg).tpm2b(s.sig);
  }
}

export function serializeSignature(s: TpmtSignature): Uint8Array {
  const w = new ByteWriter();
  writeSignature(w, s);
  return w.finish();
}

/** DER INTEGER body of an unsigned big-endian value: minimal, with a 0x00 if the high bit is set. */
function derUnsignedInteger(v: Uint8Array): Uint8Array {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  const body = v.subarray(i);
  const pad = body.length === 0 || (body[0] ?? 0) >= 0x80 ? 1 : 0;
  const out = new Uint8Array(2 + pad + Math.max(body.length, 1));
  out[0] = 0x02;
  out[1] = out.length - 2;
  out.set(body.length === 0 ? Uint8Array.of(0) : body, 2 + pad);
  return out;
}

/** ECDSA (r, s) as a DER Ecdsa-Sig-Value (SEC 1 / RFC 3279), what node:crypto verifies by default. */
export function ecdsaSignatureToDer(r: Uint8Array, s: Uint8Array): Uint8Array {
  const ri = derUnsignedInteger(r);
  const si = derUnsignedInteger(s);
  const len = ri.length + si.length; // ≤ 2 × (2 + 1 + 66) = 138: needs the long form past 127
  const header = len < 0x80 ? Uint8Array.of(0x30, len) : Uint8Array.of(0x30, 0x81, len);
  const out = new Uint8Array(header.length + len);
  out.set(header, 0);
  out.set(ri, header.length);
  out.set(si, header.length + ri.length);
  return out;
}

/** ECDSA (r, s) as IEEE P1363 r‖s, each left-padded to the curve size (node `dsaEncoding: "ieee-p1363"`). */
export function ecdsaSignatureToP1363(r: Uint8Array, s: Uint8Array, size: number): Uint8Array {
  const strip = (v: Uint8Array): Uint8Array => {
    let i = 0;
    while (i < v.length && v[i] === 0) i++;
    return v.subarray(i);
  };
  const rs = strip(r);
  const ss = strip(s);
  if (rs.length > size || ss.length > size)
    throw new ExecgateError("malformed", "ECDSA r or s longer than the curve");
  const out = new Uint8Array(2 * size);
  out.set(rs, size - rs.length);
  out.set(ss, 2 * size - ss.length);
  return out;
}

/** What `crypto.verify` needs for a TPMT_SIGNATURE: hash name, key options, signature bytes. */
export interface NodeVerifyParams {
  readonly algorithm: "sha1" | "sha256" | "sha384" | "sha512";
  readonly keyType: "ec" | "rsa";
  readonly padding?: number;
  readonly saltLength?: number;
  readonly signature: Uint8Array;
}

export function nodeVerifyParams(s: TpmtSignature): NodeVerifyParams {
  if (s.sigAlg === TPM_ALG.NULL)
    throw new ExecgateError("unsupported", "TPM_ALG_NULL signature cannot be verified");
  const hash = hashAlgInfo(s.hashAlg);
  if (hash === undefined)
    throw new ExecgateError("unsupported", `signature hash 0x${s.hashAlg.toString(16)}`);
  if (s.sigAlg === TPM_ALG.ECDSA) {
    return {
      algorithm: hash.name,
      keyType: "ec",
      signature: ecdsaSignatureToDer(s.signatureR, s.signatureS),
    };
  }
  if (s.sigAlg === TPM_ALG.RSAPSS) {
    // TPMs use saltLength = digest size (Part 1 §B.7) but some use the maximum; AUTO accepts both.
    return {
      algorithm: hash.name,
      keyType: "rsa",
      padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
      saltLength: cryptoConstants.RSA_PSS_SALTLEN_AUTO,
      signature: s.sig,
    };
  }
  return {
    algorithm: hash.name,
    keyType: "rsa",
    padding: cryptoConstants.RSA_PKCS1_PADDING,
    signature: s.sig,
  };
}

/**
 * Verifies a TPMT_SIGNATURE over `data` with `key`. Returns false for any mismatch (wrong key,
 * wrong key type for the scheme, bad signature); throws `unsupported` for schemes it cannot check.
 */
export function verifyTpmSignature(s: TpmtSignature, key: KeyObject, data: Uint8Array): boolean {
  const p = nodeVerifyParams(s);
  if (key.type !== "public" || key.asymmetricKeyType !== p.keyType) return false;
  const opts: { key: KeyObject; padding?: number; saltLength?: number } = { key };
  if (p.padding !== undefined) opts.padding = p.padding;
  if (p.saltLength !== undefined) opts.saltLength = p.saltLength;
  try {
    return cryptoVerify(p.algorithm, data, opts, p.signature);
  } catch {
    // OpenSSL rejects some malformed signatures (e.g. wrong RSA length) by throwing: that is a "no".
    return false;
  }
}
