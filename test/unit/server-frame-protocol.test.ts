import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decode, encode } from "../../src/cbor/index.js";
import { ExecgateError } from "../../src/core/errors.js";
import { RateLimiter } from "../../src/server/rate-limit.js";
import { encodeFrame, FrameDecoder } from "../../src/wire/frame.js";
import { errorReply } from "../../src/wire/reply.js";
import { actionDigest, encodeRequest, parseRequest, refusalOf } from "../../src/wire/request.js";

describe("frame codec", () => {
  it("reassembles frames from arbitrary chunking", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }),
        (payloads, cuts) => {
          const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));
          const d = new FrameDecoder(1024);
          const out: Uint8Array[] = [];
          let off = 0;
          let i = 0;
          while (off < stream.length) {
            const n = cuts[i++ % cuts.length]!;
            out.push(...d.push(new Uint8Array(stream.subarray(off, off + n))));
            off += n;
          }
          expect(out.map((b) => Buffer.from(b).toString("hex"))).toEqual(
            payloads.map((b) => Buffer.from(b).toString("hex")),
          );
          expect(d.pending).toBe(0);
        },
      ),
    );
  });

  it("refuses an oversized frame from its header alone, before the body arrives", () => {
    const d = new FrameDecoder(64 * 1024);
    expect(() => d.push(Uint8Array.of(0x00, 0x01, 0x00, 0x01))).toThrowError(
      expect.objectContaining({ code: "limit_exceeded" }),
    );
    expect(() => new FrameDecoder().push(Uint8Array.of(0, 0, 0, 0))).toThrowError(
      expect.objectContaining({ code: "malformed" }),
    );
  });

  it("is mid-frame from the first header byte until the frame is whole (a bare header counts)", () => {
    const d = new FrameDecoder();
    expect(d.midFrame).toBe(false);
    d.push(Uint8Array.of(0, 0));
    expect(d.midFrame).toBe(true);
    d.push(Uint8Array.of(0, 2));
    expect([d.pending, d.midFrame]).toEqual([0, true]);
    expect(d.push(Uint8Array.of(0xa0, 0xa0))).toHaveLength(1);
    expect(d.midFrame).toBe(false);
  });
});

describe("per-uid limits", () => {
  it("a clock stepping back neither locks a uid out nor adds tokens", () => {
    const r = new RateLimiter(1, 1);
    const t = 10_000_000;
    expect(r.take(7, t)).toBe(true);
    expect(r.take(7, t - 3_600_000)).toBe(false); // an hour back: no token yet, and no debt
    expect(r.take(7, t - 3_600_000 + 1000)).toBe(true);
  });
});

describe("protocol v1 requests", () => {
  it("parses token.request with argv into an action digest", () => {
    const r = parseRequest(encodeRequest(7, "token.request", { scope: "dev", argv: ["/bin/echo", "hi"] }));
    expect(r.op).toBe("token.request");
    if (r.op !== "token.request") return;
    expect(r.id).toBe(7);
    expect(Buffer.from(r.args.action).equals(Buffer.from(actionDigest(["/bin/echo", "hi"])))).toBe(true);
  });

  it("rejects what is not exactly the schema", () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ["token.request", {}],
      ["token.request", { scope: "dev" }],
      ["token.request", { scope: "dev", action: new Uint8Array(32), argv: ["x"] }],
      ["token.request", { scope: "../etc", argv: ["x"] }],
      ["token.request", { scope: "dev", argv: ["x"], extra: 1 }],
      ["token.request", { scope: "dev", argv: ["x"], nonce: new Uint8Array(2) }],
      ["token.redeem", {}],
      ["execution.report", { token_id: new Uint8Array(16), exit_status: 999, duration_ms: 1 }],
      ["status", { x: 1 }],
    ];
    for (const [op, args] of cases) {
      expect(() => parseRequest(encodeRequest(1, op, args as never))).toThrowError(ExecgateError);
    }
    expect(() => parseRequest(encode({ v: 2, id: 1, op: "status" }))).toThrowError(
      expect.objectContaining({ code: "unsupported" }),
    );
    expect(() => parseRequest(encodeRequest(1, "shell", {}))).toThrowError(
      expect.objectContaining({ code: "unsupported" }),
    );
  });

  it("only the version and op checks choose their own reply error; a float is bad_request", () => {
    const refusal = (frame: Uint8Array) => {
      try {
        parseRequest(frame);
      } catch (e) {
        return refusalOf(e as ExecgateError);
      }
      throw new Error("parsed");
    };
    expect(refusal(encode({ v: 2, id: 1, op: "status" }))).toBe("unsupported_version");
    expect(refusal(encodeRequest(1, "shell", {}))).toBe("unknown_op");
    // { "v": 1, "id": 1, "op": "status", "args": 1.0 } — the CBOR decoder's own `unsupported`
    const withFloat = Uint8Array.of(
      ...[0xa4, 0x61, 0x76, 0x01, 0x62, 0x69, 0x64, 0x01, 0x62, 0x6f, 0x70, 0x66],
      ...Buffer.from("status"),
      ...[0x64, ...Buffer.from("args"), 0xf9, 0x3c, 0x00],
    );
    expect(refusal(withFloat)).toBe("bad_request");
    expect(refusal(encodeRequest(1, "status", { x: 1 }))).toBe("bad_request");
  });

  it("never throws anything but ExecgateError on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (b) => {
        try {
          parseRequest(b);
        } catch (e) {
          expect(e).toBeInstanceOf(ExecgateError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("error replies carry a coarse code and the denial reason", () => {
    const r = decode(errorReply(3, "denied", "pcr_mismatch")) as Map<string, unknown>;
    expect(Object.fromEntries(r)).toEqual({
      v: 1,
      id: 3,
      ok: false,
      error: "denied",
      reason: "pcr_mismatch",
    });
  });
});
