import { ExecgateError } from "./errors.js";

const HEX_RE = /^(?:[0-9a-fA-F]{2})*$/;

/** Parses an even-length hex string (optionally prefixed with 0x); throws `malformed` otherwise. */
export function fromHex(s: string, what = "hex"): Uint8Array {
  const body = s.startsWith("0x") || s.startsWith("0X") ? s.slice(2) : s;
  if (!HEX_RE.test(body)) throw new ExecgateError("malformed", `${what} is not an even-length hex string`);
  return new Uint8Array(Buffer.from(body, "hex"));
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
