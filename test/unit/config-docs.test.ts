import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/config/defaults.js";
import { DOC_BEGIN, DOC_END, renderConfigReference } from "../../src/config/doc.js";
import { SECTIONS } from "../../src/config/schema.js";

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

  it("the rules name every section and every check across keys", () => {
    const text = readFileSync(DOC, "utf8");
    const rules = text.slice(text.indexOf("## Rules"), text.indexOf("## Keys"));
    const closed = rules.slice(rules.indexOf("**Closed schema.**"), rules.indexOf("An unknown section"));
    expect(SECTIONS.length).toBe(8); // a new section: say so in the rule, then here
    expect(closed).toContain("Eight sections");
    for (const s of SECTIONS) expect(closed).toContain(`\`[${s}]\``);
    // Every key a cross-key check names (src/config/config.ts, crossCheck) is in that rule.
    const source = readFileSync(join(import.meta.dirname, "../../src/config/config.ts"), "utf8");
    const body = source.slice(source.indexOf("function crossCheck"), source.indexOf("function toConfig"));
    const cross = rules.slice(rules.indexOf("**Checks across keys.**"));
    const named = [...body.matchAll(/d\.(\w+)\.(\w+)|n\("(\w+)", "(\w+)"\)/g)].map((m) =>
      m[1] ? `${m[1]}.${m[2]}` : `${m[3]}.${m[4]}`,
    );
    expect(named.length).toBeGreaterThan(8);
    for (const k of new Set(named)) expect(cross, k).toContain(k);
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
        // A key without a default is shown with an example, and its comment says so.
        if (line?.startsWith("#") && v === undefined)
          expect(line, `${section}.${k}`).toMatch(/# (unset:|no default)/);
      }
    }
  });
});
