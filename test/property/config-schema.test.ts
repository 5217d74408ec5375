import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { configFromToml, DEFAULTS, parseConfig } from "../../src/config/index.js";
import { ExecgateError } from "../../src/core/errors.js";

const SECTION_NAMES = [...Object.keys(DEFAULTS), "extra"];
const KEY_NAMES = [...new Set(Object.values(DEFAULTS).flatMap((s) => Object.keys(s))), "bogus"];

// Values of every TOML type, biased towards ones that are almost right.
const value = fc.oneof(
  fc.integer({ min: -10, max: 700_000 }),
  fc.constantFrom(0, 1, 50, 1000, 5000, 65_536, 1 << 20, 2 ** 40, 1.5, Number.NaN),
  fc.constantFrom("0660", "0x81000010", "sha256:0,1", "device:/dev/tpmrm0", "info", "", "rel/path", "/abs"),
  fc.string({ maxLength: 20 }),
  fc.boolean(),
  fc.constant(new Date(0)),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.constant({ nested: 1 }),
);

const section = fc.dictionary(fc.constantFrom(...KEY_NAMES), value, { maxKeys: 6 });
const doc = fc.dictionary(
  fc.constantFrom(...SECTION_NAMES),
  fc.oneof({ weight: 9, arbitrary: section }, value),
  {
    maxKeys: 7,
  },
);

function onlyConfigInvalid(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ExecgateError);
    const err = e as ExecgateError;
    expect(err.code).toBe("config_invalid");
    expect(err.message.length).toBeGreaterThan(0);
  }
}

describe("config schema: properties", () => {
  it("any document either validates or throws config_invalid naming a key", () => {
    fc.assert(
      fc.property(doc, (d) => {
        try {
          const c = configFromToml(d, "/etc/execgate");
          expect(c.attest.maxEvidenceAgeMs).toBeGreaterThanOrEqual(c.attest.epochMs);
          expect(c.lineage.dir.startsWith("/")).toBe(true);
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
      fc.property(fc.string({ maxLength: 200 }), (t) => onlyConfigInvalid(() => parseConfig(t, "/x"))),
      { numRuns: 2000 },
    );
  });
});
