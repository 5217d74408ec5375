import { type KeyObject, X509Certificate } from "node:crypto";
import { asExecgateError, ExecgateError } from "../core/errors.js";

/*
 * EK certificate chain walk. Node has X509Certificate (checkIssued, verify, validity fields)
 * but no path validation, so the walk is here: from the EK certificate, issuer by issuer,
 * each link checked with checkIssued (names / key identifiers) and verify(issuer key), each
 * certificate valid at `now`, every issuer a CA, until a certificate of the trust bundle is
 * reached. Depth is bounded. Pure: time is passed in, certificates are passed in as bytes/text.
 */

/** Longest chain accepted: EK + intermediates + anchor. Real TPM vendor chains have 2–4. */
export const MAX_EK_CHAIN_DEPTH = 8;
/** Certificates accepted from a bundle or an intermediate list. */
export const MAX_BUNDLE_CERTS = 256;
const MAX_PEM_TEXT = 4 * 1024 * 1024;
/** Issuer candidates examined per walk, so a hostile bundle cannot make the search explode. */
const MAX_LINK_CHECKS = 4096;

export interface EkChainInput {
  /** The EK certificate: DER bytes (as read from NV, trailing padding allowed) or PEM text. */
  readonly ekCert: Uint8Array | string;
  /** Trust anchors: PEM text with one or more certificates. */
  readonly trustBundlePem: string;
  /** Untrusted intermediates (DER or PEM each, or one PEM text with several). */
  readonly intermediates?: readonly (Uint8Array | string)[];
  /** Validity instant for every certificate in the chain. */
  readonly now: Date;
  readonly maxDepth?: number;
}

export type EkChainResult =
  | {
      readonly ok: true;
      readonly ekPublicKey: KeyObject;
      /** EK first, trust anchor last. */
      readonly chain: readonly X509Certificate[];
    }
  | { readonly ok: false; readonly check: "malformed" | "chain"; readonly detail: string };

const PEM_RE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** All certificates in a PEM text. */
export function parsePemBundle(text: string): X509Certificate[] {
  if (text.length > MAX_PEM_TEXT) throw new ExecgateError("limit_exceeded", "PEM bundle too large");
  const blocks = text.match(PEM_RE) ?? [];
  if (blocks.length > MAX_BUNDLE_CERTS)
    throw new ExecgateError("limit_exceeded", "too many certificates in bundle");
  return blocks.map((b) => toCert(b));
}

/**
 * Length of the DER SEQUENCE at the start of `der` (header + content), so NV padding after a
 * certificate can be cut off. Throws `malformed` if it does not start with a definite-length SEQUENCE.
 */
export function derSequenceLength(der: Uint8Array): number {
  if (der.length < 2 || der[0] !== 0x30)
    throw new ExecgateError("malformed", "certificate is not a DER SEQUENCE");
  const first = der[1] ?? 0;
  if (first < 0x80) return 2 + first;
  const n = first & 0x7f;
  if (n === 0 || n > 4 || der.length < 2 + n) throw new ExecgateError("malformed", "bad DER length");
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + (der[2 + i] ?? 0);
  const total = 2 + n + len;
  if (total > der.length) throw new ExecgateError("truncated", "DER certificate truncated");
  return total;
}

function toCert(input: Uint8Array | string): X509Certificate {
  try {
    if (typeof input === "string") return new X509Certificate(input);
    const der = input.subarray(0, derSequenceLength(input));
    return new X509Certificate(Buffer.from(der.buffer, der.byteOffset, der.byteLength));
  } catch (e) {
    if (e instanceof ExecgateError) throw e;
    throw new ExecgateError("malformed", `certificate: ${asExecgateError(e).message}`, {}, { cause: e });
  }
}

/** The public key an EK certificate (DER, NV padding allowed) certifies; throws `malformed`. */
export function ekCertificateKey(der: Uint8Array): KeyObject {
  return toCert(der).publicKey;
}

function certsOf(list: readonly (Uint8Array | string)[]): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const item of list) {
    if (typeof item === "string" && item.includes("-----BEGIN")) out.push(...parsePemBundle(item));
    else out.push(toCert(item));
    if (out.length > MAX_BUNDLE_CERTS) throw new ExecgateError("limit_exceeded", "too many intermediates");
  }
  return out;
}

function validAt(c: X509Certificate, now: Date): boolean {
  const t = now.getTime();
  return Date.parse(c.validFrom) <= t && t <= Date.parse(c.validTo);
}

function issues(issuer: X509Certificate, child: X509Certificate): boolean {
  if (!issuer.ca || !child.checkIssued(issuer)) return false;
  try {
    return child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/**
 * Verifies that `ekCert` chains to a certificate in `trustBundlePem` and returns the EK public
 * key. Any certificate of the bundle is an anchor (the bundle is what the operator trusts);
 * intermediates come from the bundle or `intermediates`. Never throws.
 */
export function verifyEkChain(input: EkChainInput): EkChainResult {
  let leaf: X509Certificate;
  let anchors: X509Certificate[];
  let pool: X509Certificate[];
  try {
    leaf = toCert(input.ekCert);
    anchors = parsePemBundle(input.trustBundlePem);
    pool = certsOf(input.intermediates ?? []);
  } catch (e) {
    return { ok: false, check: "malformed", detail: asExecgateError(e).message };
  }
  if (anchors.length === 0) return { ok: false, check: "chain", detail: "trust bundle has no certificates" };
  if (Number.isNaN(input.now.getTime())) return { ok: false, check: "malformed", detail: "invalid time" };
  const maxDepth = Math.min(input.maxDepth ?? MAX_EK_CHAIN_DEPTH, MAX_EK_CHAIN_DEPTH);
  if (!validAt(leaf, input.now)) {
    return { ok: false, check: "chain", detail: `EK certificate not valid at ${input.now.toISOString()}` };
  }
  const isAnchor = (c: X509Certificate): boolean => anchors.some((a) => a.raw.equals(c.raw));
  if (isAnchor(leaf)) return { ok: true, ekPublicKey: leaf.publicKey, chain: [leaf] };
  const candidates = [...anchors, ...pool];
  const reasons: string[] = [];
  let checks = 0;

  // Depth-first over issuer candidates; anchors are tried first at every step.
  const walk = (path: X509Certificate[]): X509Certificate[] | undefined => {
    const cur = path[path.length - 1];
    if (cur === undefined) return undefined;
    if (path.length >= maxDepth) {
      reasons.push(`depth limit ${maxDepth} at "${cur.subject}"`);
      return undefined;
    }
    for (const cand of candidates) {
      if (path.some((p) => p.raw.equals(cand.raw))) continue;
      if (++checks > MAX_LINK_CHECKS) {
        reasons.push("search budget exhausted");
        return undefined;
      }
      if (!issues(cand, cur)) continue;
      if (!validAt(cand, input.now)) {
        reasons.push(`issuer "${cand.subject}" not valid at ${input.now.toISOString()}`);
        continue;
      }
      if (isAnchor(cand)) return [...path, cand];
      const found = walk([...path, cand]);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  const chain = walk([leaf]);
  if (chain === undefined) {
    const why = reasons.length > 0 ? reasons.join("; ") : `no issuer found for "${leaf.issuer}"`;
    return { ok: false, check: "chain", detail: `EK certificate does not chain to the trust bundle: ${why}` };
  }
  return { ok: true, ekPublicKey: leaf.publicKey, chain };
}
