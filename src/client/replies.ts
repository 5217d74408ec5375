import { type CborKey, type CborValue, decode } from "../cbor/index.js";
import { type DenialReason, isDenialReason } from "../core/denial.js";
import { type ErrorCode, ExecgateError } from "../core/errors.js";
import { MAX_TOKEN_BYTES, PROTOCOL_VERSION } from "../wire/request.js";

/*
 * Reading daemon replies (docs/protocol.md): pure, no I/O. A reply frame is one CBOR map
 *   { "v": 1, "id": uint, "ok": true, "result": { ... } }
 *   { "v": 1, "id": uint, "ok": false, "error": text, ? "reason": DenialReason }
 * Result maps are read by name; keys a v1 client does not know are ignored, so the daemon can
 * add fields within v1 (requests, by contrast, are closed: the daemon rejects unknown fields).
 */

const REPLY_LIMITS = { maxDepth: 16, maxItems: 4096, maxLength: 64 * 1024 } as const;

/*
 * busy is transient (the daemon is at its connection or queue limit): an I/O-class failure, exit 3.
 * bad_request means the client and daemon disagree on the schema; unsupported_version and
 * unknown_op that they speak different protocols.
 */
const REPLY_ERROR_CODES: Readonly<Record<string, ErrorCode>> = {
  bad_request: "malformed",
  unsupported_version: "unsupported",
  unknown_op: "unsupported",
  busy: "io_error",
  internal: "internal",
};

/** The daemon said no. `reason` is from the closed set in src/core/denial.ts. */
export class ExecgateDenied extends ExecgateError {
  readonly reason: DenialReason;

  constructor(reason: DenialReason, detail: Record<string, unknown> = {}) {
    super("verification_failed", `denied: ${reason}`, { reason, ...detail });
    this.name = "ExecgateDenied";
    this.reason = reason;
  }
}

/** The daemon refused a request for a reason other than a denial (bad_request, busy, …). */
export class ExecgateReplyError extends ExecgateError {
  readonly replyError: string;

  constructor(replyError: string, reason?: DenialReason) {
    super(REPLY_ERROR_CODES[replyError] ?? "internal", `daemon replied ${replyError}`, {
      replyError,
      ...(reason !== undefined ? { reason } : {}),
    });
    this.name = "ExecgateReplyError";
    this.replyError = replyError;
  }
}

export type Reply =
  | { readonly id: number; readonly ok: true; readonly result: ReadonlyMap<CborKey, CborValue> }
  | { readonly id: number; readonly ok: false; readonly error: ExecgateError };

function bad(msg: string): ExecgateError {
  return new ExecgateError("malformed", `reply: ${msg}`);
}

/**
 * Parses one reply frame. Throws ExecgateError("malformed" / "unsupported") if the frame is not a
 * v1 reply at all (the connection is then unusable); a well-formed error reply is returned as a
 * value carrying ExecgateDenied or ExecgateReplyError.
 */
export function parseReply(frame: Uint8Array): Reply {
  const v = decode(frame, REPLY_LIMITS);
  if (!(v instanceof Map)) throw bad("not a map");
  const m = v as ReadonlyMap<CborKey, CborValue>;
  const id = m.get("id");
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || id > 0xffffffff) throw bad("bad id");
  if (m.get("v") !== PROTOCOL_VERSION)
    throw new ExecgateError("unsupported", `reply protocol version ${String(m.get("v"))}`);
  const ok = m.get("ok");
  if (ok === true) {
    const result = m.get("result") ?? new Map<CborKey, CborValue>();
    if (!(result instanceof Map)) throw bad("result is not a map");
    return { id, ok: true, result: result as ReadonlyMap<CborKey, CborValue> };
  }
  if (ok !== false) throw bad("ok is not a boolean");
  const error = m.get("error");
  if (typeof error !== "string" || error.length === 0 || error.length > 64) throw bad("bad error code");
  if (error === "denied") {
    const reason = m.get("reason");
    // Fail closed on a reason this client does not know (a newer daemon may add reasons): still a denial.
    if (isDenialReason(reason)) return { id, ok: false, error: new ExecgateDenied(reason) };
    return {
      id,
      ok: false,
      error: new ExecgateDenied("internal_error", {
        unknownReason: typeof reason === "string" ? reason : null,
      }),
    };
  }
  const reason = m.get("reason");
  return { id, ok: false, error: new ExecgateReplyError(error, isDenialReason(reason) ? reason : undefined) };
}

type Result = ReadonlyMap<CborKey, CborValue>;

function bytesField(r: Result, k: string, min: number, max: number, op: string): Uint8Array {
  const v = r.get(k);
  if (!(v instanceof Uint8Array) || v.length < min || v.length > max)
    throw bad(`${op}: ${k} must be ${min}..${max} bytes`);
  return v;
}

function textField(r: Result, k: string, max: number, op: string): string {
  const v = r.get(k);
  if (typeof v !== "string" || v.length === 0 || v.length > max) throw bad(`${op}: ${k} must be text`);
  return v;
}

function uintField(r: Result, k: string, op: string): number {
  const v = r.get(k);
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw bad(`${op}: ${k} must be a uint`);
  return v;
}

export interface IssuedToken {
  /** The COSE_Sign1 token bytes (tag 18). */
  readonly token: Uint8Array;
  /** The token's cti: its allow decision's lineage index (8 bytes) ‖ that entry's leaf hash prefix (8 bytes). */
  readonly tokenId: Uint8Array;
  /** Expiry, NumericDate (seconds since the epoch). */
  readonly expiresAt: number;
}

export interface RedeemedToken {
  readonly tokenId: Uint8Array;
  readonly scope: string;
  /** SHA-256 action digest the token was issued for. */
  readonly action: Uint8Array;
}

/** token.request → { token: bstr, token_id: bstr .size 16, expires: uint } */
export function readIssuedToken(r: Result): IssuedToken {
  return {
    token: bytesField(r, "token", 1, MAX_TOKEN_BYTES, "token.request"),
    tokenId: bytesField(r, "token_id", 16, 16, "token.request"),
    expiresAt: uintField(r, "expires", "token.request"),
  };
}

/** token.redeem → { token_id: bstr .size 16, scope: text, action: bstr .size 32 } */
export function readRedeemedToken(r: Result): RedeemedToken {
  return {
    tokenId: bytesField(r, "token_id", 16, 16, "token.redeem"),
    scope: textField(r, "scope", 128, "token.redeem"),
    action: bytesField(r, "action", 32, 32, "token.redeem"),
  };
}

/** status → { * text => any }: every key must be text. */
export function readTextKeyedMap(r: Result, op: string): ReadonlyMap<string, CborValue> {
  for (const k of r.keys()) if (typeof k !== "string") throw bad(`${op}: non-text key ${String(k)}`);
  return r as ReadonlyMap<string, CborValue>;
}
