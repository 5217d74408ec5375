import { DEFAULTS } from "../config/defaults.js";
import { toHex } from "../core/hex.js";
import type { PeerIdentity } from "../peer/identify.js";
import type { AccessPolicy, Executor } from "./access-schema.js";

/** What access evaluation reads of the caller: the kernel's word only (src/peer). */
export type AccessPeer = Pick<PeerIdentity, "uid" | "gid" | "exe" | "exePathVerified" | "exeSha256" | "unit">;

/** The part of a token request access evaluation reads (a subset of TokenRequestArgs). */
export interface AccessRequest {
  readonly scope: string;
  /** SHA-256 of the action. */
  readonly action: Uint8Array;
  readonly audience?: string;
}

/** A scope as granted to one request: its settings and the audience the token will carry. */
export interface ScopeGrant {
  readonly name: string;
  readonly ttlS: number;
  readonly fresh: boolean;
  readonly audience: string;
}

export type AccessDecision =
  | { readonly ok: true; readonly executor: string; readonly scope: ScopeGrant }
  | {
      readonly ok: false;
      readonly reason: "peer_unknown" | "scope_not_allowed" | "policy_mismatch";
      readonly detail: string;
    };

/**
 * An executor matches a caller only if every attribute it names matches: the uid is listed
 * (when uids is non-empty), the primary gid is listed (when gids is non-empty), the
 * executable's SHA-256, the executable's path exactly as the kernel reports it (and only when
 * identification verified that path in the daemon's own mount namespace: a caller in another
 * one can bind-mount any binary over any path), and the system manager's unit. A user-manager
 * unit (userUnit) never matches `units`: any user can name a unit of their own like a system one.
 */
export function executorMatches(e: Executor, peer: AccessPeer): boolean {
  if (e.uids.length === 0 && e.gids.length === 0) return false; // the schema forbids it; fail closed anyway
  if (e.uids.length > 0 && !e.uids.includes(peer.uid)) return false;
  if (e.gids.length > 0 && !e.gids.includes(peer.gid)) return false;
  if (e.exeSha256 !== undefined && !e.exeSha256.includes(peer.exeSha256.toLowerCase())) return false;
  if (e.exePaths !== undefined && !(peer.exePathVerified && e.exePaths.includes(peer.exe))) return false;
  if (e.units !== undefined && (peer.unit === undefined || !e.units.includes(peer.unit))) return false;
  return true;
}

function describePeer(peer: AccessPeer): string {
  const path = peer.exePathVerified ? peer.exe : `${peer.exe} (path unverified)`;
  return `uid ${peer.uid} gid ${peer.gid} exe ${path} sha256 ${peer.exeSha256}${peer.unit ? ` unit ${peer.unit}` : ""}`;
}

/**
 * Pure: who the caller is (peer) and what it asks (request) against the executors and scopes.
 *   peer_unknown       no executor matches the caller
 *   scope_not_allowed  no matching executor grants the scope (or the scope does not exist)
 *   policy_mismatch    the scope is granted, but the audience or the action digest is not allowed
 * With several matching executors, the first in file order that grants the scope is reported.
 * `defaultAudience` is the daemon's token.audience: a request without an audience asks for it,
 * and a scope without `audiences` allows only it.
 */
export function evaluateAccess(
  policy: AccessPolicy,
  peer: AccessPeer,
  request: AccessRequest,
  defaultAudience: string = DEFAULTS.token.audience,
): AccessDecision {
  const matching = policy.executors.filter((e) => executorMatches(e, peer));
  if (matching.length === 0) {
    return { ok: false, reason: "peer_unknown", detail: `no executor matches ${describePeer(peer)}` };
  }
  const executor = matching.find((e) => e.scopes.includes(request.scope));
  const scope = policy.scopes.get(request.scope);
  if (executor === undefined || scope === undefined) {
    const names = matching.map((e) => e.name).join(", ");
    return {
      ok: false,
      reason: "scope_not_allowed",
      detail: `scope "${request.scope}" is not granted to executor(s) ${names}`,
    };
  }
  const audience = request.audience ?? defaultAudience;
  const audiences = scope.audiences ?? [defaultAudience];
  if (!audiences.includes(audience)) {
    return {
      ok: false,
      reason: "policy_mismatch",
      detail: `audience "${audience}" is not allowed in scope "${scope.name}"`,
    };
  }
  if (scope.actions !== undefined) {
    const action = request.action.length === 32 ? toHex(request.action) : undefined;
    if (action === undefined || !scope.actions.includes(action)) {
      return {
        ok: false,
        reason: "policy_mismatch",
        detail: `action ${toHex(request.action)} is not in the allowlist of scope "${scope.name}"`,
      };
    }
  }
  return {
    ok: true,
    executor: executor.name,
    scope: { name: scope.name, ttlS: scope.ttlS, fresh: scope.fresh, audience },
  };
}
