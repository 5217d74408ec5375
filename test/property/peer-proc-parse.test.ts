import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { parseCgroup, parsePidfdInfoPid, parseProcStat } from "../../src/peer/proc-parse.js";

/** Runs f; passes if it returns or throws ExecgateError, fails on anything else. */
function onlyExecgateErrors(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch (e) {
    if (e instanceof ExecgateError) return true;
    throw e;
  }
}

const procText = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.string({ unit: "binary", maxLength: 300 }),
  fc
    .array(fc.constantFrom("0", "1", ":", "/", "(", ")", " ", "\n", "-", "S", "a.service", "x.slice", "@"), {
      maxLength: 120,
    })
    .map((a) => a.join("")),
);

describe("proc parsers throw only ExecgateError", () => {
  it("parseProcStat", () => {
    fc.assert(
      fc.property(procText, (t) => onlyExecgateErrors(() => parseProcStat(t))),
      { numRuns: 2000 },
    );
  });
  it("parseCgroup", () => {
    fc.assert(
      fc.property(procText, (t) => onlyExecgateErrors(() => parseCgroup(t))),
      { numRuns: 2000 },
    );
  });
  it("parsePidfdInfoPid", () => {
    fc.assert(
      fc.property(procText, (t) => onlyExecgateErrors(() => parsePidfdInfoPid(t))),
      { numRuns: 2000 },
    );
  });
});

describe("parseProcStat finds fields after the last ')' whatever comm holds", () => {
  it("any comm of up to 15 bytes (TASK_COMM_LEN - 1)", () => {
    const comm = fc.string({ unit: "grapheme-ascii", maxLength: 15 });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4_194_304 }),
        comm,
        fc.constantFrom("R", "S", "D", "Z", "T", "t", "X", "I"),
        fc.array(fc.nat({ max: 2 ** 31 }), { minLength: 50, maxLength: 50 }),
        fc.maxSafeNat(),
        (pid, c, state, rest, startTime) => {
          const fields = [state, ...rest.map(String)];
          fields[22 - 3] = String(startTime);
          const st = parseProcStat(`${pid} (${c}) ${fields.join(" ")}\n`);
          expect(st).toEqual({ pid, comm: c, state, startTime });
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("parseCgroup: units come from the first non-slice component only", () => {
  const word = fc.stringMatching(/^[a-z0-9-]{1,12}$/);
  it("slices, a unit, then anything below it", () => {
    fc.assert(
      fc.property(
        fc.array(word, { maxLength: 4 }),
        word,
        fc.constantFrom("service", "scope"),
        fc.array(
          fc.oneof(
            word,
            word.map((w) => `${w}.service`),
          ),
          { maxLength: 4 },
        ),
        (slices, name, type, below) => {
          const unit = `${name}.${type}`;
          const path = `/${[...slices.map((s) => `${s}.slice`), unit, ...below].join("/")}`;
          const parsed = parseCgroup(`0::${path}\n`);
          if (/^user@[0-9]+\.service$/.test(unit)) return; // user managers: covered by unit tests
          expect(parsed).toEqual({ path, unit });
        },
      ),
      { numRuns: 1000 },
    );
  });
});
