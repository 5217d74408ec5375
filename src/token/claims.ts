import type { CborValue } from "../cbor/index.js";
import { ExecgateError } from "../core/errors.js";

/*
 * Execution token claims: CWT (RFC 8392 §3.1, §4) and EAT (RFC 9711 §4) registered claims by
 * their integer keys, plus execgate's private claims under text keys (docs/protocol.md, CDDL).
 * Times are NumericDate: integer seconds since the epoch.
 */
export const CWT = { iss: 1, sub: 2, aud: 3, exp: 4, nbf: 5, iat: 6, cti: 7 } as const;
export const EAT = { nonce: 10, ueid: 256 } as const;
export const PRIVATE = {
  scope: "scope",
  action: "act",
  peer: "peer",
  epoch: "epoch",
  pcrDigest: "pcrd",
  policyDigest: "pold",
  bootId: "boot",
  lineage: "lin",
} as const;

export interface PeerClaim {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** SHA-256 of the caller's executable. */
  readonly exe: Uint8Array;
  readonly unit?: string;
}

export interface TokenClaims {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string;
  readonly exp: number;
  readonly nbf: number;
  readonly iat: number;
  /** Token id: the allow decision's lineage index (8 bytes) ‖ its leaf hash's first 8 bytes (tokenIdFor). */
  readonly cti: Uint8Array;
  readonly nonce?: Uint8Array;
  readonly ueid: Uint8Array;
  readonly scope: string;
  /** SHA-256 of the action (the argv, or a digest the executor computed). */
  readonly action: Uint8Array;
  readonly peer: PeerClaim;
  /**
   * SHA-256 of the binding of the epoch current at issue (not of the whole epoch record): the
   * epoch id, which the quote carries as qualifyingData (docs/lineage.md).
   */
  readonly epoch: Uint8Array;
  readonly pcrDigest: Uint8Array;
  readonly policyDigest: Uint8Array;
  readonly bootId: string;
  /** The lineage entry of the allow decision: [index, leaf hash]. */
  readonly lineage: readonly [number, Uint8Array];
}

/**
 * The token id (cti) of the token issued under the allow decision at lineage `decisionIndex`: that
 * index (u64 BE) ‖ the first 8 bytes of the decision's leaf hash. A lineage index is never reused,
 * so ids stay unique for the life of the log across restarts; the leaf bytes set apart two hosts'
 * logs and an index a crash cut off before its token was released.
 */
export function tokenIdFor(decisionIndex: number, decisionLeaf: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(decisionIndex) || decisionIndex < 0 || decisionLeaf.length !== 32)
    throw new ExecgateError("internal", "token id: decision index or leaf hash out of range");
  const cti = new Uint8Array(16);
  new DataView(cti.buffer).setBigUint64(0, BigInt(decisionIndex));
  cti.set(decisionLeaf.subarray(0, 8), 8);
  return cti;
}

export function claimsToCbor(c: TokenClaims): Map<number | string, CborValue> {
  const m = new Map<number | string, CborValue>([
    [CWT.iss, c.iss],
    [CWT.sub, c.sub],
    [CWT.aud, c.aud],
    [CWT.exp, c.exp],
    [CWT.nbf, c.nbf],
    [CWT.iat, c.iat],
    [CWT.cti, c.cti],
    [EAT.ueid, c.ueid],
    [PRIVATE.scope, c.scope],
    [PRIVATE.action, c.action],
    [
      PRIVATE.peer,
      new Map<string, CborValue>([
        ["uid", c.peer.uid],
        ["gid", c.peer.gid],
        ["pid", c.peer.pid],
        ["exe", c.peer.exe],
        ...(c.peer.unit !== undefined ? ([["unit", c.peer.unit]] as const) : []),
      ]),
    ],
    [PRIVATE.epoch, c.epoch],
    [PRIVATE.pcrDigest, c.pcrDigest],
    [PRIVATE.policyDigest, c.policyDigest],
    [PRIVATE.bootId, c.bootId],
    [PRIVATE.lineage, [c.lineage[0], c.lineage[1]]],
  ]);
  if (c.nonce !== undefined) m.set(EAT.nonce, c.nonce);
  return m;
}

const KNOWN_KEYS = new Set<unknown>([
  ...Object.values(CWT),
  ...Object.values(EAT),
  ...Object.values(PRIVATE),
]);

function bad(msg: string): ExecgateError {
  return new ExecgateError("malformed", `token claims: ${msg}`);
}

function text(m: ReadonlyMap<unknown, CborValue>, k: unknown, max = 256): string {
  const v = m.get(k);
  if (typeof v !== "string" || v.length === 0 || v.length > max) throw bad(`claim ${String(k)} must be text`);
  return v;
}

function uint(m: ReadonlyMap<unknown, CborValue>, k: unknown): number {
  const v = m.get(k);
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw bad(`claim ${String(k)} must be an unsigned integer`);
  return v;
}

function bytes(m: ReadonlyMap<unknown, CborValue>, k: unknown, sizes: readonly number[]): Uint8Array {
  const v = m.get(k);
  if (!(v instanceof Uint8Array) || !sizes.includes(v.length)) {
    throw bad(`claim ${String(k)} must be ${sizes.join(" or ")} bytes`);
  }
  return v;
}

/** Strict reading: every required claim present with its type and size, no unknown claims. */
export function claimsFromCbor(v: CborValue): TokenClaims {
  if (!(v instanceof Map)) throw bad("payload is not a map");
  const m = v as ReadonlyMap<unknown, CborValue>;
  for (const k of m.keys()) if (!KNOWN_KEYS.has(k)) throw bad(`unknown claim ${String(k)}`);
  const peerV = m.get(PRIVATE.peer);
  if (!(peerV instanceof Map)) throw bad("peer must be a map");
  const pm = peerV as ReadonlyMap<unknown, CborValue>;
  for (const k of pm.keys())
    if (!["uid", "gid", "pid", "exe", "unit"].includes(k as string))
      throw bad(`unknown peer field ${String(k)}`);
  const lin = m.get(PRIVATE.lineage);
  if (!Array.isArray(lin) || lin.length !== 2) throw bad("lin must be [index, leaf hash]");
  const [linIndex, linHash] = lin as readonly CborValue[];
  if (typeof linIndex !== "number" || !Number.isSafeInteger(linIndex) || linIndex < 0) throw bad("lin index");
  if (!(linHash instanceof Uint8Array) || linHash.length !== 32) throw bad("lin leaf hash");
  const unit = pm.get("unit");
  if (unit !== undefined && typeof unit !== "string") throw bad("peer unit must be text");
  const nonce = m.get(EAT.nonce);
  if (nonce !== undefined && (!(nonce instanceof Uint8Array) || nonce.length < 8 || nonce.length > 64)) {
    throw bad("eat_nonce must be 8..64 bytes");
  }
  return {
    iss: text(m, CWT.iss),
    sub: text(m, CWT.sub),
    aud: text(m, CWT.aud),
    exp: uint(m, CWT.exp),
    nbf: uint(m, CWT.nbf),
    iat: uint(m, CWT.iat),
    cti: bytes(m, CWT.cti, [16]),
    ...(nonce instanceof Uint8Array ? { nonce } : {}),
    ueid: bytes(m, EAT.ueid, [33]),
    scope: text(m, PRIVATE.scope, 128),
    action: bytes(m, PRIVATE.action, [32]),
    peer: {
      uid: uint(pm, "uid"),
      gid: uint(pm, "gid"),
      pid: uint(pm, "pid"),
      exe: bytes(pm, "exe", [32]),
      ...(typeof unit === "string" ? { unit } : {}),
    },
    epoch: bytes(m, PRIVATE.epoch, [32]),
    pcrDigest: bytes(m, PRIVATE.pcrDigest, [32]),
    policyDigest: bytes(m, PRIVATE.policyDigest, [32]),
    bootId: text(m, PRIVATE.bootId, 64),
    lineage: [linIndex, linHash],
  };
}
