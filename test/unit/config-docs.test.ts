import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/config/defaults.js";
import { DOC_BEGIN, DOC_END, renderConfigReference } from "../../src/config/doc.js";

const DOC = join(import.meta.dirname, "../../docs/config.md");

/*
 * docs/config.md carries the key reference rendered from DEFAULTS and SCHEMA. To regenerate
 * after changing either: EXECGATE_UPDATE_DOCS=1 npx vitest run test/unit/config-docs.test.ts
 */
describe("docs/config.md", () => {
  it("holds the reference rendered from DEFAULTS and SCHEMA", () => {
    const text = readFileSync(DOC, "utf8");
    const start = text.indexOf(DOC_BEGIN);
    const end = text.indexOf(DOC_END);
    expect(start, "begin marker").toBeGreaterThanOrEqual(0);
    expect(end, "end marker").toBeGreaterThan(start);
    const current = text.slice(start, end + DOC_END.length);
    const rendered = renderConfigReference();
    if (current !== rendered && process.env.EXECGATE_UPDATE_DOCS === "1") {
      writeFileSync(DOC, text.slice(0, start) + rendered + text.slice(end + DOC_END.length));
      return;
    }
    expect(current).toBe(rendered);
  });

  it("names every key with its default", () => {
    const text = readFileSync(DOC, "utf8");
    for (const [section, keys] of Object.entries(DEFAULTS)) {
      expect(text).toContain(`### \`[${section}]\``);
      for (const [k, v] of Object.entries(keys)) {
        const row = text.split("\n").find((l) => l.startsWith(`| \`${k}\` |`));
        expect(row, `${section}.${k}`).toBeDefined();
        if (v !== undefined) expect(row).toContain(JSON.stringify(v));
      }
    }
  });
});
