/** Big-endian byte builder for the structures we serialize (TPM marshalling, test vectors). */
export class ByteWriter {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  u8(v: number): this {
    return this.push(Uint8Array.of(v & 0xff));
  }

  u16(v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, false);
    return this.push(b);
  }

  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, false);
    return this.push(b);
  }

  u64(v: bigint): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, false);
    return this.push(b);
  }

  bytes(b: Uint8Array): this {
    return this.push(b);
  }

  /** TPM2B_*: u16 size then the bytes. */
  tpm2b(b: Uint8Array): this {
    return this.u16(b.length).push(b);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  private push(b: Uint8Array): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
}
