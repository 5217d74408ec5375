import { crc32 } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkRecord, frameRecord, RECORD_HEADER_BYTES } from "../../src/lineage/record.js";

/** The framing as docs/lineage.md defines it, computed the plain way. */
function reference(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(RECORD_HEADER_BYTES + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.length);
  view.setUint32(4, crc32(payload, crc32(out.subarray(0, 4))));
  out.set(payload, RECORD_HEADER_BYTES);
  return out;
}

describe("record framing (length:u32be, crc:u32be over length ‖ payload, payload)", () => {
  it("frames exactly as the definition, and checkRecord accepts it", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 70_000 }), fc.nat(16), (payload, at) => {
        const out = new Uint8Array(at + RECORD_HEADER_BYTES + payload.length);
        expect(frameRecord(payload, out, at)).toBe(out.length);
        expect(out.subarray(at)).toEqual(reference(payload));
        expect(checkRecord(out, at, 1 << 20)).toBe(payload.length);
      }),
      { numRuns: 200 },
    );
  });

  it("a known vector: payload 'abc'", () => {
    const out = new Uint8Array(11);
    frameRecord(new TextEncoder().encode("abc"), out, 0);
    // CRC-32 of 00 00 00 03 61 62 63 (zlib polynomial).
    expect(Buffer.from(out).toString("hex")).toBe(
      `00000003${crc32(Buffer.from("00000003616263", "hex")).toString(16).padStart(8, "0")}616263`,
    );
  });

  it("checkRecord rejects a flipped bit anywhere", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.nat(), (payload, bit) => {
        const out = reference(payload);
        const i = bit % (out.length * 8);
        out[i >> 3]! ^= 1 << (i & 7);
        expect(checkRecord(out, 0, 1 << 20)).toBe(-1);
      }),
      { numRuns: 300 },
    );
  });
});
