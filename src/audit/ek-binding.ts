import type { KeyObject } from "node:crypto";
import { asExecgateError } from "../core/errors.js";
import { lineageOrigin, ueidOfEk, ueidOfKey } from "../token/ueid.js";
import { ekCertificateKey, verifyEkChain } from "../tpm/ek-chain.js";
import { parseTpm2bPublic, tpmPublicKey } from "../tpm/structures/public.js";
import type { AuditFailure } from "./verify.js";

/*
 * EK certificate ↔ ek.pub ↔ host identity (pure). Every EK certificate in the bundle must
 * certify ek.pub and chain to the auditor's anchors — one good certificate beside a swapped one
 * is not enough — and the host identity tokens carry (ueid) and the log is named after (origin)
 * is derived from ek.pub (hostUeid), so the caller can hold the log to it. Check order: ek.pub
 * parses; then per certificate (in file-name order) its key, then its chain.
 */
export interface EkBindingInput {
  /** enrollment/ek.pub (TPM2B_PUBLIC). */
  readonly ekPublic?: Uint8Array;
  /** enrollment/ek-cert-*.der, named by file for the report. */
  readonly ekCertificates: readonly { readonly name: string; readonly der: Uint8Array }[];
  readonly trustPem?: string;
  readonly intermediatesPem?: readonly string[];
  readonly now: Date;
}

export function auditEkBinding(input: EkBindingInput): AuditFailure[] {
  const failures: AuditFailure[] = [];
  const fail = (check: string, reason: string) => failures.push({ check, reason });
  let ekKey: KeyObject | undefined;
  if (input.ekPublic === undefined) fail("ek", "no enrollment/ek.pub in the bundle");
  else
    try {
      ekKey = tpmPublicKey(parseTpm2bPublic(input.ekPublic));
    } catch (e) {
      fail("ek", `enrollment/ek.pub: ${asExecgateError(e).message}`);
    }

  if (input.ekCertificates.length === 0) fail("ek_chain", "no EK certificate in the bundle");
  else if (input.trustPem === undefined)
    fail("ek_chain", "no trust anchors given (--trust CA.pem): the EK cannot be checked");
  for (const { name, der } of input.ekCertificates) {
    let certified: KeyObject;
    try {
      certified = ekCertificateKey(der);
    } catch (e) {
      fail("ek_chain", `${name}: ${asExecgateError(e).message}`);
      continue;
    }
    if (ekKey && !certified.equals(ekKey)) fail("ek_cert_key", `${name} certifies another key than ek.pub`);
    if (input.trustPem === undefined) continue;
    const r = verifyEkChain({
      ekCert: der,
      trustBundlePem: input.trustPem,
      ...(input.intermediatesPem ? { intermediates: input.intermediatesPem } : {}),
      now: input.now,
    });
    if (!r.ok) fail("ek_chain", `${name}: ${r.detail}`);
  }
  return failures;
}

/**
 * The log's origin names the host (lineageOrigin of its ueid), and every checkpoint signs it: a
 * bundle whose enrollment names another host fails here even when no token was redeemed.
 */
export function originFailure(ueid: Uint8Array, origin: string): AuditFailure | undefined {
  const expected = lineageOrigin(ueid);
  return origin === expected
    ? undefined
    : { check: "host_origin", reason: `the log's origin is ${origin}; the enrolled host's is ${expected}` };
}

/**
 * The host's ueid as the daemon derives it: from ek.pub when the bundle has a TPM enrollment
 * (its chain is audited separately), else from the HSM root key.
 */
export function hostUeid(
  ekPublic: Uint8Array | undefined,
  hsmKey: KeyObject | undefined,
): Uint8Array | undefined {
  if (ekPublic !== undefined)
    try {
      return ueidOfEk(parseTpm2bPublic(ekPublic));
    } catch {
      // auditEkBinding reports it; the HSM key may still name the host
    }
  return hsmKey && ueidOfKey(hsmKey);
}
