import { HASH_SIZE } from "./hash.js";

/** A growable run of 32-byte hashes in one flat buffer (no object per hash). */
export class HashColumn {
  private buf: Uint8Array;
  count = 0;

  constructor(capacity = 64) {
    this.buf = new Uint8Array(HASH_SIZE * capacity);
  }

  push(h: Uint8Array): void {
    if ((this.count + 1) * HASH_SIZE > this.buf.length) {
      const next = new Uint8Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf.set(h, this.count * HASH_SIZE);
    this.count += 1;
  }

  /** Hash i as a view into the column (copy it to keep it). */
  get(i: number): Uint8Array {
    return this.buf.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
  }

  truncate(n: number): void {
    this.count = Math.min(this.count, n);
  }

  /** Drops the first n hashes; the rest move to the front. */
  dropFront(n: number): void {
    this.buf.copyWithin(0, n * HASH_SIZE, this.count * HASH_SIZE);
    this.count -= n;
  }

  /** Gives memory back after a burst: above twice `room` hashes of capacity, shrinks to `room`. */
  fit(room: number): void {
    if (this.buf.length > 2 * HASH_SIZE * room && this.count <= room)
      this.buf = this.buf.slice(0, HASH_SIZE * room);
  }
}
