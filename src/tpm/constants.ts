/**
 * The one table of TPM 2.0 constants execgate uses. Values from TPM 2.0 Library Part 2
 * (Structures), rev 1.59: §6.2 TPM_GENERATED, §6.3 TPM_ALG_ID, §6.4 TPM_ECC_CURVE,
 * §6.9 TPM_ST, §8.3 TPMA_OBJECT. Node hash names are those `crypto.createHash` accepts.
 */

// TPM_GENERATED — Part 2 §6.2: "\xffTCG", the first four bytes of every TPMS_ATTEST.
export const TPM_GENERATED_VALUE = 0xff544347;

// TPM_ST — Part 2 §6.9 (the TPMI_ST_ATTEST subset)
export const TPM_ST = {
  ATTEST_NV: 0x8014,
  ATTEST_COMMAND_AUDIT: 0x8015,
  ATTEST_SESSION_AUDIT: 0x8016,
  ATTEST_CERTIFY: 0x8017,
  ATTEST_QUOTE: 0x8018,
  ATTEST_TIME: 0x8019,
  ATTEST_CREATION: 0x801a,
  ATTEST_NV_DIGEST: 0x801c,
} as const;

export const TPM_ST_ATTEST_QUOTE = TPM_ST.ATTEST_QUOTE;
export const TPM_ST_ATTEST_CERTIFY = TPM_ST.ATTEST_CERTIFY;

// TPM_ALG_ID — Part 2 §6.3 (TCG Algorithm Registry)
export const TPM_ALG = {
  ERROR: 0x0000,
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  KEYEDHASH: 0x0008,
  XOR: 0x000a,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  SM3_256: 0x0012,
  SM4: 0x0013,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  SM2: 0x001b,
  ECSCHNORR: 0x001c,
  KDF1_SP800_56A: 0x0020,
  KDF2: 0x0021,
  KDF1_SP800_108: 0x0022,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CAMELLIA: 0x0026,
  CTR: 0x0040,
  OFB: 0x0041,
  CBC: 0x0042,
  CFB: 0x0043,
  ECB: 0x0044,
} as const;

// TPM_ECC_CURVE — Part 2 §6.4
export const TPM_ECC_CURVE = {
  NIST_P192: 0x0001,
  NIST_P224: 0x0002,
  NIST_P256: 0x0003,
  NIST_P384: 0x0004,
  NIST_P521: 0x0005,
} as const;

export const TPM_ECC_NIST_P256 = TPM_ECC_CURVE.NIST_P256;
export const TPM_ECC_NIST_P384 = TPM_ECC_CURVE.NIST_P384;

// TPMA_OBJECT — Part 2 §8.3.2 (bit positions)
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
  x509sign: 1 << 19,
} as const;

export type TpmaObjectFlag = keyof typeof TPMA_OBJECT;

/** The TPMA_OBJECT flags set in `attributes`, by spec name. */
export function tpmaObjectFlags(attributes: number): TpmaObjectFlag[] {
  const out: TpmaObjectFlag[] = [];
  for (const [name, bit] of Object.entries(TPMA_OBJECT) as [TpmaObjectFlag, number][]) {
    if ((attributes & bit) !== 0) out.push(name);
  }
  return out;
}

export function hasTpmaObject(attributes: number, flag: TpmaObjectFlag): boolean {
  return (attributes & TPMA_OBJECT[flag]) !== 0;
}

export interface HashAlgInfo {
  readonly alg: number;
  /** tpm2-tools bank name and node:crypto hash name (they coincide for these four). */
  readonly name: "sha1" | "sha256" | "sha384" | "sha512";
  readonly digestSize: number;
}

/** The hash algorithms execgate accepts (TPMI_ALG_HASH subset), with digest sizes (Part 2 §10.1). */
export const HASH_ALGS: ReadonlyMap<number, HashAlgInfo> = new Map<number, HashAlgInfo>([
  [TPM_ALG.SHA1, { alg: TPM_ALG.SHA1, name: "sha1", digestSize: 20 }],
  [TPM_ALG.SHA256, { alg: TPM_ALG.SHA256, name: "sha256", digestSize: 32 }],
  [TPM_ALG.SHA384, { alg: TPM_ALG.SHA384, name: "sha384", digestSize: 48 }],
  [TPM_ALG.SHA512, { alg: TPM_ALG.SHA512, name: "sha512", digestSize: 64 }],
]);

export function hashAlgInfo(alg: number): HashAlgInfo | undefined {
  return HASH_ALGS.get(alg);
}

export function hashAlgByName(name: string): HashAlgInfo | undefined {
  for (const info of HASH_ALGS.values()) if (info.name === name) return info;
  return undefined;
}

export interface EccCurveInfo {
  readonly curve: number;
  /** JWK `crv` and node `namedCurve` alias. */
  readonly jwkCrv: "P-256" | "P-384";
  readonly nodeCurve: "prime256v1" | "secp384r1";
  /** Size in bytes of a coordinate / scalar. */
  readonly size: number;
}

export const ECC_CURVES: ReadonlyMap<number, EccCurveInfo> = new Map<number, EccCurveInfo>([
  [
    TPM_ECC_CURVE.NIST_P256,
    { curve: TPM_ECC_CURVE.NIST_P256, jwkCrv: "P-256", nodeCurve: "prime256v1", size: 32 },
  ],
  [
    TPM_ECC_CURVE.NIST_P384,
    { curve: TPM_ECC_CURVE.NIST_P384, jwkCrv: "P-384", nodeCurve: "secp384r1", size: 48 },
  ],
]);

// Size bounds (Part 2 §10 buffer sizes for an implementation with SHA-512 and RSA-4096 / P-521).
/** sizeof(TPMU_HA): the largest digest. TPM2B_DIGEST.size ≤ this. */
export const MAX_DIGEST_BUFFER = 64;
/** sizeof(TPMT_HA) = 2 + 64: TPM2B_DATA and TPM2B_NAME buffers. */
export const MAX_DATA_BUFFER = 66;
export const MAX_NAME_BUFFER = 66;
/** MAX_RSA_KEY_BYTES for RSA-4096: TPM2B_PUBLIC_KEY_RSA. */
export const MAX_RSA_KEY_BYTES = 512;
/** MAX_ECC_KEY_BYTES for P-521: TPM2B_ECC_PARAMETER. */
export const MAX_ECC_KEY_BYTES = 66;
/** TPM2B_PUBLIC.size: bounded by sizeof(TPMT_PUBLIC) of the largest key we accept. */
export const MAX_PUBLIC_AREA = 1024;
/** TPM2_NUM_PCR_BANKS (TSS): TPML_PCR_SELECTION.count ≤ this. */
export const MAX_PCR_BANKS = 16;
/** PCR_SELECT_MAX (TSS, 32 PCRs): TPMS_PCR_SELECTION.sizeofSelect ≤ this. */
export const MAX_PCR_SELECT = 4;
/** PCR_SELECT_MIN for a PC Client TPM with 24 PCRs: what tpm2-tools writes. */
export const PCR_SELECT_MIN = 3;
