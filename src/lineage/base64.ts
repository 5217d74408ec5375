import { ExecgateError } from "../core/errors.js";

/** RFC 4648 §4 standard alphabet with mandatory padding (what signed notes and checkpoints use). */
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict standard base64: Node's decoder silently skips junk, so validate and round-trip first. */
export function decodeBase64Strict(s: string, what: string): Uint8Array {
  if (!STD_BASE64.test(s)) throw new ExecgateError("malformed", `${what}: not standard base64`);
  const b = Buffer.from(s, "base64");
  // Non-canonical trailing bits (e.g. "QR==" for "QQ==") decode but do not round-trip.
  if (b.toString("base64") !== s) throw new ExecgateError("malformed", `${what}: non-canonical base64`);
  return new Uint8Array(b);
}

export function encodeBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}
