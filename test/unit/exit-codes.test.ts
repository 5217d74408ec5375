import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EXIT, exitCodeFor } from "../../daemon/exit.js";
import { ERROR_CODES, ExecgateError } from "../../src/core/errors.js";

const DOC = readFileSync(join(import.meta.dirname, "../../docs/fail-closed.md"), "utf8");

/** Error code → exit code, from the table under "Error codes and exit codes". */
function documentedExitCodes(): Map<string, number> {
  const section = DOC.split("## Error codes and exit codes")[1] ?? "";
  const out = new Map<string, number>();
  for (const line of section.split("\n")) {
    const m = /^\| (\d) \|.*\| ([^|]*) \|$/.exec(line);
    if (m?.[1] === undefined || m[2] === undefined) continue;
    for (const code of m[2].matchAll(/`([a-z_]+)`/g)) {
      expect(out.has(code[1]!), `${code[1]} documented twice`).toBe(false);
      out.set(code[1]!, Number(m[1]));
    }
  }
  return out;
}

describe("docs/fail-closed.md: exit codes", () => {
  it("documents every error code with the exit code the CLI uses", () => {
    const documented = documentedExitCodes();
    expect([...documented.keys()].sort()).toEqual([...ERROR_CODES].sort());
    for (const code of ERROR_CODES) {
      expect(documented.get(code), code).toBe(exitCodeFor(new ExecgateError(code, "x")));
    }
  });

  it("has a row for each of the four exit codes", () => {
    for (const n of Object.values(EXIT)) expect(DOC).toMatch(new RegExp(`^\\| ${n} \\|`, "m"));
  });
});
