import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";

const CLI = resolve("dist/daemon/cli.js");

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built CLI (scripts/test.sh builds first) as a separate process. */
export function execgate(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  cwd?: string,
): Promise<CliResult> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build (scripts/test.sh does)`);
  return new Promise((res) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH, ...env }, encoding: "utf8", timeout: 60_000, ...(cwd ? { cwd } : {}) },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 99) : 0;
        res({ code, stdout, stderr });
      },
    );
  });
}

/** Runs any program (tpm2-tools for interop checks) and reports its exit code. */
export function run(
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<CliResult> {
  return new Promise((res) => {
    execFile(file, [...args], { env, cwd, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 99) : 0;
      res({ code, stdout, stderr });
    });
  });
}
