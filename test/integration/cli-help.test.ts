import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { COMMANDS } from "../../daemon/command-table.js";
import { execgate } from "../helpers/cli.js";

describe("execgate help and version", () => {
  it("a command group's --help lists that group's commands (exit 0); the bare group is a usage error listing them (exit 2)", async () => {
    const help = await execgate(["token", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^ {2}execgate token request /m);
    expect(help.stdout).toMatch(/^ {2}execgate token verify /m);
    expect(help.stdout).not.toMatch(/execgate audit/);
    const bare = await execgate(["audit"]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toMatch(/^ {2}execgate audit verify /m);
  });

  it("an unknown command names only the words at fault and where to look", async () => {
    const sub = await execgate(["token", "nope", "--json"]);
    expect(sub.code).toBe(2);
    expect(sub.stderr).toBe("execgate: unknown command 'token nope'; see execgate token --help\n");
    const top = await execgate(["nope", "--x"]);
    expect(top.code).toBe(2);
    expect(top.stderr).toBe("execgate: unknown command 'nope'; see execgate --help\n");
  });

  it("--version prints the package's version, then the runtime (Node version and LTS codename)", async () => {
    const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    const r = await execgate(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")[0]).toBe(`execgate ${version}`);
    expect(r.stdout).toBe(`execgate ${version}\nruntime: node ${process.version} (LTS Krypton)\n`);
  });

  it("every command's --help states its exit codes (an Exit: line)", async () => {
    const keys = Object.keys(COMMANDS);
    expect(keys.length).toBeGreaterThan(15);
    const missing: string[] = [];
    for (const key of keys) {
      const r = await execgate([...key.split(" "), "--help"]);
      expect(r.code, `${key}: ${r.stderr}`).toBe(0);
      // Every command can be misused, so every Exit: line names at least exit 2.
      if (!/^Exit: [\s\S]*\b2 usage/m.test(r.stdout)) missing.push(key);
    }
    expect(missing).toEqual([]);
  });
});
