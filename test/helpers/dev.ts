import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** A fresh directory in the test run's scratch space (reaped by the global teardown). */
export function scratch(prefix: string): Promise<string> {
  return mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), prefix));
}

/** Polls `f` until it holds (a generous bound, no wall-clock assertion). */
export async function until(what: string, f: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The KEY=VALUE lines `execgate dev up` writes to DIR/env. */
export function parseEnv(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .trim()
      .split("\n")
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/** A `dev up` running in the background: its process, its stderr so far, and its exit. */
export interface DevUp {
  readonly child: ChildProcess;
  stderr(): string;
  readonly exited: Promise<number | null>;
  /** Resolves once the daemon logged "daemon on", or the process ended (check stderr then). */
  ready(): Promise<void>;
}

/** Starts `execgate dev up ARGS…` from the built CLI, stderr collected; stop it with SIGINT. */
export function spawnDevUp(args: readonly string[], env?: NodeJS.ProcessEnv): DevUp {
  const child = spawn(process.execPath, [resolve("dist/daemon/cli.js"), "dev", "up", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    ...(env ? { env } : {}),
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return {
    child,
    stderr: () => stderr,
    exited,
    ready: () => until("the daemon", () => stderr.includes("daemon on") || child.exitCode !== null),
  };
}
