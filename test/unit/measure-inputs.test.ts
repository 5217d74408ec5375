import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { buildAllowlist, parseAllowlistText } from "../../src/measure/ima-allowlist.js";
import { parsePcrValuesFile, parsePcrValuesJson } from "../../src/measure/pcrs-input.js";
import { CORPUS } from "../helpers/corpus.js";

const FIXTURES = join(import.meta.dirname, "../fixtures/tpm");

describe("recorded PCR values (--pcrs)", () => {
  it("reads the tpm2-tools PCR file written by tpm2_quote (2 banks) as pcrread.txt shows it", () => {
    const v = parsePcrValuesFile(new Uint8Array(readFileSync(join(FIXTURES, "quote-ecc-2banks.pcrs"))));
    const text = readFileSync(join(FIXTURES, "pcrread.txt"), "utf8");
    expect(Object.keys(v)).toEqual(["sha1", "sha256"]);
    expect(Object.keys(v.sha1 ?? {})).toEqual(["0", "1", "10"]);
    expect(text.toLowerCase()).toContain(`10: 0x${v.sha1?.["10"]}`);
    expect(text.toLowerCase()).toContain(`10: 0x${v.sha256?.["10"]}`);
  });

  it("reads JSON, normalising hex and indices", () => {
    const v = parsePcrValuesFile(new TextEncoder().encode(` {"sha256": {"07": "${"AB".repeat(32)}"}}`));
    expect(v).toEqual({ sha256: { "7": "ab".repeat(32) } });
  });

  it.each([
    ['{"md5": {}}', /unknown bank/],
    ['{"sha1": {"24": "00"}}', /bad PCR index/],
    // "07" is PCR 7, so beside "7" it would silently replace it.
    [`{"sha1": {"7": "${"00".repeat(20)}", "07": "${"11".repeat(20)}"}}`, /sha1:7 given twice/],
    [`{"sha1": {"0": "${"00".repeat(32)}"}}`, /32 bytes, want 20/],
    ["[1]", /JSON object/],
    ["{", /not JSON/],
  ])("rejects %s", (text, msg) => {
    expect(() => parsePcrValuesJson(text)).toThrow(msg);
    expect(() => parsePcrValuesJson(text)).toThrow(ExecgateError);
  });
});

describe("allowlists", () => {
  it("Keylime runtime-policy-test.json: 21 digests (keylime test_read_allowlist)", () => {
    const a = buildAllowlist({
      keylimePolicies: [readFileSync(join(CORPUS, "ima/keylime/runtime-policy-test.json"), "utf8")],
    });
    let n = 0;
    for (const v of a.digests.values()) n += typeof v === "string" ? 1 : v.length;
    expect(n).toBe(21);
    expect(a.exclude).toBeUndefined();
  });

  it("sha256sum lines: two spaces, binary marker, several digests per path, comments", () => {
    const m = parseAllowlistText(
      `# comment\n${"aa".repeat(32)}  /bin/a b\n${"bb".repeat(32)} */bin/a b\n\n${"CC".repeat(20)}  /x\r\n${"aa".repeat(32)}  /bin/a b\n`,
    );
    expect(m.get("/bin/a b")).toEqual(["aa".repeat(32), "bb".repeat(32)]);
    expect(m.get("/x")).toBe("cc".repeat(20));
  });

  it("a bad line is config_invalid naming the line", () => {
    try {
      parseAllowlistText(`${"aa".repeat(32)}  /ok\nnot a digest line\n`);
      expect.unreachable();
    } catch (e) {
      expect((e as ExecgateError).code).toBe("config_invalid");
      expect((e as ExecgateError).detail.line).toBe(2);
    }
  });

  it("excludes: our globs and Keylime regexes (anchored at the start)", () => {
    const a = buildAllowlist({
      excludeGlobs: ["/tmp/**", "/var/log/*.log"],
      keylimePolicies: [JSON.stringify({ excludes: ["/opt/.*\\.py"] })],
    });
    const ex = a.exclude!;
    expect(["/tmp/a/b", "/var/log/x.log", "/opt/x/y.py"].every((p) => ex.test(p))).toBe(true);
    expect(["/var/log/a/x.log", "/usr/tmp/a", "/x/opt/a.py"].some((p) => ex.test(p))).toBe(false);
    expect(() => buildAllowlist({ keylimePolicies: ['{"excludes": ["("]}'] })).toThrow(/not a valid regex/);
  });
});
