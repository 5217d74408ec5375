import { crc32 } from "node:zlib";

/**
 * Framing shared by the journal segments and the checkpoint log:
 *
 *   record = length:u32be  crc:u32be  payload[length]
 *   crc    = CRC-32 (ISO-HDLC, the zlib/PNG polynomial 0xEDB88320, via node:zlib.crc32, Node ≥ 20.15)
 *            over the 4 length bytes followed by the payload
 *
 * Covering the length catches a torn or corrupted length field; CRC-32 (not CRC-32C) because it
 * is built into Node and the records are also protected by the Merkle tree and signatures.
 */
export const RECORD_HEADER_BYTES = 8;

/** Journal segment header: magic "EXGLSEG1" then the first entry index as u64be. */
export const SEGMENT_MAGIC = new TextEncoder().encode("EXGLSEG1");
export const SEGMENT_HEADER_BYTES = 16;

/** CRC-32 table (reflected 0xEDB88320), for the 4 length bytes: one native call per record, not two. */
const CRC_TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  CRC_TABLE[n] = c >>> 0;
}

/** The record CRC: CRC-32 of the length as u32be followed by the payload. */
function recordCrc(len: number, payload: Uint8Array): number {
  let c = 0xffffffff;
  c = CRC_TABLE[(c ^ (len >>> 24)) & 0xff]! ^ (c >>> 8);
  c = CRC_TABLE[(c ^ (len >>> 16)) & 0xff]! ^ (c >>> 8);
  c = CRC_TABLE[(c ^ (len >>> 8)) & 0xff]! ^ (c >>> 8);
  c = CRC_TABLE[(c ^ len) & 0xff]! ^ (c >>> 8);
  return crc32(payload, (c ^ 0xffffffff) >>> 0);
}

function putU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = v >>> 16;
  out[at + 2] = v >>> 8;
  out[at + 3] = v;
}

function getU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

export function frameRecord(payload: Uint8Array, out: Uint8Array, at: number): number {
  putU32(out, at, payload.length);
  putU32(out, at + 4, recordCrc(payload.length, payload));
  out.set(payload, at + RECORD_HEADER_BYTES);
  return at + RECORD_HEADER_BYTES + payload.length;
}

/**
 * Reads the record at `at`: returns its payload length, or -1 if the bytes there are not a
 * complete, intact record (short, zero/oversized length, or CRC mismatch).
 */
export function checkRecord(buf: Uint8Array, at: number, maxPayload: number): number {
  if (buf.length - at < RECORD_HEADER_BYTES) return -1;
  const len = getU32(buf, at);
  if (len === 0 || len > maxPayload || buf.length - at - RECORD_HEADER_BYTES < len) return -1;
  const want = getU32(buf, at + 4);
  const got = recordCrc(len, buf.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + len));
  return got === want ? len : -1;
}

/** A journal segment's file name: its first entry index, zero-padded so names sort by index. */
export function segmentName(first: number): string {
  return `${String(first).padStart(20, "0")}.seg`;
}
