import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { COMMANDS } from "../../daemon/command-table.js";
import { renderManPage } from "./man-page.js";

/*
 * Prints execgate(8) for scripts/package.sh: every command of daemon/command-table.ts with its
 * `--help`, taken by running the built CLI on the Node that runs this.
 * Usage: node dist/scripts/package/make-man-page.js VERSION YYYY-MM-DD
 */

const CLI = fileURLToPath(new URL("../../daemon/cli.js", import.meta.url));

function help(words: readonly string[]): string {
  return execFileSync(process.execPath, [CLI, ...words, "--help"], { encoding: "utf8" });
}

const [version, date] = process.argv.slice(2);
if (!version || !date || !/^\d{4}-\d{2}-\d{2}$/.test(date)) {
  process.stderr.write("usage: make-man-page.js VERSION YYYY-MM-DD\n");
  process.exit(2);
}
const commands = Object.keys(COMMANDS).map((name) => ({ name, help: help(name.split(" ")) }));
process.stdout.write(renderManPage({ version, date, overview: help([]), commands }));
