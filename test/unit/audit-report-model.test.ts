import { describe, expect, it } from "vitest";
import type { ExploredEntry } from "../../src/audit/explore/index.js";
import { cspHash, REPORT_CSP, renderReport } from "../../src/audit/report/html.js";
import { checkGroups, failureLine, whoOf, whyOf } from "../../src/audit/report/model.js";
import { REPORT_SCRIPT } from "../../src/audit/report/page-script.js";
import { REPORT_CSS } from "../../src/audit/report/page-style.js";

const denial = {
  index: 7,
  leafHash: "00",
  version: 1,
  type: "decision",
  time: { wallMs: 0, iso: "1970-01-01T00:00:00.000Z", monoUs: 0 },
  body: {},
  refs: [],
  caller: { uid: 1000, gid: 1000, pid: 42, exeDigest: "ab".repeat(32), from: { index: 6, type: "request" } },
  allow: false,
  denial: { reason: "scope_not_allowed", code: "policy" },
  scope: "nope",
} as unknown as ExploredEntry;

describe("audit report model", () => {
  it("groups audit verify's failures by phase; --log-only skips the key chain and attestation", () => {
    const g = checkGroups(
      [
        { check: "backref", index: 15, reason: "refs[0] leaf hash differs from entry 14" },
        { check: "epoch_quote", index: 3, reason: "bad quote" },
      ],
      false,
    );
    expect(g.find((x) => x.name === "entries and back-references")).toEqual({
      name: "entries and back-references",
      result: "FAIL",
      failures: ["backref entry 15: refs[0] leaf hash differs from entry 14"],
    });
    expect(g.find((x) => x.name.startsWith("attestation"))?.result).toBe("FAIL");
    expect(g.find((x) => x.name.startsWith("segments"))?.result).toBe("PASS");
    const lo = checkGroups([], true);
    expect(lo.filter((x) => x.result === "SKIP").map((x) => x.name)).toEqual([
      "key chain: EK certificate → AK → signing key",
      "attestation: quotes, allows, tokens, policies",
    ]);
    expect(failureLine({ check: "record", segment: "0.seg", index: 2, reason: "bad" })).toBe(
      "record entry 2 (0.seg): bad",
    );
  });

  it("says who and why for a denial", () => {
    expect(whoOf(denial)).toBe(`uid 1000 gid 1000 pid 42 exe sha256:${"ab".repeat(8)}…`);
    expect(whyOf(denial)).toBe("DENY scope_not_allowed policy scope=nope");
  });

  it("pins exactly the inline script and style in the CSP, and nothing else may load", () => {
    const html = renderReport("t <b>", { x: "</script><script>alert(1)</script>" });
    expect(REPORT_CSP()).toContain(`script-src ${cspHash(REPORT_SCRIPT)};`);
    expect(REPORT_CSP()).toContain(`style-src ${cspHash(REPORT_CSS)};`);
    expect(REPORT_CSP().startsWith("default-src 'none'; ")).toBe(true);
    expect(html).toContain(`<script>${REPORT_SCRIPT}</script>`);
    expect(html).toContain("<title>t &#60;b&#62;</title>");
    // the data is base64: nothing in it can close the element it sits in
    expect(html.match(/<script/g)).toHaveLength(2);
  });
});
