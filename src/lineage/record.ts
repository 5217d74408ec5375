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

export function frameRecord(payload: Uint8Array, out: Uint8Array, at: number): number {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(at, payload.length);
  const crc = crc32(payload, crc32(out.subarray(at, at + 4)));
  view.setUint32(at + 4, crc);
  out.set(payload, at + RECORD_HEADER_BYTES);
  return at + RECORD_HEADER_BYTES + payload.length;
}

/**
 * Reads the record at `at`: returns its payload length, or -1 if the bytes there are not a
 * complete, intact record (short, zero/oversized length, or CRC mismatch).
 */
export function checkRecord(buf: Uint8Array, at: number, maxPayload: number): number {
  if (buf.length - at < RECORD_HEADER_BYTES) return -1;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = view.getUint32(at);
  if (len === 0 || len > maxPayload || buf.length - at - RECORD_HEADER_BYTES < len) return -1;
  const want = view.getUint32(at + 4);
  const got = crc32(
    buf.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + len),
    crc32(buf.subarray(at, at + 4)),
  );
  return got === want ? len : -1;
}
