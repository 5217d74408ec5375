import { type CborValue, encode } from "../cbor/index.js";
import type { DenialReason } from "../core/denial.js";
import { PROTOCOL_VERSION } from "./request.js";

/*
 * Replies (docs/protocol.md): one per request, with its id.
 *   { "v": 1, "id": uint, "ok": true, "result": { ... } }
 *   { "v": 1, "id": uint, "ok": false, "error": ReplyError, ? "reason": DenialReason }
 */

/** Error codes in replies, coarse on purpose: the detail stays in the lineage and the logs. */
export const REPLY_ERRORS = [
  "denied",
  "bad_request",
  "unsupported_version",
  "unknown_op",
  "busy",
  "internal",
] as const;
export type ReplyError = (typeof REPLY_ERRORS)[number];

export function okReply(
  id: number,
  result: ReadonlyMap<string, CborValue> | Record<string, CborValue | undefined>,
): Uint8Array {
  return encode({ v: PROTOCOL_VERSION, id, ok: true, result: result as CborValue });
}

export function errorReply(id: number, error: ReplyError, reason?: DenialReason): Uint8Array {
  return encode({ v: PROTOCOL_VERSION, id, ok: false, error, ...(reason ? { reason } : {}) });
}
