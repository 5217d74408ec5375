import { ExecgateError } from "./errors.js";

/**
 * Reads untrusted bytes. Every read checks the remaining length first; nothing is sliced
 * or allocated before that check, and no RangeError escapes. `what` names the field in
 * error messages so a failure points at the spec structure that was being read.
 */
export class Cursor {
  private readonly view: DataView;
  private pos = 0;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  need(n: number, what: string): void {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new ExecgateError("malformed", `${what}: invalid length ${n}`, { offset: this.pos });
    }
    if (n > this.remaining) {
      throw new ExecgateError("truncated", `${what}: need ${n} bytes, ${this.remaining} left`, {
        offset: this.pos,
      });
    }
  }

  u8(what: string): number {
    this.need(1, what);
    const v = this.view.getUint8(this.pos);
    this.pos += 1;
    return v;
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.pos, false);
    this.pos += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, false);
    this.pos += 4;
    return v;
  }

  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, false);
    this.pos += 8;
    return v;
  }

  u16le(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }

  u32le(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  u64le(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** A view (not a copy) of the next n bytes. */
  bytesView(n: number, what: string): Uint8Array {
    this.need(n, what);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** A copy of the next n bytes. */
  take(n: number, what: string): Uint8Array {
    return this.bytesView(n, what).slice();
  }

  skip(n: number, what: string): void {
    this.need(n, what);
    this.pos += n;
  }

  /** TPM2B_*: a big-endian u16 size, then that many bytes, size capped by `max`. */
  tpm2b(what: string, max: number): Uint8Array {
    const size = this.u16(`${what}.size`);
    if (size > max) {
      throw new ExecgateError("limit_exceeded", `${what}: size ${size} > ${max}`, { offset: this.pos - 2 });
    }
    return this.take(size, what);
  }

  /** A count read from the input, rejected before use if it exceeds `max`. */
  count(value: number, max: number, what: string): number {
    if (value > max) {
      throw new ExecgateError("limit_exceeded", `${what}: count ${value} > ${max}`, { offset: this.pos });
    }
    return value;
  }

  /** Sized structures must be consumed exactly. */
  end(what: string): void {
    if (this.remaining !== 0) {
      throw new ExecgateError("trailing_bytes", `${what}: ${this.remaining} trailing bytes`, {
        offset: this.pos,
      });
    }
  }

  /** A sub-cursor over the next n bytes, advancing this one past them. */
  sub(n: number, what: string): Cursor {
    return new Cursor(this.bytesView(n, what));
  }
}
