import { ExecgateError } from "../core/errors.js";

/*
 * Socket framing (docs/protocol.md): each frame is a 4-byte big-endian length followed by that
 * many bytes of one CBOR map. The length is checked against the limit BEFORE any buffer for the
 * frame is allocated; a zero length is malformed.
 */
export const FRAME_HEADER_BYTES = 4;
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;

export function encodeFrame(payload: Uint8Array, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Uint8Array {
  if (payload.length === 0 || payload.length > maxFrameBytes) {
    throw new ExecgateError("limit_exceeded", `frame of ${payload.length} bytes outside 1..${maxFrameBytes}`);
  }
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length, false);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Incremental decoder: push() socket chunks, get whole frames back. Holds at most one partial
 * frame (≤ maxFrameBytes + 4 bytes). Throws ExecgateError on an oversized or empty frame; the
 * connection is then closed by the caller.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private expected = -1;

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes of an incomplete frame held right now. */
  get pending(): number {
    return this.buffered;
  }

  /** True from a frame's first byte until it is whole (a bare 4-byte header counts). */
  get midFrame(): boolean {
    return this.buffered > 0 || this.expected >= 0;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    const frames: Uint8Array[] = [];
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.expected < 0) {
        if (this.buffered < FRAME_HEADER_BYTES) break;
        const header = this.take(FRAME_HEADER_BYTES);
        const len = new DataView(header.buffer, header.byteOffset, 4).getUint32(0, false);
        if (len === 0) throw new ExecgateError("malformed", "empty frame");
        if (len > this.maxFrameBytes) {
          throw new ExecgateError("limit_exceeded", `frame of ${len} bytes exceeds ${this.maxFrameBytes}`);
        }
        this.expected = len;
      }
      if (this.buffered < this.expected) break;
      frames.push(this.take(this.expected));
      this.expected = -1;
    }
    return frames;
  }

  private take(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }
}
