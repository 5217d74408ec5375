import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isExecgateError } from "../../src/core/errors.js";
import { eventLogFacts } from "../../src/measure/eventlog-decode.js";
import { MAX_EVENT_DATA, parseEventLog } from "../../src/measure/eventlog-parse.js";
import { replayEventLog } from "../../src/measure/eventlog-replay.js";
import { buildAllowlist, globToRegexSource, parseAllowlistText } from "../../src/measure/ima-allowlist.js";
import { MAX_TEMPLATE_DATA, parseImaBinaryChunk, parseImaList } from "../../src/measure/ima-parse.js";
import { applyEntries, initialImaState, parseNewEntries, replayIma } from "../../src/measure/ima-replay.js";
import { parsePcrValuesJson } from "../../src/measure/pcrs-input.js";
import { parseIntegrityPolicyToml } from "../../src/policy/integrity-load.js";
import { CORPUS } from "../helpers/corpus.js";

const bin = (p: string) => new Uint8Array(readFileSync(join(CORPUS, p)));
const RUNS = { numRuns: 300 };

/** Runs `f`; anything thrown must be an ExecgateError. */
function onlyExecgateErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!isExecgateError(e)) throw e;
  }
}

/** Mutations of a valid input: truncation, byte flips, u32 fields overwritten with huge values, splices. */
function mutated(seed: Uint8Array): fc.Arbitrary<Uint8Array> {
  const n = seed.length;
  return fc.oneof(
    fc.nat({ max: n }).map((k) => seed.slice(0, k)),
    fc
      .array(fc.tuple(fc.nat({ max: n - 1 }), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 8,
      })
      .map((flips) => {
        const b = seed.slice();
        for (const [i, v] of flips) b[i] = v;
        return b;
      }),
    fc
      .tuple(
        fc.nat({ max: Math.max(0, n - 4) }),
        fc.constantFrom(0xffffffff, 0x7fffffff, 0x10000000, 0x01000000, 0, 1),
      )
      .map(([i, v]) => {
        const b = seed.slice();
        new DataView(b.buffer).setUint32(i, v, true);
        return b;
      }),
    fc.tuple(fc.nat({ max: n }), fc.uint8Array({ maxLength: 64 })).map(([i, junk]) => {
      const b = new Uint8Array(n + junk.length);
      b.set(seed.subarray(0, i));
      b.set(junk, i);
      b.set(seed.subarray(i), i + junk.length);
      return b;
    }),
  );
}

describe("event log parser: typed errors only, bounded", () => {
  const seeds = [
    "eventlog/tpm2-tools/event.bin",
    "eventlog/go-tpm-tools/cos-85-amd-sev.bin",
    "eventlog/go-attestation/windows_gcp_shielded_vm.eventlog.bin",
    "eventlog/tpm2-tss/specid-vendordata.bin",
  ];

  it.each(seeds)("mutations of %s: parse, replay and facts throw only ExecgateError", (seed) => {
    fc.assert(
      fc.property(mutated(bin(seed)), (b) => {
        onlyExecgateErrors(() => {
          const log = parseEventLog(b);
          replayEventLog(log);
          eventLogFacts(log);
          for (const e of log.events) expect(e.data.length).toBeLessThanOrEqual(MAX_EVENT_DATA);
        });
      }),
      RUNS,
    );
  });

  it("random bytes throw only ExecgateError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (b) => onlyExecgateErrors(() => parseEventLog(b))),
      RUNS,
    );
  });

  it("a huge event size is refused before any allocation (limit_exceeded, not a copy)", () => {
    const b = bin("eventlog/tpm2-tools/event.bin").slice();
    new DataView(b.buffer).setUint32(28, 0xfffffff0, true); // first event's eventDataSize
    expect(() => parseEventLog(b)).toThrow(expect.objectContaining({ code: "limit_exceeded" }));
  });

  it("truncating a valid log at any point is an error or a shorter valid log, never a crash", () => {
    const b = bin("eventlog/go-tpm-tools/debian-10.bin");
    for (let k = 0; k < b.length; k += 97) onlyExecgateErrors(() => parseEventLog(b.subarray(0, k)));
  });
});

describe("IMA parsers: typed errors only, bounded", () => {
  it.each(["ima/tpm2-tss/sml-ima-ng-sha1.bin", "ima/tpm2-tss/sml-ima-sha1.bin", "ima/ibmtss/imatest.log"])(
    "mutations of binary %s throw only ExecgateError",
    (seed) => {
      fc.assert(
        fc.property(mutated(bin(seed)), (b) =>
          onlyExecgateErrors(() => {
            const l = parseImaList(b);
            for (const e of l.entries)
              expect(e.templateData.length).toBeLessThanOrEqual(MAX_TEMPLATE_DATA + 300);
            replayIma(l.entries, ["sha1", "sha256"]);
          }),
        ),
        RUNS,
      );
    },
  );

  it.each([
    "ima/keylime/test_ima_verification/measurements.txt",
    "ima/keylime/test_ima_verification/keyrings-ima-buf.txt",
  ])("mutations of ascii %s throw only ExecgateError", (seed) => {
    fc.assert(
      fc.property(mutated(bin(seed)), (b) => onlyExecgateErrors(() => parseImaList(b, "ascii"))),
      RUNS,
    );
  });

  it("random text lines throw only ExecgateError", () => {
    const line = fc
      .array(
        fc.constantFrom(
          "10",
          "ima-ng",
          "ima-sig",
          "ima",
          "sha1:",
          "sha256:00",
          "/x",
          "",
          "ab",
          "0".repeat(40),
          "d-ng|n-ng",
        ),
        {
          maxLength: 7,
        },
      )
      .map((t) => t.join(" "));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 5 }), (lines) =>
        onlyExecgateErrors(() => parseImaList(new TextEncoder().encode(lines.join("\n")), "ascii")),
      ),
      RUNS,
    );
  });

  it("incremental parsing at any split point equals parsing the whole list", () => {
    const b = bin("ima/tpm2-tss/sml-ima-ng-sha1.bin");
    const whole = parseImaList(b);
    fc.assert(
      fc.property(fc.nat({ max: b.length }), (k) => {
        const s0 = initialImaState("binary");
        const first = parseNewEntries(s0, b.subarray(0, k));
        const s1 = applyEntries(s0, first);
        const rest = parseNewEntries(s1, b.subarray(s1.offset));
        const s2 = applyEntries(s1, rest);
        expect(s2.entries).toBe(whole.entries.length);
        expect(Buffer.from(s2.pcr10.get("sha256")!).toString("hex")).toBe(
          replayIma(whole.entries).sha256?.["10"],
        );
      }),
      { numRuns: 100 },
    );
  });

  it("a field overrunning complete template data is malformed, not a silently dropped partial record", () => {
    const b = bin("ima/tpm2-tss/sml-ima-ng-sha1.bin").slice();
    // record 0: pcr(4) hash(20) namelen(4) "ima-ng"(6) datalen(4) → first field length at 38
    new DataView(b.buffer).setUint32(38, 0x1000, true);
    expect(() => parseImaBinaryChunk(b)).toThrow(expect.objectContaining({ code: "malformed" }));
  });

  it("a huge template data length is refused (limit_exceeded)", () => {
    const b = bin("ima/tpm2-tss/sml-ima-ng-sha1.bin").slice();
    // record 0: pcr(4) hash(20) namelen(4) "ima-ng"(6) → template data length at 34
    new DataView(b.buffer).setUint32(34, 0x7fffffff, true);
    expect(() => parseImaBinaryChunk(b)).toThrow(expect.objectContaining({ code: "limit_exceeded" }));
  });
});

describe("operator inputs: typed errors only", () => {
  it("allowlist text, Keylime JSON, PCR JSON and policy TOML", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        onlyExecgateErrors(() => parseAllowlistText(s));
        onlyExecgateErrors(() => buildAllowlist({ keylimePolicies: [s] }));
        onlyExecgateErrors(() => parsePcrValuesJson(s));
        onlyExecgateErrors(() => parseIntegrityPolicyToml(s));
      }),
      RUNS,
    );
  });

  it("globs: * stays within a segment, ** crosses segments", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z]{1,5}$/), fc.stringMatching(/^[a-z]{1,5}$/), (a, b) => {
        expect(new RegExp(`^${globToRegexSource("/x/*")}`).test(`/x/${a}/${b}`)).toBe(false);
        expect(new RegExp(`^${globToRegexSource("/x/**")}`).test(`/x/${a}/${b}`)).toBe(true);
        expect(new RegExp(`^${globToRegexSource("/x/*")}`).test(`/x/${a}`)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });
});

describe("IMA ascii and binary forms of the same entries agree", () => {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const field = (b: Buffer) => Buffer.concat([u32(b.length), b]);
  const entry = fc.record({
    template: fc.constantFrom("ima-ng", "ima-sig", "ima-buf", "ima", "ima-modsig"),
    alg: fc.constantFrom(["sha1", 20] as const, ["sha256", 32] as const, ["sha512", 64] as const),
    seed: fc.uint8Array({ minLength: 64, maxLength: 64 }),
    name: fc.stringMatching(/^\/[a-z0-9 ._-]{0,40}$/),
    extra: fc.uint8Array({ maxLength: 40 }),
    violation: fc.boolean(),
  });

  type Gen = typeof entry extends fc.Arbitrary<infer T> ? T : never;
  function encode(e: Gen) {
    const isIma = e.template === "ima";
    const size = isIma ? 20 : e.alg[1];
    const alg = isIma ? "sha1" : e.alg[0];
    const fd = Buffer.from(e.seed.subarray(0, size));
    const fields: Buffer[] = [];
    let data: Buffer;
    let text: string[];
    if (isIma) {
      const padded = Buffer.alloc(256);
      padded.write(e.name);
      data = Buffer.concat([fd, padded]);
      text = [fd.toString("hex"), e.name];
    } else {
      fields.push(Buffer.concat([Buffer.from(`${alg}:\0`), fd]), Buffer.from(`${e.name}\0`));
      text = [`${alg}:${fd.toString("hex")}`, e.name];
      if (e.template !== "ima-ng") {
        fields.push(Buffer.from(e.extra));
        text.push(Buffer.from(e.extra).toString("hex"));
      }
      if (e.template === "ima-modsig") {
        // d-modsig and modsig are empty unless the file carries an appended signature
        const modsig = e.extra.length > 0;
        const dm = modsig ? Buffer.concat([Buffer.from(`${alg}:\0`), fd]) : Buffer.alloc(0);
        fields.push(dm, Buffer.from(e.extra));
        text.push(modsig ? `${alg}:${fd.toString("hex")}` : "", Buffer.from(e.extra).toString("hex"));
      }
      data = Buffer.concat(fields.map(field));
    }
    const th = e.violation ? Buffer.alloc(20) : createHash("sha1").update(data).digest();
    const binary = isIma
      ? Buffer.concat([
          u32(10),
          th,
          u32(3),
          Buffer.from("ima"),
          fd,
          u32(Buffer.byteLength(e.name)),
          Buffer.from(e.name),
        ])
      : Buffer.concat([u32(10), th, u32(e.template.length), Buffer.from(e.template), u32(data.length), data]);
    const ascii = `10 ${th.toString("hex")} ${e.template} ${text.join(" ")}\n`;
    return { binary, ascii };
  }

  it("same entries, names (spaces included), digests and PCR 10 in every bank", () => {
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 6 }), (es) => {
        const enc = es.map(encode);
        const b = parseImaList(Buffer.concat(enc.map((x) => x.binary)), "binary");
        const a = parseImaList(new TextEncoder().encode(enc.map((x) => x.ascii).join("")), "ascii");
        expect(a.entries.map((x) => [x.template, x.name, x.violation])).toEqual(
          b.entries.map((x) => [x.template, x.name, x.violation]),
        );
        expect(a.entries.map((x) => Buffer.from(x.templateData).toString("hex"))).toEqual(
          b.entries.map((x) => Buffer.from(x.templateData).toString("hex")),
        );
        const banks = ["sha1", "sha256", "sha384"] as const;
        expect(replayIma(a.entries, banks)).toEqual(replayIma(b.entries, banks));
      }),
      { numRuns: 200 },
    );
  });
});
