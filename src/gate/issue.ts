import type { Logger } from "pino";
import type { EvidenceState } from "../attest/evidence.js";
import { withDeadline } from "../core/deadline.js";
import type { DenialReason } from "../core/denial.js";
import { digest } from "../core/digest.js";
import { asExecgateError, ExecgateError } from "../core/errors.js";
import { type BackRef, type Entry, type EntryTime, encodeEntry, makeEntry } from "../lineage/entry.js";
import { leafHash } from "../lineage/hash.js";
import type { Lineage } from "../lineage/lineage.js";
import type { PeerIdentity } from "../peer/index.js";
import type { Grant } from "../policy/decide.js";
import { type TokenClaims, tokenIdFor } from "../token/claims.js";
import { signTokenWith, type TokenSigner } from "../token/signer.js";
import type { TokenRequestArgs } from "../wire/request.js";

/**
 * How long a token's signature may take before the request is denied: its lineage slot holds
 * back every later entry until it is in, and a signer that never answers would leave the
 * request without a reply.
 */
export const SIGNATURE_TIMEOUT_MS = 5_000;

/** A request the policy allowed, to be issued a token. */
export interface Allowed {
  readonly peer: PeerIdentity;
  readonly request: Entry;
  /** The request entry's reference when it is durable already (it waited for a fresh epoch). */
  readonly requestRef: BackRef | undefined;
  readonly evidence: EvidenceState;
  readonly claimsFor: (decisionIndex: number, decisionLeaf: Uint8Array) => TokenClaims;
}

export type IssueOutcome =
  | { readonly kind: "issued"; readonly claims: TokenClaims; readonly token: Uint8Array }
  | { readonly kind: "denied"; readonly reason: DenialReason }
  | { readonly kind: "lineage_down"; readonly error: unknown };

/**
 * The request entry's bytes, to append first at index `first` (unless it is durable already), and
 * the reference the decision names. Encoded once: the same bytes are hashed and written.
 */
export function requestPart(
  request: Entry,
  requestRef: BackRef | undefined,
  first: number,
): { readonly bytes?: Uint8Array; readonly ref: BackRef } {
  if (requestRef) return { ref: requestRef };
  const bytes = encodeEntry(request);
  return { bytes, ref: { index: first, leafHash: leafHash(bytes) } };
}

export function epochRef(ev: EvidenceState | undefined): BackRef[] {
  return ev?.entry ? [{ index: ev.entry.index, leafHash: ev.entry.leafHash }] : [];
}

/** A request's denial names the request and the epoch entry it was decided on, if any. */
export function denialEntry(
  time: EntryTime,
  reason: DenialReason,
  requestRef: BackRef,
  evidence: EvidenceState | undefined,
): Entry {
  return makeEntry("decision", time, { allow: false, reason }, [requestRef, ...epochRef(evidence)]);
}

/**
 * The one issuance path, whatever signs (docs/lineage.md, "A token's entries"): request, allow and
 * token_issued in one add — the token names the allow's index and leaf hash, so the token_issued
 * place is held until the signature is back — and the token is released by the caller only when
 * all of them are durable. A signature that fails or does not come within the timeout fills that
 * place with a denial naming the allow (the signer's failure reason). A signer that cannot sign at
 * all is known before deciding: the request's decision is then that denial, in place of the allow.
 */
export class TokenIssuer {
  constructor(
    private readonly o: {
      readonly lineage: Pick<Lineage, "add">;
      readonly signer: TokenSigner;
      readonly signatureTimeoutMs: number;
      readonly time: () => EntryTime;
      readonly log: Logger;
    },
  ) {}

  /** `waiting`: token requests in flight (the signer may move work off the event loop). */
  async issue(a: Allowed, waiting: number): Promise<IssueOutcome> {
    const { signer } = this.o;
    if (signer.unusable !== undefined)
      return this.notIssued(a, new ExecgateError("internal", signer.unusable));
    let claims: TokenClaims | undefined;
    let token: Uint8Array | undefined;
    let failure: DenialReason | undefined;
    const withdrawn = (decisionRef: BackRef, e: unknown): Uint8Array => {
      failure = signer.failure ?? "hardware_unavailable";
      this.o.log.error({ uid: a.peer.uid, err: asExecgateError(e).message }, "token_not_issued");
      return encodeEntry(denialEntry(this.o.time(), failure, decisionRef, undefined));
    };
    try {
      await this.o.lineage.add((first) => {
        // Each entry is encoded once: its leaf hash goes into the next entry's reference and the
        // same bytes go to the journal.
        const req = requestPart(a.request, a.requestRef, first);
        const head = req.bytes ? [req.bytes] : [];
        const allow = makeEntry("decision", this.o.time(), { allow: true }, [
          req.ref,
          ...epochRef(a.evidence),
        ]);
        const decisionBytes = encodeEntry(allow);
        const decisionRef = { index: first + head.length, leafHash: leafHash(decisionBytes) };
        const signed = (t: Uint8Array): Uint8Array => {
          try {
            const issued = encodeEntry(
              makeEntry("token_issued", this.o.time(), { digest: digest("sha256", t) }, [decisionRef]),
            );
            token = t;
            return issued;
          } catch (e) {
            return withdrawn(decisionRef, e);
          }
        };
        let last: Uint8Array | Promise<Uint8Array>;
        try {
          claims = a.claimsFor(decisionRef.index, decisionRef.leafHash);
          const t = signTokenWith(claims, signer, waiting);
          last =
            t instanceof Uint8Array
              ? signed(t)
              : this.bounded(t).then(signed, (e: unknown) => withdrawn(decisionRef, e));
        } catch (e) {
          last = withdrawn(decisionRef, e);
        }
        return [...head, decisionBytes, last];
      });
    } catch (error) {
      return { kind: "lineage_down", error };
    }
    if (failure !== undefined) return { kind: "denied", reason: failure };
    // Every path above sets a token or a failure; should neither hold, nothing is released.
    if (token === undefined || claims === undefined) return { kind: "denied", reason: "internal_error" };
    return { kind: "issued", claims, token };
  }

  /** A signature that has not come back within the timeout fails: its place holds back every later entry. */
  private bounded(signature: Promise<Uint8Array>): Promise<Uint8Array> {
    const ms = this.o.signatureTimeoutMs;
    return withDeadline(
      () => signature,
      ms,
      () => new ExecgateError("timeout", `no token signature within ${ms} ms`),
    );
  }

  /** No token can be made: the request is recorded with a denial (internal_error) in place of the allow. */
  private async notIssued(a: Allowed, e: unknown): Promise<IssueOutcome> {
    this.o.log.error({ uid: a.peer.uid, err: asExecgateError(e).message }, "token_not_issued");
    try {
      await this.o.lineage.add((first) => {
        const req = requestPart(a.request, a.requestRef, first);
        const denial = denialEntry(this.o.time(), "internal_error", req.ref, a.evidence);
        return req.bytes ? [req.bytes, denial] : [denial];
      });
    } catch (error) {
      return { kind: "lineage_down", error };
    }
    return { kind: "denied", reason: "internal_error" };
  }
}

/** What a token's claims are made of, but for the decision it names (known once it is encoded). */
export interface ClaimsInput {
  readonly issuer: string;
  readonly ueid: Uint8Array;
  readonly nowS: number;
  readonly grant: Grant;
  readonly args: TokenRequestArgs;
  readonly peer: PeerIdentity;
  /** The peer's executable digest as bytes. */
  readonly exe: Uint8Array;
  readonly evidence: EvidenceState;
  readonly policyDigest: Uint8Array;
}

/** The claims of a token naming the allow at `decisionIndex` with leaf hash `decisionLeaf`. */
export function tokenClaims(c: ClaimsInput, decisionIndex: number, decisionLeaf: Uint8Array): TokenClaims {
  const { grant, args, peer, evidence, nowS } = c;
  return {
    iss: c.issuer,
    sub: `uid:${peer.uid}`,
    aud: grant.audience,
    exp: nowS + grant.ttlS,
    nbf: nowS,
    iat: nowS,
    cti: tokenIdFor(decisionIndex, decisionLeaf),
    ...(args.nonce ? { nonce: args.nonce } : {}),
    ueid: c.ueid,
    scope: grant.scope,
    action: args.action,
    peer: {
      uid: peer.uid,
      gid: peer.gid,
      pid: peer.pid,
      exe: c.exe,
      ...(peer.unit ? { unit: peer.unit } : {}),
    },
    epoch: evidence.epochHash,
    pcrDigest: evidence.pcrDigest,
    policyDigest: c.policyDigest,
    bootId: evidence.bootId,
    lineage: [decisionIndex, decisionLeaf],
  };
}
