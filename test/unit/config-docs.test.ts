import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/config/defaults.js";
import { DOC_BEGIN, DOC_END, renderConfigReference } from "../../src/config/doc.js";

const DOC = join(import.meta.dirname, "../../docs/config.md");
const EXAMPLE = join(import.meta.dirname, "../../examples/execgate.toml");

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

  it("examples/execgate.toml shows every key in its section, with the default when commented out", () => {
    const lines = readFileSync(EXAMPLE, "utf8").split("\n");
    for (const [section, keys] of Object.entries(DEFAULTS)) {
      const start = lines.indexOf(`[${section}]`);
      expect(start, section).toBeGreaterThan(-1);
      const rest = lines.slice(start + 1);
      const next = rest.findIndex((l) => l.startsWith("["));
      const body = next === -1 ? rest : rest.slice(0, next);
      for (const [k, v] of Object.entries(keys)) {
        const line = body.find((l) => new RegExp(`^#? ?${k} = `).test(l));
        expect(line, `${section}.${k}`).toBeDefined();
        if (line?.startsWith("#") && v !== undefined) expect(line).toContain(`${k} = ${JSON.stringify(v)}`);
      }
    }
  });
});
