import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
