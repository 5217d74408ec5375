import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");

function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => join(ROOT, dir, f));
}

/** The event name of every pino call: its last string argument (`log.warn({…}, "event")`). */
function loggedEvents(): Set<string> {
  const out = new Set<string>();
  for (const file of [...tsFiles("src"), ...tsFiles("daemon")]) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/\.(?:fatal|error|warn|info|debug|trace)\(/g)) {
      let depth = 1;
      let i = m.index + m[0].length;
      const start = i;
      for (; i < text.length && depth > 0; i++) {
        if (text[i] === "(") depth++;
        else if (text[i] === ")") depth--;
      }
      const names = [...text.slice(start, i - 1).matchAll(/"([a-z][a-z0-9_]*)"\s*,?\s*$/g)];
      const name = names.at(-1)?.[1];
      if (name) out.add(name);
    }
  }
  return out;
}

describe("docs/operations.md", () => {
  it("the journald table names every event the daemon logs", () => {
    const doc = readFileSync(join(ROOT, "docs/operations.md"), "utf8");
    const table = doc.slice(doc.indexOf("**journald**"), doc.indexOf("**Metrics**"));
    const events = loggedEvents();
    expect(events.size).toBeGreaterThan(15);
    for (const e of events) expect(table, e).toContain(`\`${e}\``);
  });
});
