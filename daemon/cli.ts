#!/usr/bin/env node
import { asExecgateError } from "../src/core/errors.js";
import { COMMANDS } from "./command-table.js";
import { EXIT, exitCodeFor } from "./exit.js";
import { packageVersion, versionText } from "./version.js";

/** A CLI command: parses its own argv, prints, and returns the exit code. */
export interface Command {
  readonly summary: string;
  readonly usage: string;
  run(argv: readonly string[]): Promise<number>;
}

function findCommand(argv: readonly string[]): { key: string; rest: readonly string[] } | undefined {
  for (const n of [3, 2, 1]) {
    const key = argv.slice(0, n).join(" ");
    if (argv.length >= n && key in COMMANDS) return { key, rest: argv.slice(n) };
  }
  return undefined;
}

/** The commands listed by `execgate --help` (all) or `execgate <group> --help` (one group's). */
async function printHelp(group?: string): Promise<void> {
  const lines = [
    `usage: execgate ${group ? `${group} <command>` : "<command>"} [options]   (execgate <command> --help for its options)`,
    "",
  ];
  for (const [key, load] of Object.entries(COMMANDS)) {
    if (group && !key.startsWith(`${group} `)) continue;
    const c = await load();
    lines.push(`  execgate ${key.padEnd(22)} ${c.summary}`);
  }
  lines.push(
    "",
    "Exit codes: 0 ok, 1 verification failed / denied, 2 usage or configuration, 3 I/O or hardware.",
  );
  process.stdout.write(`${lines.join("\n")}\n`);
}

const isHelp = (a: string | undefined) => a === "--help" || a === "-h" || a === "help";

export async function main(argv: readonly string[]): Promise<number> {
  if (argv.length === 0 || isHelp(argv[0])) {
    await printHelp();
    return argv.length === 0 ? EXIT.usage : EXIT.ok;
  }
  if (argv[0] === "--version" || argv[0] === "-V") {
    process.stdout.write(
      versionText(packageVersion(), { version: process.version, lts: process.release.lts }),
    );
    return EXIT.ok;
  }
  const found = findCommand(argv);
  if (!found) {
    const group = argv[0]!;
    if (Object.keys(COMMANDS).some((k) => k.startsWith(`${group} `))) {
      // `execgate token` or `execgate token --help`: that group's commands.
      if (argv.length === 1 || isHelp(argv[1])) {
        await printHelp(group);
        return argv.length === 1 ? EXIT.usage : EXIT.ok;
      }
      process.stderr.write(`execgate: unknown command '${group} ${argv[1]}'; see execgate ${group} --help\n`);
      return EXIT.usage;
    }
    process.stderr.write(`execgate: unknown command '${group}'; see execgate --help\n`);
    return EXIT.usage;
  }
  const command = await COMMANDS[found.key]!();
  const own = found.rest.indexOf("--") === -1 ? found.rest : found.rest.slice(0, found.rest.indexOf("--"));
  if (own.includes("--help") || own.includes("-h")) {
    process.stdout.write(`usage: execgate ${found.key} ${command.usage}\n\n${command.summary}\n`);
    return EXIT.ok;
  }
  try {
    return await command.run(found.rest);
  } catch (e) {
    const err = asExecgateError(e);
    process.stderr.write(`execgate ${found.key}: ${err.code}: ${err.message}\n`);
    return exitCodeFor(err);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`execgate: internal error: ${String(e)}\n`);
    process.exitCode = EXIT.io;
  },
);
