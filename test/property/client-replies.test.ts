import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CborTag, type CborValue, encode } from "../../src/cbor/index.js";
import { cborToJson } from "../../src/client/json.js";
import {
  ExecgateDenied,
  parseReply,
  readIssuedToken,
  readRedeemedToken,
  readTextKeyedMap,
} from "../../src/client/replies.js";
import { DENIAL_REASONS } from "../../src/core/denial.js";
import { ExecgateError } from "../../src/core/errors.js";
import { errorReply, okReply } from "../../src/wire/reply.js";

/* Reply frames are untrusted bytes: the readers throw only ExecgateError, whatever arrives. */

const { value } = fc.letrec<{ value: CborValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.integer({ min: -1000, max: 1 << 30 }),
    fc.string({ maxLength: 20 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.constantFrom(true, false, null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc
      .uniqueArray(
        fc.tuple(
          fc.constantFrom(
            "v",
            "id",
            "ok",
            "result",
            "error",
            "reason",
            "token",
            "token_id",
            "expires",
            "scope",
            "action",
            1,
          ),
          tie("value"),
        ),
        {
          maxLength: 6,
          selector: ([k]) => k,
        },
      )
      .map((kv) => new Map(kv)),
    fc.tuple(fc.integer({ min: 0, max: 100 }), tie("value")).map(([t, v]) => new CborTag(t, v)),
  ),
}));

function onlyExecgateErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ExecgateError);
  }
}

describe("client reply parsing", () => {
  it("arbitrary bytes: parseReply throws only ExecgateError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => onlyExecgateErrors(() => parseReply(b))),
      {
        numRuns: 2000,
      },
    );
  });

  it("arbitrary CBOR: parseReply and the result readers throw only ExecgateError", () => {
    fc.assert(
      fc.property(value, (v) => {
        onlyExecgateErrors(() => parseReply(encode(v)));
        if (v instanceof Map) {
          const m = v as ReadonlyMap<string | number, CborValue>;
          onlyExecgateErrors(() => readIssuedToken(m));
          onlyExecgateErrors(() => readRedeemedToken(m));
          onlyExecgateErrors(() => readTextKeyedMap(m, "status"));
        }
        expect(() => JSON.stringify(cborToJson(v))).not.toThrow();
      }),
      { numRuns: 2000 },
    );
  });

  it("every denial reason the daemon can send comes back as ExecgateDenied with that reason", () => {
    for (const reason of DENIAL_REASONS) {
      const r = parseReply(errorReply(9, "denied", reason));
      expect(r.ok).toBe(false);
      if (r.ok) continue;
      expect(r.error).toBeInstanceOf(ExecgateDenied);
      expect((r.error as ExecgateDenied).reason).toBe(reason);
    }
  });

  it("okReply round-trips through parseReply", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        (id, tid) => {
          const r = parseReply(okReply(id, { token: Uint8Array.of(1), token_id: tid, expires: 5 }));
          expect(r.id).toBe(id);
          expect(r.ok && readIssuedToken(r.result)).toEqual({
            token: Uint8Array.of(1),
            tokenId: tid,
            expiresAt: 5,
          });
        },
      ),
    );
  });
});
