import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { accessPolicyFromToml } from "../../src/policy/access-schema.js";
import { parsePolicy } from "../../src/policy/load.js";

const H = (c: string) => c.repeat(64);
const value = fc.oneof(
  fc.constantFrom(0, 1, 1000, -1, 3600, 3601, 4_294_967_295, 1.5),
  fc.constantFrom("s", "t", "trainer", "-x", "", H("a"), "/usr/bin/x", "x.service", "constructor"),
  fc.string({ maxLength: 10 }),
  fc.boolean(),
  fc.constant(new Date(0)),
  fc.array(fc.oneof(fc.constantFrom(1, "s", "t", H("b"), "/bin/sh", "a.scope"), fc.string()), {
    maxLength: 3,
  }),
);
const executor = fc.dictionary(
  fc.constantFrom("name", "uids", "gids", "exe_sha256", "exe_paths", "units", "scopes", "other"),
  value,
  { maxKeys: 7 },
);
const scope = fc.dictionary(fc.constantFrom("ttl_s", "fresh", "audiences", "actions", "other"), value, {
  maxKeys: 5,
});
const doc = fc.record(
  {
    executors: fc.oneof(fc.array(executor, { maxLength: 3 }), value),
    scopes: fc.oneof(
      fc.dictionary(fc.constantFrom("s", "t", "__proto__", "a b"), scope, { maxKeys: 3 }),
      value,
    ),
  },
  { requiredKeys: [] },
);

describe("access policy schema: properties", () => {
  it("any document either validates or throws config_invalid naming a key", () => {
    fc.assert(
      fc.property(doc, (d) => {
        try {
          const p = accessPolicyFromToml(d as Record<string, unknown>);
          for (const e of p.executors) {
            expect(e.uids.length + e.gids.length).toBeGreaterThan(0);
            for (const s of e.scopes) expect(p.scopes.has(s)).toBe(true);
          }
        } catch (e) {
          expect(e).toBeInstanceOf(ExecgateError);
          expect((e as ExecgateError).code).toBe("config_invalid");
          expect(typeof (e as ExecgateError).detail.key).toBe("string");
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("any text either parses or throws config_invalid", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (t) => {
        try {
          parsePolicy(t, "/x");
        } catch (e) {
          expect(e).toBeInstanceOf(ExecgateError);
          expect((e as ExecgateError).code).toBe("config_invalid");
        }
      }),
      { numRuns: 2000 },
    );
  });
});
